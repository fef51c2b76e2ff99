#!/bin/bash
# dev scoring of the weight average of the shipped interactive weights and the fifth run (docs/interactive.md)
set -e
cd "$(dirname "$0")/../../.."
.venv/bin/python benchmarks/merge.py --base umedsam_interactive --tuned runs/interactive_neighbour/last.pt \
  --parts prompt_encoder mask_decoder --alpha 0.5 --write-only --work runs/interactive_soup
C=runs/interactive_soup/merges/merge_a050_full.pt
O=runs/interactive_soup
.venv/bin/umedsam predict -q -i ../shared/data/dev/imgs -o $O/segs --model umedsam_interactive --checkpoint $C --no-resume
.venv/bin/umedsam evaluate -q --segs $O/segs --gts ../shared/data/dev/gts --out $O/metrics.csv
.venv/bin/python benchmarks/interactive.py --protocol clicks --model umedsam_interactive --checkpoint $C -q --json $O/clicks.json
.venv/bin/python benchmarks/interactive.py --protocol scribbles --model umedsam_interactive --checkpoint $C -q --json $O/scribbles.json
echo done
