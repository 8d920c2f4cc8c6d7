"""End-to-end attack throughput against bare inference, and peak memory of large runs.

Usage::

    uv run python benchmarks/bench_attack.py                        # ratio, default grid
    uv run python benchmarks/bench_attack.py --grid 1e6             # ratio, 1,036,800 trials
    uv run python benchmarks/bench_attack.py --grid none --memory 1e6 1e7 \\
        --memory-null --batch-size 8192 --format parquet                     # peak RSS

The ratio compares, in one process, the trials/s of ``leafattack.run`` (decode,
composite, classify, judge, format and write the trials, accumulate the summaries) with
the forward-pass throughput of the same model on ready-made inputs of its input size and
the same batch size. Bare inference is measured in short slices before and after the run
(on a shared machine the load changes; the mean of the slices is used, and each slice is
printed), both one batch at a time with every torch thread and as the run's streams do
(several batches at once, threads shared); the faster of the two is the denominator. On
a shared machine the ratio of rates per CPU-second of this process (``ratio_cpu_time``)
is the steadier figure. The memory runs are child processes that report their own peak
RSS (``ru_maxrss`` of ``RUSAGE_SELF`` at the end of the run). It prints one JSON document;
nothing is asserted (speed is not a test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

import leafattack
from leafattack.api import run
from leafattack.config import RunConfig
from leafattack.engine.evaluate import resolve_streams, torch_threads
from leafattack.grid import GridSpec
from leafattack.models.classifier import resolve_device
from leafattack.models.loading import load_model

PER_POSITION = 16 * 9 * 4 * 8
"""Trials per lattice position of the default grid: 16 signs x 9 shipped leaves x 4 sizes
x 8 angles (the default grid has 5 x 5 positions: 115,200 trials)."""


def positions_for(trials: float) -> int:
    """Side of the position lattice that gives the default grid at least ``trials``."""
    return max(1, math.ceil(math.sqrt(trials / PER_POSITION)))


def bare_rate(
    model: str, device: str, n: int, batch_size: int, streams: int = 1
) -> tuple[float, float]:
    """Forward passes per second on ``n`` ready-made inputs of the model's input size: per
    second of wall time and per second of this process's CPU time. With ``streams`` > 1,
    that many threads classify batches at once, with torch's threads shared among them
    (as a run's streams do: :func:`~leafattack.engine.evaluate.resolve_streams`)."""
    clf = load_model(model, resolve_device(device))
    s = clf.preprocess.input_size
    x = torch.rand(batch_size, 3, s, s, generator=torch.Generator().manual_seed(0))
    x = x.to(clf.device)
    clf.predict_proba(x)  # warm-up
    if clf.device.type == "cuda":
        torch.cuda.synchronize()
    sizes = [min(batch_size, n - i) for i in range(0, n, batch_size)]

    def one(m: int) -> None:
        clf.predict_proba(x[:m]).cpu()

    streams, threads = resolve_streams(streams, clf.device)  # the run's share of threads
    with torch_threads(threads), ThreadPoolExecutor(streams) as pool:
        list(pool.map(one, sizes[:streams]))  # warm-up of every stream's thread
        t0, c0 = time.perf_counter(), time.process_time()
        list(pool.map(one, sizes))
        if clf.device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, n / cpu


def ratio(args: argparse.Namespace, grid: str) -> dict[str, object]:
    side = 5 if grid == "default" else positions_for(float(grid))
    slice_n = args.bare_trials
    dev = resolve_device(args.device)
    streams, _ = resolve_streams(args.streams, dev, builtin=load_model(args.model, dev).builtin)
    kinds = sorted({1, streams})  # bare inference one batch at a time, and as the run's streams

    def slices() -> dict[int, list[tuple[float, float]]]:
        return {
            s: [bare_rate(args.model, args.device, slice_n, args.batch_size, s) for _ in range(2)]
            for s in kinds
        }

    before = slices()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(model=args.model, out=str(Path(tmp) / "run"), quiet=True,
                        batch_size=args.batch_size, device=args.device, streams=args.streams,
                        grid=GridSpec(positions=(side, side)), trials_format=args.format)
        t0, c0 = time.perf_counter(), time.process_time()
        res = run(cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        e2e = res.trials_per_second
        n = res.n_trials
    after = slices()
    bare = {s: before[s] + after[s] for s in kinds}
    mean = {s: sum(w for w, _ in v) / len(v) for s, v in bare.items()}
    mean_cpu = {s: sum(c for _, c in v) / len(v) for s, v in bare.items()}
    # the denominator is the faster way to run bare inference (the stricter ratio)
    best = max(kinds, key=lambda s: mean[s])
    return {
        "grid": f"default signs and leaves, {side}x{side} positions",
        "trials": n,
        "streams": streams,
        "end_to_end_trials_per_s": round(e2e),
        "run_wall_s": round(wall, 1),
        "bare_inference_per_s": round(mean[best]),
        "bare_inference_streams": best,
        "bare_slices_per_s": {
            f"{s}_stream{'s' * (s > 1)}": [round(w) for w, _ in v] for s, v in bare.items()
        },
        "ratio": round(e2e / mean[best], 3),
        # per CPU-second of this process (all threads): robust to other processes' load;
        # the run's CPU time includes preparing the model, signs and leaves (conservative)
        "end_to_end_trials_per_cpu_s": round(n / cpu),
        "bare_inference_per_cpu_s": round(mean_cpu[best]),
        "ratio_cpu_time": round(n / cpu / mean_cpu[best], 3),
    }


def memory(args: argparse.Namespace, trials: float) -> dict[str, object]:
    """Run about ``trials`` trials in a child process; report its peak RSS."""
    side = positions_for(trials)
    with tempfile.TemporaryDirectory() as tmp:
        null = ""
        if args.memory_null:  # bookkeeping only: decode, then random probabilities
            null = (
                "import torch,leafattack.engine.evaluate as E\n"
                "def fake(self,k0,k1):\n"
                " d=self.plan.decode(k0,k1);g=torch.Generator().manual_seed(k0)\n"
                " p=torch.rand(k1-k0,self.prep.classifier.num_classes,generator=g).softmax(1)\n"
                " d['occluded_frac']=torch.rand(k1-k0,generator=g).double().numpy()\n"
                " return d,p\n"
                "E.BatchEvaluator._evaluate=fake\n"
            )
        code = null + (
            "import json,resource,leafattack;from leafattack.grid import GridSpec;"
            f"r=leafattack.run(leafattack.RunConfig(model={args.memory_model!r},"
            f"out={tmp!r}+'/big',grid=GridSpec(positions=({side},{side})),quiet=True,"
            f"batch_size={args.batch_size},device={args.device!r},streams={args.streams},"
            f"sign_size={args.memory_sign_size},trials_format={args.format!r}));"
            "print(json.dumps({'trials':r.n_trials,'seconds':r.seconds,"
            "'rss':resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(),
                                                             os.environ.get("PYTHONPATH", "")])}
        t0 = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=env)
        wall = time.perf_counter() - t0
        if child.returncode:
            raise SystemExit(f"memory run failed: {child.stderr.strip().splitlines()[-1:]}")
        info = json.loads(child.stdout.strip().splitlines()[-1])
        big = Path(tmp) / "big"
        files = [big / "trials.csv"] if (big / "trials.csv").exists() else list(
            (big / "trials.parquet").iterdir())
        size_mb = sum(f.stat().st_size for f in files) / 2**20
    rss = round(info["rss"] / 1024, 1)  # ru_maxrss is in KiB on Linux
    return {"trials": info["trials"], "positions": f"{side}x{side}",
            "model": args.memory_model, "null_compute": args.memory_null,
            "sign_size": args.memory_sign_size,
            "format": args.format, "peak_rss_mb": rss,
            "trials_per_s": round(info["trials"] / info["seconds"]), "wall_s": round(wall),
            "trials_table_mb": round(size_mb, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--streams", type=int, default=0,
                   help="the run's streams (default 0: automatic, as leafattack run)")
    p.add_argument("--format", default="csv", choices=["auto", "csv", "parquet"])
    p.add_argument("--grid", nargs="+", default=["default"],
                   help="'default' (115,200 trials), a trial count like 1e6, or 'none'")
    p.add_argument("--bare-trials", type=int, default=20480,
                   help="inputs per bare-inference slice (2 slices before, 2 after)")
    p.add_argument("--memory", nargs="*", default=[], help="trial counts of memory runs")
    p.add_argument("--memory-model", default="default")
    p.add_argument("--memory-sign-size", type=int, default=128)
    p.add_argument("--memory-null", action="store_true",
                   help="memory runs skip compositing and the model (random probabilities): "
                   "every bookkeeping step of a run, at a rate a shared 2-core VM can reach "
                   "10^7 trials with")
    args = p.parse_args()
    setup = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "leafattack": leafattack.__version__,
        "torch": torch.__version__,
        "model": args.model,
        "batch_size": args.batch_size,
        "streams_requested": args.streams,
        "format": args.format,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    result: dict[str, object] = {"setup": setup}
    for grid in args.grid:
        if grid != "none":
            result[f"speed_{grid}"] = ratio(args, grid)
            print(json.dumps(result[f"speed_{grid}"]), file=sys.stderr, flush=True)
    for trials in args.memory:
        result[f"memory_{trials}"] = memory(args, float(trials))
        print(json.dumps(result[f"memory_{trials}"]), file=sys.stderr, flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
