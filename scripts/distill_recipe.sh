#!/usr/bin/env bash
# Issue 5's experiment on a CPU: a duet-small teacher from the teacher recipe (60-house world,
# imitation then DAgger), then the two-stage distillation ablation (the paper's Table III) of
# minivln-small students: pretraining (plain / stage-1 KD), DAgger fine-tuning (plain / stage-2 KD),
# JOBS runs at once. Every stage resumes where it stopped when the script is run again.
#   bash scripts/distill_recipe.sh [OUT=runs/distill] [JOBS=2] [STUDENT_FINETUNE_STEPS=500] [SEED=0]
# Over seeds: run it with SEED 0, 1, ..., then
#   minivln ablation-seeds OUT/ablation_seed0 OUT/ablation_seed1 ... --out OUT/seeds
# Measured in docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/distill}; JOBS=${2:-2}; FINETUNE=${3:-500}; SEED=${4:-0}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
bash scripts/teacher_recipe.sh "$OUT/teacher" duet-small 500 1000
.venv/bin/minivln ablation --world "$OUT/teacher/world" --teacher "$OUT/teacher/dagger/last" --jobs "$JOBS" \
  --out "$OUT/ablation_seed$SEED" --quiet --set threads=1 --set budget.pretrain_steps=1000 \
  --set budget.finetune_steps="$FINETUNE" --set budget.batch_size=16 --set budget.eval_every=250 \
  --set budget.eval_limit=0 --set budget.seed="$SEED" --set finetune.train_alg=dagger --set finetune.eval_limit=150
