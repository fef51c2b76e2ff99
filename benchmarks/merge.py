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
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import evaluate_arm  # noqa: E402  (a sibling benchmark script)

logger = logging.getLogger("merge")


def merged_weights(tuned: str, alpha: float, out: Path) -> tuple[Path, Path]:
    """Write the full float32 checkpoint and the packaged float16 decoder of one merge."""
    from umedsam.models.pretrained import load_pretrained
    from umedsam.training.checkpointing import save_atomic
    from umedsam.training.merge import merge_state_dicts

    base = load_pretrained("litemedsam")[0].state_dict()
    donor = load_pretrained(tuned)[0].state_dict()
    merged = merge_state_dicts(base, donor, alpha, parts=("mask_decoder",))
    full = save_atomic(merged, out / f"merge_a{round(alpha * 100):03d}_full.pt")
    packaged = {k: v.to(torch.float16) for k, v in merged.items() if k.startswith("mask_decoder.")}
    return full, save_atomic(packaged, out / f"merge_a{round(alpha * 100):03d}_decoder.pt")


def main(argv: list[str] | None = None) -> int:
    """Merge, predict dev, score; prints and writes ``WORK/merge_results.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dev", type=Path, required=True, help="challenge dev folder")
    parser.add_argument("--work", type=Path, required=True, help="folder of the ablation run")
    parser.add_argument("--tuned", default="umedsam_litemedsam", help="registered donor model")
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
        full, packaged = merged_weights(args.tuned, alpha, out)
        ev = evaluate_arm(
            name, str(full), types.SimpleNamespace(work=args.work, dev=args.dev), memo
        )
        results[name] = {"alpha": alpha, "tuned": args.tuned, "packaged": str(packaged), **ev}
        results_path.write_text(json.dumps(results, indent=1))
        logger.info("%s: dev DSC %.4f NSD %.4f", name, ev["overall"]["dsc"], ev["overall"]["nsd"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
