"""Autosave of the web app: every change is kept on disk, and reopening the image restores it.

After every segmentation the session writes, atomically, into
``<workdir>/<image id>/``: ``prompts.json`` (the boxes and clicks of every object, the overlap
rule, the time) and ``labels.npz`` (the label map, ``segs``). The image id is the sha256 of the
displayed pixels and their shape, so the same image opened again, uploaded or from an example,
finds its work. A save that fails is reported to the page; the work in memory stays.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umedsam.atomic import write_text_atomic
from umedsam.data.npz import save_npz_atomic
from umedsam.ui.corrections import Stroke

PROMPTS_FILE = "prompts.json"
LABELS_FILE = "labels.npz"


def image_id(pixels: NDArray) -> str:
    """A short, stable identity of an image: sha256 of its shape and pixel bytes (16 hex)."""
    digest = hashlib.sha256(str(tuple(pixels.shape)).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()[:16]


def save_work(
    folder: Path,
    name: str,
    keys: list[Any],
    segs: NDArray,
    overwrite: bool,
    names: list[str] | None = None,
) -> Path:
    """Write the prompts and the label map of an image's work into ``folder`` (atomically).

    Args:
        folder: ``<workdir>/<image id>``.
        name: the image's display name.
        keys: per object ``(box, clicks)``; a stroke is kept as the page's entry for it.
        segs: the label map.
        overwrite: the overlap rule the map was painted with.
        names: the objects' names given in the page (may be shorter than ``keys``).

    Raises:
        OSError: the folder or a file cannot be written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    save_npz_atomic(folder / LABELS_FILE, segs=segs)
    record = {
        "name": name,
        "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
        "overwrite": overwrite,
        "objects": [
            {
                "box": list(box),
                "clicks": [c.to_json() if isinstance(c, Stroke) else list(c) for c in clicks],
                "name": names[i] if names is not None and i < len(names) else "",
            }
            for i, (box, clicks) in enumerate(keys)
        ],
    }
    write_text_atomic(folder / PROMPTS_FILE, json.dumps(record, indent=1) + "\n")
    return folder


def load_work(folder: Path) -> dict[str, Any] | None:
    """The saved prompts of an image (see :func:`save_work`), or None if none or unreadable."""
    path = folder / PROMPTS_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("objects"), list):
        return None
    return record
