#!/usr/bin/env bash
# The main job on the embedded default world: set-up, then `minivln pipeline`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/minivln pipeline --out "${MINIVLN_RUN_DIR:-runs/main}" "$@"
