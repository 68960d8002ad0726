#!/usr/bin/env bash
# Set up and run the pipeline end to end on a simulated data set (SQLite in ./demo_workdir).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lightcurver-dagster demo --workdir demo_workdir "$@"
