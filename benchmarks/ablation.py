"""U-MedSAM ablation on the CPU: which loss / optimizer helps when fine-tuning LiteMedSAM?

Arms, all starting from the bundled LiteMedSAM weights and training the mask decoder only on
cached image embeddings of the train split, under the same budget of gradient evaluations
(one forward + backward of one batch; a SAM step costs two):

  (a) no fine-tuning (LiteMedSAM as shipped)
  (b) Dice + BCE, fixed weights 1 + 1, AdamW
  (c) uncertainty-weighted Dice + BCE + IoU-MSE + shape distance (Kendall form), AdamW
  (d) as (c) with Sharpness-Aware Minimization (rho 0.05; loss log-variances not perturbed)
  (e) shape-distance loss alone, AdamW
  (f) as (b), but half the slices of volumes are prompted with the object's box on an adjacent
      slice, as 3D propagation prompts them (added after (b) over-segmented the ends of CT
      lesions on dev; not part of the paper's ablation)

Each arm's final weights predict the dev split with ``umedsam.inference.runner.run_cases``
and are scored by ``umedsam.evaluation.report.evaluate_folders`` (the code behind
``umedsam evaluate``). The image encoder is frozen and shared by all arms, so its outputs on dev
are memoised across arms (bit-identical to recomputing them).

    python benchmarks/ablation.py --train ../shared/data/train --dev ../shared/data/dev \\
        --work WORK --grad-evals 40 --lr 1e-4 --slices-per-volume 3 \\
        --modalities CT Dermoscopy Endoscopy Fundus US XRay --train-per-modality 5

Writes ``results.json``, ``ablation.md`` (tables) and ``training_curves.png`` into ``--work``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("ablation")

MULTI_SEED_ARMS = ("b", "c", "d")
"""Arms trained with every seed of ``--seeds``; (a) has no training and (e) runs once."""

ARMS: dict[str, dict[str, Any]] = {
    "a": {"label": "(a) LiteMedSAM, no fine-tuning"},
    "b": {
        "label": "(b) Dice+BCE, AdamW",
        "loss": {"terms": ["dice", "bce"], "mode": "fixed"},
    },
    "c": {
        "label": "(c) uncertainty loss, AdamW",
        "loss": {"terms": ["dice", "bce", "iou", "shape"], "mode": "kendall"},
    },
    "d": {
        "label": "(d) uncertainty loss, SAM",
        "loss": {"terms": ["dice", "bce", "iou", "shape"], "mode": "kendall"},
        "optim": {"sharpness": "sam", "rho": 0.05},
    },
    "e": {
        "label": "(e) shape-distance loss alone, AdamW",
        "loss": {"terms": ["shape"], "mode": "fixed"},
    },
    "f": {
        "label": "(f) as (b), half the volume slices prompted with a neighbour slice's box",
        "loss": {"terms": ["dice", "bce"], "mode": "fixed"},
        "data": {"neighbour_box_prob": 0.5},
    },
}


def _memo_backend(
    model: torch.nn.Module, memo: dict[str, np.ndarray], folder: Path | None = None
) -> Any:
    """A TorchBackend whose encoder outputs are memoised by input bytes (shared across arms).

    With ``folder``, the memo also lives on disk (one ``.npy`` per input), so a restarted run
    does not encode the dev images again.
    """
    from umedsam.inference.backends.torch import TorchBackend

    def recall(key: str) -> bool:
        if key not in memo and folder is not None and (folder / f"{key}.npy").is_file():
            memo[key] = np.load(folder / f"{key}.npy")
        return key in memo

    class MemoBackend(TorchBackend):
        def encode(self, images: np.ndarray) -> np.ndarray:
            images = np.ascontiguousarray(images)
            keys = [hashlib.sha1(img.tobytes()).hexdigest() for img in images]
            missing = [i for i, k in enumerate(keys) if not recall(k)]
            if missing:
                out = super().encode(images[missing])
                for i, emb in zip(missing, out, strict=True):
                    memo[keys[i]] = emb.copy()
                    if folder is not None:
                        folder.mkdir(parents=True, exist_ok=True)
                        np.save(folder / f"{keys[i]}.tmp.npy", memo[keys[i]])
                        (folder / f"{keys[i]}.tmp.npy").replace(folder / f"{keys[i]}.npy")
            return np.stack([memo[k] for k in keys])

    return MemoBackend(model)


def subset_folder(
    src: Path, dst: Path, modalities: list[str] | None, per_modality: int | None
) -> Path:
    """A challenge folder of symlinks to the first ``per_modality`` cases of each modality."""
    from umedsam.data.naming import modality_from_name

    counts: dict[str, int] = {}
    for sub in ("imgs", "gts"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    for path in sorted((src / "imgs").glob("*.npz")):
        mod = modality_from_name(path.name)
        if modalities is not None and mod not in modalities:
            continue
        if per_modality is not None and counts.get(mod, 0) >= per_modality:
            continue
        counts[mod] = counts.get(mod, 0) + 1
        for sub in ("imgs", "gts"):
            link = dst / sub / path.name
            if not link.exists():
                link.symlink_to((src / sub / path.name).resolve())
    logger.info("%s: %s", dst.name, counts)
    return dst


def precompute_train_embeddings(args: argparse.Namespace) -> dict[str, float]:
    """Fill the on-disk embedding cache the trainer will use; returns counts and seconds."""
    from umedsam.data.dataset import SegmentationDataset
    from umedsam.models.pretrained import load_pretrained
    from umedsam.training.embeddings import FrozenEncoderEmbeddingCache

    model, _ = load_pretrained("litemedsam")
    ds = SegmentationDataset(
        args.train,
        image_size=256,
        flips=args.flips,
        slices_per_volume=args.slices_per_volume,
        load_images=False,
    )
    cache = FrozenEncoderEmbeddingCache(
        model, model_name="litemedsam", cache_dir=args.cache_dir or args.work / "emb_cache"
    )
    keys = [ds.image_key(i, f) for i in range(len(ds)) for f in ds.flip_variants()]
    start = time.perf_counter()
    for lo in range(0, len(keys), 4):
        cache.get(keys[lo : lo + 4], ds.image_for_key)
        if (lo // 4) % 10 == 0:
            logger.info("train embeddings %d/%d", min(lo + 4, len(keys)), len(keys))
    seconds = time.perf_counter() - start
    return {
        "items": len(ds),
        "embeddings": len(keys),
        "computed": cache.misses,
        "seconds": seconds,
        "encode_seconds": cache.encode_seconds,
    }


def run_key(arm: str, seed: int) -> str:
    """Results key and run-folder suffix of one arm trained with one seed."""
    return f"{arm}_s{seed}"


def train_arm(
    arm: str,
    args: argparse.Namespace,
    steps: int | None = None,
    output_dir: Path | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Fine-tune one arm with one seed; returns timing and the learned loss weights.

    ``steps`` defaults to the arm's share of ``--grad-evals`` (half for SAM), ``seed`` to
    ``--seed`` and ``output_dir`` to ``WORK/run_<arm>_s<seed>``. A run folder that holds a
    ``last.pt`` is resumed exactly (the trainer's ``resume: auto``).
    """
    seed = args.seed if seed is None else seed
    from umedsam.training.config import TrainConfig
    from umedsam.training.trainer import train

    spec = ARMS[arm]
    sam = spec.get("optim", {}).get("sharpness") == "sam"
    if steps is None:
        steps = args.grad_evals // 2 if sam else args.grad_evals
    if output_dir is None:
        output_dir = args.work / f"run_{run_key(arm, seed)}"
    config = TrainConfig.from_dict(
        {
            "data": {
                "train_root": str(args.train),
                "flips": list(args.flips),
                "slices_per_volume": args.slices_per_volume,
                "balanced": True,
                "modality_weights": args.modality_weights or None,
                "cache_dir": str(args.cache_dir or args.work / "emb_cache"),
                **spec.get("data", {}),
            },
            "model": {"name": "litemedsam", "checkpoint": "default"},
            "loss": spec["loss"],
            "optim": {"lr": args.lr, "loss_lr": args.loss_lr, **spec.get("optim", {})},
            "run": {
                "output_dir": str(output_dir),
                "epochs": 1000,
                "batch_size": args.batch_size,
                "max_steps": steps,
                "seed": seed,
                "resume": "auto",
                "save_every_steps": 25,
                "num_threads": args.threads,
            },
        }
    )
    result = train(config)
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    return {
        "steps": result.steps,
        "samples": result.samples,
        "train_seconds": result.train_seconds,
        "samples_per_s": result.samples / result.train_seconds,
        "seconds_per_step": result.train_seconds / max(result.steps, 1),
        "final_weights": ckpt["loss_weights"],
        "checkpoint": str(result.last_checkpoint),
    }


