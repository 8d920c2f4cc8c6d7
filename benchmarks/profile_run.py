"""cProfile of one ``leafattack.run`` (the main thread): the top entries, cumulative and own.

Usage::

    uv run python benchmarks/profile_run.py                  # default grid, 115,200 trials
    uv run python benchmarks/profile_run.py --limit-signs 4  # a quarter of it

The writer thread's work (formatting, fsyncs, summary counters) is not on the main thread
and so not in the profile: that is the point of it. Prints text; nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import leafattack
from leafattack.config import RunConfig


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--limit-signs", type=int, default=None)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--save", help="also write the pstats file here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(out=str(Path(tmp) / "run"), quiet=True, limit_signs=args.limit_signs)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        res = leafattack.run(cfg)
        prof.disable()
        wall = time.perf_counter() - t0
    print(f"{res.n_trials} trials, {wall:.1f} s in run(), {res.trials_per_second:.0f} trials/s")
    if args.save:
        prof.dump_stats(args.save)
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats("leafattack", args.top)
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
