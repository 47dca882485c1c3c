#!/usr/bin/env bash
# A stronger policy than the main job's, on a CPU (issue 4): a 60-house world (48 training houses),
# imitation learning (teacher forcing), then DAgger from the imitation checkpoint, each scored on
# the full validation splits. Every stage resumes where it stopped when the script is run again.
#   [THREADS=1] bash scripts/teacher_recipe.sh [OUT=runs/recipe] [PRESET=minivln-small] [IMITATION_STEPS=1000] [DAGGER_STEPS=1000]
# The learning rate is constant after warm-up and batches are seeded by step, so a run continued to
# more steps (rerun with a larger number, same THREADS) passes through the checkpoints of the shorter one.
# Measured in docs/results.md (1 thread per run: imitation ~1.3 s/step, DAgger ~4 s/step for minivln-small).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/recipe}; PRESET=${2:-minivln-small}; IMITATION=${3:-1000}; DAGGER=${4:-1000}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
MINIVLN=.venv/bin/minivln
[ -f "$OUT/world/world.json" ] || $MINIVLN synth --out "$OUT/world" --houses 60
COMMON=(--world "$OUT/world" --quiet --set features=views --set batch_size=16 --set optim.lr=5e-4
        --set eval_limit=150 --set threads="${THREADS:-1}")
$MINIVLN finetune --out "$OUT/imitation" "${COMMON[@]}" --set preset="$PRESET" --set train_alg=imitation \
  --set loop.steps="$IMITATION" --set loop.eval_every=500
$MINIVLN finetune --out "$OUT/dagger" "${COMMON[@]}" --set init="$OUT/imitation/last" --set train_alg=dagger \
  --set loop.steps="$DAGGER" --set loop.eval_every=250
for stage in imitation dagger; do
  for split in val_seen val_unseen; do
    scores="$OUT/$stage/final/last_${split}_metrics.json"
    [ "$scores" -nt "$OUT/$stage/last/model.safetensors" ] && continue   # scored since the last checkpoint
    $MINIVLN evaluate --checkpoint "$OUT/$stage/last" --world "$OUT/world" --split "$split" --features views \
      --batch-size 16 --out "$OUT/$stage/final" > /dev/null
  done
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ["| stage | split | SR | SPL | nDTW | episodes |", "|---|---|---:|---:|---:|---:|"]
for stage in ("imitation", "dagger"):
    for split in ("val_seen", "val_unseen"):
        m = json.loads((out / stage / "final" / f"last_{split}_metrics.json").read_text())
        rows.append(f"| {stage} | {split} | {m['sr']:.1f} | {m['spl']:.1f} | {m['ndtw']:.1f} | {m['num_episodes']} |")
table = "\n".join(rows)
(out / "recipe.md").write_text(table + "\n")
print(table)
PY
