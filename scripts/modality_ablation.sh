#!/usr/bin/env bash
# Does the task need vision and language? (issue 3) Trains the same student recipe three times on a
# world's semantic view features -- full, blind (view features zeroed), no language (empty
# instructions) -- and scores each final checkpoint on the full validation splits with the same
# ablation. Reruns resume (each run continues from its last checkpoint).
#   bash scripts/modality_ablation.sh [WORLD=runs/main/world] [OUT=runs/modality] [STEPS=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
WORLD=${1:-runs/main/world}; OUT=${2:-runs/modality}; STEPS=${3:-2000}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
MINIVLN=.venv/bin/minivln
for ablation in none blind no_language; do
  $MINIVLN finetune --world "$WORLD" --out "$OUT/$ablation" --quiet --set features=views \
    --set preset=minivln-small --set train_alg=imitation --set batch_size=16 --set optim.lr=5e-4 \
    --set loop.steps="$STEPS" --set loop.eval_every=500 --set eval_limit=150 --set ablation="$ablation" \
    --set threads=1
  for split in val_seen val_unseen; do
    $MINIVLN evaluate --checkpoint "$OUT/$ablation/last" --world "$WORLD" --split "$split" --features views \
      --ablation "$ablation" --batch-size 16 --out "$OUT/$ablation/final" > /dev/null
  done
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ["| policy | split | SR | SPL | nDTW |", "|---|---|---:|---:|---:|"]
for ablation in ("none", "blind", "no_language"):
    for split in ("val_seen", "val_unseen"):
        m = json.loads((out / ablation / "final" / f"last_{split}_metrics.json").read_text())
        name = {"none": "full", "blind": "blind", "no_language": "no language"}[ablation]
        rows.append(f"| {name} | {split} | {m['sr']:.1f} | {m['spl']:.1f} | {m['ndtw']:.1f} |")
table = "\n".join(rows)
(out / "modality_ablation.md").write_text(table + "\n")
print(table)
PY
