"""Is it the leaf? The leaf against each neutral-occluder control, on identical placements.

Every control row of ``controls.csv`` pairs with the trial of ``trials.csv`` that has its
``trial_id``: same sign, same alpha mask, same placement; only the leaf's colour differs.
:func:`compare_controls` reports, per control and per level of each factor (species,
colour, size and number of leaves for grid runs; number of leaves and coverage for
multi-leaf scene runs):

* the leaf's and the control's success rates and the leaf's *excess* (difference), each
  with a 95 % cluster-bootstrap interval that resamples signs, and leaves where they vary
  (:mod:`leafattack.analysis.cluster`; the same draws for leaf, control and excess);
* the discordant pairs and McNemar's exact p-value on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leafattack import schema
from leafattack.analysis.cluster import (
    BootSpec,
    cluster_bootstrap,
    mcnemar_exact,
    percentile_interval,
)
from leafattack.analysis.summary import coverage_bins
from leafattack.engine.controls import read_controls
from leafattack.errors import LeafattackError
from leafattack.rundir import csv_bytes, read_trials, write_atomic

CONTROLS_SUMMARY_FILE = "controls_summary.csv"


def paired_table(trials: pd.DataFrame, controls: pd.DataFrame) -> pd.DataFrame:
    """Controls joined to their trials: one row per (trial, control) with ``leaf_success``,
    ``control_success``, ``sign_id``, the breakdown factors and ``cluster_leaf`` (the leaf
    id for grid runs, else empty).

    Raises:
        LeafattackError: a control row whose trial is not in ``trials``.
    """
    scenes = "n_leaves" in trials.columns
    keep = ["trial_id", "sign_id", "success", "occluded_frac"]
    keep += ["n_leaves"] if scenes else ["leaf_id", "species", "colour", "size"]
    t = trials[keep].rename(columns={"success": "leaf_success"})
    c = controls[["trial_id", "control", "success"]].rename(
        columns={"success": "control_success"}
    )
    merged = c.merge(t, on="trial_id", how="left", validate="many_to_one", sort=False)
    if merged["sign_id"].isna().any():
        raise LeafattackError(
            "controls.csv holds trial ids that trials.csv lacks (rerun leafattack controls)"
        )
    if scenes:
        merged["coverage"] = coverage_bins(merged["occluded_frac"])
        merged["cluster_leaf"] = ""
    else:
        merged["n_leaves"] = 1
        merged["cluster_leaf"] = merged["leaf_id"].astype(str)
    merged["leaf_success"] = merged["leaf_success"].astype(bool)
    merged["control_success"] = merged["control_success"].astype(bool)
    return merged


def _factors(paired: pd.DataFrame) -> tuple[str, ...]:
    if "coverage" in paired.columns:
        return ("n_leaves", "coverage")
    return ("species", "colour", "size", "n_leaves")


def _row(part: pd.DataFrame, boot: BootSpec, by_leaf: bool) -> dict[str, float | int | str]:
    leaf = part["leaf_success"].to_numpy(dtype=np.float64)
    ctrl = part["control_success"].to_numpy(dtype=np.float64)
    values = np.column_stack([leaf, ctrl, leaf - ctrl])
    leaves = part["cluster_leaf"].to_numpy() if by_leaf else None
    reps = cluster_bootstrap(
        values, part["sign_id"].to_numpy(), leaves, n_boot=boot.n_boot, seed=boot.seed
    )
    ci = [percentile_interval(reps[:, j], boot.level) for j in range(3)]
    b = int(((leaf == 1) & (ctrl == 0)).sum())
    c = int(((leaf == 0) & (ctrl == 1)).sum())
    return {
        "trials": len(part),
        "signs": int(part["sign_id"].nunique()),
        "leaf_rate": float(leaf.mean()),
        "leaf_ci_low": ci[0][0],
        "leaf_ci_high": ci[0][1],
        "control_rate": float(ctrl.mean()),
        "control_ci_low": ci[1][0],
        "control_ci_high": ci[1][1],
        "excess": float(leaf.mean() - ctrl.mean()),
        "excess_ci_low": ci[2][0],
        "excess_ci_high": ci[2][1],
        "leaf_only": b,
        "control_only": c,
        "mcnemar_p": mcnemar_exact(b, c),
        "resampled": "signs+leaves" if by_leaf else "signs",
        "n_boot": boot.n_boot,
        "boot_seed": boot.seed,
    }


def compare_controls(
    trials: pd.DataFrame, controls: pd.DataFrame, boot: BootSpec | None = None
) -> pd.DataFrame:
    """The leaf against each control (CONTROLS_SUMMARY_COLUMNS), overall then by factor.

    Leaves are resampled with the signs when the run has more than one leaf id (grid
    runs); multi-leaf scenes mix leaves within a trial, so only signs are resampled.
    """
    b = boot or BootSpec()
    paired = paired_table(trials, controls)
    rows: list[dict[str, float | int | str]] = []
    by_leaf = paired["cluster_leaf"].nunique() > 1
    for control in dict.fromkeys(paired["control"].astype(str)):
        sub = paired[paired["control"] == control]
        rows.append({"control": control, "factor": "overall", "level": "all",
                     **_row(sub, b, by_leaf)})
        for factor in _factors(paired):
            for level, part in sub.groupby(factor, sort=True):
                part_by_leaf = by_leaf and part["cluster_leaf"].nunique() > 1
                rows.append({"control": control, "factor": factor, "level": str(level),
                             **_row(part, b, part_by_leaf)})
    cols = schema.CONTROLS_SUMMARY_COLUMNS
    if not rows:
        return pd.DataFrame({k: pd.Series(dtype=v) for k, v in cols.items()})
    return pd.DataFrame(rows, columns=list(cols)).astype(dict(cols))


def write_controls_summary(
    run_dir: Path, boot: BootSpec | None = None, trials: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Compare ``RUN_DIR/controls.csv`` with ``trials.csv`` (or the given ``trials``, e.g.
    a search's chosen queries) into ``controls_summary.csv``."""
    if trials is None:
        trials = read_trials(run_dir, require=True)
    controls = read_controls(run_dir)
    table = compare_controls(trials, controls, boot)
    write_atomic(run_dir / CONTROLS_SUMMARY_FILE, csv_bytes(table, header=True))
    return table