def evaluate_arm(
    arm: str, checkpoint: str | None, args: argparse.Namespace, memo: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Predict dev with the arm's weights and score it; returns overall and per-modality stats."""
    from umedsam.evaluation.report import evaluate_folders
    from umedsam.inference.cases import find_cases
    from umedsam.inference.engines import Engine, EnginePlan, EngineSpec, weights_sha256
    from umedsam.inference.runner import run_cases
    from umedsam.models.pretrained import load_pretrained

    model, _ = load_pretrained("litemedsam", checkpoint)
    spec = EngineSpec("litemedsam", None if checkpoint is None else Path(checkpoint), "torch")
    engine = Engine(
        _memo_backend(model, memo, args.work / "dev_encoder_memo"),
        EnginePlan(spec, weights_sha256("litemedsam", checkpoint)),
    )
    segs = args.work / f"segs_{arm}"
    start = time.perf_counter()
    outcomes = run_cases(find_cases(args.dev / "imgs"), segs, engine, resume=False).outcomes
    predict_s = time.perf_counter() - start
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"arm {arm}: {len(failed)} dev cases failed, e.g. {failed[0].error}")
    result = evaluate_folders(segs, args.dev / "gts")
    summary = result.summary
    return {
        "predict_seconds": predict_s,
        "overall": {m: summary.overall[m].mean for m in ("dsc", "nsd")},
        "per_modality": {
            mod: {m: stats[m].mean for m in ("dsc", "nsd")} | {"n": stats["dsc"].n}
            for mod, stats in summary.per_modality.items()
        },
    }


