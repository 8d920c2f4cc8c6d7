"""Statistics against scipy and against known answers."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize
from scipy import stats as sps

from leafattack.analysis.stats import (
    benjamini_hochberg,
    bootstrap_auc_ci,
    correlation_table,
    format_correlation_table,
    logistic_fit,
    logistic_odds_ratio,
    pearson,
    point_biserial,
    roc_auc,
    spearman,
    wilson_interval,
)
from leafattack.errors import LeafattackError
from leafattack.schema import CORRELATION_COLUMNS

# --------------------------------------------------------------------------- Wilson


def test_wilson_known_values() -> None:
    # Hand-computed from the score-interval formula with z = 1.959964:
    # 0/10: centre = half = (z^2 / 20) / (1 + z^2 / 10) = 0.138767 -> [0, 0.277533]
    low, high = wilson_interval(np.array([0, 10, 5]), 10)
    np.testing.assert_allclose(low, [0.0, 0.722467, 0.236593], atol=1e-6)
    np.testing.assert_allclose(high, [0.277533, 1.0, 0.763407], atol=1e-6)
    assert low[0] == 0.0 and high[1] == 1.0
    # 1/1 with z = 1: centre 0.75, half 0.25
    lo1, hi1 = wilson_interval(1, 1, z=1.0)
    assert (float(lo1), float(hi1)) == pytest.approx((0.5, 1.0))


def test_wilson_matches_scipy_binomtest() -> None:
    ks, ns = [], []
    for n in (1, 2, 7, 30, 101, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            ks.append(k)
            ns.append(n)
    low, high = wilson_interval(np.array(ks), np.array(ns))
    for i, (k, n) in enumerate(zip(ks, ns, strict=True)):
        ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert low[i] == pytest.approx(ci.low, abs=1e-12), (k, n)
        assert high[i] == pytest.approx(ci.high, abs=1e-12), (k, n)


def test_wilson_broadcasting_zero_trials_and_errors() -> None:
    low, high = wilson_interval(np.array([[0], [3]]), np.array([3, 4, 8]))
    assert low.shape == high.shape == (2, 3)
    ref = sps.binomtest(3, 8).proportion_ci(method="wilson")
    assert (low[1, 2], high[1, 2]) == pytest.approx((ref.low, ref.high))
    low0, high0 = wilson_interval(np.array([0, 1]), np.array([0, 2]))
    assert np.isnan(low0[0]) and np.isnan(high0[0]) and not np.isnan(low0[1])
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(-1, 4)


# --------------------------------------------------------------------------- correlations
# pearson, spearman and point_biserial forward to scipy, so they are checked against
# textbook formulas evaluated here in plain Python, not against the same scipy calls.


def simulated(n: int, seed: int, effect: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    success = rng.random(n) < 0.4
    metric = rng.normal(0, 1, n) + effect * success
    return metric, success


def textbook_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r = S_xy / sqrt(S_xx S_yy), with exactly rounded sums."""
    mx, my = math.fsum(x) / len(x), math.fsum(y) / len(y)
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = math.fsum((a - mx) ** 2 for a in x)
    syy = math.fsum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def t_test_p(r: float, n: int) -> float:
    """Two-sided p of H0: rho = 0, i.e. P(|T| >= |t|) with t = r sqrt((n - 2) / (1 - r^2)).

    Student's t CDF in closed form (Abramowitz & Stegun 26.7.3 / 26.7.4): with
    nu = n - 2 and theta = atan(|t| / sqrt(nu)), P(|T| < |t|) is
    sin(theta) * (1 + 1/2 cos^2 + (1*3)/(2*4) cos^4 + ... up to cos^(nu-2)) for even nu and
    2/pi * (theta + sin cos (1 + 2/3 cos^2 + (2*4)/(3*5) cos^4 + ... up to cos^(nu-3))) for odd.
    """
    nu = n - 2
    t = abs(r) * math.sqrt(nu / (1 - r * r))
    theta = math.atan(t / math.sqrt(nu))
    c2 = math.cos(theta) ** 2
    terms, term = [1.0], 1.0
    if nu % 2 == 0:
        for k in range(1, nu // 2):
            term *= (2 * k - 1) / (2 * k) * c2
            terms.append(term)
        inside = math.sin(theta) * math.fsum(terms)
    else:
        for k in range(1, (nu - 1) // 2):
            term *= (2 * k) / (2 * k + 1) * c2
            terms.append(term)
        series = math.sin(theta) * math.cos(theta) * math.fsum(terms) if nu > 1 else 0.0
        inside = 2 / math.pi * (theta + series)
    return 1.0 - inside


def average_ranks(x: Sequence[float]) -> list[float]:
    """1-based ranks by counting: values below, plus the mean position among ties."""
    return [sum(b < a for b in x) + (sum(b == a for b in x) + 1) / 2 for a in x]


def test_t_test_p_helper_known_values() -> None:
    # nu = 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2), which is 1 - |r|
    assert t_test_p(0.3, 4) == pytest.approx(0.7, rel=1e-12)
    # nu = 1 (Cauchy): P(|T| >= 1) = 1/2, and t = 1 at r = 1 / sqrt 2
    assert t_test_p(1 / math.sqrt(2), 3) == pytest.approx(0.5, rel=1e-12)
    # nu = 3: r = sqrt(1/2) gives t = sqrt 3, theta = pi/4: p = 1 - 2/pi (pi/4 + 1/2) = 1/2 - 1/pi
    assert t_test_p(math.sqrt(0.5), 5) == pytest.approx(0.5 - 1 / math.pi, rel=1e-12)


def test_pearson_hand_computed() -> None:
    # x = 1, 2, 3, 4; y = 2, 1, 4, 3: S_xy = 3, S_xx = S_yy = 5 -> r = 0.6; n = 4: p = 1 - |r|
    r, p = pearson(np.array([1.0, 2, 3, 4]), np.array([2.0, 1, 4, 3]))
    assert r == pytest.approx(0.6, rel=1e-12)
    assert p == pytest.approx(0.4, rel=1e-10)
    # n = 3 (Cauchy t): r = 0.5 -> t = 0.5 * sqrt(1 / 0.75) = 1/sqrt 3 -> p = 1 - 2/pi * pi/6 = 2/3
    r3, p3 = pearson(np.array([1.0, 2, 3]), np.array([1.0, 3, 2]))
    assert (r3, p3) == pytest.approx((0.5, 2 / 3), rel=1e-10)
    # exact linear relations
    x = np.arange(10.0)
    assert pearson(x, 3 * x - 2)[0] == pytest.approx(1.0, rel=1e-12)
    assert pearson(x, -x)[0] == pytest.approx(-1.0, rel=1e-12)


@pytest.mark.parametrize(("n", "seed"), [(5, 0), (40, 1), (41, 2), (60, 3)])
def test_pearson_matches_the_textbook_formula(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 0.3 * x + rng.normal(size=n)
    r, p = pearson(x, y)
    expected = textbook_r(x.tolist(), y.tolist())
    assert r == pytest.approx(expected, rel=1e-12)
    assert p == pytest.approx(t_test_p(expected, n), rel=1e-9)


def test_point_biserial_hand_computed() -> None:
    # M1 = 3.5, M0 = 1.5, population SD sqrt(1.25), n1 = n0 = 2:
    # r = (M1 - M0) / s * sqrt(n1 n0) / n = 2 / sqrt(1.25) * 1/2 = 2 / sqrt 5; n = 4: p = 1 - r
    r, p = point_biserial(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 1]))
    assert r == pytest.approx(2 / math.sqrt(5), rel=1e-12)
    assert p == pytest.approx(1 - 2 / math.sqrt(5), rel=1e-10)
    # booleans work as 0/1, and a negative association gives a negative r
    r_neg, _ = point_biserial(np.array([1.0, 2.0, 3.0, 4.0]), np.array([True, True, False, False]))
    assert r_neg == pytest.approx(-2 / math.sqrt(5), rel=1e-12)


@pytest.mark.parametrize(("n", "seed"), [(5, 0), (40, 1), (61, 2)])
def test_point_biserial_matches_the_group_mean_formula(n: int, seed: int) -> None:
    metric, success = simulated(n, seed)
    if success.all() or not success.any():
        success[:2] = [True, False]
    r, p = point_biserial(metric, success)
    m1, m0 = metric[success].mean(), metric[~success].mean()
    q = success.mean()
    expected = (m1 - m0) / metric.std(ddof=0) * math.sqrt(q * (1 - q))
    assert r == pytest.approx(expected, rel=1e-10)
    assert p == pytest.approx(t_test_p(expected, n), rel=1e-8)


def test_spearman_hand_computed() -> None:
    # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)); d = 0, -1, 1, 0 -> 1 - 12/60 = 0.8, p = 0.2
    rho, p = spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert (rho, p) == pytest.approx((0.8, 0.2), rel=1e-10)
    # any monotone transform has rho = 1
    x = np.array([0.5, 3.0, 1.0, 7.0, 2.0])
    assert spearman(x, np.exp(x))[0] == pytest.approx(1.0, rel=1e-12)
    assert spearman(x, -(x**3))[0] == pytest.approx(-1.0, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_with_ties_is_pearson_of_average_ranks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=60), 1)  # many ties
    y = np.round(x + rng.normal(size=60), 0)
    rho, p = spearman(x, y)
    expected = textbook_r(average_ranks(x.tolist()), average_ranks(y.tolist()))
    assert rho == pytest.approx(expected, rel=1e-12)
    assert p == pytest.approx(t_test_p(expected, 60), rel=1e-8)


