#!/usr/bin/env bash
# Defences for LISA-CNN on the 16 built-in signs: the default model's training command, plus
# --leaf-augment 0.5 or --adversarial-leaves 4 (the latter is the shipped default-robust);
# accuracy on 300 fresh variants per class (evaluate); a one-leaf cmaes search of each
# model itself (budget 1000, seed 0) on fresh renders (--variant-seed 1) no training saw.
#
#   bash benchmarks/defence_lisa.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: defence_lisa.sh OUT_DIR}
mkdir -p "$OUT"
[ -d "$OUT/fresh1" ] || uv run leafattack signs render --variant-seed 1 --out "$OUT/fresh1"
cp leafattack/models/weights/lisacnn_default.pt "$OUT/lisacnn_plain.pt"
for kind in augment adversarial; do
  extra=(--leaf-augment 0.5)
  [ "$kind" = adversarial ] && extra=(--adversarial-leaves 4)
  [ -f "$OUT/lisacnn_$kind.pt" ] || uv run leafattack train --signs builtin --arch lisacnn \
      --epochs 30 --seed 0 "${extra[@]}" --out "$OUT/lisacnn_$kind.pt" --quiet
done
for kind in plain augment adversarial; do
  M="$OUT/lisacnn_$kind.pt"
  uv run leafattack evaluate --model "$M" --signs builtin --variants 300 > "$OUT/eval_$kind.txt"
  uv run leafattack search --model "$M" --signs "$OUT/fresh1" --split heldout \
      --method cmaes --budget 1000 --seed 0 --out "$OUT/search_$kind" --quiet
done
uv run python benchmarks/defence_table.py "$OUT"
