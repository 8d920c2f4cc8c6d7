#!/usr/bin/env bash
# Defence study on the real GTSRB sample: three gtsrbcnn models (plain, --leaf-augment 0.5,
# --adversarial-leaves 4), 10 epochs, seed 0, with the same recorded training split; then,
# per model, clean accuracy on its held-out split (evaluate --split heldout) and a fresh
# one-leaf cmaes search (budget 1000, seed 0) of the model itself on the first 43 held-out
# photos. Finally the table of benchmarks/defence_table.py.
#
#   LEAFATTACK_REAL_DATA=../shared/data bash benchmarks/defence_gtsrb.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: defence_gtsrb.sh OUT_DIR}
D=${LEAFATTACK_REAL_DATA:?set LEAFATTACK_REAL_DATA to the shared data folder}/gtsrb
mkdir -p "$OUT"
for kind in plain augment adversarial; do
  extra=()
  [ "$kind" = augment ] && extra=(--leaf-augment 0.5)
  [ "$kind" = adversarial ] && extra=(--adversarial-leaves 4)
  M="$OUT/gtsrbcnn_$kind.pt"
  [ -f "$M" ] || uv run leafattack train --signs "gtsrb:$D" --arch gtsrbcnn --epochs 10 \
      --variants 2 --batch-size 64 --seed 0 "${extra[@]}" --out "$M" --quiet
  uv run leafattack evaluate --model "$M" --signs "gtsrb:$D" --split heldout \
      > "$OUT/eval_$kind.txt"
  uv run leafattack search --model "$M" --signs "gtsrb:$D" --split heldout --limit-signs 43 \
      --method cmaes --budget 1000 --seed 0 --out "$OUT/search_$kind" --quiet
done
uv run python benchmarks/defence_table.py "$OUT"
