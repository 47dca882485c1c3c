#!/usr/bin/env bash
# The test suite: set-up, then pytest. DDS traffic stays on loopback; no hub access.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export AMENT_PREFIX_PATH="$PWD/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
