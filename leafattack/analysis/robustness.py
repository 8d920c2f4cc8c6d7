"""Summaries of survival (robustness.csv) and transfer (transfer.csv), at the level of signs.

The unit of evidence is the sign: a run of 16 signs re-evaluated under 100 views each has
16 signs' worth of evidence, not 1,600 views'. Every rate here is the mean over signs of
each sign's own rate, and its interval a seeded percentile bootstrap that resamples signs
(:func:`scipy.stats.bootstrap` on the per-sign rates).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

N_BOOT = 2000
"""Bootstrap resamples of every sign-level interval."""

SUMMARY_COLUMNS = ("factor", "level", "signs", "views", "rate", "ci_low", "ci_high", "n_boot")

VIEW_FACTORS: tuple[str, ...] = ("distance", "yaw", "pitch", "brightness", "blur")
"""View parameters the survival summary breaks down by (when they vary)."""


def sign_level(values: pd.Series, signs: pd.Series, seed: int) -> tuple[int, float, float, float]:
    """Mean over signs of each sign's mean of ``values``, and a 95 % bootstrap interval that
    resamples signs.

    Returns:
        ``(signs, rate, ci_low, ci_high)``; NaN bounds with fewer than two signs, and the
        rate itself when every sign has the same rate.
    """
    per_sign = values.astype(float).groupby(signs.to_numpy()).mean().to_numpy()
    k = len(per_sign)
    if k == 0:
        return 0, float("nan"), float("nan"), float("nan")
    rate = float(per_sign.mean())
    if k < 2:
        return k, rate, float("nan"), float("nan")
    if np.ptp(per_sign) == 0:
        return k, rate, rate, rate
    res = stats.bootstrap(
        (per_sign,), np.mean, n_resamples=N_BOOT, method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return k, rate, float(res.confidence_interval.low), float(res.confidence_interval.high)


def survival_summary(
    rows: pd.DataFrame, seed: int, ranges: Mapping[str, tuple[float, float]] | None = None
) -> pd.DataFrame:
    """Survival of the attacks: the share of views under which a scene still succeeds,
    counting only views under which its clean sign is still classified correctly.

    Rows: ``overall``; ``sign`` per sign id; and per view factor (distance, yaw, pitch,
    brightness, blur, when they vary) in four equal-width bins over the view spec's range
    (``ranges``, e.g. ``ViewSpec.ranges()``; the observed range without it), of the
    absolute value for yaw and pitch.
    """
    valid = rows[rows["clean_correct"].astype(bool)]
    out: list[dict[str, object]] = []

    def add(factor: str, level: str, part: pd.DataFrame) -> None:
        k, rate, lo, hi = sign_level(part["success"], part["sign_id"], seed)
        out.append({"factor": factor, "level": level, "signs": k, "views": len(part),
                    "rate": rate, "ci_low": lo, "ci_high": hi, "n_boot": N_BOOT})

    add("overall", "all", valid)
    for sid, part in valid.groupby("sign_id"):
        add("sign", str(sid), part)
    for col in VIEW_FACTORS:
        if col not in valid.columns or valid[col].nunique() < 2:
            continue
        sym = col in ("yaw", "pitch")
        values = valid[col].abs() if sym else valid[col]
        lo, hi = (ranges or {}).get(col, (float(values.min()), float(values.max())))
        if sym:
            lo, hi = 0.0, max(abs(lo), abs(hi))
        edges = np.linspace(lo, hi, 5)
        labels = [f"{a:.3g}-{b:.3g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        bins = pd.cut(values, edges.tolist(), labels=labels, include_lowest=True)
        for label, part in valid.groupby(bins, observed=True):
            add(f"|{col}|" if sym else col, str(label), part)
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


def transfer_summary(rows: pd.DataFrame, source: str, seed: int) -> pd.DataFrame:
    """Per target model: the share of the source's successful scenes that also fool it,
    over signs it classifies correctly when clean (sign-level rate and interval).

    Returns:
        Columns ``source, model, signs, scenes, rate, ci_low, ci_high, n_boot``.
    """
    out = []
    for model, part in rows.groupby("model", sort=False):
        valid = part[part["clean_correct"].astype(bool)]
        k, rate, lo, hi = sign_level(valid["success"], valid["sign_id"], seed)
        out.append({"source": source, "model": model, "signs": k, "scenes": len(valid),
                    "rate": rate, "ci_low": lo, "ci_high": hi, "n_boot": N_BOOT})
    return pd.DataFrame(out)
