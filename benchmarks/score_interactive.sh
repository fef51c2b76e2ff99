#!/bin/bash
# Score one interactive checkpoint on dev, as the rules in docs/interactive_log.md ask: box-only
# predict + evaluate, the CVPR 2025 click protocol and the scribble protocol. The click protocol
# takes the benchmark's default 3D boxes: the challenge's own since December 2026 (the rules
# judged before then used --box-format dicts; compare a new checkpoint with the same format).
#   benchmarks/score_interactive.sh CHECKPOINT OUT_DIR
# Run from the repository root; the shared data folder sits beside it.
set -e
C=$1
O=$2
.venv/bin/umedsam predict -q -i ../shared/data/dev/imgs -o "$O/segs" --model umedsam_interactive --checkpoint "$C" --no-resume
.venv/bin/umedsam evaluate -q --segs "$O/segs" --gts ../shared/data/dev/gts --out "$O/metrics.csv"
.venv/bin/python benchmarks/interactive.py --protocol clicks --model umedsam_interactive --checkpoint "$C" -q --json "$O/clicks.json"
.venv/bin/python benchmarks/interactive.py --protocol scribbles --model umedsam_interactive --checkpoint "$C" -q --json "$O/scribbles.json"