def test_correlations_drop_nan_pairs() -> None:
    # the NaN row (in either input) is dropped: what remains is the hand-computed case
    x = np.array([1.0, 2.0, np.nan, 3.0, 4.0, 9.0])
    success = np.array([0, 0, 1, 1, 1, np.nan])
    r, p = point_biserial(x, success)
    assert (r, p) == pytest.approx((2 / math.sqrt(5), 1 - 2 / math.sqrt(5)), rel=1e-10)
    y = np.array([2.0, 1.0, 5.0, 4.0, 3.0, np.nan])
    assert pearson(x, y) == pytest.approx((0.6, 0.4), rel=1e-10)
    assert spearman(x, np.array([1.0, 3.0, 0.0, 2.0, 4.0, np.nan])) == pytest.approx((0.8, 0.2))
    # and on random data with NaNs in both inputs, the same as on the complete rows
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=200), rng.normal(size=200)
    metric, outcome = simulated(200, 6)
    a[::7], b[3::11] = np.nan, np.nan
    m_nan, o_nan = metric.copy(), outcome.astype(float)
    m_nan[::7], o_nan[3::11] = np.nan, np.nan
    keep = ~np.isnan(a) & ~np.isnan(b)
    assert keep.sum() < 200 - 30
    assert pearson(a, b) == pearson(a[keep], b[keep])
    assert spearman(a, b) == spearman(a[keep], b[keep])
    assert point_biserial(m_nan, o_nan) == point_biserial(metric[keep], outcome[keep])
    r_full = textbook_r(a[keep].tolist(), b[keep].tolist())
    assert pearson(a, b)[0] == pytest.approx(r_full, rel=1e-12)


