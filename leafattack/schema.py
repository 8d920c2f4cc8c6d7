"""The CSV schemas of a run directory, defined once.

Every writer and reader of ``clean.csv``, ``trials.csv``, ``summary.csv``,
``best.csv``, ``edges.csv`` and ``correlation.csv`` takes its column names and
dtypes from here.

Run directory layout::

    RUN_DIR/
      config.toml        resolved configuration (grid, model, signs, leaves, seed, fingerprints)
      clean.csv          CLEAN_COLUMNS, one row per sign
      trials.csv         TRIAL_COLUMNS, one row per trial, in trial_id order
      summary.csv        SUMMARY_COLUMNS, success rates by factor
      best.csv           TRIAL_COLUMNS + ``rule``, ``image``: the strongest trial per sign
      best/*.png         clean | attacked pairs
      edges.csv          EDGE_COLUMNS (trial_id + one column per edge metric)
      correlation.csv    CORRELATION_COLUMNS
      figures/*.png, report.html
"""

from __future__ import annotations

from typing import Final

TRIAL_COLUMNS: Final[dict[str, str]] = {
    "trial_id": "int64",  # stable index in the documented enumeration order
    "sign_id": "int64",  # index of the sign in the run's sign set
    "sign_file": "string",  # identifier of the sign image inside its source
    "true_label": "int64",  # index into the model's class names
    "true_name": "string",
    "leaf_id": "string",  # id of the leaf in the leaf library
    "species": "string",
    "colour": "string",  # shipped colour (level "natural"), else the colour recoloured to
    "size": "float64",  # leaf's longest side as a fraction of the sign image width
    "angle": "float64",  # degrees counter-clockwise
    "x": "float64",  # leaf centre, fraction of the sign image width (0 = left)
    "y": "float64",  # leaf centre, fraction of the sign image height (0 = top)
    "position": "int64",  # lattice cell of (x, y): row * N + column, row-major
    "occluded_frac": "float64",  # fraction of the sign mask covered by the leaf (alpha-weighted)
    "pred_label": "int64",
    "pred_name": "string",
    "pred_conf": "float64",  # probability of pred_label
    "true_conf": "float64",  # probability of true_label
    "success": "bool",
}

TARGET_CONF: Final[str] = "target_conf"
"""Extra float64 column of a targeted run's trials.csv, after ``true_conf``: the
probability of the target class."""


SCENE_TRIAL_COLUMNS: Final[dict[str, str]] = {
    "trial_id": "int64",  # sign index in the run's sign list * scenes_per_sign + scene
    "sign_id": "int64",
    "sign_file": "string",
    "true_label": "int64",
    "true_name": "string",
    "n_leaves": "int64",  # leaves in the scene (their parameters: leaves.csv)
    "occluded_frac": "float64",  # share of the sign mask covered by the union of the leaves
    "pred_label": "int64",
    "pred_name": "string",
    "pred_conf": "float64",
    "true_conf": "float64",
    "success": "bool",
}
"""trials.csv of a run of random multi-leaf scenes (``scenes_per_sign > 0``): one row per
scene."""

LEAF_COLUMNS: Final[dict[str, str]] = {
    "trial_id": "int64",
    "sign_id": "int64",
    "slot": "int64",  # stacking order: later slots lie over earlier ones
    "leaf_id": "string",
    "species": "string",
    "colour": "string",
    "size": "float64",
    "angle": "float64",
    "x": "float64",
    "y": "float64",
}
"""leaves.csv of a multi-leaf run: one row per leaf of each scene, floats written exactly
(``%.9g``); ``leafattack render`` reads it as a scenes file (``trial_id`` = scene id)."""


def trial_columns(targeted: bool, scenes: bool = False) -> dict[str, str]:
    """The trials.csv columns of a grid run (or of random scenes), untargeted or targeted,
    in order."""
    base = SCENE_TRIAL_COLUMNS if scenes else TRIAL_COLUMNS
    if not targeted:
        return dict(base)
    out: dict[str, str] = {}
    for k, v in base.items():
        out[k] = v
        if k == "true_conf":
            out[TARGET_CONF] = "float64"
    return out


CLEAN_COLUMNS: Final[dict[str, str]] = {
    "sign_id": "int64",
    "sign_file": "string",
    "true_label": "int64",
    "true_name": "string",
    "pred_label": "int64",
    "pred_name": "string",
    "pred_conf": "float64",
    "true_conf": "float64",
    "correct": "bool",  # clean prediction equals the true label
    "attacked": "bool",  # correct, and (targeted runs) not already of the target class
}

