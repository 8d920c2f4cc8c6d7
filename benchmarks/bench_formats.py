"""trials.csv against trials.parquet: size, time to encode and write, time to read back.

Usage::

    uv run python benchmarks/bench_formats.py --rows 1000000

Runs a small real grid (2 signs, 2x2 positions: 2,304 trials), tiles its typed rows to
``--rows`` with fresh trial ids and float32-derived probabilities (as a run writes them),
writes them as one trials.csv and as 65,536-row Parquet parts, reads both back with
:func:`leafattack.rundir.read_trials` and checks that the two DataFrames are identical.
Prints one JSON document; nothing is asserted beyond that identity.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import leafattack
from leafattack import schema
from leafattack.config import RunConfig
from leafattack.grid import GridSpec
from leafattack.rundir import (
    TRIALS_PARQUET,
    csv_bytes,
    parquet_bytes,
    read_trials,
    round_like_csv,
)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args()
    n = args.rows
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        res = leafattack.run(RunConfig(out=str(base / "src"), quiet=True, limit_signs=2,
                                       grid=GridSpec(positions=(2, 2)), trials_format="csv"))
        src = read_trials(res.run_dir)
        t = pd.concat([src] * -(-n // len(src)), ignore_index=True).iloc[:n].copy()
        rng = np.random.default_rng(0)
        t["trial_id"] = np.arange(n)
        for c in ("occluded_frac", "pred_conf", "true_conf"):
            t[c] = round_like_csv(rng.random(n).astype(np.float32).astype(np.float64))
        cols = schema.trial_columns(False)
        csv_dir, pq_dir = base / "csv", base / "pq"
        csv_dir.mkdir()
        (pq_dir / TRIALS_PARQUET).mkdir(parents=True)
        t0 = time.perf_counter()
        (csv_dir / "trials.csv").write_bytes(csv_bytes(t, header=True))
        csv_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, k in enumerate(range(0, n, 65_536)):
            part = pq_dir / TRIALS_PARQUET / f"part-{i:06d}.parquet"
            part.write_bytes(parquet_bytes(t.iloc[k : k + 65_536], cols))
        pq_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        a = read_trials(csv_dir)
        csv_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        b = read_trials(pq_dir)
        pq_read = time.perf_counter() - t0
        pd.testing.assert_frame_equal(a, b)
        csv_size = (csv_dir / "trials.csv").stat().st_size
        pq_size = sum(f.stat().st_size for f in (pq_dir / TRIALS_PARQUET).iterdir())
    print(json.dumps({
        "rows": n,
        "csv": {"mb": round(csv_size / 2**20, 1), "bytes_per_row": round(csv_size / n, 1),
                "write_s": round(csv_write, 1), "read_s": round(csv_read, 1)},
        "parquet": {"mb": round(pq_size / 2**20, 1), "bytes_per_row": round(pq_size / n, 1),
                    "write_s": round(pq_write, 1), "read_s": round(pq_read, 1)},
        "identical_frames": True,
    }, indent=2))


if __name__ == "__main__":
    main()
