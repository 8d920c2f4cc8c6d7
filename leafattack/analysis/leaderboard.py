"""The leaderboard's figures: a benchmarked model's per-sign outcomes as rates with intervals
at the level of signs.

Robust accuracy at budget b counts a sign as robust when it is classified correctly clean and
the search did not fool it within its first b queries; the rate is over *all* signs (signs
wrong when clean count as not robust), as RobustBench reports it. A search that stops at
its first success logs, per sign, the query of that success (``first_success`` in its
``best.csv``), so one search at the full budget gives the robust accuracy at every smaller
budget without another query.

Example:
    >>> ok = robust_by_sign(clean, best, [10, 100, 1000])   # bool (S, 3)
    >>> rate, low, high = sign_rate(ok[:, 0], clean["sign_id"].to_numpy())
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from leafattack import schema
from leafattack.analysis.cluster import BootSpec, sign_level_rate


def sign_rate(
    values: np.ndarray, signs: np.ndarray, boot: BootSpec | None = None
) -> tuple[float, float, float]:
    """A rate over signs and its 95% sign-level bootstrap interval.

    Shape:
        values: bool or 0/1 (N,); signs: (N,) the sign of each value (here one per sign).

    Returns:
        ``(rate, low, high)``; NaN for no values, and NaN bounds for a single sign.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    rate, low, high = sign_level_rate(v, np.asarray(signs), boot=boot)
    if len(np.unique(np.asarray(signs))) < 2:
        return rate, math.nan, math.nan
    return rate, low, high


def robust_by_sign(clean: pd.DataFrame, best: pd.DataFrame, budgets: Sequence[int]) -> np.ndarray:
    """Per sign of ``clean`` and per budget: correct when clean and not fooled within it.

    Args:
        clean: a search's ``clean.csv`` (``sign_id``, ``correct``), one row per sign.
        best: its ``best.csv`` (``sign_id``, ``first_success``: the 1-based query of the
            first success, 0 when none), one row per attacked sign.
        budgets: B budgets (queries per sign), each >= 1.

    Returns:
        bool (S, B), rows in the order of ``clean``.
    """
    first = dict(zip(best["sign_id"].astype(int), best["first_success"].astype(int), strict=True))
    q = np.array([first.get(int(s), 0) for s in clean["sign_id"]], dtype=np.int64)
    correct = clean["correct"].astype(bool).to_numpy()
    b = np.asarray(list(budgets), dtype=np.int64)
    fooled = (q[:, None] > 0) & (q[:, None] <= b[None, :])
    out: np.ndarray = correct[:, None] & ~fooled
    return out


def robust_curve(
    clean: pd.DataFrame,
    best: pd.DataFrame,
    budgets: Sequence[int],
    boot: BootSpec | None = None,
) -> pd.DataFrame:
    """Robust accuracy with its sign-level interval at each budget.

    Returns:
        Columns ``budget, signs, robust_accuracy, robust_accuracy_ci_low,
        robust_accuracy_ci_high``, one row per budget.
    """
    ok = robust_by_sign(clean, best, budgets)
    signs = clean["sign_id"].to_numpy()
    rows = []
    for j, b in enumerate(budgets):
        rate, low, high = sign_rate(ok[:, j], signs, boot)
        rows.append((int(b), len(signs), rate, low, high))
    return pd.DataFrame(
        rows,
        columns=[
            "budget",
            "signs",
            "robust_accuracy",
            "robust_accuracy_ci_low",
            "robust_accuracy_ci_high",
        ],
    )


def leaderboard_frame(rows: Sequence[dict[str, object]]) -> pd.DataFrame:
    """Rows as a DataFrame with :data:`~leafattack.schema.LEADERBOARD_COLUMNS`, in order."""
    cols = schema.LEADERBOARD_COLUMNS
    missing = [c for row in rows for c in cols if c not in row]
    if missing:
        raise ValueError(f"leaderboard row lacks {', '.join(sorted(set(missing)))}")
    df = pd.DataFrame([{c: row[c] for c in cols} for row in rows], columns=list(cols))
    return df.astype(dict(cols))


def curve_frame(curves: pd.DataFrame) -> pd.DataFrame:
    """Curve rows with :data:`~leafattack.schema.LEADERBOARD_CURVE_COLUMNS`, in order."""
    cols = schema.LEADERBOARD_CURVE_COLUMNS
    return curves.reindex(columns=list(cols)).astype(dict(cols))