SUMMARY_COLUMNS: Final[dict[str, str]] = {
    # "overall", a SUMMARY_FACTORS name, "sign_class x species", or "signs_fooled" and
    # "signs_fooled by sign_class", where a row counts signs (fooled = any trial succeeded)
    "factor": "string",
    "level": "string",  # value of the factor, e.g. "stop" or "stop | maple"
    "trials": "int64",  # trials, or signs for the signs_fooled factors
    "successes": "int64",
    "rate": "float64",
    # 95% interval: cluster bootstrap resampling signs (and leaves), or Wilson's for the
    # signs_fooled rows (whose units are signs); NaN for a level of fewer than two signs
    "ci_low": "float64",
    "ci_high": "float64",
    "signs": "int64",  # distinct signs in the level
    "wilson_trial_low": "float64",  # 95% Wilson interval treating trials as independent
    "wilson_trial_high": "float64",
    "resampled": "string",  # "signs", "signs+leaves" or "none (Wilson)"
    "n_boot": "int64",  # bootstrap resamples (0: no bootstrap)
    "boot_seed": "int64",
}

CORRELATION_COLUMNS: Final[dict[str, str]] = {
    "subset": "string",  # "all", "species=maple", "size=0.3", ...
    "target": "string",  # "success" or "conf_drop"
    "metric": "string",
    "n": "int64",
    "point_biserial_r": "float64",  # Pearson r for the continuous target
    "p_value": "float64",
    "p_adjusted": "float64",  # Benjamini-Hochberg across metrics within subset and target
    "spearman_rho": "float64",
    "spearman_p": "float64",
    "auc": "float64",  # ROC AUC (success target only)
    "auc_ci_low": "float64",  # 95% percentile bootstrap; what it resamples: auc_ci_resampled
    "auc_ci_high": "float64",
    "odds_ratio": "float64",  # per standard deviation of the metric (success target only)
    "auc_ci_resampled": "string",  # "signs" (cluster bootstrap, runs) or "trials"
    "n_boot": "int64",  # bootstrap replicates of the AUC interval
    "odds_ratio_ci_low": "float64",  # 95% Wald interval of the odds ratio (covariance below)
    "odds_ratio_ci_high": "float64",
    "odds_ratio_p": "float64",  # Wald p-value of the logistic slope, same covariance
    "odds_ratio_cov": "string",  # "cluster" (sandwich over signs, statsmodels) or "model"
}

SUMMARY_FACTORS: Final[tuple[str, ...]] = (
    "sign_class",
    "species",
    "colour",
    "size",
    "angle",
    "position",
)
"""Factors that summary.csv breaks success down by, singly; plus ``sign_class x species``."""

SCENE_SUMMARY_FACTORS: Final[tuple[str, ...]] = ("sign_class", "n_leaves", "coverage")
"""Factors of a multi-leaf scene run's summary (``coverage``: union ``occluded_frac`` in the
bins of :data:`COVERAGE_BINS`)."""

COVERAGE_BINS: Final[tuple[float, ...]] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
"""Edges of the coverage bins (share of the sign face covered), left-closed; the last bin
includes 1."""

CONTROL_COLUMNS: Final[dict[str, str]] = {
    "trial_id": "int64",  # the trial (or scene) of trials.csv whose leaves were re-coloured
    "control": "string",  # control kind (leafattack.compose.controls.CONTROLS)
    "pred_label": "int64",
    "pred_name": "string",
    "pred_conf": "float64",
    "true_conf": "float64",
    "success": "bool",  # the run's criterion on the control image
}
"""controls.csv: one row per attacked trial and control kind, kind-major, in trial order."""

CONTROLS_SUMMARY_COLUMNS: Final[dict[str, str]] = {
    "control": "string",
    "factor": "string",  # overall, species, colour, size, n_leaves
    "level": "string",
    "trials": "int64",  # paired trials (leaf and control on the same placement)
    "signs": "int64",
    "leaf_rate": "float64",
    "leaf_ci_low": "float64",  # 95% cluster-bootstrap interval (resampling signs[, leaves])
    "leaf_ci_high": "float64",
    "control_rate": "float64",
    "control_ci_low": "float64",
    "control_ci_high": "float64",
    "excess": "float64",  # leaf_rate - control_rate
    "excess_ci_low": "float64",
    "excess_ci_high": "float64",
    "leaf_only": "int64",  # discordant pairs: the leaf fools the model, the control does not
    "control_only": "int64",  # discordant pairs the other way
    "mcnemar_p": "float64",  # exact McNemar test (binomial on the discordant pairs); treats
    # trials as independent, which they are not: read the sign-level interval first
    "resampled": "string",  # "signs" or "signs+leaves": the clusters of the bootstrap
    "n_boot": "int64",
    "boot_seed": "int64",
}
"""controls_summary.csv: the leaf against each control on identical placements."""