def ship_decoder(checkpoint: str, out: Path) -> dict[str, Any]:
    """Write the fine-tuned mask decoder of ``checkpoint`` as a packaged weights file (float16)."""
    from umedsam.training.checkpointing import save_packaged_weights

    return save_packaged_weights(checkpoint, out, parts=("mask_decoder",))


def measure_sam_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per optimizer step of SAM against AdamW on the same loss, data and batch.

    Arms (c) and (d) differ only in the optimizer. Each is trained for ``--cost-steps`` steps
    from scratch, alternating AdamW and SAM ``--cost-rounds`` times so that drifts in machine
    load hit both; the first step of every run (warm-up) is dropped and the medians of the
    remaining per-step times (``step_seconds`` in ``log.csv``) are compared.
    """
    import csv
    import shutil

    times: dict[str, list[float]] = {"c": [], "d": []}
    for rnd in range(args.cost_rounds):
        for arm in ("c", "d"):
            out = args.work / "sam_cost" / f"{arm}_{rnd}"
            shutil.rmtree(out, ignore_errors=True)
            train_arm(arm, args, steps=args.cost_steps, output_dir=out)
            with (out / "log.csv").open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            times[arm] += [float(r["step_seconds"]) for r in rows[1:]]
    adamw, sam = (float(np.median(times[a])) for a in ("c", "d"))
    return {
        "steps_per_run": args.cost_steps,
        "rounds": args.cost_rounds,
        "timed_steps": {"adamw": len(times["c"]), "sam": len(times["d"])},
        "adamw_seconds_per_step": adamw,
        "sam_seconds_per_step": sam,
        "sam_over_adamw": sam / adamw,
        "adamw_samples_per_s": args.batch_size / adamw,
        "sam_samples_per_s": args.batch_size / sam,
    }


def _mean_sd(values: list[float]) -> str:
    """``mean`` for one value, ``mean ± sd`` (sample sd over seeds) for more."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def write_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    """ablation.md (tables over seeds) and training_curves.png into --work."""
    runs = results["arms"]
    arms = [a for a in ARMS if any(k.split("_s")[0] == a and "eval" in runs[k] for k in runs)]
    keys = {
        a: [k for k in sorted(runs) if k.split("_s")[0] == a and "eval" in runs[k]] for a in arms
    }
    mods = sorted({m for k in runs if "eval" in runs[k] for m in runs[k]["eval"]["per_modality"]})
    n_cases = {m: runs[keys[arms[0]][0]]["eval"]["per_modality"][m]["n"] for m in mods}
    lines: list[str] = []
    for metric in ("dsc", "nsd"):
        name = metric.upper()
        lines += [
            f"{name} per modality: mean ± sd over seeds (sample sd); one value for a single run.",
            "",
            "| arm | seeds | "
            + " | ".join(f"{m} ({n_cases[m]})" for m in mods)
            + f" | mean {name} |",
            "|---" * (len(mods) + 3) + "|",
        ]
        for a in arms:
            ks = keys[a]
            cells = [
                _mean_sd([runs[k]["eval"]["per_modality"][m][metric] for k in ks]) for m in mods
            ]
            overall = _mean_sd([runs[k]["eval"]["overall"][metric] for k in ks])
            lines.append(
                f"| {ARMS[a]['label']} | {len(ks)} | " + " | ".join(cells) + f" | {overall} |"
            )
        lines.append("")
    lines += [
        "| run | mean DSC | mean NSD | steps | samples | train s | s/step | final weights |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    for a in arms:
        for k in keys[a]:
            ev, tr = runs[k]["eval"], runs[k].get("train")
            row = f"| {k} | {ev['overall']['dsc']:.4f} | {ev['overall']['nsd']:.4f} | "
            if tr is None:
                lines.append(row + "- | - | - | - | - |")
                continue
            weights = ", ".join(f"{n} {v:.3f}" for n, v in tr["final_weights"].items())
            lines.append(
                row + f"{tr['steps']} | {tr['samples']} | {tr['train_seconds']:.0f} | "
                f"{tr['seconds_per_step']:.2f} | {weights} |"
            )
    (args.work / "ablation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot_curves(runs, keys, args)


def _plot_curves(
    runs: dict[str, Any], keys: dict[str, list[str]], args: argparse.Namespace
) -> None:
    """Dice term of each training batch (smoothed) and the learned weights, per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib missing: no training_curves.png")
        return
    import csv

    colours = {
        "b": "tab:blue",
        "c": "tab:orange",
        "d": "tab:green",
        "e": "tab:red",
        "f": "tab:purple",
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for a, ks in keys.items():
        for i, k in enumerate(ks):
            log = args.work / f"run_{k}" / "log.csv"
            if a not in colours or not log.is_file():
                continue
            with log.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            grad_evals = 2 if "sharpness" in ARMS[a].get("optim", {}) else 1
            x = np.array([int(r["step"]) * grad_evals * args.batch_size for r in rows])
            label = ARMS[a]["label"] if i == 0 else None
            if "loss_dice" in rows[0]:
                y = np.array([float(r["loss_dice"]) for r in rows])
                w = min(25, len(y))
                smooth = np.convolve(y, np.ones(w) / w, mode="valid")
                ax1.plot(x[w - 1 :], smooth, color=colours[a], lw=1, label=label)
            if ARMS[a]["loss"]["mode"] == "kendall":
                for col, style in zip(
                    [c for c in rows[0] if c.startswith("weight_")],
                    ("-", "--", ":", "-."),
                    strict=False,
                ):
                    ax2.plot(
                        x,
                        [float(r[col]) for r in rows],
                        color=colours[a],
                        ls=style,
                        lw=1,
                        label=f"{a}: {col[7:]}" if i == 0 else None,
                    )
    ax1.set_xlabel("training samples x passes (gradient evaluations x batch)")
    ax1.set_ylabel("Dice loss of the training batch (moving mean of 25)")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("training samples x passes")
    ax2.set_ylabel("learned weight 0.5 exp(-s)")
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(args.work / "training_curves.png", dpi=110)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="challenge train folder")
    parser.add_argument("--dev", type=Path, required=True, help="challenge dev folder")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for everything")
    parser.add_argument("--arms", default="abcde", help="subset of 'abcdef'")
    parser.add_argument("--grad-evals", type=int, default=60, help="per arm; SAM steps = half")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument(
        "--loss-lr", type=float, default=1e-2, help="learning rate of the loss log-variances"
    )
    parser.add_argument("--slices-per-volume", type=int, default=2)
    parser.add_argument("--flips", nargs="*", default=[], help="random flips (cached variants)")
    parser.add_argument("--modalities", nargs="*", help="restrict train and dev to these")
    parser.add_argument("--train-per-modality", type=int, help="first N train cases per modality")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sam-cost runs")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="seeds of arms b, c, d (a, e: the first)"
    )
    parser.add_argument(
        "--epochs",
        type=float,
        help="budget per arm in passes over the training items (overrides --grad-evals)",
    )
    parser.add_argument(
        "--modality-weights",
        nargs="*",
        default=[],
        metavar="MOD=W",
        help="relative weight of a modality in the balanced draw (e.g. CT=0.25)",
    )
    parser.add_argument("--cache-dir", type=Path, help="embedding cache (default WORK/emb_cache)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--sam-cost",
        action="store_true",
        help="only time SAM against AdamW per step (arms c and d, no dev evaluation)",
    )
    parser.add_argument("--cost-steps", type=int, default=8, help="steps per timing run")
    parser.add_argument("--cost-rounds", type=int, default=3, help="alternating timing rounds")
    parser.add_argument("--ship", help="run (e.g. b_s0) whose decoder becomes a packaged file")
    parser.add_argument(
        "--ship-to",
        type=Path,
        default=Path(__file__).resolve().parents[1]
        / "src"
        / "umedsam"
        / "weights"
        / "umedsam_litemedsam_decoder.pt",
    )
    args = parser.parse_args(argv)
    args.arms = list(args.arms)
    args.modality_weights = {
        k: float(v) for k, v in (item.split("=", 1) for item in args.modality_weights)
    }
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected arms; see the module docstring."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    from umedsam.inference.backends.torch import tune_allocator

    tune_allocator()  # eager encoder forwards reuse memory instead of page-faulting it in
    torch.manual_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.modalities or args.train_per_modality:
        args.train = subset_folder(
            args.train, args.work / "train_subset", args.modalities, args.train_per_modality
        )
        args.dev = subset_folder(args.dev, args.work / "dev_subset", args.modalities, None)
    results_path = args.work / "results.json"
    results: dict[str, Any] = {"arms": {}}
    if results_path.is_file():
        results = json.loads(results_path.read_text(encoding="utf-8"))
    results["settings"] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "work"
    }
    results["settings"]["torch"] = torch.__version__
    if (args.sam_cost or any(a != "a" for a in args.arms)) and "train_embeddings" not in results:
        results["train_embeddings"] = precompute_train_embeddings(args)
        logger.info("train embeddings: %s", results["train_embeddings"])
    if args.sam_cost:
        results["sam_cost"] = measure_sam_cost(args)
        results_path.write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(json.dumps(results["sam_cost"], indent=1))
        return 0
    if args.epochs is not None:
        items = results["train_embeddings"]["items"]
        args.grad_evals = int(round(args.epochs * items / args.batch_size))
        results["settings"]["grad_evals"] = args.grad_evals
        logger.info(
            "%s epochs of %d items: %d gradient evaluations per arm",
            args.epochs,
            items,
            args.grad_evals,
        )
    return _run_arms(args, results, results_path)


