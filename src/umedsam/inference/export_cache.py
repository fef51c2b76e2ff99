"""The cache of exported graphs: one folder per format, model and weights identity.

A non-torch engine runs graphs exported on first use into
``<cache root>/exports/<format>/<model name>-<sha256[:16]>-v<export version>/`` (cache root:
``$UMEDSAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/umedsam``, else ``~/.cache/umedsam``). Parity with
PyTorch is checked once, at export time; afterwards the folder is reused without torch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    """Folder for umedsam's caches: $UMEDSAM_CACHE_DIR, $XDG_CACHE_HOME/umedsam or ~/.cache/umedsam."""
    if os.environ.get("UMEDSAM_CACHE_DIR"):
        return Path(os.environ["UMEDSAM_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "umedsam"
    return Path.home() / ".cache" / "umedsam"


def export_cache_dir(fmt: str, model_name: str, sha256: str) -> Path:
    """Cache folder of the ``fmt`` export of ``model_name`` with weights ``sha256``."""
    from umedsam.inference.export_folder import EXPORT_VERSION

    return cache_root() / "exports" / fmt / f"{model_name}-{sha256[:16]}-v{EXPORT_VERSION}"


def valid_export(folder: Path, fmt: str, model_name: str, sha256: str | None) -> bool:
    """Whether ``folder`` holds a complete ``fmt`` export of ``model_name`` (with ``sha256``).

    Raises:
        ValueError: the folder holds an export of another format, model or weights (a folder the
            user named; cache folders are keyed so that this cannot happen).
    """
    from umedsam.inference.export_folder import read_manifest

    if not (folder / "manifest.json").is_file():
        return False
    manifest = read_manifest(folder)
    if manifest.format != fmt:
        raise ValueError(f"{folder} holds a {manifest.format} export; expected {fmt}")
    if manifest.model_name != model_name:
        raise ValueError(
            f"{folder} holds an export of {manifest.model_name!r}; expected {model_name!r}"
        )
    if sha256 is not None and manifest.checkpoint_sha256 != sha256:
        raise ValueError(
            f"{folder} was exported from other weights (sha256 "
            f"{manifest.checkpoint_sha256[:16]}..., these weights {sha256[:16]}...)"
        )
    return True


def ensure_export(
    fmt: str,
    model_name: str,
    checkpoint: Path | None,
    sha256: str,
    folder: Path | None = None,
    threads: int | None = None,
) -> Path:
    """The folder holding a valid ``fmt`` export of these weights, exporting it (once) if needed.

    Args:
        fmt: "onnx" or "openvino".
        model_name: registered model name.
        checkpoint: weights file (None: the model's packaged weights).
        sha256: the weights identity (see :func:`umedsam.inference.engines.weights_sha256`);
            passed on so the file is not hashed again when it has to be loaded for the export.
        folder: an export folder chosen by the user (None: the cache folder of these weights).
        threads: runtime threads for the parity check.

    Raises:
        ValueError: ``folder`` holds an export of another format, model or weights.
        ParityError: a fresh export disagrees with PyTorch.
    """
    if folder is None:
        folder = export_cache_dir(fmt, model_name, sha256)
        try:
            if valid_export(folder, fmt, model_name, sha256):
                return folder
        except ValueError as err:  # a damaged cache entry is rebuilt
            logger.warning("ignoring cached export %s: %s", folder, err)
    elif valid_export(folder, fmt, model_name, sha256 if checkpoint is not None else None):
        return folder
    from umedsam.inference.export import export_model
    from umedsam.models.pretrained import load_pretrained

    logger.info("exporting %s for %s into %s (once)", model_name, fmt, folder)
    model, _ = load_pretrained(model_name, checkpoint, sha256=sha256)
    export_model(
        model, folder, fmt, model_name=model_name, checkpoint_sha256=sha256, threads=threads
    )
    return folder
