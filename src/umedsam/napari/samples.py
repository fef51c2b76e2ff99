"""Sample data of the plugin: bundled example cases with their reference masks."""

from __future__ import annotations

from umedsam.napari.reader import LayerData, image_layers, load

CT_LESION = "3DBox_CT_DeepLesion_000001_02_01_008_023.npz"
ULTRASOUND = "2DBox_US_HC18_002.npz"


def example(name: str) -> list[LayerData]:
    """The layers of a bundled example case (image and reference)."""
    from umedsam.examples import examples_dir

    return image_layers(load(examples_dir() / "imgs" / name))


def ct_lesion() -> list[LayerData]:
    """A DeepLesion CT volume with one lesion."""
    return example(CT_LESION)


def ultrasound() -> list[LayerData]:
    """An HC18 fetal head ultrasound image."""
    return example(ULTRASOUND)