def format_controls_table(table: pd.DataFrame) -> str:
    """The overall rows of a controls summary as fixed-width text (for the CLI)."""
    part = table[table["factor"] == "overall"]
    lines = [
        f"{'occluder':<10}{'success [95% CI, signs]':>30}{'leaf excess [95% CI]':>30}"
        f"{'McNemar p':>11}"
    ]
    if len(part):
        r0 = part.iloc[0].to_dict()
        lines.insert(
            0,
            f"leaf vs neutral occluders on the same placements ({int(r0['trials'])} trials, "
            f"{int(r0['signs'])} signs; intervals: cluster bootstrap over {r0['resampled']}, "
            f"{int(r0['n_boot'])} resamples)",
        )
        leaf = _pct3(float(r0["leaf_rate"]), float(r0["leaf_ci_low"]), float(r0["leaf_ci_high"]))
        lines.append(f"{'leaf':<10}{leaf:>30}")
    for rec in part.to_dict("records"):
        v = {str(k): float(x) for k, x in rec.items() if isinstance(x, int | float)}
        ctrl = _pct3(v["control_rate"], v["control_ci_low"], v["control_ci_high"])
        excess = _pct3(v["excess"], v["excess_ci_low"], v["excess_ci_high"], signed=True)
        lines.append(f"{rec['control']!s:<10}{ctrl:>30}{excess:>30}{v['mcnemar_p']:>11.2g}")
    return "\n".join(lines)


def _pct3(v: float, lo: float, hi: float, signed: bool = False) -> str:
    f = "+.1%" if signed else ".1%"
    return f"{format(v, f)} [{format(lo, f)}, {format(hi, f)}]"
