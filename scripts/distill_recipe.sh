#!/usr/bin/env bash
# Issue 5's experiment on a CPU: the two-stage distillation ablation (the paper's Table III) on a
# 60-house world at several student seeds sharing the first seed's teacher, summarised by
# `minivln ablation-seeds`; resumable. The steps, their settings and timings are in
# config/recipes/distill.yaml; this wrapper maps its arguments onto the recipe's.
#   [DRY_RUN=1] bash scripts/distill_recipe.sh [OUT=runs/distill] [JOBS=2] [STUDENT_FINETUNE_STEPS=250] [TEACHER_FINETUNE_STEPS=400] [SEEDS="0 1"]
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/minivln run-recipe config/recipes/distill.yaml --out "${1:-runs/distill}" --set jobs="${2:-2}" \
  --set student_finetune_steps="${3:-250}" --set teacher_finetune_steps="${4:-400}" --set seeds="${5:-0 1}" ${DRY_RUN:+--dry-run}