def _run_arms(args: argparse.Namespace, results: dict[str, Any], results_path: Path) -> int:
    """Train and score the planned (arm, seed) runs not done yet; write the report."""
    memo: dict[str, np.ndarray] = {}
    plan = [
        (arm, seed)
        for i, seed in enumerate(args.seeds)
        for arm in args.arms
        if i == 0 or arm in MULTI_SEED_ARMS
    ]
    for arm, seed in plan:
        key = run_key(arm, seed)
        entry = results["arms"].get(key, {})
        if "eval" in entry:
            logger.info("run %s already done", key)
            continue
        checkpoint = None
        if arm != "a":
            entry["train"] = train_arm(arm, args, seed=seed)
            checkpoint = entry["train"]["checkpoint"]
            logger.info("run %s trained: %s", key, entry["train"])
        entry["eval"] = evaluate_arm(key, checkpoint, args, memo)
        logger.info("run %s dev: %s", key, entry["eval"]["overall"])
        results["arms"][key] = entry
        results_path.write_text(json.dumps(results, indent=1), encoding="utf-8")
        write_report(results, args)
    write_report(results, args)
    print((args.work / "ablation.md").read_text(encoding="utf-8"))
    if args.ship:
        shipped = ship_decoder(results["arms"][args.ship]["train"]["checkpoint"], args.ship_to)
        print(f"run {args.ship} decoder -> {args.ship_to}: {shipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
