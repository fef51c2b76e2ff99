"""The real LiteMedSAM weights against the official model outputs (reference fixtures)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umedsam.data.transforms import preprocess_image
from umedsam.models.checkpoint import LITEMEDSAM_SHA256, default_checkpoint_path, file_sha256

pytestmark = pytest.mark.realweights


def test_bundled_checkpoint_found_and_verified(real_model) -> None:
    path = default_checkpoint_path()
    assert file_sha256(path) == LITEMEDSAM_SHA256
    assert sum(p.numel() for p in real_model.parameters()) == 9_791_300


@pytest.fixture(scope="module")
def unit_fixture(shared_dir):
    path = shared_dir / "reference" / "unit" / "litemedsam_io.npz"
    if not path.is_file():
        pytest.skip("reference unit fixture not available")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_preprocessing_matches_official(unit_fixture) -> None:
    for i in range(len(unit_fixture["names"])):
        h, w = unit_fixture["orig_hw"][i]
        array, new_hw = preprocess_image(unit_fixture["image"][i, :h, :w])
        assert tuple(new_hw) == tuple(unit_fixture["new_hw"][i])
        assert np.abs(array[0] - unit_fixture["input"][i]).max() <= 1e-6


def test_embeddings_and_logits_match_official(real_model, unit_fixture) -> None:
    with torch.inference_mode():
        emb = real_model.encode(torch.from_numpy(unit_fixture["input"]))
        ref = torch.from_numpy(unit_fixture["embedding"])
        assert (emb - ref).abs().max() <= 1e-3
        cos = torch.nn.functional.cosine_similarity(emb.flatten(1), ref.flatten(1))
        assert cos.min() >= 0.99999
        logits, iou = real_model.decode(emb, torch.from_numpy(unit_fixture["box_256"]).float())
    assert (logits[:, 0] - torch.from_numpy(unit_fixture["low_res_logits"])).abs().max() <= 1e-2
    np.testing.assert_allclose(iou.numpy(), unit_fixture["iou"], atol=1e-3)


def test_final_masks_match_official(real_model, unit_fixture) -> None:
    from umedsam.inference.predictor import Predictor

    predictor = Predictor(real_model)
    for i in range(len(unit_fixture["names"])):
        h, w = unit_fixture["orig_hw"][i]
        predictor.set_image(unit_fixture["image"][i, :h, :w])
        pred = predictor.predict(unit_fixture["box_orig"][i][None])
        ref = unit_fixture["mask"][i, :h, :w].astype(bool)
        diff = (pred.masks[0] != ref).sum()
        assert diff <= max(1, 0.001 * ref.sum()), unit_fixture["names"][i]


def test_finetuned_litemedsam_is_decoder_over_litemedsam(real_model) -> None:
    """``umedsam_litemedsam``: LiteMedSAM's encoder and prompt encoder, the shipped decoder."""
    from umedsam.models.cards import WEIGHTS_DIR
    from umedsam.models.pretrained import load_pretrained
    from umedsam.models.registry import default_weights

    if not (WEIGHTS_DIR / "umedsam_litemedsam_decoder.pt").is_file():
        pytest.skip("no shipped umedsam_litemedsam weights")
    base, path = default_weights("umedsam_litemedsam")
    assert base == "litemedsam"
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    assert shipped and all(k.startswith("mask_decoder.") for k in shipped)
    model, report = load_pretrained("umedsam_litemedsam")
    assert report.partial
    ref = real_model.state_dict()
    state = model.state_dict()
    for key, value in state.items():
        if key.startswith("mask_decoder."):
            torch.testing.assert_close(value, shipped[key].float(), rtol=0, atol=0)
        else:
            assert torch.equal(value, ref[key]), key
    assert any(not torch.equal(state[k], ref[k]) for k in shipped)  # it was fine-tuned
