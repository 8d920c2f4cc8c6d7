"""Inference at the level of signs: a seeded cluster bootstrap, and McNemar's exact test.

A run's trials are not independent draws: they are a few signs (and leaves) crossed with a
fixed grid of placements. An interval that treats the 115,200 trials of the default run
as independent says how finely the grid was sampled, not how far the result carries to
other signs. :func:`cluster_bootstrap` resamples the *signs* with replacement (and, where
the leaves vary, the leaves too, independently: a crossed, "two-way" bootstrap) and
recomputes the mean over all trials of the resampled clusters, each trial weighted by how
often its sign and its leaf were drawn.

Everything is deterministic given ``seed``: the draws come from
``np.random.default_rng(seed)``, signs first, then leaves.

Example:
    >>> reps = cluster_bootstrap(success[:, None], sign_ids, n_boot=1000, seed=0)
    >>> low, high = percentile_interval(reps[:, 0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import stats

DEFAULT_N_BOOT: Final[int] = 1000
"""Bootstrap replicates of the sign-level intervals (recorded in every table that uses them)."""


@dataclass(frozen=True, slots=True)
class BootSpec:
    """How a cluster bootstrap is drawn: replicates, seed and interval coverage."""

    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 1:
            raise ValueError(f"n_boot={self.n_boot!r}: expected an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r}: expected a non-negative integer")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level={self.level!r}: expected a coverage in (0, 1)")


def cluster_bootstrap(
    values: np.ndarray,
    signs: np.ndarray,
    leaves: np.ndarray | None = None,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap replicates of the column means of ``values``, resampling clusters.

    Each replicate draws the S distinct signs with replacement (S draws) and, when
    ``leaves`` is given, the L distinct leaves likewise; a trial then counts
    ``(times its sign was drawn) x (times its leaf was drawn)``. The replicate is the
    weighted mean of each column. With every trial its own sign this is the ordinary
    (i.i.d.) bootstrap of the mean.

    Computed on per-(sign, leaf) cell sums, so the cost does not grow with the trials.

    Args:
        values: float (N, Q) per-trial values (e.g. 0/1 successes, or differences).
        signs: (N,) sign of each trial (any hashable dtype numpy can sort).
        leaves: optional (N,) leaf of each trial, crossed with the signs.
        n_boot: replicates, >= 1. seed: seed of the draws.

    Returns:
        float64 (n_boot, Q); NaN for a replicate that drew no trial (possible only when
        some sign-leaf cells are empty).
    """
    spec = BootSpec(n_boot=n_boot, seed=seed)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or len(v) != len(signs) or (leaves is not None and len(leaves) != len(v)):
        raise ValueError(
            f"values {v.shape}, signs ({len(signs)},): expected (N, Q) and (N,) of equal N"
        )
    q = v.shape[1]
    if len(v) == 0:
        return np.full((spec.n_boot, q), np.nan)
    _, s_idx = np.unique(np.asarray(signs), return_inverse=True)
    n_s = int(s_idx.max()) + 1
    if leaves is None:
        l_idx = np.zeros(len(v), dtype=np.int64)
    else:
        _, l_idx = np.unique(np.asarray(leaves), return_inverse=True)
    n_l = int(l_idx.max()) + 1
    cell = s_idx.ravel() * n_l + l_idx.ravel()
    count = np.bincount(cell, minlength=n_s * n_l).astype(np.float64).reshape(n_s, n_l)
    sums = np.stack(
        [np.bincount(cell, weights=v[:, j], minlength=n_s * n_l) for j in range(q)], axis=-1
    ).reshape(n_s, n_l, q)
    return cluster_bootstrap_cells(count, sums, crossed=leaves is not None, boot=spec)