# --- Adaptive search (leafattack search) ----------------------------------------------

QUERY_COLUMNS: Final[dict[str, str]] = {
    "sign_id": "int64",
    "query": "int64",  # 1-based index of the query among the sign's queries
    "method": "string",
    "loss": "float64",  # margin loss (written exactly, %.9g of a float32)
    "pred_label": "int64",
    "pred_name": "string",
    "pred_conf": "float64",
    "true_conf": "float64",
    "success": "bool",
}
"""queries.csv of a search: every evaluated scene, in evaluation order."""

QUERY_LEAF_COLUMNS: Final[dict[str, str]] = {
    "sign_id": "int64",
    "query": "int64",
    "slot": "int64",
    "leaf_id": "string",
    "species": "string",
    "colour": "string",
    "size": "float64",
    "angle": "float64",
    "x": "float64",
    "y": "float64",
}
"""query_leaves.csv of a search: the leaves of every query, keyed by (sign_id, query)."""

SEARCH_BEST_COLUMNS: Final[dict[str, str]] = {
    "sign_id": "int64",
    "sign_file": "string",
    "true_label": "int64",
    "true_name": "string",
    "method": "string",
    "queries_used": "int64",
    "success": "bool",  # the sign was fooled within the budget
    "first_success": "int64",  # query of the first success, 0 when none
    "best_query": "int64",  # query of the lowest loss
    "loss": "float64",
    "pred_label": "int64",
    "pred_name": "string",
    "pred_conf": "float64",
    "true_conf": "float64",
    "image": "string",  # best/<sign_id>.png, relative to the search directory
}
"""best.csv of a search: per attacked sign its best scene (leaves: best_leaves.csv)."""


# --- The leaf-robustness benchmark (issue 16) -------------------------------------------

LEADERBOARD_BUDGET_LABELS: Final[tuple[str, ...]] = ("b10", "b100", "full")
"""The budgets of the leaderboard's robust-accuracy columns: 10, 100 and the full budget."""

LEADERBOARD_LEAVES: Final[tuple[int, ...]] = (1, 3)
"""Leaves per searched scene (K) of the leaderboard's robust-accuracy columns."""


def _with_interval(name: str) -> dict[str, str]:
    return {name: "float64", f"{name}_ci_low": "float64", f"{name}_ci_high": "float64"}


LEADERBOARD_COLUMNS: Final[dict[str, str]] = {
    "protocol_version": "string",
    "model": "string",  # the model's name on the leaderboard (NAME= or from the spec)
    "spec": "string",  # the model spec as given
    "signs": "string",  # the sign source spec
    "n_signs": "int64",
    "budget": "int64",  # the full query budget per sign of the searches
    "method": "string",  # the search method
    "settings": "string",  # JSON: every protocol setting and the package version
    # Every rate below has a 95% interval at the level of signs (the sign is the unit).
    **_with_interval("clean_accuracy"),  # share of signs correct when clean
    **_with_interval("grid_success_rate"),  # trials of attacked signs; signs(+leaves) bootstrap
    "grid_signs_attacked": "int64",
    "grid_signs_fooled": "int64",
    **_with_interval("grid_signs_fooled_rate"),  # fooled / attacked signs, Wilson
    **{
        k: v
        for n_leaves in LEADERBOARD_LEAVES
        for label in LEADERBOARD_BUDGET_LABELS
        for k, v in _with_interval(f"robust_k{n_leaves}_{label}").items()
    },  # share of all signs correct when clean and not fooled within the budget
    **_with_interval("grey_excess"),  # grid success of the leaf - of its grey cut-out
    "survival_signs": "int64",  # signs whose best grid scene succeeded
    **_with_interval("survival"),  # share of views under which those scenes still succeed
}
"""leaderboard.csv of ``leafattack benchmark``: one row per model."""

LEADERBOARD_CURVE_COLUMNS: Final[dict[str, str]] = {
    "protocol_version": "string",
    "model": "string",
    "leaves_per_scene": "int64",
    "budget": "int64",
    "signs": "int64",
    **_with_interval("robust_accuracy"),
}
"""leaderboard_curves.csv: robust accuracy against budget, per model and K (the figure)."""
