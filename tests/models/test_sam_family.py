"""SAM and MedSAM checkpoints: the ViT encoder, key layout, detection, and parity of the
preprocessing and post-processing with the authors' code.

The references are segment-anything 1.0 (its modeling code and ``SamPredictor``) and the steps
of MedSAM's ``MedSAM_Inference.py`` (scikit-image resize, min-max, box scaled per axis,
sigmoid, bilinear resize, > 0.5), run on random weights saved in the official key layout. The
reference packages live in ``.venv/reference`` (``make setup``; requirements/reference.txt):
without them these tests skip, or fail when ``UMEDSAM_REQUIRE_REFERENCE=1`` (CI).
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tiny_models import TINY_VIT
from umedsam.errors import CheckpointError
from umedsam.inference.engines import EngineSpec, open_engine
from umedsam.inference.predictor import Predictor
from umedsam.models import checkpoint as ckpt
from umedsam.models.encoders.vit import VIT_B, VIT_H, VIT_L, vit_config_from_state
from umedsam.models.registry import build_model


def _load_reference() -> SimpleNamespace | None:
    """segment-anything's modeling code and predictor from ``.venv/reference``, or None.

    torchvision's package initialiser loads compiled operators that do not fit the CPU torch
    wheel, so a bare package object stands in for it while segment-anything imports the two
    Python resize functions it uses (``torchvision.transforms.functional``); the stand-in and
    the reference folder leave ``sys.modules`` and ``sys.path`` right after.
    """
    root = Path(sys.prefix) / "reference"
    if not (root / "segment_anything").is_dir() or not (root / "torchvision").is_dir():
        return None
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    package = types.ModuleType("torchvision")
    package.__path__ = [str(root / "torchvision")]
    package.__spec__ = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    sys.modules.setdefault("torchvision", package)
    sys.path.insert(0, str(root))
    try:
        from segment_anything import modeling
        from segment_anything.build_sam import build_sam_vit_b
        from segment_anything.predictor import SamPredictor
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            if name == "torchvision" or name.startswith("torchvision."):
                del sys.modules[name]
    return SimpleNamespace(
        modeling=modeling, SamPredictor=SamPredictor, build_sam_vit_b=build_sam_vit_b
    )


@pytest.fixture(scope="module")
def ref() -> SimpleNamespace:
    found = _load_reference()
    if found is None:
        message = "reference segment-anything not installed in .venv/reference (make setup)"
        if os.environ.get("UMEDSAM_REQUIRE_REFERENCE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def reference_sam(ref: SimpleNamespace, seed: int = 0) -> torch.nn.Module:
    """segment-anything's ``Sam`` with the tiny test ViT, random weights (official classes)."""
    m = ref.modeling
    c = TINY_VIT
    encoder = m.ImageEncoderViT(
        img_size=c.img_size,
        patch_size=c.patch_size,
        embed_dim=c.embed_dim,
        depth=c.depth,
        num_heads=c.num_heads,
        mlp_ratio=c.mlp_ratio,
        out_chans=c.out_chans,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_abs_pos=True,
        use_rel_pos=True,
        window_size=c.window_size,
        global_attn_indexes=c.global_blocks,
    )
    grid = c.img_size // c.patch_size
    prompt = m.PromptEncoder(
        embed_dim=c.out_chans,
        image_embedding_size=(grid, grid),
        input_image_size=(c.img_size, c.img_size),
        mask_in_chans=16,
    )
    decoder = m.MaskDecoder(
        num_multimask_outputs=3,
        transformer=m.TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
        transformer_dim=32,
        iou_head_depth=3,
        iou_head_hidden_dim=32,
    )
    sam = m.Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sam.parameters():  # default init leaves position tables at zero: perturb all
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return sam.eval()


