"""Per-pixel uncertainty and per-object confidence: pure functions, pipeline, real weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.data.boxes import mask_to_box
from umedsam.inference import uncertainty as U
from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.segment import (
    segment_image,
    segment_volume_case,
    segment_with_uncertainty,
)


class OracleBackend:
    """A geometric stand-in for a model: the embedding is the image itself, and a box's mask is
    the bright part of the image inside the box. Makes the ensemble and mirror bookkeeping exact.
    """

    name = "oracle"
    image_size = 64

    def __init__(self) -> None:
        self.encode_calls = 0
        self.decoded_boxes = 0

    def encode(self, images: np.ndarray) -> np.ndarray:
        self.encode_calls += 1
        return np.asarray(images)[:, :1].copy()

    def decode(self, embedding: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embedding = torch.as_tensor(np.asarray(embedding))
        boxes = torch.as_tensor(np.asarray(boxes)).reshape(-1, 4)
        self.decoded_boxes += boxes.shape[0]
        s = self.image_size
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        out = torch.full((boxes.shape[0], 1, s, s), -6.0)
        for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            inside = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
            out[i, 0][inside] = 30.0 * (embedding[0, 0][inside] - 0.5)
        return out.numpy(), np.full((boxes.shape[0], 1), 0.9, dtype=np.float32)


def _disk_case(make_disk):
    img, mask = make_disk(h=96, w=128, center=(40, 90), radius=18)  # off-centre: mirroring matters
    return img, mask, mask_to_box(mask)[None]


# --------------------------------------------------------------------------- pure functions


def test_binary_entropy_hand_values() -> None:
    p = torch.tensor([0.0, 0.5, 1.0, 0.25])
    h = U.binary_entropy(p)
    expected = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))  # 0.8113
    np.testing.assert_allclose(h.numpy(), [0.0, 1.0, 0.0, expected], atol=1e-4)


def test_jitter_boxes_deterministic_bounded_and_valid() -> None:
    boxes = np.array([[10, 10, 50, 40], [0, 0, 3, 3]], dtype=np.float32)
    a = U.jitter_boxes(
        boxes, 8, np.random.default_rng(3), max_px=3, max_frac=0.1, bounds_hw=(64, 64)
    )
    b = U.jitter_boxes(
        boxes, 8, np.random.default_rng(3), max_px=3, max_frac=0.1, bounds_hw=(64, 64)
    )
    np.testing.assert_array_equal(a, b)
    assert a.shape == (8, 2, 4)
    assert a.dtype == np.float32
    # box 0: width 40 -> x shift <= min(3, 4) = 3; height 30 -> y shift <= 3
    assert np.abs(a[:, 0] - boxes[0]).max() <= 3
    assert (a[:, 0] != boxes[0]).any()
    # box 1: tiny, amplitude floor(min(3, 0.3)) -> at least 1 px; clipped at 0, stays >= 1 px wide
    assert np.abs(a[:, 1] - boxes[1]).max() <= 1
    assert (a[..., :2] >= 0).all()
    assert (a[..., 2] - a[..., 0] >= 1).all()
    assert (a[..., 3] - a[..., 1] >= 1).all()


@pytest.mark.parametrize(
    ("boxes", "k", "match"), [(np.zeros((2, 3)), 2, "N, 4"), (np.zeros((1, 4)), -1, "k")]
)
def test_jitter_boxes_rejects_bad_input(boxes, k, match) -> None:
    with pytest.raises(ValueError, match=match):
        U.jitter_boxes(boxes, k, np.random.default_rng(0))


def test_flip_boxes_hand_values() -> None:
    out = U.flip_boxes(np.array([[2, 5, 10, 9]]), width=32)
    np.testing.assert_array_equal(out, [[22, 5, 30, 9]])


def test_ensemble_mean_var_hand_values() -> None:
    logits = torch.logit(torch.tensor([0.2, 0.6])).reshape(2, 1, 1, 1)
    mean, var = U.ensemble_mean_var(logits)
    np.testing.assert_allclose(mean.item(), 0.4, atol=1e-6)
    np.testing.assert_allclose(var.item(), 0.04, atol=1e-6)
    with pytest.raises(ValueError, match="M >= 1"):
        U.ensemble_mean_var(torch.zeros(0, 1, 2, 2))


def test_entropy_confidence_sharp_blurry_empty() -> None:
    sharp = torch.zeros(1, 20, 20)
    sharp[0, 5:15, 5:15] = 1.0
    blurry = sharp * 0.4 + 0.3  # inside 0.7, outside 0.3: every pixel uncertain
    empty = torch.zeros(1, 20, 20)
    conf = U.entropy_confidence(torch.cat([sharp, blurry, empty]))
    assert conf[0] == pytest.approx(1.0, abs=1e-4)
    assert conf[1] == pytest.approx(0.0)  # 400 px x 0.88 bits over a 100 px mask, clipped
    assert conf[2] == 0.0


def test_mask_agreement_identical_disjoint_none() -> None:
    base = torch.zeros(2, 8, 8, dtype=torch.bool)
    base[0, :4] = True
    base[1, :, :4] = True
    members = torch.full((1, 2, 8, 8), -5.0)
    members[0, 0, :4] = 5.0  # same as base 0
    members[0, 1, :, 4:] = 5.0  # disjoint from base 1
    np.testing.assert_allclose(U.mask_agreement(base, members).numpy(), [1.0, 0.0])
    assert torch.isnan(U.mask_agreement(base, torch.zeros(0, 2, 8, 8))).all()


def test_combine_confidence_rules() -> None:
    cues = {
        "iou": np.array([0.81, 1.2]),
        "entropy": np.array([1.0, 0.25]),
        "expected_dice": np.array([0.9, 0.5]),
        "box": np.array([0.9, np.nan]),
        "agreement": np.full(2, np.nan),
    }
    np.testing.assert_allclose(U.combine_confidence(cues, "iou"), [0.81, 1.0])
    np.testing.assert_allclose(U.combine_confidence(cues, "entropy"), [1.0, 0.25])
    np.testing.assert_allclose(U.combine_confidence(cues, "expected_dice"), [0.9, 0.5])
    # geometric mean of the cues that were computed: object 2 has no box cue
    np.testing.assert_allclose(
        U.combine_confidence(cues, "combined"), [(0.81 * 0.9 * 0.9) ** (1 / 3), 0.5**0.5], atol=1e-6
    )
    with_agree = {**cues, "agreement": np.array([0.81, 0.5])}
    np.testing.assert_allclose(
        U.combine_confidence(with_agree, "combined"),
        [(0.81 * 0.9 * 0.9 * 0.81) ** 0.25, (0.5 * 0.5) ** (1 / 3)],
        atol=1e-6,
    )
    zero = {**cues, "expected_dice": np.array([0.0, 0.5])}
    assert U.combine_confidence(zero, "combined")[0] == 0.0
    with pytest.raises(ValueError, match="'agreement' cue"):
        U.combine_confidence(cues, "ensemble")
    with pytest.raises(ValueError, match="'box' cue"):
        U.combine_confidence(cues, "box")
    with pytest.raises(ValueError, match="rule must be one of"):
        U.combine_confidence(cues, "vote")


def test_expected_dice_hand_values() -> None:
    probs = torch.zeros(3, 2, 2)
    probs[0] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # crisp
    probs[1] = torch.tensor([[0.8, 0.6], [0.2, 0.0]])  # mask = top row
    conf = U.expected_dice(probs)
    # object 2: 2 * (0.8 + 0.6) / ((0.8 + 0.6 + 0.2) + 2) = 2.8 / 3.6
    np.testing.assert_allclose(conf.numpy(), [1.0, 2.8 / 3.6, 0.0], atol=1e-6)


def test_box_agreement_and_mask_boxes_2d_3d() -> None:
    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[0, 2:6, 3:9] = True  # x 3..8, y 2..5
    boxes = U.mask_bounding_boxes(masks)
    np.testing.assert_array_equal(boxes[0], [3, 2, 8, 5])
    assert np.isnan(boxes[1]).all()
    prompt = np.array([[3, 2, 8, 5], [0, 0, 4, 4]])
    np.testing.assert_allclose(U.box_agreement(boxes, prompt), [1.0, 0.0])
    # half the prompt: inclusive boxes 3..8 x 2..5 (24 px) inside 3..8 x 2..9 (48 px)
    np.testing.assert_allclose(U.box_agreement(boxes[:1], np.array([[3, 2, 8, 9]])), [0.5])
    vol = np.zeros((1, 4, 5, 6), dtype=bool)
    vol[0, 1:3, 2:4, 0:5] = True  # z 1..2, y 2..3, x 0..4
    np.testing.assert_array_equal(U.mask_bounding_boxes(vol)[0], [0, 2, 1, 4, 3, 2])
    with pytest.raises(ValueError, match="2d"):
        U.box_agreement(np.zeros((1, 4)), np.zeros((1, 6)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ensemble": -1}, "ensemble must be"),
        ({"jitter_px": -1.0}, "jitter"),
        ({"rule": "vote"}, "rule must be one of"),
        ({"ensemble_masks": True}, "needs an ensemble"),
        ({"rule": "ensemble"}, "needs an ensemble"),
    ],
)
def test_config_rejects_bad_values(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        U.UncertaintyConfig(**kwargs)


def test_max_uncertainty_map_upsamples_and_combines() -> None:
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0] = 1.0
    maps[1, 3, 3] = 0.5
    out = U.max_uncertainty_map(maps, (8, 8))
    assert out.shape == (8, 8)
    assert out.dtype == np.uint8
    assert out[0, 0] == 255
    assert 100 < out[7, 7] < 140
    prev = np.full((8, 8), 200, dtype=np.uint8)
    U.max_uncertainty_map(maps, (8, 8), out=prev)
    assert prev[0, 0] == 255
    assert prev[4, 4] == 200


def test_aggregate_slices_pools_sums() -> None:
    sums = U.SliceSums.zeros(2)
    probs = torch.zeros(1, 4, 4)
    probs[0, :2] = 1.0  # 8 crisp pixels
    sums.add(np.array([0]), probs, np.array([0.64]))
    sums.add(np.array([0]), probs, np.array([1.0]))
    scores = U.aggregate_slices(sums, box=np.array([1.0, np.nan]))
    np.testing.assert_allclose(scores.predicted_iou, [0.82, 0.0], atol=1e-6)
    np.testing.assert_allclose(scores.expected_dice, [1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(scores.entropy_confidence, [1.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(scores.confidence, [0.82 ** (1 / 3), 0.0], atol=1e-4)
    assert np.isnan(scores.agreement).all()


# --------------------------------------------------------------------------- pipeline


def test_segs_unchanged_and_outputs_shaped(tiny_model, make_disk) -> None:
    img, _, box = _disk_case(make_disk)
    boxes = np.concatenate([box, [[5, 5, 40, 30]]])
    backend = TorchBackend(tiny_model)
    plain = segment_image(backend, img, boxes)
    for config in (U.UncertaintyConfig(), U.UncertaintyConfig(ensemble=3, flip=True)):
        res = segment_image(backend, img, boxes, uncertainty=config)
        np.testing.assert_array_equal(res.segs, plain.segs)
        np.testing.assert_array_equal(res.iou, plain.iou)
        unc = res.uncertainty
        assert unc is not None
        assert unc.unc.shape == img.shape[:2]
        assert unc.unc.dtype == np.uint8
        assert unc.confidence.shape == (2,)
        assert ((unc.confidence >= 0) & (unc.confidence <= 1)).all()
        np.testing.assert_array_equal(unc.area, [(plain.segs == i).sum() for i in (1, 2)])
        assert [r[:2] for r in unc.rows("c.npz")] == [("c.npz", 1), ("c.npz", 2)]
    assert plain.uncertainty is None


def test_oracle_confident_on_object_and_low_on_background(make_disk) -> None:
    img, mask, box = _disk_case(make_disk)
    wrong = np.array([[4, 60, 40, 92]])  # background only
    backend = OracleBackend()
    res = segment_image(backend, img, np.concatenate([box, wrong]), U.UncertaintyConfig(ensemble=4))
    unc = res.uncertainty
    assert unc is not None
    assert unc.confidence[0] > 0.8
    assert unc.scores.agreement[0] > 0.9
    assert unc.confidence[1] == 0.0  # empty mask -> no confidence
    assert unc.confidence[1] < unc.confidence[0]
    assert backend.encode_calls == 1  # the jittered ensemble reuses the embedding
    assert backend.decoded_boxes == 2 + 4 * 2
    # per-pixel uncertainty concentrates on the object's outline
    ys, xs = np.nonzero(mask)
    assert unc.unc[ys.mean().astype(int), xs.mean().astype(int)] < 30
    assert unc.unc.max() > 100


def test_oracle_mirrored_member_is_mapped_back(make_disk) -> None:
    img, _, box = _disk_case(make_disk)
    backend = OracleBackend()
    res = segment_image(backend, img, box, U.UncertaintyConfig(flip=True))
    assert backend.encode_calls == 2  # the mirrored image costs one encoder call
    assert res.uncertainty is not None
    assert res.uncertainty.scores.agreement[0] > 0.95


def test_decode_ensemble_needs_flipped_embedding() -> None:
    with pytest.raises(ValueError, match="mirrored"):
        U.decode_ensemble(
            OracleBackend(),
            torch.zeros(1, 1, 64, 64),
            np.array([[1, 1, 9, 9]]),
            (64, 64),
            U.UncertaintyConfig(flip=True),
            np.random.default_rng(0),
        )


def test_ensemble_masks_option(make_disk) -> None:
    img, mask, box = _disk_case(make_disk)
    config = U.UncertaintyConfig(ensemble=4, ensemble_masks=True)
    res = segment_image(OracleBackend(), img, box, config)
    inter = ((res.segs == 1) & mask).sum()
    assert 2 * inter / ((res.segs == 1).sum() + mask.sum()) > 0.9


def test_volume_uncertainty_per_slice(tiny_model, make_sphere) -> None:
    vol, sph = make_sphere()
    boxes = mask_to_box(sph)[None]
    backend = TorchBackend(tiny_model)
    plain = segment_volume_case(backend, vol, boxes)
    res = segment_volume_case(backend, vol, boxes, uncertainty=U.UncertaintyConfig(ensemble=2))
    np.testing.assert_array_equal(res.segs, plain.segs)
    unc = res.uncertainty
    assert unc is not None
    assert unc.unc.shape == vol.shape
    assert unc.unc.dtype == np.uint8
    assert unc.slice_confidence is not None
    assert unc.slice_confidence.shape == (1, vol.shape[0])
    z0, z1 = int(boxes[0, 2]), int(boxes[0, 5])
    assert np.isfinite(unc.slice_confidence[0, z0 : z1 + 1]).all()
    assert np.isnan(unc.slice_confidence[0, :z0]).all()
    assert np.isnan(unc.slice_confidence[0, z1 + 1 :]).all()
    assert np.isnan(unc.scores.agreement).all()  # no decoder ensemble in 3D


def test_segment_with_uncertainty_default(tiny_model, case_dir: Path) -> None:
    from umedsam.data.npz import load_case

    case = load_case(case_dir / "imgs" / "2DBox_Synthetic_disk.npz")
    res = segment_with_uncertainty(TorchBackend(tiny_model), case)
    assert res.uncertainty is not None
    assert res.uncertainty.confidence.shape == (1,)


# --------------------------------------------------------------------------- real weights


@pytest.mark.slow
@pytest.mark.realweights
def test_wrong_box_gets_low_confidence_real_model(real_model, shared_dir: Path) -> None:
    from umedsam.data.npz import load_case

    path = shared_dir / "data" / "dev" / "imgs" / "2DBox_US_HC18_011.npz"
    if not path.is_file():
        pytest.skip(f"dev case not available: {path}")
    case = load_case(path)
    h, w = case.imgs.shape[:2]
    right = case.boxes[0]
    # a box of a tenth of the image on the corner farthest from the object
    cx, cy = (right[0] + right[2]) / 2, (right[1] + right[3]) / 2
    x0 = 5 if cx > w / 2 else w - 5 - w // 10
    y0 = 5 if cy > h / 2 else h - 5 - h // 10
    wrong = np.array([x0, y0, x0 + w // 10, y0 + h // 10])
    res = segment_image(
        TorchBackend(real_model), case.imgs, np.stack([right, wrong]), U.UncertaintyConfig()
    )
    conf = res.uncertainty.confidence
    iou_head = res.uncertainty.predicted_iou
    assert conf[0] > 0.8
    # measured: right box 0.88; wrong box 0.57 where the IoU head alone says 0.74
    assert conf[1] < 0.65
    assert conf[1] < conf[0] - 0.25
    assert conf[1] < iou_head[1] - 0.1  # flagged more clearly than by the IoU head alone
