"""Distillation: teacher-embedding cache, item selection, config, stage 1, stage 2, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.data.dataset import SegmentationDataset
from umedsam.models.checkpoint import read_state_dict
from umedsam.models.registry import build_model
from umedsam.training.distill import (
    CacheSignature,
    DistillConfig,
    TeacherEmbeddingCache,
    distill,
    fill_cache,
    load_distill_config,
    select_items,
    teacher_signature,
)

SIG = CacheSignature(teacher="test_tiny", checkpoint_sha256="abc", image_size=64)


def _config(train_root: Path, tmp_path: Path, **sections) -> DistillConfig:
    data = {
        "data": {"train_root": str(train_root), "cache_dir": str(tmp_path / "cache")},
        "teacher": {"name": "test_tiny", "checkpoint": "none"},
        "student": {"name": "test_tiny_effvit"},
        "optim": {"lr": 0.01, "warmup_steps": 2},
        "run": {
            "output_dir": str(tmp_path / "out"),
            "steps": 4,
            "batch_size": 2,
            "save_every_steps": 2,
            "log_every_steps": 1,
        },
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return DistillConfig.from_dict(data)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)  # the tiny teacher's random weights


# ------------------------------------------------------------------------------------ cache
def test_cache_round_trip_in_float16(tmp_path: Path) -> None:
    cache = TeacherEmbeddingCache(tmp_path, SIG, max_bytes=1 << 20)
    emb = torch.randn(4, 3, 3)
    assert "a" not in cache
    assert cache.get("a") is None
    assert cache.put("a", emb)
    got = cache.get("a")
    assert "a" in cache
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), emb, atol=2e-3, rtol=1e-3)
    reopened = TeacherEmbeddingCache(tmp_path, SIG, max_bytes=1 << 20)
    assert reopened.nbytes == cache.nbytes > 0
    torch.testing.assert_close(reopened.get("a"), got)


def test_cache_rejects_other_signature(tmp_path: Path) -> None:
    TeacherEmbeddingCache(tmp_path, SIG, max_bytes=1 << 20)
    other = replace(SIG, preprocess="another-version")
    # a different signature lives in a different folder...
    assert TeacherEmbeddingCache(tmp_path, other, 1 << 20).folder != tmp_path / SIG.tag[:16]
    # ...and a folder whose meta.json disagrees is refused
    meta = tmp_path / SIG.tag[:16] / "meta.json"
    stored = json.loads(meta.read_text())
    stored["checkpoint_sha256"] = "def"
    meta.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="cache was made for"):
        TeacherEmbeddingCache(tmp_path, SIG, max_bytes=1 << 20)


def test_cache_ignores_entries_of_another_signature(tmp_path: Path) -> None:
    cache = TeacherEmbeddingCache(tmp_path / "a", SIG, 1 << 20)
    other = TeacherEmbeddingCache(tmp_path / "b", replace(SIG, checkpoint_sha256="xyz"), 1 << 20)
    other.put("k", torch.ones(1, 2, 2))
    cache.folder.joinpath(other.path("k").name).write_bytes(other.path("k").read_bytes())
    assert cache.get("k") is None


def test_cache_is_bounded(tmp_path: Path) -> None:
    probe = TeacherEmbeddingCache(tmp_path / "probe", SIG, 1 << 20)
    probe.put("x", torch.zeros(8, 4, 4))
    one = probe.nbytes
    cache = TeacherEmbeddingCache(tmp_path / "c", SIG, max_bytes=2 * one + one // 2)
    assert cache.put("a", torch.zeros(8, 4, 4))
    assert cache.put("b", torch.zeros(8, 4, 4))
    assert not cache.put("c", torch.zeros(8, 4, 4))
    assert "c" not in cache
    assert cache.put("a", torch.ones(8, 4, 4))  # replacing an entry does not grow the cache
    with pytest.raises(ValueError, match=r"must be \(C, h, w\)"):
        cache.put("d", torch.zeros(4, 4))
    with pytest.raises(ValueError, match="max_bytes"):
        TeacherEmbeddingCache(tmp_path, SIG, max_bytes=0)


def test_teacher_signature_depends_on_weights() -> None:
    a = build_model("test_tiny")
    b = build_model("test_tiny")
    sig_a = teacher_signature("test_tiny", "none", a)
    assert sig_a.checkpoint_sha256.startswith("random:")
    assert sig_a.image_size == 64
    assert sig_a != teacher_signature("test_tiny", "none", b)


# ------------------------------------------------------------------------------------ items
def test_select_items_interleaves_modalities_then_flips(challenge_folder: Path) -> None:
    ds = SegmentationDataset(challenge_folder, image_size=64)
    items = select_items(ds, flip_variants=[(), ("horizontal",)])
    assert len(items) == 2 * len(ds)
    first = [ds.refs[i].modality for i, _ in items[:4]]
    assert sorted(first) == ["Endoscopy", "MR", "US", "XRay"]
    assert all(f == () for _, f in items[: len(ds)])
    assert all(f == ("horizontal",) for _, f in items[len(ds) :])
    assert select_items(ds, max_images=3) == items[:3]
    with pytest.raises(ValueError, match="max_images"):
        select_items(ds, max_images=0)


def test_fill_cache_computes_missing_images_once(challenge_folder: Path, tmp_path: Path) -> None:
    teacher = build_model("test_tiny").eval()
    ds = SegmentationDataset(challenge_folder, image_size=64)
    cache = TeacherEmbeddingCache(tmp_path, SIG, 1 << 24)
    items = select_items(ds, max_images=5)
    calls = []
    assert (
        fill_cache(teacher, ds, cache, items, batch_size=2, progress=lambda d, n: calls.append(d))
        == 5
    )
    assert calls[0] == 0
    assert calls[-1] == 5
    assert fill_cache(teacher, ds, cache, items) == 0
    index, flips = items[0]
    with torch.inference_mode():
        expected = teacher.encode(ds.image_tensor(index, flips)[0][None])[0]
    torch.testing.assert_close(
        cache.get(ds.image_key(index, flips)).float(), expected, atol=2e-3, rtol=2e-3
    )


def test_fill_cache_copies_embeddings_of_a_training_cache(
    challenge_folder: Path, tmp_path: Path
) -> None:
    from umedsam.training.embeddings import FrozenEncoderEmbeddingCache

    teacher = build_model("test_tiny").eval()
    ds = SegmentationDataset(challenge_folder, image_size=64)
    items = select_items(ds, max_images=4)
    keys = [ds.image_key(i, f) for i, f in items]
    train_cache = FrozenEncoderEmbeddingCache(
        teacher, model_name="test_tiny", cache_dir=tmp_path / "train"
    )
    made = train_cache.get(keys[:3], ds.image_for_key)  # 3 of 4 already computed by training
    reopened = FrozenEncoderEmbeddingCache(
        teacher, model_name="test_tiny", cache_dir=tmp_path / "train"
    )
    cache = TeacherEmbeddingCache(tmp_path / "teacher", SIG, 1 << 24)
    assert fill_cache(teacher, ds, cache, items, known=reopened.lookup) == 1  # only the 4th
    for key, embedding in zip(keys[:3], made, strict=True):
        torch.testing.assert_close(cache.get(key).float(), embedding)
    assert keys[3] in cache


# ----------------------------------------------------------------------------------- config
@pytest.mark.onnx
def test_fill_cache_with_an_exported_teacher_matches_torch(
    challenge_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    from umedsam.training.distill_config import TeacherConfig
    from umedsam.training.teacher_cache import ExportedTeacher

    monkeypatch.setenv("UMEDSAM_CACHE_DIR", str(tmp_path / "exports"))
    teacher = build_model("test_tiny").eval()
    weights = tmp_path / "tiny.pt"
    torch.save(teacher.state_dict(), weights)
    exported = ExportedTeacher("test_tiny", str(weights), "onnx")
    dataset = SegmentationDataset(challenge_folder, image_size=64, max_box_shift=0)
    items = select_items(dataset)
    caches = {}
    for name, model in (("torch", teacher), ("onnx", exported)):
        caches[name] = TeacherEmbeddingCache(tmp_path / name, SIG, 1 << 30)
        assert fill_cache(model, dataset, caches[name], items) == len(items)
    for i, flips in items:
        key = dataset.image_key(i, flips)
        torch_emb, onnx_emb = caches["torch"].get(key), caches["onnx"].get(key)
        assert torch_emb is not None and onnx_emb is not None
        assert torch.allclose(torch_emb.float(), onnx_emb.float(), atol=2e-3, rtol=1e-2)
    with pytest.raises(ValueError, match="teacher.engine"):
        TeacherConfig(engine="tensorrt")
    with pytest.raises(ValueError, match="needs weights"):
        TeacherConfig(checkpoint="none", engine="onnx")


def test_config_validation_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        DistillConfig.from_dict({"data": {"train_root": "x", "cache_dir": "c", "oops": 1}})
    with pytest.raises(ValueError, match="unknown config section"):
        DistillConfig.from_dict({"data": {"train_root": "x", "cache_dir": "c"}, "model": {}})
    with pytest.raises(ValueError, match="train_root or data.sources is required"):
        DistillConfig.from_dict({"data": {"cache_dir": "c"}})
    with pytest.raises(ValueError, match="must be of type int"):
        DistillConfig.from_dict(
            {"data": {"train_root": "x", "cache_dir": "c"}, "run": {"steps": "a"}}
        )
    path = tmp_path / "d.yaml"
    path.write_text(
        "data: {train_root: x, cache_dir: c, teacher_flips: [[], [horizontal]]}\n"
        "finetune: {run: {epochs: 1}}\n"
    )
    config = load_distill_config(path, {"run.steps": 7, "finetune.run.epochs": 3})
    assert config.run.steps == 7
    assert config.data.teacher_flips == ((), ("horizontal",))
    assert config.finetune == {"run": {"epochs": 3}}
    with pytest.raises(FileNotFoundError):
        load_distill_config(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------------- stage 1
def test_stage1_trains_and_exports_student(challenge_folder: Path, tmp_path: Path) -> None:
    config = _config(
        challenge_folder, tmp_path, run={"steps": 12, "log_every_steps": 4}, data={"val_images": 1}
    )
    rows = []
    result = distill(config, progress=rows.append)
    assert result.steps == 12
    assert result.cached_images == len(SegmentationDataset(challenge_folder, image_size=64))
    assert result.val_loss is not None
    losses = [r["loss"] for r in rows if r["phase"] == "distill"]
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    state = read_state_dict(result.student_weights)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    # the student keeps the teacher's prompt encoder and mask decoder
    torch.manual_seed(0)
    teacher_state = build_model("test_tiny").state_dict()
    key = "mask_decoder.iou_token.weight"
    torch.testing.assert_close(state[key].float(), teacher_state[key], atol=1e-3, rtol=1e-3)
    from umedsam.models.checkpoint import load_checkpoint

    load_checkpoint(build_model("test_tiny_effvit"), result.student_weights)
    assert (tmp_path / "out" / "log.csv").read_text().count("\n") == 4


def test_stage1_resume_continues_the_same_run(challenge_folder: Path, tmp_path: Path) -> None:
    full = distill(_config(challenge_folder, tmp_path / "full", run={"steps": 4}), stages=(1,))
    half = _config(challenge_folder, tmp_path / "half", run={"steps": 4})
    torch.manual_seed(0)  # the same random teacher
    distill(replace(half, run=replace(half.run, steps=2)), stages=(1,))
    torch.manual_seed(0)
    resumed = distill(half, stages=(1,))
    assert resumed.steps == 4
    a, b = read_state_dict(full.student_weights), read_state_dict(resumed.student_weights)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-3, rtol=1e-3)


def test_cache_only_and_empty_cache(challenge_folder: Path, tmp_path: Path) -> None:
    config = _config(challenge_folder, tmp_path, data={"max_images": 2})
    result = distill(config, cache_only=True)
    assert result.cached_images == 2
    assert result.student_weights is None
    empty = _config(challenge_folder, tmp_path / "e", data={"cache_max_mb": 0.001})
    with pytest.raises(ValueError, match="no teacher embedding is cached"):
        distill(empty)


def test_stage1_trains_on_teacher_embeddings_of_flipped_images(
    challenge_folder: Path, tmp_path: Path
) -> None:
    """``data.teacher_flips`` caches the teacher's embeddings of flipped images, and stage 1 loads
    those images back by their keys (a flip the dataset did not know used to raise KeyError)."""
    flips = [[], ["horizontal"], ["horizontal", "vertical"]]
    config = _config(
        challenge_folder, tmp_path, data={"teacher_flips": flips, "max_images": 3}, run={"steps": 2}
    )
    cached = distill(config, cache_only=True)
    assert cached.cached_images == 3
    result = distill(replace(config, data=replace(config.data, max_images=None)), stages=(1,))
    n = len(SegmentationDataset(challenge_folder, image_size=64))
    assert result.cached_images == 3 * n
    assert result.steps == 2


# ---------------------------------------------------------------------------------- stage 2
def test_stage2_finetunes_with_the_trainer(challenge_folder: Path, tmp_path: Path) -> None:
    finetune = {
        "model": {"trainable": ["image_encoder", "mask_decoder"]},
        "data": {"cache_embeddings": False},
        "run": {"epochs": 1, "batch_size": 2, "max_steps": 2},
        "optim": {"lr": 1e-4},
    }
    config = replace(_config(challenge_folder, tmp_path, run={"steps": 2}), finetune=finetune)
    result = distill(config)
    assert result.finetuned_weights is not None
    assert result.finetuned_weights.is_file()
    before = read_state_dict(result.student_weights)
    after = read_state_dict(result.finetuned_weights)
    assert set(before) == set(after)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("mask_decoder"))
    bad = replace(config, finetune={"model": {"name": "litemedsam"}})
    with pytest.raises(ValueError, match="may only set 'trainable'"):
        distill(bad, stages=(2,))


# -------------------------------------------------------------------------------------- CLI
def test_cli_distill(challenge_folder: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("yaml")
    from umedsam.cli.main import main

    path = tmp_path / "d.yaml"
    path.write_text(
        f"data: {{train_root: '{challenge_folder}', cache_dir: '{tmp_path / 'cache'}'}}\n"
        "teacher: {name: test_tiny, checkpoint: none}\n"
        "student: {name: test_tiny_effvit}\n"
        f"run: {{output_dir: '{tmp_path / 'out'}', steps: 2, batch_size: 2}}\n"
    )
    assert main(["distill", "--config", str(path), "--set", "run.steps=1"]) == 0
    assert "stage 1: 1 steps" in capsys.readouterr().out
    assert (tmp_path / "out" / "student.pt").is_file()
    assert main(["distill", "--config", str(path), "--set", "run.nope=1"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_balanced_stage1_draws_modalities_by_weight(challenge_folder: Path, tmp_path: Path) -> None:
    """With data.balanced a scarce modality is drawn as often as its weight says; runs train."""
    from collections import Counter
    from types import SimpleNamespace

    from umedsam.training.distill_loop import balanced_picks, modality_groups

    keys = [f"root|2DBox_US_{i}.npz|2d|none" for i in range(30)]
    keys += ["root|2DBox_Endoscopy_0.npz|2d|none", "root|3DBox_CT_0.npz|z3|none"]
    pool = SimpleNamespace(keys=keys)
    gen = torch.Generator().manual_seed(0)
    groups = modality_groups(pool, range(len(keys)))  # type: ignore[arg-type]
    assert sorted(groups) == ["CT", "Endoscopy", "US"]
    picks = balanced_picks(groups, {"CT": 0.5}, 2500, gen)
    counts = Counter("US" if p < 30 else "Endoscopy" if p == 30 else "CT" for p in picks)
    assert counts["Endoscopy"] / 2500 == pytest.approx(0.4, abs=0.04)  # 1 / 2.5, not 1 / 32
    assert counts["CT"] / 2500 == pytest.approx(0.2, abs=0.04)
    with pytest.raises(ValueError, match="modality_weights"):
        DistillConfig.from_dict(
            {"data": {"train_root": "x", "cache_dir": "c", "modality_weights": {"CT": -1}}}
        )
    config = _config(
        challenge_folder,
        tmp_path,
        data={"balanced": True, "modality_weights": {"CT": 0.25}},
        run={"steps": 3},
    )
    assert config.data.modality_weights == {"CT": 0.25}
    assert distill(config, stages=(1,)).steps == 3


def test_stage1_distils_on_unlabelled_image_folders_too(
    challenge_folder: Path, tmp_path: Path
) -> None:
    """Distillation needs no labels: a folder source without masks adds its images."""
    import cv2

    folder = tmp_path / "unlabelled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"u{i}.jpg"), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    source = {"kind": "folder", "images": str(folder), "modality": "CT", "weight": 1.0}
    config = _config(challenge_folder, tmp_path, data={"sources": [source]}, run={"steps": 2})
    result = distill(config, stages=(1,))
    labelled = len(SegmentationDataset(challenge_folder, image_size=64))
    assert result.steps == 2 and result.cached_images == labelled + 3


def test_student_init_parts_take_the_encoder_and_keep_the_teachers_decoder(
    tmp_path: Path,
) -> None:
    from umedsam.training.distill import _load_model, build_student

    donor = build_model("test_tiny_effvit")  # another student: its encoder and decoder
    init = tmp_path / "donor.pt"
    torch.save(donor.state_dict(), init)
    config = _config(
        tmp_path, tmp_path, student={"init": str(init), "init_parts": ["image_encoder"]}
    )
    teacher = _load_model("test_tiny", "none")
    student = build_student(config, teacher)
    for part, source in (("image_encoder", donor), ("mask_decoder", teacher)):
        for key, value in getattr(student, part).state_dict().items():
            assert torch.equal(value, getattr(source, part).state_dict()[key]), (part, key)
    with pytest.raises(ValueError, match="init_parts must be among"):
        _config(tmp_path, tmp_path, student={"init": str(init), "init_parts": ["neck"]})
    with pytest.raises(ValueError, match="needs student.init"):
        _config(tmp_path, tmp_path, student={"init_parts": ["image_encoder"]})
    with pytest.raises(ValueError, match="shipped whole"):
        build_student(_config(tmp_path, tmp_path, student={"init": "shipped"}), teacher)


def test_a_teachers_default_weights_are_its_own() -> None:
    from umedsam.models.pretrained import load_pretrained
    from umedsam.training.distill import _load_model

    teacher = _load_model("umedsam_newdata", "default")
    shipped = load_pretrained("umedsam_newdata")[0]
    official = load_pretrained("litemedsam")[0]
    decoder = teacher.mask_decoder.state_dict()
    assert all(torch.equal(v, shipped.mask_decoder.state_dict()[k]) for k, v in decoder.items())
    assert not all(
        torch.equal(v, official.mask_decoder.state_dict()[k]) for k, v in decoder.items()
    )