def test_correlations_degenerate_give_nan_without_warnings() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for r, p in (
            point_biserial(np.ones(4), np.array([0, 1, 0, 1])),  # constant metric
            point_biserial(x, np.ones(4)),  # all successes
            point_biserial(x[:2], np.array([0, 1])),  # n < 3
            point_biserial(np.array([1.0, np.nan, 2.0]), np.array([0, 1, 1])),  # n < 3 after NaN
            spearman(x, np.full(4, 2.0)),
            spearman(x[:2], x[:2]),
            pearson(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0, 3.0])),
            pearson(np.full(5, 0.1), np.arange(5.0)),
            pearson(np.array([]), np.array([])),
        ):
            assert math.isnan(r) and math.isnan(p)
        # nearly constant input is computed (scipy would warn), not NaN
        near = np.array([1e9, 1e9 + 1e-6, 1e9 + 2e-6])
        assert math.isfinite(pearson(near, np.array([1.0, 2.0, 4.0]))[0])
    with pytest.raises(ValueError, match="0/1"):
        point_biserial(x, np.array([0, 2, 1, 1]))
    with pytest.raises(ValueError, match="different lengths"):
        pearson(x, x[:3])


# --------------------------------------------------------------------------- AUC


def brute_force_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties 1/2, over all pairs."""
    pos = scores[labels == 1].tolist()
    neg = scores[labels == 0].tolist()
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_roc_auc_hand_made_cases() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    assert roc_auc(np.array([1.0, 2, 3, 4, 5]), labels) == 1.0  # perfectly separated
    assert roc_auc(np.array([5.0, 4, 3, 2, 1]), labels) == 0.0
    assert roc_auc(np.full(5, 0.3), labels) == 0.5  # all tied
    # one tie between a positive and a negative: (5 + 0.5) / 6
    assert roc_auc(np.array([1.0, 2, 4, 4, 5]), labels) == pytest.approx(5.5 / 6)
    assert roc_auc(np.array([1.0, 2.0]), np.array([True, False])) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(roc_auc(np.array([1.0, 2.0]), np.array([1, 1])))  # one class
        assert math.isnan(roc_auc(np.array([]), np.array([])))
    with pytest.raises(ValueError, match="0/1"):
        roc_auc(np.array([1.0, 2.0]), np.array([0, 3]))


def test_roc_auc_drops_nan() -> None:
    # NaN score or label: that row is dropped, what remains is perfectly separated
    assert roc_auc(np.array([np.nan, 1.0, 2.0]), np.array([0, 0, 1])) == 1.0
    assert roc_auc(np.array([np.nan, 1.0, 2.0, 0.5]), np.array([1, 0, 1, np.nan])) == 1.0
    assert math.isnan(roc_auc(np.array([np.nan, 1.0, 2.0]), np.array([0, 1, 1])))  # one class left
    rng = np.random.default_rng(3)
    s, y = rng.normal(size=80), (rng.random(80) < 0.5).astype(float)
    s[::9], y[4::13] = np.nan, np.nan
    keep = ~np.isnan(s) & ~np.isnan(y)
    assert roc_auc(s, y) == pytest.approx(brute_force_auc(s[keep], y[keep]), abs=1e-15)


@settings(max_examples=50, deadline=None)
@given(
    scores=st.lists(st.integers(0, 6), min_size=2, max_size=60),
    seed=st.integers(0, 1000),
)
def test_roc_auc_is_the_pairwise_win_probability(scores: list[int], seed: int) -> None:
    s = np.array(scores, dtype=float)
    labels = np.random.default_rng(seed).integers(0, 2, s.size)
    if labels.all() or not labels.any():
        assert math.isnan(roc_auc(s, labels))
        return
    assert roc_auc(s, labels) == pytest.approx(brute_force_auc(s, labels), abs=1e-12)


def test_roc_auc_of_gaussian_scores() -> None:
    d = 1.0  # scores ~ N(d * label, 1): AUC = Phi(d / sqrt 2)
    rng = np.random.default_rng(4)
    labels = rng.random(200_000) < 0.3
    scores = rng.normal(size=labels.size) + d * labels
    true_auc = 0.5 * (1 + math.erf(d / 2))  # Phi(d / sqrt 2)
    assert roc_auc(scores, labels) == pytest.approx(true_auc, abs=0.005)


def test_bootstrap_replicates_are_exact_aucs_of_the_drawn_samples() -> None:
    """Redraw the same indices (one block, positives then negatives) and evaluate each
    replicate with roc_auc: the vectorised histogram AUCs must agree."""
    scores, labels = simulated(150, 8)
    scores = np.round(scores, 1)  # ties inside replicates
    n_boot, seed = 300, 11
    rng = np.random.default_rng(seed)
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])  # draws index sorted scores
    pos_idx = rng.integers(0, pos.size, size=(n_boot, pos.size))
    neg_idx = rng.integers(0, neg.size, size=(n_boot, neg.size))
    y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    aucs = [roc_auc(np.r_[pos[pi], neg[ni]], y) for pi, ni in zip(pos_idx, neg_idx, strict=True)]
    expected = np.quantile(aucs, [0.025, 0.975])
    got = bootstrap_auc_ci(scores, labels, n_boot=n_boot, seed=seed)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_bootstrap_ci_covers_the_true_auc_and_narrows_with_n() -> None:
    d = 1.0  # scores ~ N(d * label, 1): true AUC = Phi(d / sqrt 2)
    true_auc = sps.norm.cdf(d / math.sqrt(2))
    widths = []
    for n in (300, 3000, 30000):
        rng = np.random.default_rng(n)
        labels = rng.random(n) < 0.3
        scores = rng.normal(size=n) + d * labels
        low, high = bootstrap_auc_ci(scores, labels, n_boot=400, seed=1)
        assert low < true_auc < high, (n, low, high, true_auc)
        assert low < roc_auc(scores, labels) < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(10.0, rel=0.3)  # ~ 1 / sqrt(n)


def test_bootstrap_is_reproducible_and_validates() -> None:
    scores, labels = simulated(300, 9)
    a = bootstrap_auc_ci(scores, labels, n_boot=200, seed=4)
    assert a == bootstrap_auc_ci(scores, labels, n_boot=200, seed=4)
    assert a != bootstrap_auc_ci(scores, labels, n_boot=200, seed=5)
    low90, high90 = bootstrap_auc_ci(scores, labels, n_boot=200, seed=4, level=0.5)
    assert a[0] < low90 < high90 < a[1]
    assert all(math.isnan(v) for v in bootstrap_auc_ci(scores, np.zeros(300)))
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_auc_ci(scores, labels, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_auc_ci(scores, labels, level=1.0)


# --------------------------------------------------------------------------- logistic


def test_logistic_odds_ratio_recovers_a_known_slope() -> None:
    rng = np.random.default_rng(12)
    n = 20000
    x = rng.normal(5.0, 2.0, n)
    z = (x - x.mean()) / x.std(ddof=1)
    success = rng.random(n) < 1 / (1 + np.exp(-(-0.5 + 1.0 * z)))  # slope 1 per SD
    assert logistic_odds_ratio(x, success) == pytest.approx(math.e, rel=0.05)
    assert logistic_odds_ratio(-x, success) == pytest.approx(1 / math.e, rel=0.05)
    assert logistic_odds_ratio(3 * x + 7, success) == pytest.approx(
        logistic_odds_ratio(x, success), rel=1e-9
    )  # per SD: invariant to the metric's units


def test_logistic_odds_ratio_matches_a_direct_likelihood_fit() -> None:
    rng = np.random.default_rng(13)
    x = rng.exponential(size=80)
    success = rng.random(80) < 1 / (1 + np.exp(-(x - 1)))
    z = (x - x.mean()) / x.std(ddof=1)
    y = success.astype(float)

    def nll(beta: np.ndarray) -> float:
        eta = beta[0] + beta[1] * z
        return float(np.logaddexp(0, eta).sum() - y @ eta)

    fit = optimize.minimize(nll, np.zeros(2), method="BFGS", options={"gtol": 1e-10})
    assert logistic_odds_ratio(x, success) == pytest.approx(math.exp(fit.x[1]), rel=1e-5)


def test_logistic_odds_ratio_degenerate_cases() -> None:
    x = np.arange(10.0)
    assert logistic_odds_ratio(x, x >= 5) == math.inf  # perfect separation
    assert logistic_odds_ratio(x, x < 5) == 0.0
    # quasi-separation: the largest failure ties with the smallest success (x = 4)
    x_tied = np.array([0.0, 1, 2, 3, 4, 4, 5, 6, 7, 8])
    assert logistic_odds_ratio(x_tied, np.arange(10) >= 5) == math.inf
    assert math.isnan(logistic_odds_ratio(np.ones(10), x >= 5))  # constant x
    assert math.isnan(logistic_odds_ratio(x, np.ones(10)))  # one class
    assert math.isnan(logistic_odds_ratio(x[:2], np.array([0, 1])))  # n < 3


def reference_cluster_sandwich(z: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Standard error of the slope: the CR1 sandwich written out by hand (Newton fit,
    bread = inverse information, meat = sum over clusters of score outer products, scaled
    by G/(G-1) * (n-1)/(n-k))."""
    design = np.column_stack([np.ones(z.size), z])
    beta = np.zeros(2)
    for _ in range(50):
        prob = 1 / (1 + np.exp(-(design @ beta)))
        info = design.T @ (design * (prob * (1 - prob))[:, None])
        beta = beta + np.linalg.solve(info, design.T @ (y - prob))
    prob = 1 / (1 + np.exp(-(design @ beta)))
    bread = np.linalg.inv(design.T @ (design * (prob * (1 - prob))[:, None]))
    scores = design * (y - prob)[:, None]
    labels = np.unique(groups)
    meat = np.zeros((2, 2))
    for g in labels:
        s = scores[groups == g].sum(axis=0)
        meat += np.outer(s, s)
    n, k, n_groups = z.size, 2, labels.size
    scale = n_groups / (n_groups - 1) * (n - 1) / (n - k)
    return float(np.sqrt(scale * (bread @ meat @ bread)[1, 1]))


