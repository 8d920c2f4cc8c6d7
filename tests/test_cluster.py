"""Sign-level inference: the cluster bootstrap against analytic results and scipy, and
summary intervals that widen when signs differ."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from leafattack.analysis.cluster import (
    BootSpec,
    cluster_bootstrap,
    mcnemar_exact,
    percentile_interval,
    sign_level_rate,
)
from leafattack.analysis.stats import wilson_interval
from leafattack.analysis.summary import summarise


def test_bootstrap_sd_matches_the_analytic_sd_of_a_mean_of_cluster_means() -> None:
    """Equal clusters: the replicate is the mean of S cluster means drawn with replacement,
    whose standard deviation is sigma / sqrt(S) with sigma the (ddof=0) sd of the means."""
    rng = np.random.default_rng(4)
    s, per = 12, 50
    sign = np.repeat(np.arange(s), per)
    values = rng.normal(rng.normal(0, 2, s)[sign], 1.0)
    reps = cluster_bootstrap(values[:, None], sign, n_boot=20_000, seed=1)[:, 0]
    means = values.reshape(s, per).mean(axis=1)
    expected = means.std(ddof=0) / math.sqrt(s)
    assert reps.std() == pytest.approx(expected, rel=0.03)  # 20000 replicates: ~0.5% noise
    assert reps.mean() == pytest.approx(values.mean(), abs=3 * expected / math.sqrt(20_000))


def test_without_clusters_it_is_the_ordinary_bootstrap_of_scipy() -> None:
    """Every trial its own sign: percentiles agree with scipy.stats.bootstrap's."""
    rng = np.random.default_rng(7)
    x = rng.exponential(1.0, 300)
    reps = cluster_bootstrap(x[:, None], np.arange(len(x)), n_boot=20_000, seed=2)[:, 0]
    low, high = percentile_interval(reps)
    ref = stats.bootstrap(
        (x,), np.mean, n_resamples=20_000, method="percentile", random_state=3
    ).confidence_interval
    se = x.std() / math.sqrt(len(x))
    assert low == pytest.approx(ref.low, abs=0.05 * se)
    assert high == pytest.approx(ref.high, abs=0.05 * se)


def test_crossed_bootstrap_adds_leaf_variance() -> None:
    """Signs x leaves with additive effects: resampling the leaves too widens the interval,
    towards sqrt(var_sign / S + var_leaf / L)."""
    rng = np.random.default_rng(9)
    s, n_leaf = 10, 6
    sign_eff = rng.normal(0, 1.0, s)
    leaf_eff = rng.normal(0, 1.0, n_leaf)
    sign, leaf = np.meshgrid(np.arange(s), np.arange(n_leaf), indexing="ij")
    sign, leaf = sign.ravel(), leaf.ravel()
    v = (sign_eff[sign] + leaf_eff[leaf])[:, None]
    only_signs = cluster_bootstrap(v, sign, n_boot=20_000, seed=0)[:, 0].std()
    both = cluster_bootstrap(v, sign, leaf, n_boot=20_000, seed=0)[:, 0].std()
    expected = math.sqrt(sign_eff.var() / s + leaf_eff.var() / n_leaf)
    assert only_signs == pytest.approx(sign_eff.std() / math.sqrt(s), rel=0.05)
    assert both == pytest.approx(expected, rel=0.05)
    assert both > only_signs


def test_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(0)
    v = rng.random((200, 2))
    sign = rng.integers(0, 9, 200)
    a = cluster_bootstrap(v, sign, n_boot=50, seed=5)
    assert np.array_equal(a, cluster_bootstrap(v, sign, n_boot=50, seed=5))
    assert not np.array_equal(a, cluster_bootstrap(v, sign, n_boot=50, seed=6))
    with pytest.raises(ValueError):
        BootSpec(n_boot=0)


