"""Summaries of trials: success rates with intervals by factor, and the strongest trial per sign.

:func:`rate_table` is the one implementation of "success rate with a 95% Wilson interval
by factor"; the summary, the report and the signs-fooled figure all call it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leafattack import schema
from leafattack.analysis.stats import wilson_interval

RATE_COLUMNS: tuple[str, ...] = ("level", "trials", "successes", "rate", "ci_low", "ci_high")
"""Columns of :func:`rate_table`."""


def rate_table(success: pd.Series, keys: pd.Series) -> pd.DataFrame:
    """Success counts, rates and 95% Wilson intervals by the values of ``keys``.

    Args:
        success: bool (N,) outcome per row.
        keys: (N,) factor level per row, on the same index.

    Returns:
        One row per level, sorted by level, with :data:`RATE_COLUMNS`; ``level`` keeps
        the values' own type.
    """
    g = success.astype(bool).groupby(keys, sort=True)
    size = g.size()
    n = size.to_numpy(dtype=np.int64)
    k = g.sum().to_numpy(dtype=np.int64)
    lo, hi = wilson_interval(k, n)
    return pd.DataFrame(
        {
            "level": size.index.to_numpy(),
            "trials": n,
            "successes": k,
            "rate": k / np.maximum(n, 1),
            "ci_low": np.asarray(lo, dtype=np.float64),
            "ci_high": np.asarray(hi, dtype=np.float64),
        }
    )


def rate_by(trials: pd.DataFrame, column: str) -> pd.DataFrame:
    """:func:`rate_table` of ``trials["success"]`` by ``trials[column]``."""
    return rate_table(trials["success"], trials[column])


def signs_fooled(trials: pd.DataFrame) -> pd.DataFrame:
    """Per sign, as attack papers report it: fooled when any of its trials succeeds.

    Returns:
        One row per ``sign_id`` (sorted) with ``success`` (bool) and ``sign_class``.
    """
    return trials.groupby("sign_id", sort=True).agg(
        success=("success", "any"), sign_class=("true_name", "first")
    )


def coverage_bins(occluded: pd.Series) -> pd.Series:
    """Coverage bin labels (``"0.1-0.2"``) of ``occluded_frac`` values, by
    :data:`~leafattack.schema.COVERAGE_BINS` (left-closed; 1 falls in the last bin)."""
    edges = np.asarray(schema.COVERAGE_BINS)
    idx = np.clip(np.searchsorted(edges, occluded.to_numpy(), side="right") - 1, 0, len(edges) - 2)
    labels = np.array([f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)])
    return pd.Series(labels[idx], index=occluded.index)


def summarise(trials: pd.DataFrame) -> pd.DataFrame:
    """Success rates with 95% Wilson intervals by each factor (SUMMARY_COLUMNS): the grid's
    factors (SUMMARY_FACTORS), or for random scenes SCENE_SUMMARY_FACTORS."""
    t = trials.rename(columns={"true_name": "sign_class"})
    parts = []

    def add(factor: str, success: pd.Series, keys: pd.Series) -> None:
        table = rate_table(success, keys)
        table["level"] = [str(v) for v in table["level"]]
        parts.append(table.assign(factor=factor))

    if len(t) and "n_leaves" in t.columns:  # random multi-leaf scenes
        ok = t["success"]
        add("overall", ok, pd.Series("all", index=t.index))
        add("sign_class", ok, t["sign_class"])
        add("n_leaves", ok, t["n_leaves"])
        add("coverage", ok, coverage_bins(t["occluded_frac"]))
    elif len(t):
        ok = t["success"]
        add("overall", ok, pd.Series("all", index=t.index))
        for f in schema.SUMMARY_FACTORS:
            add(f, ok, t[f])
        pair = t["sign_class"].astype(str) + " | " + t["species"].astype(str)
        add("sign_class x species", ok, pair)
    if len(t):
        per_sign = signs_fooled(trials)
        add("signs_fooled", per_sign["success"], pd.Series("all", index=per_sign.index))
        add("signs_fooled by sign_class", per_sign["success"], per_sign["sign_class"])
    if not parts:
        return pd.DataFrame({k: pd.Series(dtype=v) for k, v in schema.SUMMARY_COLUMNS.items()})
    out = pd.concat(parts, ignore_index=True)
    return out[list(schema.SUMMARY_COLUMNS)]


STRONGEST_RULES: dict[str, str] = {
    "lowest_true_conf": "lowest true-class probability",
    "highest_target_conf_success": "successful trial with the highest target-class probability",
    "highest_target_conf": "highest target-class probability (no trial succeeded)",
}
"""The rules :func:`strongest` picks by, as written in ``best.csv``'s ``rule`` column."""


def strongest(trials: pd.DataFrame, by: str = "sign_id") -> pd.DataFrame:
    """The strongest trial per value of ``by`` (per sign by default), with the ``rule``
    (a :data:`STRONGEST_RULES` key) that picked it.

    Untargeted runs: the lowest true-class probability. Targeted runs (their trials carry
    a ``target_conf`` column): the successful trial with the highest target-class
    probability, or the highest target-class probability when none succeeded. Ties go to
    the lowest ``trial_id``.
    """
    if trials.empty:
        return trials.assign(rule=pd.Series(dtype="string"))
    if schema.TARGET_CONF not in trials.columns:
        order = trials.sort_values([by, "true_conf", "trial_id"], kind="mergesort")
        best = order.drop_duplicates(by, keep="first").reset_index(drop=True)
        return best.assign(rule="lowest_true_conf")
    t = trials.assign(_neg=-trials[schema.TARGET_CONF], _fail=~trials["success"].astype(bool))
    order = t.sort_values([by, "_fail", "_neg", "trial_id"], kind="mergesort")
    best = order.drop_duplicates(by, keep="first").reset_index(drop=True)
    rule = np.where(best["_fail"], "highest_target_conf", "highest_target_conf_success")
    return best.drop(columns=["_neg", "_fail"]).assign(rule=rule)
