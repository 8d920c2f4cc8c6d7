"""Summaries of trials: success rates with intervals by factor, and the strongest trial per sign.

:func:`rate_table` is the one implementation of "success rate with a 95% interval by
factor"; the summary, the report and the signs-fooled figure all call it. Given the trials'
signs (and leaves), its ``ci_low``/``ci_high`` come from a cluster bootstrap that resamples
signs (and leaves; :mod:`leafattack.analysis.cluster`): the trials of one sign are not
independent, so the interval says how far a rate carries to other signs. The trial-level
Wilson interval stays beside it, in ``wilson_trial_low``/``wilson_trial_high``. Without
signs (rows that are signs themselves, as in ``signs_fooled``) both are Wilson intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leafattack import schema
from leafattack.analysis.cluster import BootSpec, cluster_bootstrap, percentile_interval
from leafattack.analysis.stats import wilson_interval

RATE_COLUMNS: tuple[str, ...] = (
    "level",
    "trials",
    "successes",
    "rate",
    "ci_low",
    "ci_high",
    "signs",
    "wilson_trial_low",
    "wilson_trial_high",
    "resampled",
    "n_boot",
    "boot_seed",
)
"""Columns of :func:`rate_table`."""


def rate_table(
    success: pd.Series,
    keys: pd.Series,
    signs: pd.Series | None = None,
    leaves: pd.Series | None = None,
    boot: BootSpec | None = None,
) -> pd.DataFrame:
    """Success counts, rates and 95% intervals by the values of ``keys``.

    Args:
        success: bool (N,) outcome per row.
        keys: (N,) factor level per row, on the same index.
        signs: (N,) sign of each row: ``ci_low``/``ci_high`` then come from a cluster
            bootstrap over signs (NaN for a level with fewer than two signs, which says
            nothing about other signs), and ``signs`` counts them. None: rows are
            independent units and the interval is Wilson's.
        leaves: (N,) leaf of each row, resampled with the signs where a level has several.
        boot: replicates and seed of the bootstrap (default 1000, seed 0).

    Returns:
        One row per level, sorted by level, with :data:`RATE_COLUMNS`; ``level`` keeps
        the values' own type. ``resampled`` is ``signs``, ``signs+leaves`` or
        ``none (Wilson)``.
    """
    b = boot or BootSpec()
    ok = success.astype(bool)
    g = ok.groupby(keys, sort=True)
    size = g.size()
    n = size.to_numpy(dtype=np.int64)
    k = g.sum().to_numpy(dtype=np.int64)
    lo, hi = wilson_interval(k, n)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    n_signs = n.copy()
    ci_lo, ci_hi = lo.copy(), hi.copy()
    resampled = np.full(len(n), "none (Wilson)", dtype=object)
    if signs is not None:
        y = ok.to_numpy(dtype=np.float64)
        sign_v = signs.to_numpy()
        leaf_v = leaves.to_numpy() if leaves is not None else None
        for i, idx in enumerate(g.indices.values()):
            sub_signs = sign_v[idx]
            n_signs[i] = len(np.unique(sub_signs))
            sub_leaves = leaf_v[idx] if leaf_v is not None else None
            by_leaf = sub_leaves is not None and len(np.unique(sub_leaves)) > 1
            resampled[i] = "signs+leaves" if by_leaf else "signs"
            if n_signs[i] < 2:
                ci_lo[i] = ci_hi[i] = np.nan
                continue
            reps = cluster_bootstrap(
                y[idx][:, None], sub_signs, sub_leaves if by_leaf else None,
                n_boot=b.n_boot, seed=b.seed,
            )
            ci_lo[i], ci_hi[i] = percentile_interval(reps[:, 0], b.level)
    return rate_frame(
        size.index.to_numpy(), n, k, (ci_lo, ci_hi), n_signs, (lo, hi), resampled,
        b.n_boot if signs is not None else 0, b.seed,
    )


def rate_frame(
    levels: np.ndarray,
    n: np.ndarray,
    k: np.ndarray,
    ci: tuple[np.ndarray, np.ndarray],
    n_signs: np.ndarray,
    wilson: tuple[np.ndarray, np.ndarray],
    resampled: np.ndarray,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """The columns of :func:`rate_table`, one row per level: trials ``n`` and successes
    ``k`` (int64), the sign-level interval ``ci``, the trial-level Wilson interval
    ``wilson`` (float64 pairs), signs per level and what was resampled."""
    return pd.DataFrame(
        {
            "level": levels,
            "trials": n,
            "successes": k,
            "rate": k / np.maximum(n, 1),
            "ci_low": ci[0],
            "ci_high": ci[1],
            "signs": n_signs,
            "wilson_trial_low": wilson[0],
            "wilson_trial_high": wilson[1],
            "resampled": resampled,
            "n_boot": np.full(len(n), n_boot, dtype=np.int64),
            "boot_seed": np.full(len(n), seed, dtype=np.int64),
        }
    )


def rate_by(trials: pd.DataFrame, column: str, boot: BootSpec | None = None) -> pd.DataFrame:
    """:func:`rate_table` of ``trials["success"]`` by ``trials[column]``, with sign-level
    intervals (signs from ``sign_id``; leaves from ``leaf_id`` when the trials have them;
    Wilson's interval for rows without ``sign_id``)."""
    signs = trials["sign_id"] if "sign_id" in trials.columns else None
    leaves = trials["leaf_id"] if "leaf_id" in trials.columns else None
    return rate_table(trials["success"], trials[column], signs, leaves, boot)


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


def summarise(trials: pd.DataFrame, boot: BootSpec | None = None) -> pd.DataFrame:
    """Success rates with 95% intervals by each factor (SUMMARY_COLUMNS): the grid's
    factors (SUMMARY_FACTORS), or for random scenes SCENE_SUMMARY_FACTORS.

    Trial rows get sign-level intervals (a cluster bootstrap over signs, and leaves in grid
    runs, seeded by ``boot``); the ``signs_fooled`` rows count signs and keep Wilson's."""
    t = trials.rename(columns={"true_name": "sign_class"})
    parts = []
    signs = t["sign_id"] if "sign_id" in t.columns else None
    leaves = t["leaf_id"] if "leaf_id" in t.columns else None

    def add(factor: str, success: pd.Series, keys: pd.Series, per_trial: bool = True) -> None:
        if per_trial:
            table = rate_table(success, keys, signs, leaves, boot)
        else:
            table = rate_table(success, keys, boot=boot)
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
        add("signs_fooled", per_sign["success"], pd.Series("all", index=per_sign.index), False)
        add("signs_fooled by sign_class", per_sign["success"], per_sign["sign_class"], False)
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