def test_logistic_fit_cluster_interval_matches_a_hand_written_sandwich() -> None:
    rng = np.random.default_rng(21)
    n_signs, per_sign = 12, 40
    groups = np.repeat(np.arange(n_signs), per_sign)
    sign_effect = rng.normal(0, 1.5, n_signs)[groups]  # signs differ strongly
    x = rng.normal(size=groups.size) + 0.8 * sign_effect
    z = (x - x.mean()) / x.std(ddof=1)
    y = (rng.random(groups.size) < 1 / (1 + np.exp(-(-1 + 0.7 * z + sign_effect)))).astype(float)
    fit = logistic_fit(x, y, clusters=groups)
    se = reference_cluster_sandwich(z, y, groups)
    slope = math.log(fit.odds_ratio)
    assert fit.robust == "cluster"
    assert fit.ci_low == pytest.approx(math.exp(slope - 1.959963984540054 * se), rel=1e-4)
    assert fit.ci_high == pytest.approx(math.exp(slope + 1.959963984540054 * se), rel=1e-4)
    assert fit.p_value == pytest.approx(2 * sps.norm.sf(abs(slope) / se), rel=1e-3)
    # Trials of one sign are not independent: the model-based interval is narrower.
    plain = logistic_fit(x, y)
    assert plain.robust == "model" and plain.odds_ratio == pytest.approx(fit.odds_ratio)
    assert math.log(plain.ci_high / plain.ci_low) < math.log(fit.ci_high / fit.ci_low)