def _strongly_differing_signs() -> pd.DataFrame:
    """16 signs x 600 trials, per-sign success rates from 0 to 0.75."""
    rng = np.random.default_rng(11)
    rates = np.linspace(0.0, 0.75, 16)
    sign = np.repeat(np.arange(16), 600)
    success = rng.random(len(sign)) < rates[sign]
    leaf = np.tile(np.repeat(["maple_a", "oak_a", "poplar_a"], 200), 16)
    return pd.DataFrame({
        "trial_id": np.arange(len(sign)), "sign_id": sign, "sign_file": sign.astype(str),
        "true_label": sign, "true_name": [f"c{i}" for i in sign], "leaf_id": leaf,
        "species": [x.split("_")[0] for x in leaf], "colour": "green",
        "size": np.tile([0.2, 0.4], len(sign) // 2), "angle": 0.0, "x": 0.5, "y": 0.5,
        "position": 0, "occluded_frac": 0.1, "pred_label": 0, "pred_name": "c0",
        "pred_conf": 0.5, "true_conf": 0.5, "success": success,
    })


def test_sign_level_interval_is_wider_than_trial_wilson_when_signs_differ() -> None:
    t = _strongly_differing_signs()
    summary = summarise(t)
    row = summary[summary["factor"] == "overall"].iloc[0]
    k, n = int(t["success"].sum()), len(t)
    w_lo, w_hi = wilson_interval(k, n)
    assert row["wilson_trial_low"] == pytest.approx(float(w_lo))
    assert row["wilson_trial_high"] == pytest.approx(float(w_hi))
    assert row["ci_low"] <= row["rate"] <= row["ci_high"]
    assert (row["ci_high"] - row["ci_low"]) > 4 * (float(w_hi) - float(w_lo))
    assert row["signs"] == 16 and row["resampled"] == "signs+leaves" and row["n_boot"] == 1000
    # A level with one sign says nothing about other signs: no sign-level interval.
    per_class = summary[summary["factor"] == "sign_class"]
    assert per_class["ci_low"].isna().all() and (per_class["signs"] == 1).all()
    fooled = summary[summary["factor"] == "signs_fooled"].iloc[0]
    assert fooled["resampled"] == "none (Wilson)"


def test_sign_level_rate_and_mcnemar() -> None:
    rate, lo, hi = sign_level_rate(np.array([1, 1, 0, 0, 1, 0]), np.array([0, 0, 1, 1, 2, 2]))
    assert rate == pytest.approx(0.5) and lo <= rate <= hi
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(7, 3) == pytest.approx(stats.binomtest(7, 10).pvalue)
    assert mcnemar_exact(3, 7) == pytest.approx(mcnemar_exact(7, 3))


def test_cluster_auc_interval_without_clusters_matches_scipy() -> None:
    """Each observation its own cluster: the ordinary paired bootstrap of the AUC."""
    from leafattack.analysis.cluster import cluster_bootstrap_auc_ci
    from leafattack.analysis.stats import roc_auc

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    s = y * 0.8 + rng.normal(0, 1, 400)
    low, high = cluster_bootstrap_auc_ci(s, y, np.arange(400), n_boot=4000, seed=0)
    ref = stats.bootstrap(
        (s, y), lambda a, b: roc_auc(a, b), paired=True, vectorized=False, n_resamples=4000,
        method="percentile", random_state=1,
    ).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.01)
    assert high == pytest.approx(ref.high, abs=0.01)


def test_correlation_auc_interval_widens_when_resampling_signs() -> None:
    """A metric whose link to success differs by sign: the sign-level AUC interval is wider
    than the trial-level one, and the table says which it is."""
    from leafattack.analysis.stats import correlation_table

    rng = np.random.default_rng(3)
    sign = np.repeat(np.arange(8), 500)
    slope = np.linspace(-0.5, 2.5, 8)[sign]
    m = rng.normal(0, 1, len(sign))
    success = rng.random(len(sign)) < 1 / (1 + np.exp(-(slope * m - 1)))
    df = pd.DataFrame({"m": m, "success": success, "sign_id": sign})
    trial = correlation_table(df, ["m"], conf_drop_col=None, by=(), n_boot=300)
    signs = correlation_table(df, ["m"], conf_drop_col=None, by=(), n_boot=300,
                              clusters="sign_id")
    t, c = trial.iloc[0], signs.iloc[0]
    assert (t.auc_ci_resampled, c.auc_ci_resampled) == ("trials", "signs")
    assert c.auc == t.auc
    assert c.auc_ci_low <= c.auc <= c.auc_ci_high
    assert (c.auc_ci_high - c.auc_ci_low) > 2 * (t.auc_ci_high - t.auc_ci_low)
