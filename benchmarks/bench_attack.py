"""End-to-end attack throughput against bare inference, and peak memory of a large run.

Usage::

    uv run python benchmarks/bench_attack.py                 # ratio on the default grid
    uv run python benchmarks/bench_attack.py --memory 1000000  # peak RSS of a 1M-trial run

The ratio compares, in one process, the trials/s of ``leafattack.run`` (decode, composite,
classify, judge, write CSV) with the forward-pass throughput of the same model on the same
number of ready-made inputs at the model's input size. It prints one table; nothing is
asserted (speed is not a test).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import leafattack
from leafattack.api import run
from leafattack.config import RunConfig
from leafattack.models.classifier import resolve_device
from leafattack.models.loading import load_model


def bare_inference(model: str, device: str, n: int, batch_size: int) -> float:
    """Forward passes per second on ``n`` ready-made inputs of the model's input size."""
    clf = load_model(model, resolve_device(device))
    s = clf.preprocess.input_size
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, s, s, generator=gen).to(clf.device)
    clf.predict_proba(x)  # warm-up
    if clf.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    done = 0
    while done < n:
        m = min(batch_size, n - done)
        clf.predict_proba(x[:m]).cpu()
        done += m
    if clf.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def ratio(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(model=args.model, out=str(Path(tmp) / "run"), quiet=True,
                        batch_size=args.batch_size, device=args.device)
        res = run(cfg)
        e2e = res.trials_per_second
        n = res.n_trials
    bare = bare_inference(args.model, args.device, n, args.batch_size)
    return {"trials": n, "end_to_end_trials_per_s": round(e2e), "bare_inference_per_s":
            round(bare), "ratio": round(e2e / bare, 3)}


def memory(args: argparse.Namespace) -> dict[str, object]:
    """Run a grid of about ``args.memory`` trials in a child process; report its peak RSS."""
    per_pos = 16 * 9 * 4 * 8  # default signs x shipped maple/oak/poplar leaves x sizes x angles
    side = max(1, math.ceil(math.sqrt(args.memory / per_pos)))
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            "import json,sys,leafattack;from leafattack.grid import GridSpec;"
            f"r=leafattack.run(leafattack.RunConfig(model={args.model!r},out={tmp!r}+'/big',"
            f"grid=GridSpec(positions=({side},{side})),quiet=True,batch_size={args.batch_size},"
            f"device={args.device!r}));"
            "print(json.dumps({'trials':r.n_trials,'seconds':r.seconds}))"
        )
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        wall = time.perf_counter() - t0
        info = json.loads(out.stdout.strip().splitlines()[-1])
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size_mb = (Path(tmp) / "big" / "trials.csv").stat().st_size / 2**20
    return {"trials": info["trials"], "positions": f"{side}x{side}", "peak_rss_mb": round(rss_mb),
            "trials_per_s": round(info["trials"] / info["seconds"]), "wall_s": round(wall),
            "trials_csv_mb": round(size_mb)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--memory", type=int, default=0, help="trials of the memory run (0 = skip)")
    args = p.parse_args()
    machine = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "leafattack": leafattack.__version__,
        "torch": torch.__version__,
    }
    result: dict[str, object] = {"setup": machine, "speed": ratio(args)}
    if args.memory:
        result["memory"] = memory(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