def test_logistic_fit_degenerate_and_single_cluster() -> None:
    x = np.arange(10.0)
    sep = logistic_fit(x, x >= 5, clusters=np.zeros(10))
    assert sep.odds_ratio == math.inf and math.isnan(sep.ci_low) and math.isnan(sep.p_value)
    rng = np.random.default_rng(3)
    x = rng.normal(size=50)
    y = rng.random(50) < 0.5
    one = logistic_fit(x, y, clusters=np.zeros(50))  # one cluster: no robust covariance
    assert math.isfinite(one.odds_ratio) and math.isnan(one.ci_low)


# --------------------------------------------------------------------------- BH


def brute_force_bh(p: list[float]) -> list[float]:
    """The step-up definition: p_adj[i] = min(1, min over p[j] >= p[i] of p[j] * m / r_j),
    r_j = #{k: p[k] <= p[j]} (the largest rank among ties); NaNs excluded and kept."""
    finite = [v for v in p if not math.isnan(v)]
    m = len(finite)
    out = []
    for v in p:
        if math.isnan(v):
            out.append(math.nan)
            continue
        candidates = [w * m / sum(u <= w for u in finite) for w in finite if w >= v]
        out.append(min(1.0, min(candidates)))
    return out


def test_benjamini_hochberg_hand_computed() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): p * 4 / rank = 0.02, 0.02, 0.04, 0.04
    got = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.005]))
    np.testing.assert_allclose(got, [0.02, 0.04, 0.04, 0.02], rtol=1e-12)
    # step-up: 0.01 * 4 = 0.04 and 0.025 * 2 = 0.05 are lowered to 0.026 * 4/3
    got = benjamini_hochberg(np.array([0.9, 0.026, 0.01, 0.025]))
    np.testing.assert_allclose(got, [0.9, 0.104 / 3, 0.104 / 3, 0.104 / 3], rtol=1e-12)
    # capped at 1; ties share one value; a single p-value is unchanged
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.8, 0.9, 0.9])), [0.9, 0.9, 0.9])
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.6, 0.7])), [0.7, 0.7])
    assert benjamini_hochberg(np.array([0.3])).tolist() == [0.3]