def cluster_bootstrap_cells(
    count: np.ndarray, sums: np.ndarray, *, crossed: bool, boot: BootSpec | None = None
) -> np.ndarray:
    """:func:`cluster_bootstrap` from per-(sign, leaf) cell counts and sums, as a streaming
    run accumulates them (the same draws, so the same replicates).

    Args:
        count: float64 (S, L) trials per cell, signs and leaves in sorted order of their
            values; L = 1 when ``crossed`` is False (leaves not resampled).
        sums: float64 (S, L, Q) per-cell sums of the values.
        crossed: resample the leaves too.

    Returns:
        float64 (n_boot, Q), as :func:`cluster_bootstrap`.
    """
    spec = boot or BootSpec()
    n_s, n_l = count.shape
    rng = np.random.default_rng(spec.seed)
    ws = rng.multinomial(n_s, np.full(n_s, 1.0 / n_s), size=spec.n_boot).astype(np.float64)
    if not crossed:
        wl = np.ones((spec.n_boot, 1))
    else:
        wl = rng.multinomial(n_l, np.full(n_l, 1.0 / n_l), size=spec.n_boot).astype(np.float64)
    den = np.einsum("bs,sl,bl->b", ws, count, wl)
    num = np.einsum("bs,slq,bl->bq", ws, sums, wl)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = num / den[:, None]
    out[den == 0] = np.nan
    return out


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of bootstrap replicates
    (NaN replicates ignored); ``(nan, nan)`` when none is finite.

    Shape:
        replicates: float (B,).
    """
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return math.nan, math.nan
    a = (1.0 - level) / 2.0
    low, high = np.quantile(r, [a, 1.0 - a])
    return float(low), float(high)


def sign_level_rate(
    success: np.ndarray,
    signs: np.ndarray,
    leaves: np.ndarray | None = None,
    *,
    boot: BootSpec | None = None,
) -> tuple[float, float, float]:
    """A success rate and its cluster-bootstrap interval.

    Args:
        success: bool or 0/1 (N,). signs, leaves: as in :func:`cluster_bootstrap`.

    Returns:
        ``(rate, low, high)``; NaN for no trials.

    Example:
        >>> sign_level_rate(np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1]))[0]
        0.5
    """
    b = boot or BootSpec()
    y = np.asarray(success, dtype=np.float64)
    if y.size == 0:
        return math.nan, math.nan, math.nan
    reps = cluster_bootstrap(y[:, None], signs, leaves, n_boot=b.n_boot, seed=b.seed)
    low, high = percentile_interval(reps[:, 0], b.level)
    return float(y.mean()), low, high


def mcnemar_exact(leaf_only: int, control_only: int) -> float:
    """Two-sided exact McNemar p-value: ``scipy.stats.binomtest`` of the discordant pairs.

    Under the null hypothesis a discordant pair is as likely to favour either side, so
    ``leaf_only ~ Binomial(leaf_only + control_only, 1/2)``. Note that it treats the pairs
    as independent; the trials of one sign are not, so the p-value is optimistic (the
    sign-level bootstrap interval is the honest companion).

    Returns:
        p in [0, 1]; 1.0 when there is no discordant pair.

    Example:
        >>> round(mcnemar_exact(9, 1), 4)
        0.0215
    """
    b, c = int(leaf_only), int(control_only)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts {b}, {c}: expected non-negative integers")
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(b, b + c, 0.5).pvalue)


_AUC_BLOCK_ELEMENTS: Final[int] = 4_000_000
"""Replicates of :func:`cluster_bootstrap_auc_ci` are evaluated in blocks of about this many
(replicate x observation) entries (bounded memory); the draws do not depend on it."""


def cluster_bootstrap_auc_ci(
    scores: np.ndarray,
    labels: np.ndarray,
    clusters: np.ndarray,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the ROC AUC, resampling clusters (signs) with replacement.

    A replicate draws the S clusters with replacement; every observation then counts as
    often as its cluster was drawn, and the AUC is the weighted probability that a positive
    scores above a negative (ties one half):
    ``sum_ij w_i w_j [s_i > s_j] / (sum_i w_i sum_j w_j)`` over positives i and negatives j.
    Computed with one sort and, per replicate, a cumulative sum of the negatives' weights.

    Args:
        scores: float (n,), NaN = missing; labels: bool or 0/1 (n,); clusters: (n,).
        n_boot, seed, level: replicates, seed and coverage.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when a class is empty.

    Example:
        >>> low, high = cluster_bootstrap_auc_ci(s, y, sign_ids, n_boot=200)
    """
    spec = BootSpec(n_boot=n_boot, seed=seed, level=level)
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    c = np.asarray(clusters).ravel()
    if not len(s) == len(y) == len(c):
        raise ValueError("scores, labels and clusters need equal lengths")
    keep = ~(np.isnan(s) | np.isnan(y))
    s, y, c = s[keep], y[keep], c[keep]
    if np.any((y != 0) & (y != 1)):
        raise ValueError("labels must hold only 0/1 or False/True (NaN = missing)")
    pos, neg = y == 1, y == 0
    if not pos.any() or not neg.any():
        return math.nan, math.nan
    _, cid = np.unique(c, return_inverse=True)
    n_c = int(cid.max()) + 1
    order = np.argsort(s[neg], kind="stable")
    neg_s, neg_c = s[neg][order], cid[neg][order]
    pos_s, pos_c = s[pos], cid[pos]
    below = np.searchsorted(neg_s, pos_s, side="left")
    upto = np.searchsorted(neg_s, pos_s, side="right")
    rng = np.random.default_rng(spec.seed)
    counts = rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=spec.n_boot).astype(np.float64)
    block = max(1, _AUC_BLOCK_ELEMENTS // (len(s) + 1))
    aucs = np.empty(spec.n_boot)
    for b0 in range(0, spec.n_boot, block):
        w = counts[b0 : b0 + block]  # (b, C)
        wn = w[:, neg_c]  # (b, n0) weights of the sorted negatives
        cum = np.zeros((len(w), len(neg_s) + 1))
        np.cumsum(wn, axis=1, out=cum[:, 1:])
        wp = w[:, pos_c]  # (b, n1)
        pairs = (cum[:, below] + cum[:, upto]) * 0.5  # weighted negatives below each positive
        num = (wp * pairs).sum(axis=1)
        den = wp.sum(axis=1) * wn.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs[b0 : b0 + len(w)] = np.where(den > 0, num / den, np.nan)
    return percentile_interval(aucs, spec.level)
