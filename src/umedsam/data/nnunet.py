"""The nnU-Net v2 raw layout as a labelled source (see :mod:`umedsam.data.sources`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umedsam.data.sources import CaseSource, LabelledCase, _selected, labelled_case
from umedsam.errors import InputError

__all__ = ["NNUNET_MODALITIES", "NnUNetRawSource"]


#: nnU-Net channel names -> umedsam modality names (others are kept as written).
NNUNET_MODALITIES = {"ct": "CT", "mri": "MR", "mr": "MR", "t1": "MR", "t2": "MR", "flair": "MR"}


class NnUNetRawSource(CaseSource):
    """The nnU-Net v2 raw layout: ``dataset.json``, ``imagesTr/``, ``labelsTr/``.

    The first channel (``_0000``) is the image; 2D datasets stored as three channels (RGB PNGs,
    ``_0000`` to ``_0002``) are stacked back into colour. Intensities are windowed as
    ``umedsam convert`` windows the channel's modality (``channel_names["0"]``). Objects are the
    label values of ``dataset.json`` (connected components where asked).

    Args:
        root: the dataset folder (``DatasetXXX_Name``).
        name: source name (default: the folder's name).
        weight: sampling weight.
        cases: keep only these case identifiers.
        objects: ``labels`` or ``components``.
        images: ``imagesTr`` (default) or ``imagesTs`` (with ``labelsTs``).

    Raises:
        FileNotFoundError: a missing folder or ``dataset.json``.
        InputError: an unreadable ``dataset.json``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        name: str | None = None,
        weight: float = 1.0,
        cases: Sequence[str] | None = None,
        objects: str = "labels",
        images: str = "imagesTr",
    ) -> None:
        self.root = Path(root)
        super().__init__(name or self.root.name, weight)
        spec_path = self.root / "dataset.json"
        if not spec_path.is_file():
            raise FileNotFoundError(f"{spec_path}: not found (an nnU-Net raw dataset needs it)")
        try:
            spec = json.loads(spec_path.read_text(encoding="utf-8"))
            channels = spec.get("channel_names") or spec.get("modality") or {"0": "unknown"}
            self.ending = str(spec["file_ending"])
        except (ValueError, KeyError, AttributeError, OSError) as err:
            raise InputError(spec_path, f"not an nnU-Net v2 dataset.json ({err!r})") from err
        channel = str(channels.get("0", channels.get(0, "unknown")))
        self._modality = NNUNET_MODALITIES.get(channel.lower(), channel)
        self.channels = len(channels)
        self.split_components = objects == "components"
        self.image_dir = self.root / images
        self.label_dir = self.root / images.replace("images", "labels")
        for folder in (self.image_dir, self.label_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: folder not found")
        suffix = f"_0000{self.ending}"
        ids = sorted(p.name[: -len(suffix)] for p in self.image_dir.glob(f"*{suffix}"))
        names = []
        for case in ids:
            if (self.label_dir / f"{case}{self.ending}").is_file():
                names.append(case)
            else:
                self._problem(f"{case}{suffix}: no label file {case}{self.ending}")
        self._names = _selected(names, cases, self)

    def identity(self) -> str:
        """The resolved dataset folder."""
        return str(self.root.resolve())

    def _image(self, case: str) -> tuple[NDArray, Any]:
        from umedsam.data.readers import read_image

        image, meta = read_image(self.image_dir / f"{case}_0000{self.ending}")
        if self.channels == 3 and len(meta.shape) == 2 and image.ndim == 2:
            planes = [image] + [
                read_image(self.image_dir / f"{case}_{c:04d}{self.ending}")[0] for c in (1, 2)
            ]
            image = np.stack(planes, axis=-1)
        return image, meta

    def load(self, case: str) -> LabelledCase:
        """Read channel 0 (or the RGB planes) and the label file; window and number objects."""
        from umedsam.data.readers import read_image

        label_path = self.label_dir / f"{case}{self.ending}"
        image, meta = self._image(case)
        labels, _ = read_image(label_path, labels=True)
        if tuple(labels.shape) != tuple(meta.shape):
            raise InputError(
                label_path, f"label shape {labels.shape} differs from the image's {meta.shape}"
            )
        arrays = labelled_case(
            image, meta, labels, label_path, self._modality, split_components=self.split_components
        )
        return LabelledCase(
            arrays["imgs"], arrays["gts"], self._modality, arrays.get("spacing"), None
        )