def test_benjamini_hochberg_1995_example() -> None:
    """The 15 p-values of Benjamini & Hochberg (1995), section 4: at FDR 0.05 the procedure
    rejects the four smallest (p_(4) = 0.0095 <= 4/15 * 0.05, no larger p_(i) <= i/15 * 0.05)."""
    p = np.array(
        [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240,
         0.4262, 0.5719, 0.6528, 0.7590, 1.0]
    )  # fmt: skip
    got = benjamini_hochberg(p[::-1])[::-1]
    assert int((got <= 0.05).sum()) == 4 and got[3] == pytest.approx(0.0095 * 15 / 4)
    # p_(6) * 15/6 = 0.0695 is lowered to p_(7) * 15/7 by the step-up
    assert got[5] == got[6] == pytest.approx(0.0298 * 15 / 7, rel=1e-12)
    np.testing.assert_allclose(got[[4, 7, 8]], [0.0201 * 3, 0.0344 * 15 / 8, 0.0459 * 15 / 9])
    np.testing.assert_allclose(got, brute_force_bh(p.tolist()), rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_benjamini_hochberg_matches_the_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 20), [1.0, 0.5, 0.5]])
    p = np.round(p, 2)  # ties
    p[rng.choice(p.size, 4, replace=False)] = np.nan
    rng.shuffle(p)
    got = benjamini_hochberg(p)
    np.testing.assert_allclose(got, brute_force_bh(p.tolist()), rtol=1e-12)
    finite = ~np.isnan(p)
    order = np.argsort(p[finite])
    assert np.all(np.diff(got[finite][order]) >= 0) and np.nanmax(got) <= 1.0
    assert np.all(got[finite] >= p[finite])


