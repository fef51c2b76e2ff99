#!/bin/bash
# dev scoring of the sixth interactive candidate's final checkpoint, by its rule (docs/interactive.md)
set -e
cd "$(dirname "$0")/../../.."
C=runs/interactive_scribblebox/last.pt
O=runs/interactive_scribblebox_eval
.venv/bin/umedsam predict -q -i ../shared/data/dev/imgs -o $O/segs --model umedsam_interactive --checkpoint $C --no-resume
.venv/bin/umedsam evaluate -q --segs $O/segs --gts ../shared/data/dev/gts --out $O/metrics.csv
.venv/bin/python benchmarks/interactive.py --protocol clicks --model umedsam_interactive --checkpoint $C -q --json $O/clicks.json
.venv/bin/python benchmarks/interactive.py --protocol scribbles --model umedsam_interactive --checkpoint $C -q --json $O/scribbles.json
echo done
