#!/usr/bin/env bash
# Does the task need vision and language? (issue 3) The same student trained full, blind and without
# language on a world's semantic view features, each scored on the full validation splits; resumable.
# The steps and settings are in config/recipes/modality_ablation.yaml; this wrapper maps its
# arguments onto the recipe's.
#   [DRY_RUN=1] bash scripts/modality_ablation.sh [WORLD=runs/main/world] [OUT=runs/modality] [STEPS=2000]
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/minivln run-recipe config/recipes/modality_ablation.yaml --set world="${1:-runs/main/world}" \
  --out "${2:-runs/modality}" --set train_steps="${3:-2000}" ${DRY_RUN:+--dry-run}