def test_benjamini_hochberg_passes_nan_through() -> None:
    p = np.array([0.04, np.nan, 0.01, 0.03, np.nan])
    got = benjamini_hochberg(p)
    assert np.isnan(got[[1, 4]]).all()
    # m = 3 (the NaNs do not count): 0.01 * 3, then 0.03 * 3/2 and 0.04 * 3/3 -> 0.04
    np.testing.assert_allclose(got[[0, 2, 3]], [0.04, 0.03, 0.04], rtol=1e-12)
    assert np.isnan(benjamini_hochberg(np.array([np.nan]))).all()
    assert benjamini_hochberg(np.array([])).shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg(np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"\(m,\)"):
        benjamini_hochberg(np.zeros((2, 2)))


# --------------------------------------------------------------------------- tables


def trials_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    success = rng.random(n) < 0.35
    strong = rng.normal(size=n) + 1.2 * success
    weak = rng.normal(size=n) + 0.2 * success
    noise = rng.normal(size=n)
    species = rng.choice(["oak", "maple", "birch"], n)
    size = rng.choice([0.2, 0.3], n)
    df = pd.DataFrame(
        {
            "strong": strong,
            "weak": weak,
            "noise": noise,
            "success": success,
            "conf_drop": 0.3 * strong + rng.normal(size=n) * 0.5,
            "species": pd.array(species, dtype="string"),
            "size": size,
        }
    )
    # degenerate subset: every "ash" trial succeeds; a 2-row "elm" subset
    extra = pd.DataFrame(
        {
            "strong": [0.1, 0.2, 0.3, 0.4, 1.0, 2.0],
            "weak": [0.0] * 6,
            "noise": [1.0] * 6,
            "success": [True] * 4 + [False, True],
            "conf_drop": [0.1] * 6,
            "species": pd.array(["ash"] * 4 + ["elm"] * 2, dtype="string"),
            "size": [0.2] * 6,
        }
    )
    return pd.concat([df, extra], ignore_index=True)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return correlation_table(trials_frame(), ["strong", "weak", "noise"], n_boot=200, seed=3)


def test_correlation_table_schema_and_row_order(table: pd.DataFrame) -> None:
    assert list(table.columns) == list(CORRELATION_COLUMNS)
    assert {c: str(t) for c, t in table.dtypes.items()} == CORRELATION_COLUMNS
    subsets = list(dict.fromkeys(table["subset"]))
    assert subsets == [
        "all",
        "species=ash",
        "species=birch",
        "species=elm",
        "species=maple",
        "species=oak",
        "size=0.2",
        "size=0.3",
    ]
    assert len(table) == len(subsets) * 2 * 3
    first = table.iloc[:6]
    assert list(first["target"]) == ["success"] * 3 + ["conf_drop"] * 3
    assert list(first["metric"]) == ["strong", "weak", "noise"] * 2


