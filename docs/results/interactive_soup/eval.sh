#!/bin/bash
# dev scoring of the weight average of the shipped interactive weights and the fifth run (docs/interactive_log.md)
set -e
cd "$(dirname "$0")/../../.."
.venv/bin/python benchmarks/merge.py --base umedsam_interactive --tuned runs/interactive_neighbour/last.pt \
  --parts prompt_encoder mask_decoder --alpha 0.5 --write-only --work runs/interactive_soup
benchmarks/score_interactive.sh runs/interactive_soup/merges/merge_a050_full.pt runs/interactive_soup
echo done
