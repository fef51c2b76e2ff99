"""``umedsam distill``: distil LiteMedSAM's image encoder into an EfficientViT student.

Stage 1 matches the teacher's image embeddings (cached on disk); stage 2, when the config has a
``finetune`` section, fine-tunes the student with the mask decoder through the training loop.
Options come from ``--config FILE.yaml`` then ``--set section.key=VALUE`` (YAML values, e.g.
``--set run.steps=200 --set data.teacher_flips='[[], [horizontal]]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected section.key=VALUE; got {text!r}")
    return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``umedsam distill``."""
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        help="YAML config (sections data/teacher/student/loss/optim/run, optional finetune)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (dotted key, YAML value); repeatable",
    )
    parser.add_argument(
        "--stage",
        choices=("1", "2", "all"),
        default="all",
        help="run stage 1 (embedding matching), 2 (fine-tuning) or both (default)",
    )
    parser.add_argument(
        "--cache-only",
        action="store_true",
        help="only compute the teacher embeddings into the cache, then exit",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )


def run(args: argparse.Namespace) -> int:
    """Resolve the config and distil; 2 on a configuration or data error."""
    import json

    from umedsam.errors import MissingExtraError, UmedsamError
    from umedsam.extras import import_optional

    try:
        yaml = import_optional(
            "yaml", package="pyyaml", extra="train", purpose="reading a distillation config"
        )
    except MissingExtraError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    from umedsam.training.distill import distill, load_distill_config

    try:
        overrides = {k: yaml.safe_load(v) for k, v in args.overrides}
        config = load_distill_config(args.config, overrides)
    except (ValueError, FileNotFoundError, ImportError, yaml.YAMLError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=1))
        return 0

    quiet = getattr(args, "quiet", False)
    bars: dict[str, Any] = {}

    def progress(row: dict[str, Any]) -> None:
        if quiet or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        phase = str(row.get("phase", "finetune"))
        if phase == "cache":
            bar = bars.get("cache") or bars.setdefault(
                "cache", tqdm(total=row["total"], desc="teacher", unit="img", file=sys.stderr)
            )
            bar.n = row["done"]
            bar.refresh()
        elif phase == "distill":
            bar = bars.get("distill") or bars.setdefault(
                "distill",
                tqdm(total=config.run.steps, desc="distill", unit="step", file=sys.stderr),
            )
            bar.n = row["step"]
            bar.set_postfix(loss=f"{row['loss']:.4f}")

    stages = (1, 2) if args.stage == "all" else (int(args.stage),)
    try:
        result = distill(config, stages=stages, cache_only=args.cache_only, progress=progress)
    except (UmedsamError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        for bar in bars.values():
            bar.close()
    if not quiet:
        if args.cache_only:
            print(f"{result.cached_images} teacher embeddings cached")
        else:
            print(
                f"stage 1: {result.steps} steps on {result.cached_images} cached images, "
                f"train loss {result.train_loss}, val loss {result.val_loss}; "
                f"student: {result.student_weights}"
            )
            if result.finetuned_weights is not None:
                print(
                    f"stage 2: best metric {result.finetune_metric}; "
                    f"fine-tuned student: {result.finetuned_weights}"
                )
    return 0
