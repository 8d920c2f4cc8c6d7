#!/usr/bin/env bash
# GPU figures in one short call on a lent GPU machine (no registry there: the machine has
# torch, torchvision, opencv, pandas and pytest, so the checkout runs with PYTHONPATH=.).
#
#   bash benchmarks/gpu.sh            # writes $OUT/gpu.json (or ./gpu.json) and prints it
#
# 1. the CUDA tests (tests that skip without a GPU);
# 2. end-to-end trials/s, bare inference/s and their ratio, in one process each, for the
#    shipped LISA-CNN at 32 px and an (untrained) ResNet-18 at 64 px, on the default grid.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
out="${OUT:-.}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python -m pytest -q -p no:cacheprovider tests/test_models.py -k cuda 2>&1 | tail -3 | tee -a "$out/gpu.txt"
python benchmarks/bench_attack.py --device cuda --batch-size 8192 > "$out/lisacnn.json"
python benchmarks/bench_attack.py --device cuda --batch-size 2048 \
    --model benchmarks.bench_models:resnet18_64 > "$out/resnet18_64.json"
python - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
res = {name: json.loads((out / f"{name}.json").read_text()) for name in ("lisacnn", "resnet18_64")}
(out / "gpu.json").write_text(json.dumps(res, indent=2))
print(json.dumps(res, indent=2))
PY
