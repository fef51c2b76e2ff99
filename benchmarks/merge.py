"""Training-free decoder merges of LiteMedSAM and a fine-tuned decoder, scored on dev.

For each ``--alpha`` the mask decoder becomes ``(1 - a) * LiteMedSAM + a * TUNED``
(:func:`umedsam.training.merge.merge_state_dicts`); image and prompt encoders stay LiteMedSAM's.
Each merge predicts the dev split boxes-only, through the same code as the ablation's arms (the
frozen encoder's dev outputs are memoised in ``WORK/dev_encoder_memo``, shared with
``benchmarks/ablation.py``), and is scored with the function behind ``umedsam evaluate``. The
packaged float16 decoder of each merge is written too, ready to ship.

    python benchmarks/merge.py --dev ../shared/data/dev --work runs/ablation16 \\
        --tuned umedsam_litemedsam --alpha 0.25 0.5 0.75

Then ``benchmarks/choose_default.py`` applies the default rule to ``WORK/segs_merge_aXXX``.

``--base``, ``--parts`` and ``--write-only`` write other merges without scoring them, e.g. the
average of the shipped interactive weights and a later training run of them
(docs/interactive_log.md):

    python benchmarks/merge.py --base umedsam_interactive --tuned runs/X/last.pt \
        --parts prompt_encoder mask_decoder --alpha 0.5 --write-only --work runs/X_soup
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import evaluate_arm  # noqa: E402  (a sibling benchmark script)

logger = logging.getLogger("merge")


def merged_weights(
    tuned: str,
    alpha: float,
    out: Path,
    base: str = "litemedsam",
    parts: tuple[str, ...] = ("mask_decoder",),
) -> tuple[Path, Path]:
    """Write the full float32 checkpoint and the packaged float16 ``parts`` of one merge.

    ``base`` is a registered model (its shipped weights) or a weights file; ``tuned`` is a registered model or a
    checkpoint file (a training checkpoint's ``model`` is used). The merged tensors are rounded
    to float16 in the full checkpoint too, so that it scores exactly what the packaged file ships.
    """
    from umedsam.models.checkpoint import read_state_dict
    from umedsam.models.pretrained import load_pretrained
    from umedsam.training.checkpointing import save_atomic
    from umedsam.training.merge import merge_state_dicts

    if Path(base).is_file():
        base_state = {k: v.float() for k, v in read_state_dict(base).items()}
    else:
        base_state = load_pretrained(base)[0].state_dict()
    if Path(tuned).is_file():
        donor = read_state_dict(tuned)
    else:
        donor = load_pretrained(tuned)[0].state_dict()
    merged = merge_state_dicts(base_state, donor, alpha, parts=parts)
    prefixes = tuple(f"{p}." for p in parts)
    packaged = {k: v.to(torch.float16) for k, v in merged.items() if k.startswith(prefixes)}
    merged.update({k: v.float() for k, v in packaged.items()})
    stem = f"merge_a{round(alpha * 100):03d}"
    full = save_atomic(merged, out / f"{stem}_full.pt")
    suffix = "decoder" if parts == ("mask_decoder",) else "parts"
    return full, save_atomic(packaged, out / f"{stem}_{suffix}.pt")


def main(argv: list[str] | None = None) -> int:
    """Merge, predict dev, score; prints and writes ``WORK/merge_results.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dev", type=Path, help="challenge dev folder (unless --write-only)")
    parser.add_argument("--work", type=Path, required=True, help="folder of the ablation run")
    parser.add_argument(
        "--tuned", default="umedsam_litemedsam", help="donor: registered model or checkpoint file"
    )
    parser.add_argument(
        "--base", default="litemedsam", help="registered base model, or a weights file"
    )
    parser.add_argument("--parts", nargs="+", default=["mask_decoder"], help="parts to merge")
    parser.add_argument(
        "--write-only", action="store_true", help="write the merged weights, score nothing"
    )
    parser.add_argument("--alpha", type=float, nargs="+", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    out = args.work / "merges"
    out.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "merge_results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    memo: dict = {}
    for alpha in args.alpha:
        name = f"merge_a{round(alpha * 100):03d}"
        full, packaged = merged_weights(args.tuned, alpha, out, args.base, tuple(args.parts))
        if args.write_only:
            logger.info("%s: wrote %s and %s", name, full, packaged)
            continue
        if args.dev is None:
            parser.error("--dev is needed to score a merge")
        ev = evaluate_arm(name, str(full), argparse.Namespace(work=args.work, dev=args.dev), memo)
        results[name] = {"alpha": alpha, "tuned": args.tuned, "packaged": str(packaged), **ev}
        results_path.write_text(json.dumps(results, indent=1))
        logger.info("%s: dev DSC %.4f NSD %.4f", name, ev["overall"]["dsc"], ev["overall"]["nsd"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
