"""Statistics against scipy and against known answers."""

from __future__ import annotations

import math

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


def simulated(n: int, seed: int, effect: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    success = rng.random(n) < 0.4
    metric = rng.normal(0, 1, n) + effect * success
    return metric, success


@pytest.mark.parametrize(("n", "seed"), [(5, 0), (40, 1), (500, 2), (5000, 3)])
def test_point_biserial_matches_scipy(n: int, seed: int) -> None:
    metric, success = simulated(n, seed)
    r, p = point_biserial(metric, success)
    ref = sps.pointbiserialr(success, metric)
    assert r == pytest.approx(ref.statistic, rel=1e-10)
    assert p == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)


def test_pearson_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=300)
    y = 0.3 * x + rng.normal(size=300)
    r, p = pearson(x, y)
    ref = sps.pearsonr(x, y)
    assert (r, p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-9)


def test_correlations_drop_nan_pairs() -> None:
    metric, success = simulated(200, 6)
    metric_nan = metric.copy()
    metric_nan[::7] = np.nan
    keep = ~np.isnan(metric_nan)
    ref = sps.pointbiserialr(success[keep], metric[keep])
    assert point_biserial(metric_nan, success) == pytest.approx((ref.statistic, ref.pvalue))
    rho = sps.spearmanr(metric[keep], success[keep])
    assert spearman(metric_nan, success) == pytest.approx((rho.statistic, rho.pvalue))


def test_correlations_degenerate_give_nan() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    for r, p in (
        point_biserial(np.ones(4), np.array([0, 1, 0, 1])),  # constant metric
        point_biserial(x, np.ones(4)),  # all successes
        point_biserial(x[:2], np.array([0, 1])),  # n < 3
        spearman(x, np.full(4, 2.0)),
        pearson(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0, 3.0])),
    ):
        assert math.isnan(r) and math.isnan(p)
    assert point_biserial(x, np.array([0, 0, 1, 1]))[0] == pytest.approx(0.894427191)
    with pytest.raises(ValueError, match="0/1"):
        point_biserial(x, np.array([0, 2, 1, 1]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=150), 1)  # many ties
    y = np.round(x + rng.normal(size=150), 0)
    rho, p = spearman(x, y)
    ref = sps.spearmanr(x, y)
    assert rho == pytest.approx(ref.statistic, rel=1e-10)
    assert p == pytest.approx(ref.pvalue, rel=1e-8)


# --------------------------------------------------------------------------- AUC


def test_roc_auc_hand_made_cases() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    assert roc_auc(np.array([1.0, 2, 3, 4, 5]), labels) == 1.0
    assert roc_auc(np.array([5.0, 4, 3, 2, 1]), labels) == 0.0
    assert roc_auc(np.full(5, 0.3), labels) == 0.5
    # one tie between a positive and a negative: (5 + 0.5) / 6
    assert roc_auc(np.array([1.0, 2, 4, 4, 5]), labels) == pytest.approx(5.5 / 6)
    assert math.isnan(roc_auc(np.array([1.0, 2.0]), np.array([1, 1])))
    assert roc_auc(np.array([np.nan, 1.0, 2.0]), np.array([1, 0, 1])) == 1.0


@settings(max_examples=50, deadline=None)
@given(
    scores=st.lists(st.integers(0, 6), min_size=2, max_size=60),
    seed=st.integers(0, 1000),
)
def test_roc_auc_is_mann_whitney_u(scores: list[int], seed: int) -> None:
    s = np.array(scores, dtype=float)
    labels = np.random.default_rng(seed).integers(0, 2, s.size)
    n1 = int(labels.sum())
    n0 = s.size - n1
    if n1 == 0 or n0 == 0:
        assert math.isnan(roc_auc(s, labels))
        return
    u = sps.mannwhitneyu(s[labels == 1], s[labels == 0]).statistic
    assert roc_auc(s, labels) == pytest.approx(u / (n1 * n0), abs=1e-12)


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


# --------------------------------------------------------------------------- BH


@pytest.mark.parametrize("seed", range(4))
def test_benjamini_hochberg_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 20), [1.0, 0.5, 0.5]])
    rng.shuffle(p)
    got = benjamini_hochberg(p)
    np.testing.assert_allclose(got, sps.false_discovery_control(p, method="bh"), rtol=1e-12)
    order = np.argsort(p)
    assert np.all(np.diff(got[order]) >= 0) and got.max() <= 1.0


def test_benjamini_hochberg_passes_nan_through() -> None:
    p = np.array([0.04, np.nan, 0.01, 0.03, np.nan])
    got = benjamini_hochberg(p)
    assert np.isnan(got[[1, 4]]).all()
    np.testing.assert_allclose(got[[0, 2, 3]], sps.false_discovery_control([0.04, 0.01, 0.03]))
    assert np.isnan(benjamini_hochberg(np.array([np.nan]))).all()
    assert benjamini_hochberg(np.array([])).shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg(np.array([0.5, 1.5]))


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
    ref = sps.pointbiserialr(sub.success, sub.strong)
    assert row.n == len(sub)
    assert row.point_biserial_r == pytest.approx(ref.statistic)
    assert row.p_value == pytest.approx(ref.pvalue)
    rho = sps.spearmanr(sub.strong, sub.success)
    assert (row.spearman_rho, row.spearman_p) == pytest.approx((rho.statistic, rho.pvalue))
    assert row.auc == pytest.approx(roc_auc(sub.strong.to_numpy(), sub.success.to_numpy()))
    assert row.auc_ci_low < row.auc < row.auc_ci_high
    assert row.odds_ratio > 2.0
    cont = table[(table.subset == "all") & (table.target == "conf_drop") & (table.metric == "weak")]
    pr = sps.pearsonr(df.weak, df.conf_drop)
    assert cont.point_biserial_r.iloc[0] == pytest.approx(pr.statistic)
    assert cont[["auc", "auc_ci_low", "auc_ci_high", "odds_ratio"]].isna().all(axis=None)


def test_correlation_table_adjusts_p_within_subset_and_target(table: pd.DataFrame) -> None:
    for _, group in table.groupby(["subset", "target"], sort=False):
        expected = sps.false_discovery_control(group.p_value.dropna(), method="bh")
        np.testing.assert_allclose(group.p_adjusted.dropna(), expected)
        assert group.p_adjusted.isna().equals(group.p_value.isna())


def test_correlation_table_degenerate_subsets_are_nan(table: pd.DataFrame) -> None:
    stats_cols = [c for c in CORRELATION_COLUMNS if c not in ("subset", "target", "metric", "n")]
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
