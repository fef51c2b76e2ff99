"""DICOM SEG export read back with highdicom: geometry and labels match the NIfTI export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("highdicom")
pytest.importorskip("nibabel")


def _ct_series(shared_dir: Path) -> Path:
    folder = shared_dir / "data" / "formats" / "dicom" / "ct_series"
    if not folder.is_dir():
        pytest.skip("shared DICOM files missing")
    return folder


def test_seg_matches_the_nifti_export_and_references_the_series(shared_dir, tmp_path) -> None:
    import highdicom as hd
    import nibabel as nib
    import pydicom

    from umedsam.data.readers import read_image
    from umedsam.data.writers import write_mask

    series = _ct_series(shared_dir)
    arr, meta = read_image(series)
    labels = np.zeros(arr.shape, np.uint8)
    labels[:, 200:300, 220:320] = 1
    labels[1, 100:150, 100:150] = 3
    seg_path = write_mask(tmp_path / "mask.dcm", labels, meta)
    nii_path = write_mask(tmp_path / "mask.nii.gz", labels, meta)

    seg = hd.seg.segread(str(seg_path))
    sources = [pydicom.dcmread(f) for f in meta.source_files]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["object 1", "object 3"]
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    uids = [s.SOPInstanceUID for s in sources]
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=True, relabel=False
    )
    # segment numbers 1, 2 stand for labels 1, 3
    back = np.choose(frames.astype(np.int64), [0, 1, 3]).astype(np.uint8)
    nifti = np.asarray(nib.load(nii_path).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_array_equal(nifti, labels)
    # each frame sits where the source slice it derives from sits
    by_uid = {s.SOPInstanceUID: s for s in sources}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        derivation = frame.DerivationImageSequence[0].SourceImageSequence[0]
        source = by_uid[derivation.ReferencedSOPInstanceUID]
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose([float(v) for v in position], source.ImagePositionPatient)


def test_seg_needs_a_dicom_source(tmp_path) -> None:
    from umedsam.data.readers.meta import plain_2d_meta
    from umedsam.data.writers import write_mask

    meta = plain_2d_meta((8, 8), source_format="png", channels=1)
    with pytest.raises(ValueError, match="DICOM input only"):
        write_mask(tmp_path / "m.dcm", np.ones((8, 8), np.uint8), meta)


def test_predict_writes_a_dicom_seg(shared_dir, tmp_path, tiny_model) -> None:
    import highdicom as hd
    import torch

    from tiny_models import cli_command  # noqa: F401 - registers test_tiny
    from umedsam.cli.main import main

    series = _ct_series(shared_dir)
    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny_model.state_dict(), ckpt)
    boxes = tmp_path / "boxes.json"
    boxes.write_text('{"boxes": [[200, 200, 0, 320, 300, 1]]}')
    out = tmp_path / "seg.dcm"
    argv = ["predict", "-q", "-i", str(series), "--boxes", str(boxes), "-o", str(out)]
    argv += ["--format", "dicom-seg", "--model", "test_tiny", "--checkpoint", str(ckpt)]
    code = main([*argv, "--engine", "torch"])
    if code == 1 and not out.exists():  # a random tiny model may leave the mask empty
        pytest.skip("the tiny model segmented nothing here")
    assert code == 0
    seg = hd.seg.segread(str(out))
    assert seg.Modality == "SEG" and seg.number_of_segments == 1
