#!/bin/bash
# dev scoring of the fifth interactive run's final checkpoint, by its rule (docs/interactive.md)
cd "$(dirname "$0")/../../.."
C=runs/interactive_neighbour/last.pt
O=runs/interactive_neighbour_eval
.venv/bin/umedsam predict -q -i ../shared/data/dev/imgs -o $O/segs --model umedsam_interactive --checkpoint $C --no-resume
.venv/bin/umedsam evaluate -q --segs $O/segs --gts ../shared/data/dev/gts --out $O/metrics.csv
.venv/bin/python benchmarks/interactive.py --protocol clicks --model umedsam_interactive --checkpoint $C -q --json $O/clicks.json
.venv/bin/python benchmarks/interactive.py --protocol scribbles --model umedsam_interactive --checkpoint $C -q --json $O/scribbles.json
.venv/bin/python benchmarks/interactive.py --protocol clicks --box-format array --model umedsam_interactive --checkpoint $C -q --json $O/clicks_array.json
echo done