def sample_image(h: int = 300, w: int = 217) -> np.ndarray:
    """A uint8 RGB image with a bright disk on smooth noise (not square: padding matters)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    base = 60 + 40 * np.sin(xx / 17.0) + 30 * np.cos(yy / 23.0)
    disk = (yy - 0.45 * h) ** 2 + (xx - 0.5 * w) ** 2 < (0.25 * w) ** 2
    grey = base + 110 * disk + rng.normal(0, 6, (h, w))
    rgb = np.stack([grey, grey * 0.9 + 10, grey * 0.8 + 20], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


BOX = np.array([40.0, 60.0, 180.0, 250.0])


@pytest.fixture(scope="module")
def saved(ref, tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """The reference model and its state dict saved as segment-anything saves one."""
    sam = reference_sam(ref)
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(sam.state_dict(), path)
    return sam, path


def predictor(model: str, path: Path, image: np.ndarray) -> Predictor:
    engine = open_engine(EngineSpec(model=model, checkpoint=path, engine="torch"))
    out = Predictor(engine.backend)
    out.set_image(image)
    return out


def assert_same_masks(ours: np.ndarray, theirs: np.ndarray, values: np.ndarray, at: float):
    """Masks equal except where the reference value is within float noise of the threshold;
    the masks are neither empty nor full (a real comparison)."""
    differ = ours != theirs
    assert not (differ & (np.abs(values - at) > 1e-5)).any()
    assert 0.01 < theirs.mean() < 0.99


# -- network and checkpoints ------------------------------------------------------------------


def test_vit_encoder_equals_segment_anythings(ref, saved) -> None:
    sam, _ = saved
    ours = build_model("test_tiny_sam")
    ours.load_state_dict(sam.state_dict(), strict=True)  # the official key layout, strictly
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), sam.image_encoder(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("name", "config"), [("b", VIT_B), ("l", VIT_L), ("h", VIT_H)])
def test_the_official_configurations_are_read_back_from_shapes(name, config) -> None:
    with torch.device("meta"):
        state = build_model(f"sam_vit_{name}").state_dict()
    assert vit_config_from_state(state) == config
    assert vit_config_from_state({"mask_decoder.x": torch.zeros(1)}) is None


def _meta_state(name: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build_model(name).state_dict()


def test_a_vit_b_file_runs_as_medsam_or_sam_by_its_name_unless_a_model_is_named(
    monkeypatch, tmp_path
) -> None:
    """Detection reads key names and shapes (a memory-mapped load); a ViT-B-shaped state stands
    in for the 375 MB file here, the slow test below uses a real one."""
    monkeypatch.setattr(ckpt, "read_shapes", lambda path: _meta_state("sam_vit_b"))
    assert ckpt.checkpoint_family(tmp_path / "medsam_vit_b.pth").model == "medsam_vit_b"
    assert ckpt.checkpoint_family(tmp_path / "sam_vit_b_01ec64.pth").model == "sam_vit_b"
    assert ckpt.model_for_checkpoint("umedsam_newdata", tmp_path / "MedSAM.pth") == "medsam_vit_b"
    assert ckpt.model_for_checkpoint("sam_vit_b", tmp_path / "medsam.pth") == "sam_vit_b"
    monkeypatch.setattr(ckpt, "read_shapes", lambda path: _meta_state("sam_vit_l"))
    assert ckpt.checkpoint_family(tmp_path / "sam_vit_l_0b3195.pth").model == "sam_vit_l"


def test_other_files_keep_the_requested_model_and_odd_vits_get_one_clear_line(
    saved, tmp_path
) -> None:
    lite = tmp_path / "lite.pth"
    torch.save(build_model("test_tiny").state_dict(), lite)
    assert ckpt.checkpoint_family(lite).model is None
    assert ckpt.model_for_checkpoint("litemedsam", lite) == "litemedsam"
    _, tiny_vit = saved  # a SAM-style ViT, but none of B/L/H
    with pytest.raises(CheckpointError, match="none of segment-anything's ViT-B/L/H"):
        ckpt.checkpoint_family(tiny_vit)
    # named explicitly, a SAM-family card keeps it (and the strict load checks the shapes)
    assert ckpt.model_for_checkpoint("test_tiny_sam", tiny_vit) == "test_tiny_sam"


def test_a_vit_file_is_told_apart_without_torch(saved, tmp_path) -> None:
    """Exported engines stay torch-free: only a file naming SAM's ViT is looked at closely."""
    from umedsam.models.weights_id import mentions_vit_encoder

    _, vit = saved
    lite = tmp_path / "lite.pth"
    torch.save({"model": build_model("test_tiny").state_dict()}, lite)
    assert mentions_vit_encoder(vit) and not mentions_vit_encoder(lite)


