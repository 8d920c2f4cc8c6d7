#!/usr/bin/env bash
# GPU figures in one short call on a lent GPU machine (no registry there: the machine has
# torch, torchvision, opencv, pandas and pytest, so the checkout runs with PYTHONPATH=.).
#
#   bash benchmarks/gpu.sh            # writes $OUT/gpu.json (or ./gpu.json) and prints it
#
# 1. the CUDA tests (tests that skip without a GPU);
# 2. for the shipped LISA-CNN at 32 px and an (untrained) ResNet-18 at 64 px, on the default
#    grid (115,200 trials), in one process each: end-to-end trials/s (decode, composite,
#    classify, judge, write trials.csv on the background writer, streaming summaries),
#    bare inference/s of the same model on ready-made inputs, and their ratio;
# 3. a one-line table of the three figures per model (goal: LISA-CNN >= 200,000 trials/s).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
out="${OUT:-.}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
# leafattack's own imports beyond torch/opencv/pandas: say which are missing, up front
python - <<'PY' | tee -a "$out/gpu.txt"
import importlib.util
need = ["torchvision", "cv2", "pandas", "scipy", "matplotlib", "tqdm", "PIL", "tomli_w"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
print("missing python modules:", ", ".join(missing) if missing else "none")
PY
python -m pytest -q -p no:cacheprovider tests/test_models.py -k cuda 2>&1 | tail -3 | tee -a "$out/gpu.txt"
python benchmarks/bench_attack.py --device cuda --batch-size 8192 --bare-trials 262144 \
    > "$out/lisacnn.json"
python benchmarks/bench_attack.py --device cuda --batch-size 2048 --bare-trials 65536 \
    --model benchmarks.bench_models:resnet18_64 > "$out/resnet18_64.json"
python - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
res = {name: json.loads((out / f"{name}.json").read_text()) for name in ("lisacnn", "resnet18_64")}
(out / "gpu.json").write_text(json.dumps(res, indent=2))
print(json.dumps(res, indent=2))
print(f"{'model':<14}{'end-to-end/s':>14}{'bare/s':>12}{'ratio':>8}")
for name, r in res.items():
    s = r["speed_default"]
    print(f"{name:<14}{s['end_to_end_trials_per_s']:>14,}{s['bare_inference_per_s']:>12,}"
          f"{s['ratio']:>8.3f}")
PY
