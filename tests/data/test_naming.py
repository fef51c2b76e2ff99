"""Modality tokens parsed from challenge case names."""

from __future__ import annotations

import pytest

from umedsam.data.naming import modality_from_name


@pytest.mark.parametrize(
    ("name", "modality"),
    [
        ("2DBox_Dermoscopy_PH2_IMD003.npz", "Dermoscopy"),
        ("2DBox_US_HC18_001.npz", "US"),
        ("3DBox_CT_DeepLesion_000001_02.npz", "CT"),
        ("3DBox_MR_HippocampusMSD_003", "MR"),
        ("2D_Endoscopy_Kvasir_001.npz", "Endoscopy"),
        ("3D_PET_autoPET_001.npz", "PET"),
        ("2DScribble_XRay_Chest_001.npz", "XRay"),
        ("some/dir/2DBox_US_HC18_002.npz", "US"),
        ("case_001.npz", "unknown"),
        ("case.npz", "unknown"),
        ("2DBox_.npz", "unknown"),
        ("2DBox__HC18.npz", "unknown"),
        ("2DBox_US.npz", "unknown"),
        ("4DBox_CT_x.npz", "unknown"),
        ("2D1_CT_x.npz", "unknown"),
        ("x2DBox_CT_x.npz", "unknown"),
    ],
)
def test_modality_from_name(name: str, modality: str) -> None:
    assert modality_from_name(name) == modality


def test_dataset_and_report_use_the_same_parser() -> None:
    from umedsam.data import sources
    from umedsam.evaluation import report

    assert sources.modality_from_name is modality_from_name
    assert report.modality_from_name is modality_from_name
