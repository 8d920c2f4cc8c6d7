"""Adaptive search against the grid: queries to match the grid, signs fooled, queries/s.

Usage::

    uv run python benchmarks/bench_search.py                      # default signs and model
    uv run python benchmarks/bench_search.py --methods random --k-table 1,2,3
    uv run python benchmarks/bench_search.py --model ckpt.pt --signs gtsrb:PATH --limit-signs 43

In one process it runs the default grid (``leafattack.run``; 7,200 trials per sign on the
built-in signs) and then ``leafattack.search`` with each method at ``--budget`` queries per
sign (stop on success). Per method it reports:

* ``queries_to_match_grid``: the queries per sign at which the method has fooled as many
  signs as the whole grid did (the G-th smallest first-success query, G = the grid's
  signs fooled), or ``null`` when it never gets there within the budget;
* signs fooled at budgets 100 and 1,000 (from ``curve.csv``);
* queries/s (evaluated queries over the seconds of the evaluated rounds) and its ratio to
  the grid's trials/s measured in the same process: that of the full grid, and that of a
  short grid run (4 signs) made just before the search, which is the fair one when other
  jobs share the machine and the load drifts.

``--k-table 1,2,3`` adds robust accuracy against budget for those leaves per scene
(``--k-method``, default the first method). Prints JSON and a Markdown table; nothing is
asserted (speed is not a test).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from leafattack.api import run, search
from leafattack.config import RunConfig, SearchConfig


def grid_reference(base: RunConfig, tmp: Path) -> dict[str, float]:
    res = run(RunConfig(**{**_kw(base), "out": str(tmp / "grid")}))
    fooled = res.trials.groupby("sign_id")["success"].any()
    return {
        "trials_per_sign": res.n_trials / max(1, len(fooled)),
        "signs_attacked": int(len(fooled)),
        "signs_fooled": int(fooled.sum()),
        "trials_per_s": res.trials_per_second,
    }


def _kw(cfg: RunConfig) -> dict[str, object]:
    return {f: getattr(cfg, f) for f in cfg.__slots__}  # type: ignore[attr-defined]


def paired_grid_speed(base: RunConfig, tmp: Path, name: str) -> float:
    """Trials/s of a short grid run (4 signs) made just before a search: on a shared machine
    the load drifts, so each search is compared with a grid measured next to it."""
    res = run(RunConfig(**{**_kw(base), "limit_signs": 4, "out": str(tmp / f"pair-{name}")}))
    return res.trials_per_second


def method_figures(
    base: RunConfig, method: str, budget: int, k: int, grid: dict[str, float], tmp: Path
) -> dict[str, object]:
    run_cfg = RunConfig(**{**_kw(base), "out": str(tmp / f"{method}-k{k}")})
    pair = paired_grid_speed(base, tmp, f"{method}-k{k}")
    res = search(SearchConfig(run=run_cfg, method=method, budget=budget, leaves_per_scene=k))
    first = np.sort(res.best.loc[res.best["success"], "first_success"].to_numpy())
    g = int(grid["signs_fooled"])
    curve = res.curve.set_index("budget")
    return {
        "method": method,
        "leaves_per_scene": k,
        "budget": budget,
        "signs_fooled": int(len(first)),
        "queries_to_match_grid": int(first[g - 1]) if g and len(first) >= g else None,
        "fooled_at_100": int(curve.loc[100, "signs_fooled"]) if 100 in curve.index else None,
        "fooled_at_1000": int(curve.loc[1000, "signs_fooled"]) if 1000 in curve.index else None,
        "queries_per_s": round(res.queries_per_second, 1),
        "speed_vs_grid": round(res.queries_per_second / grid["trials_per_s"], 3),
        "paired_grid_trials_per_s": round(pair, 1),
        "speed_vs_paired_grid": round(res.queries_per_second / pair, 3),
        "curve": res.curve[["budget", "signs_fooled", "robust_accuracy"]].to_dict("list"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--signs", default="builtin")
    p.add_argument("--limit-signs", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--methods", default="random,evolution,greedy,grid")
    p.add_argument("--k-table", default="", help="leaves per scene for the robust-accuracy table")
    p.add_argument("--k-method", help="method of the K table (default: the first of --methods)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = RunConfig(model=args.model, signs=args.signs, limit_signs=args.limit_signs,
                     device=args.device, batch_size=args.batch_size, quiet=True)
    out: dict[str, object] = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{'cuda' if args.device.startswith('cuda') else 'cpu'}",
    }
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        grid = grid_reference(base, tmp)
        out["grid"] = grid
        rows = [method_figures(base, m, args.budget, 1, grid, tmp)
                for m in args.methods.split(",") if m]
        out["methods"] = rows
        ks = [int(k) for k in args.k_table.split(",") if k]
        first = args.k_method or args.methods.split(",")[0]
        out["k_table"] = [method_figures(base, first, args.budget, k, grid, tmp) for k in ks]
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print()
    print(f"grid: {grid['signs_fooled']}/{grid['signs_attacked']} signs fooled with "
          f"{grid['trials_per_sign']:,.0f} trials per sign, {grid['trials_per_s']:,.0f} trials/s")
    print("| method | queries/sign to match the grid | fooled @100 | fooled @1000 | queries/s "
          "| grid trials/s just before | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['queries_to_match_grid'] or 'not reached'} | "
              f"{r['fooled_at_100']} | {r['fooled_at_1000']} | {r['queries_per_s']:,.0f} | "
              f"{r['paired_grid_trials_per_s']:,.0f} | {r['speed_vs_paired_grid']} |")
    for r in out["k_table"]:  # type: ignore[attr-defined]
        c = r["curve"]
        cells = ", ".join(f"{b}: {a:.1%}" for b, a in zip(c["budget"], c["robust_accuracy"],
                                                          strict=True))
        print(f"K={r['leaves_per_scene']} ({r['method']}): {cells}")


if __name__ == "__main__":
    main()
