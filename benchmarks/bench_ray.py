"""Ray executor: driver overhead per chunk, and trials/s with 1 and 2 workers vs local.

Usage::

    uv run --extra ray python benchmarks/bench_ray.py                  # small default grid
    uv run --extra ray python benchmarks/bench_ray.py --limit-signs 8 --chunk-batches 16

Everything runs on a local Ray instance started here (``--cpus`` CPUs, no dashboard, a
small object store, its session files in a temporary folder, a throw-away auth token
unless one is set) and shut down at the end. Measured, on the same prepared run:

* ``local``: the local executor's batches (:func:`leafattack.engine.evaluate.local_batches`), with
  torch's default threads and with one thread (what one Ray worker gets: ``num_cpus=1``).
* ``ray_1`` / ``ray_2``: :func:`leafattack.engine.distributed.ray_batches` with 1 and 2 actors.
  ``total`` counts from the call (actor start-up: process, imports, ``prepare``) to the
  last chunk; ``steady`` counts from the first chunk received to the last.
* ``driver_overhead``: the same dispatch loop over actors whose ``evaluate`` only returns
  ready-made bytes of a real chunk's size, i.e. what the driver and Ray cost per chunk,
  against the time one real chunk takes to evaluate.

Trials are consumed in memory (no CSV file is written). Nothing is asserted; it prints one
JSON document.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
import torch

import leafattack
from leafattack.config import RunConfig, config_from_mapping
from leafattack.engine.distributed import _stream, chunk_bounds, ray_batches
from leafattack.engine.evaluate import clean_predictions, local_batches
from leafattack.engine.preparation import Prepared, build_plan, prepare
from leafattack.grid import TrialPlan


class EchoWorker:
    """Stands in for ChunkWorker: evaluation costs nothing, results have a real size."""

    def __init__(self, bytes_per_trial: int) -> None:
        self.bytes_per_trial = bytes_per_trial

    def describe(self) -> dict[str, Any]:
        return {"node": "-", "host": "-", "pid": os.getpid(), "device": "none", "total_active": -1}

    def evaluate(self, k0: int, k1: int) -> bytes:
        return b"x" * (self.bytes_per_trial * (k1 - k0))


def consume(batches: Iterator[tuple[int, Any]], start: int) -> dict[str, float]:
    """Drain an executor; times from the call and from the first piece received."""
    t0 = time.perf_counter()
    first_t = first_k = None
    k1 = start
    size = 0
    for k1, data in batches:
        size += len(data) if isinstance(data, bytes) else 0  # local: columns, not CSV
        if first_t is None:
            first_t, first_k = time.perf_counter(), k1
    t1 = time.perf_counter()
    assert first_t is not None and first_k is not None
    total = (k1 - start) / (t1 - t0)
    steady = (k1 - first_k) / (t1 - first_t) if k1 > first_k else float("nan")
    return {
        "trials": k1 - start,
        "seconds": round(t1 - t0, 2),
        "first_chunk_s": round(first_t - t0, 2),
        "trials_per_s_total": round(total),
        "trials_per_s_steady": round(steady),
        "bytes_per_trial": round(size / (k1 - start)),
    }


def driver_overhead(
    chunk: int, bytes_per_trial: int, chunks: int, workers: int
) -> dict[str, float]:
    """Seconds the dispatch loop needs per chunk when evaluation is free."""
    cls = ray.remote(EchoWorker).options(num_cpus=1, max_restarts=4, max_task_retries=-1)
    actors: list[Any] = [cls.remote(bytes_per_trial) for _ in range(workers)]
    try:
        bounds = chunk_bounds(0, chunks * chunk, chunk, chunk)
        list(_stream(actors, bounds[: 2 * workers], -1))  # warm-up: actors up and imported
        t0 = time.perf_counter()
        n = 0
        for _ in _stream(actors, bounds, -1):
            n += 1
        dt = time.perf_counter() - t0
    finally:
        for a in actors:
            ray.kill(a)
    return {
        "chunks": n,
        "chunk_trials": chunk,
        "ms_per_chunk": round(1000 * dt / n, 3),
        "chunks_per_s": round(n / dt),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--limit-signs", type=int, default=4)
    p.add_argument("--positions", default="5x5")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--chunk-batches", type=int, default=8, help="batches per Ray chunk")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    p.add_argument("--echo-chunks", type=int, default=400)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # fixture models
    config = config_from_mapping(
        {
            "model": args.model,
            "limit_signs": args.limit_signs,
            "positions": args.positions,
            "batch_size": args.batch_size,
            "device": "cpu",
            "chunk_size": args.chunk_batches * args.batch_size,
        },
        base=RunConfig(quiet=True),
    )
    prep = prepare(config)
    plan = build_plan(prep, clean_predictions(prep)["correct"].to_numpy())
    chunk = config.chunk_size
    result: dict[str, Any] = {
        "setup": {
            "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads_local": torch.get_num_threads(),
            "leafattack": leafattack.__version__,
            "ray": ray.__version__,
            "model": args.model,
            "trials": plan.total_active,
            "batch_size": args.batch_size,
            "chunk_size": chunk,
        }
    }
    local = consume(local_batches(prep, plan, 0), 0)
    result["local"] = local
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result["local_1_thread"] = consume(local_batches(prep, plan, 0), 0)
    torch.set_num_threads(threads)
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # else Ray writes ~/.ray/auth_token
    temp = tempfile.TemporaryDirectory(prefix="la-bench-", dir="/tmp")
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        log_to_driver=False,
        _temp_dir=temp.name,
    )
    try:
        for workers in (1, 2):
            p_w: Prepared = dataclasses.replace(
                prep, config=dataclasses.replace(config, executor="ray", workers=workers)
            )
            tp: TrialPlan = plan
            result[f"ray_{workers}"] = consume(ray_batches(p_w, tp, 0), 0)
        over = driver_overhead(chunk, int(local["bytes_per_trial"]), args.echo_chunks, 2)
        eval_ms = 1000 * chunk / local["trials_per_s_steady"]
        over["evaluate_ms_per_chunk_local"] = round(eval_ms, 1)
        over["overhead_fraction"] = round(over["ms_per_chunk"] / eval_ms, 4)
        result["driver_overhead"] = over
    finally:
        ray.shutdown()
        temp.cleanup()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
