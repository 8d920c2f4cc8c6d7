"""Signs fooled against queries: the curve of a search, from its query log."""

from __future__ import annotations

import numpy as np
import pandas as pd

CURVE_COLUMNS: tuple[str, ...] = (
    "method",
    "budget",
    "signs_attacked",
    "signs_fooled",
    "robust_accuracy",
)
"""Columns of ``curve.csv``."""


def curve_budgets(budget: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, 100, ... up to ``budget``, and ``budget`` itself.

    Example:
        >>> curve_budgets(300)
        [1, 2, 5, 10, 20, 50, 100, 200, 300]
    """
    out: list[int] = []
    scale = 1
    while scale <= budget:
        out += [b for b in (scale, 2 * scale, 5 * scale) if b <= budget]
        scale *= 10
    if not out or out[-1] != budget:
        out.append(budget)
    return out


def fooled_curve(
    method: str,
    first_success: np.ndarray,
    n_signs: int,
    n_correct: int,
    budget: int,
) -> pd.DataFrame:
    """The curve at :func:`curve_budgets`.

    Args:
        method: the search method's name.
        first_success: int64 (A,) per attacked sign the 1-based query of its first success,
            0 where it never succeeded.
        n_signs: signs in the run (attacked or not).
        n_correct: signs classified correctly when clean (attacked, plus in a targeted run
            signs already of the target class, which count as robust).
        budget: the query budget per sign.

    Returns:
        CURVE_COLUMNS; ``robust_accuracy`` = (correct when clean - fooled) / all signs.
    """
    q = np.asarray(first_success, dtype=np.int64)
    rows = []
    for b in curve_budgets(budget):
        fooled = int(((q > 0) & (q <= b)).sum())
        robust = (n_correct - fooled) / n_signs if n_signs else float("nan")
        rows.append((method, b, len(q), fooled, robust))
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
