#!/bin/bash
# dev scoring of the fifth interactive run's final checkpoint, by its rule (docs/interactive_log.md)
set -e
cd "$(dirname "$0")/../../.."
C=runs/interactive_neighbour/last.pt
O=runs/interactive_neighbour_eval
benchmarks/score_interactive.sh $C $O
.venv/bin/python benchmarks/interactive.py --protocol clicks --box-format array --model umedsam_interactive --checkpoint $C -q --json $O/clicks_array.json
echo done