def test_correlation_table_values_match_the_functions(table: pd.DataFrame) -> None:
    df = trials_frame()
    rows = table[(table.subset == "species=oak") & (table.target == "success")]
    row = rows[rows.metric == "strong"].iloc[0]
    sub = df[df.species == "oak"]
    strong, success = sub.strong.to_numpy(), sub.success.to_numpy()
    assert row.n == len(sub)
    assert (row.point_biserial_r, row.p_value) == point_biserial(strong, success)
    assert (row.spearman_rho, row.spearman_p) == spearman(strong, success)
    assert row.auc == pytest.approx(roc_auc(sub.strong.to_numpy(), sub.success.to_numpy()))
    assert row.auc_ci_low < row.auc < row.auc_ci_high
    assert row.odds_ratio > 2.0
    cont = table[(table.subset == "all") & (table.target == "conf_drop") & (table.metric == "weak")]
    r, p = pearson(df.weak.to_numpy(), df.conf_drop.to_numpy())
    assert (cont.point_biserial_r.iloc[0], cont.p_value.iloc[0]) == (r, p)
    assert cont[["auc", "auc_ci_low", "auc_ci_high", "odds_ratio"]].isna().all(axis=None)


def test_correlation_table_adjusts_p_within_subset_and_target(table: pd.DataFrame) -> None:
    for _, group in table.groupby(["subset", "target"], sort=False):
        expected = benjamini_hochberg(group.p_value.to_numpy())
        np.testing.assert_array_equal(group.p_adjusted.to_numpy(), expected)
        assert group.p_adjusted.isna().equals(group.p_value.isna())


def test_correlation_table_degenerate_subsets_are_nan(table: pd.DataFrame) -> None:
    labels = ("subset", "target", "metric", "n", "auc_ci_resampled", "n_boot", "odds_ratio_cov")
    stats_cols = [c for c in CORRELATION_COLUMNS if c not in labels]
    ash = table[(table.subset == "species=ash") & (table.target == "success")]
    assert list(ash.n) == [4, 4, 4]
    assert ash[stats_cols].isna().all(axis=None)  # all successes
    elm = table[table.subset == "species=elm"]
    assert (elm.n == 2).all() and elm[stats_cols].isna().all(axis=None)  # n < 3
    noise_ash = table[(table.subset == "species=ash") & (table.target == "conf_drop")]
    assert noise_ash[stats_cols].isna().all(axis=None)  # constant conf_drop
    flat = pd.DataFrame({"m": [2.0] * 8, "success": [0, 1] * 4, "conf_drop": np.arange(8.0)})
    constant = correlation_table(flat, ["m"], by=(), n_boot=10)
    assert constant[stats_cols].isna().all(axis=None)  # constant metric


def test_correlation_table_is_reproducible_and_handles_missing_values() -> None:
    df = trials_frame(200, seed=1)
    df.loc[::10, "weak"] = np.nan
    a = correlation_table(df, ["weak"], by=("size",), n_boot=100, seed=7)
    b = correlation_table(df, ["weak"], by=("size",), n_boot=100, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert a.n.iloc[0] == df.weak.notna().sum()


def test_correlation_table_errors() -> None:
    df = trials_frame(50)
    with pytest.raises(LeafattackError, match="'chamfer' not found"):
        correlation_table(df, ["chamfer"], n_boot=10)
    with pytest.raises(LeafattackError, match="'colour'"):
        correlation_table(df, ["strong"], by=("colour",), n_boot=10)
    with pytest.raises(LeafattackError, match="not numeric"):
        correlation_table(df, ["species"], n_boot=10)
    bad = df.assign(success=df.success.astype(int) * 2)
    with pytest.raises(LeafattackError, match="True/False"):
        correlation_table(bad, ["strong"], n_boot=10)
    no_conf = correlation_table(df.drop(columns="conf_drop"), ["strong"], by=(), conf_drop_col=None)
    assert list(no_conf.target) == ["success"]


def test_format_correlation_table(table: pd.DataFrame) -> None:
    text = format_correlation_table(table)
    lines = text.splitlines()
    assert lines[0] == "subset all, target success"
    assert lines[1].split()[:5] == ["metric", "n", "r", "p_adj", "rho"]
    body = lines[3:6]
    assert [line.split()[0] for line in body] == ["strong", "weak", "noise"]  # by |r|
    assert "[" in body[0] and "]" in body[0]
    assert "subset all, target conf_drop" in lines
    assert len({len(line) for line in body}) == 1  # fixed width
    ash = format_correlation_table(table, "species=ash")
    assert "-" in ash.splitlines()[3]
    with pytest.raises(LeafattackError, match="no correlation rows for subset 'species=yew'"):
        format_correlation_table(table, "species=yew")


def test_docstring_examples() -> None:
    import doctest

    import leafattack.analysis.stats

    result = doctest.testmod(leafattack.analysis.stats, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0
