"""Opening images in napari as umedsam reads them: NIfTI, NRRD, DICOM series, challenge npz.

The layer holds what the model reads (uint8, umedsam's intensity window: CT soft tissue, else the
challenge's percentile clip), with the voxel spacing as the layer's scale; the
:class:`~umedsam.ui.images.LoadedImage` (geometry for writing masks back, a case's boxes) rides
along in the layer's metadata. Images opened by other readers work too
(:func:`image_from_layer`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umedsam.ui.images import LoadedImage

METADATA_KEY = "umedsam_image"
"""Layer metadata key under which the reader keeps the :class:`LoadedImage`."""

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".npz", ".dcm", ".dicom")
MAX_IMAGE_BYTES = 4 * 2**30

LayerData = tuple[NDArray, dict[str, Any], str]


def _is_dicom_folder(path: Path) -> bool:
    return path.is_dir() and any(
        p.suffix.lower() in (".dcm", ".dicom", "") and p.is_file() for p in path.iterdir()
    )


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """napari's reader hook: a function reading ``path``, or None when umedsam does not read it."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    target = Path(path)
    name = target.name.lower()
    if name.endswith(SUFFIXES) or _is_dicom_folder(target):
        return read_layers
    return None


def load(path: Path) -> LoadedImage:
    """The image at ``path`` as the model reads it (a challenge npz case, or any image umedsam
    reads).

    Raises:
        InputError, MissingExtraError, FileNotFoundError: unreadable input, named with its file.
    """
    from umedsam.ui.images import display_stem, load_image_file, load_npz_case

    name = display_stem(path.name)
    if path.name.lower().endswith(".npz"):
        gts = path.parent.parent / "gts" / path.name  # a challenge folder: imgs/ beside gts/
        return load_npz_case(path, name, gts if gts != path else None)
    return load_image_file(path, name, max_bytes=MAX_IMAGE_BYTES)


def read_layers(path: str | list[str]) -> list[LayerData]:
    """napari layer data for ``path``: the image, and a challenge case's reference mask."""
    target = Path(path[0] if isinstance(path, list) else path)
    return image_layers(load(target))


def image_layers(image: LoadedImage) -> list[LayerData]:
    """The image layer (and a ``reference`` labels layer when the case has one)."""
    scale = tuple(float(s) for s in image.meta.spacing)
    layers: list[LayerData] = [
        (
            image.pixels,
            {
                "name": image.name,
                "scale": scale,
                "rgb": not image.is_3d,
                "metadata": {METADATA_KEY: image},
            },
            "image",
        )
    ]
    if image.ground_truth is not None:
        reference = np.asarray(image.ground_truth)
        layers.append(
            (
                reference,
                {"name": f"{image.name} reference", "scale": scale, "opacity": 0.4},
                "labels",
            )
        )
    return layers


def image_from_layer(data: NDArray, name: str, scale: tuple[float, ...], rgb: bool) -> LoadedImage:
    """A :class:`LoadedImage` for an image layer another reader made: 2D grey or RGB(A), or a
    3D grey volume, brought to uint8 as umedsam does (percentile clip, uint8 kept), unit-free
    geometry from the layer's scale.

    Raises:
        InputError: a shape umedsam cannot segment (4D, 3D colour) or a constant image.
    """
    from umedsam.data.intensity import to_rgb, to_uint8
    from umedsam.data.readers.meta import meta_from_affine, plain_2d_meta
    from umedsam.errors import InputError

    array = np.asarray(data)
    if rgb and array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3]
        spatial = array.shape[:2]
    elif array.ndim in (2, 3) and not rgb:
        spatial = array.shape
    else:
        raise InputError(
            name,
            f"umedsam segments 2D grey or colour images and 3D grey volumes; got {array.shape}",
        )
    pixels = to_uint8(array)
    if len(spatial) == 2:
        pixels = to_rgb(pixels)
        meta = plain_2d_meta(spatial, source_format="napari", channels=3)
    else:
        spacing = [float(s) for s in scale[-3:]] if len(scale) >= 3 else [1.0, 1.0, 1.0]
        affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])  # (x, y, z) voxel order
        meta = meta_from_affine(affine, tuple(spatial), source_format="napari")
    if pixels.min() == pixels.max():
        raise InputError(name, "the image is constant: nothing to segment")
    return LoadedImage(name, np.ascontiguousarray(pixels), meta)
