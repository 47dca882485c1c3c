#!/usr/bin/env bash
# A stronger policy than the main job's, on a CPU (issue 4): imitation then DAgger fine-tuning on a
# 60-house world, each scored on the full validation splits; resumable. The steps, their settings and
# timings are in config/recipes/teacher.yaml; this wrapper maps its arguments onto the recipe's.
#   [THREADS=1] [DRY_RUN=1] bash scripts/teacher_recipe.sh [OUT=runs/recipe] [PRESET=minivln-small] [IMITATION_STEPS=1000] [DAGGER_STEPS=1000]
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/minivln run-recipe config/recipes/teacher.yaml --out "${1:-runs/recipe}" --set preset="${2:-minivln-small}" \
  --set imitation_steps="${3:-1000}" --set dagger_steps="${4:-1000}" --set threads="${THREADS:-1}" ${DRY_RUN:+--dry-run}
