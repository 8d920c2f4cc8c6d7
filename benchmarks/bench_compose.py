"""The grid compositor alone: every window block sampled against only the reachable ones.

Usage::

    uv run python benchmarks/bench_compose.py            # default grid, 115,200 trials
    uv run python benchmarks/bench_compose.py --reps 7

Decodes the default run's batches once, then composites them (``composite_pooled``, as a
run does) in alternating passes: with :func:`~leafattack.compose.functional.reachable_blocks`
as shipped, and with it replaced by "every block" (what the compositor did before). The
passes alternate so that a shared machine's changing load falls on both; the medians are
printed, with the share of window blocks the leaves can reach. Prints JSON; nothing is
asserted (speed is not a test).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import leafattack.compose.functional as functional
from leafattack.config import RunConfig
from leafattack.engine.evaluate import BatchEvaluator, batch_bounds, placement_tensors
from leafattack.engine.preparation import build_plan, prepare


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--reps", type=int, default=5, help="passes of each kind")
    p.add_argument("--batch-size", type=int, default=512)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare(RunConfig(out=str(Path(tmp) / "run"), quiet=True))
    if prep.stack is None:
        raise SystemExit("the default run does not take the pooled compositor")
    plan = build_plan(prep, np.ones(len(prep.sign_ids), dtype=bool))
    ev = BatchEvaluator(prep, plan)
    batches = []
    for k0, k1 in batch_bounds(0, plan.total_active, args.batch_size):
        d = plan.decode(k0, k1)
        batches.append((placement_tensors(prep, d), ev.host_entry(d)))

    shipped = functional.reachable_blocks
    share = {"reached": 0, "window": 0}

    def counting(*a: object, **kw: object) -> torch.Tensor | None:
        out = shipped(*a, **kw)  # type: ignore[arg-type]
        if out is not None:
            share["reached"] += int(out.sum())
            share["window"] += out.numel()
        return out

    def every_block(*a: object, **kw: object) -> None:
        return None

    def one_pass(select: object) -> float:
        functional.reachable_blocks = select  # type: ignore[assignment]
        t0 = time.perf_counter()
        n = 0
        with torch.inference_mode():
            for (sign, entry, x, y, angle), host_entry in batches:
                functional.composite_pooled(
                    prep.stack, prep.bank, sign, entry, x, y, angle,  # type: ignore[arg-type]
                    host_entry=host_entry, host_extent=ev.host_extent,
                )
                n += len(sign)
        return 1e6 * (time.perf_counter() - t0) / n

    one_pass(counting)  # warm-up, and the share of blocks reached
    times: dict[str, list[float]] = {"every_block": [], "reachable_blocks": []}
    for _ in range(args.reps):
        times["every_block"].append(one_pass(every_block))
        times["reachable_blocks"].append(one_pass(shipped))
    functional.reachable_blocks = shipped
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "trials": plan.total_active,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "share_of_window_blocks_reached": round(share["reached"] / max(1, share["window"]), 3),
        "us_per_trial_median": {k: round(v, 1) for k, v in med.items()},
        "us_per_trial_passes": {k: [round(t, 1) for t in v] for k, v in times.items()},
        "speed_up": round(med["every_block"] / med["reachable_blocks"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