def test_a_training_wrapper_state_dict_loads(saved, tmp_path) -> None:
    sam, _ = saved
    wrapped = {"epoch": 3, "model": {f"module.{k}": v for k, v in sam.state_dict().items()}}
    path = tmp_path / "wrapped.pth"
    torch.save(wrapped, path)
    engine = open_engine(EngineSpec(model="test_tiny_sam", checkpoint=path, engine="torch"))
    emb = engine.backend.encode(np.zeros((1, 3, 256, 256), np.float32))
    with torch.no_grad():
        expected = sam.image_encoder(torch.zeros(1, 3, 256, 256)).numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-5)


# -- SAM: segment-anything's SamPredictor ------------------------------------------------------


def test_sam_box_matches_sam_predictor(ref, saved) -> None:
    sam, path = saved
    image = sample_image()
    theirs = ref.SamPredictor(sam)
    theirs.set_image(image)
    logits, scores, low = theirs.predict(box=BOX, multimask_output=False, return_logits=True)
    ours = predictor("test_tiny_sam", path, image).predict(BOX[None])
    np.testing.assert_allclose(ours.low_res_logits[0, 0], low[0], atol=2e-4)
    np.testing.assert_allclose(ours.iou, scores, atol=2e-5)
    np.testing.assert_allclose(ours.logits[0], logits[0], atol=2e-4)
    assert_same_masks(ours.masks[0], logits[0] > 0, logits[0], 0.0)


def test_sam_clicks_and_mask_prompt_match_sam_predictor(ref, saved) -> None:
    sam, path = saved
    image = sample_image()
    theirs = ref.SamPredictor(sam)
    theirs.set_image(image)
    ours = predictor("test_tiny_sam", path, image)
    points, labels = np.array([[110.0, 140.0], [30.0, 270.0]]), np.array([1, 0])
    logits, _, low = theirs.predict(
        point_coords=points, point_labels=labels, multimask_output=False, return_logits=True
    )
    mine = ours.predict(points=[points], point_labels=[labels])
    assert_same_masks(mine.masks[0], logits[0] > 0, logits[0], 0.0)
    logits2, _, _ = theirs.predict(
        point_coords=points,
        point_labels=labels,
        box=BOX,
        mask_input=low,
        multimask_output=False,
        return_logits=True,
    )
    again = ours.predict(
        BOX[None], points=[points], point_labels=[labels], mask_input=mine.low_res_logits
    )
    np.testing.assert_allclose(again.logits[0], logits2[0], atol=5e-4)
    assert_same_masks(again.masks[0], logits2[0] > 0, logits2[0], 0.0)


# -- MedSAM: the steps of MedSAM_Inference.py ---------------------------------------------------


