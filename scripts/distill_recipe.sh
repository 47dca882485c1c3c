#!/usr/bin/env bash
# Issue 5's experiment on a CPU: the two-stage distillation ablation (the paper's Table III) on the
# 60-house world (48 training houses), every policy trained with the same recipe: pretraining (MLM,
# MRC, SAP; plain, or stage-1 KD of the pretrained duet-small teacher), then DAgger fine-tuning (plain,
# or stage-2 KD of the fine-tuned teacher at KDWeight 0.1, T=1). The teacher fine-tunes longer than
# the students (TEACHER_FINETUNE_STEPS): a teacher worth distilling has learned more than a student can
# alone. JOBS runs at once (the plain students train while the teacher does).
# The first seed trains the teacher; the other SEEDS train the four students again at their seed,
# distilling that same teacher, and `minivln ablation-seeds` summarises them (mean +- std, paired
# differences). Every stage resumes where it stopped when the script is run again.
#   bash scripts/distill_recipe.sh [OUT=runs/distill] [JOBS=2] [STUDENT_FINETUNE_STEPS=250] [TEACHER_FINETUNE_STEPS=400] [SEEDS="0 1"]
# About 2 h for the first seed and 0.8 h for each other one on 2 cores at the defaults.
# Measured in docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/distill}; JOBS=${2:-2}; FINETUNE=${3:-250}; TEACHER_FINETUNE=${4:-400}; SEEDS=(${5:-0 1})
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
[ -f "$OUT/world/world.json" ] || .venv/bin/minivln synth --out "$OUT/world" --houses 60
FIRST="$OUT/ablation_seed${SEEDS[0]}"
RUNS=()
for SEED in "${SEEDS[@]}"; do
  RUN="$OUT/ablation_seed$SEED"
  TEACHER=()
  [ "$RUN" = "$FIRST" ] || TEACHER=(--teacher "$FIRST/teacher/finetune/best" --teacher-pretrain "$FIRST/teacher/pretrain/policy")
  .venv/bin/minivln ablation --world "$OUT/world" --jobs "$JOBS" --out "$RUN" --quiet "${TEACHER[@]}" \
    --set threads=1 --set budget.pretrain_steps=500 --set budget.finetune_steps="$FINETUNE" \
    --set budget.teacher_finetune_steps="$TEACHER_FINETUNE" --set budget.batch_size=16 --set budget.eval_every=125 \
    --set budget.eval_limit=800 --set budget.seed="$SEED" --set finetune.train_alg=dagger \
    --set finetune.eval_limit=100 --set pretrain.optim.lr=1e-3 --set pretrain.optim.warmup_steps=50
  RUNS+=("$RUN")
done
[ "${#RUNS[@]}" -lt 2 ] || .venv/bin/minivln ablation-seeds "${RUNS[@]}" --out "$OUT/seeds"
