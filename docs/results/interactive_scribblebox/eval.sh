#!/bin/bash
# dev scoring of the sixth interactive candidate's final checkpoint, by its rule (docs/interactive_log.md)
set -e
cd "$(dirname "$0")/../../.."
benchmarks/score_interactive.sh runs/interactive_scribblebox/last.pt runs/interactive_scribblebox_eval
echo done