def medsam_reference(sam: torch.nn.Module, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The probability map of MedSAM's inference script on an RGB uint8 image and one box."""
    from skimage import transform

    h, w, _ = image.shape
    side = sam.image_encoder.img_size
    resized = transform.resize(
        image, (side, side), order=3, preserve_range=True, anti_aliasing=True
    ).astype(np.uint8)
    normed = (resized - resized.min()) / np.clip(resized.max() - resized.min(), 1e-8, None)
    tensor = torch.tensor(normed).float().permute(2, 0, 1).unsqueeze(0)
    box_side = box[None] / np.array([w, h, w, h]) * side
    with torch.no_grad():
        embedding = sam.image_encoder(tensor)
        boxes = torch.as_tensor(box_side, dtype=torch.float)[:, None, :]
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        low, _ = sam.mask_decoder(
            image_embeddings=embedding,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        prob = F.interpolate(torch.sigmoid(low), size=(h, w), mode="bilinear", align_corners=False)
    return prob.squeeze().numpy()


@pytest.mark.parametrize("grey", [False, True])
def test_medsam_box_matches_medsam_inference(ref, saved, grey) -> None:
    sam, path = saved
    image = sample_image()
    if grey:  # MedSAM repeats a grey image to 3 channels
        image = image[..., 0]
    prob = medsam_reference(sam, np.repeat(image[..., None], 3, -1) if grey else image, BOX)
    ours = predictor("test_tiny_medsam", path, image).predict(BOX[None])
    assert_same_masks(ours.masks[0], prob > 0.5, prob, 0.5)
    mine_prob = 1 / (1 + np.exp(-ours.logits[0].astype(np.float64)))
    np.testing.assert_allclose(mine_prob, prob, atol=1e-4)


@pytest.mark.slow
def test_a_full_size_vit_b_file_in_the_official_layout_runs_through_the_cli(
    ref, tmp_path, case_dir, capsys
) -> None:
    """segment-anything's own ViT-B (random weights, 375 MB) named like MedSAM's file: info
    names it, predict detects it and runs it in MedSAM's frame."""
    from umedsam.cli.main import main

    torch.manual_seed(0)
    path = tmp_path / "medsam_vit_b.pth"
    torch.save(ref.build_sam_vit_b().state_dict(), path)
    assert main(["info", "--checkpoint", str(path)]) == 0
    assert "runs as medsam_vit_b" in capsys.readouterr().out
    out = tmp_path / "out"
    argv = ["predict", "-i", str(case_dir / "imgs"), "-o", str(out), "--checkpoint", str(path)]
    assert main([*argv, "--engine", "torch", "--threads", "2"]) == 0
    assert "medsam_vit_b" in capsys.readouterr().err
    assert (out / "2DBox_Synthetic_disk.npz").is_file()


def test_every_entry_point_runs_a_detected_file_as_its_card(monkeypatch, tmp_path) -> None:
    """The engine spec (predict, evaluate, Dask) and the web app's config resolve the model
    once from the file, so the app shows and routes prompts for MedSAM, not the default."""
    monkeypatch.setattr(ckpt, "read_shapes", lambda path: _meta_state("sam_vit_b"))
    path = tmp_path / "medsam_vit_b.pth"
    path.write_bytes(b"stands in (detection is patched) for a file naming image_encoder.pos_embed")
    assert EngineSpec(checkpoint=path).model == "medsam_vit_b"
    assert EngineSpec(checkpoint=path).card.frame.kind == "medsam"
    pytest.importorskip("starlette")
    from umedsam.ui.app import UIConfig

    assert UIConfig(checkpoint=str(path)).model == "medsam_vit_b"


def test_info_names_what_a_file_holds_or_says_it_matches_nothing(saved, tmp_path, capsys):
    from umedsam.cli.main import main

    lite = tmp_path / "lite.pth"
    torch.save(build_model("test_tiny").state_dict(), lite)
    assert main(["info", "--checkpoint", str(lite)]) == 0
    assert "runs as --model" in capsys.readouterr().out
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3), "fc.bias": torch.zeros(2)}, other)
    assert main(["info", "--checkpoint", str(other)]) == 2
    line = capsys.readouterr().out.strip()
    assert "matches no model" in line and "conv1" in line and "\n" not in line
    _, tiny_vit = saved  # a SAM-style ViT of no published size
    assert main(["info", "--checkpoint", str(tiny_vit)]) == 2
    assert "none of segment-anything's ViT-B/L/H" in capsys.readouterr().out
