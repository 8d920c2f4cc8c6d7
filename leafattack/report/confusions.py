"""Confusions for many classes: the top (true -> predicted) pairs instead of a matrix.

A 43-class confusion matrix is unreadable at page size. With more than
:data:`MAX_MATRIX_CLASSES` classes the report shows :func:`fig_top_confusions`, a bar
chart of the most frequent wrong predictions, counted in trials and in signs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from leafattack.report.figures import fig_confusion, require
from leafattack.report.text import shorten

MAX_MATRIX_CLASSES = 20
"""Most classes (true or predicted) for which the report draws the full matrix."""


def top_confusions(trials: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """The ``n`` most frequent (true class, predicted class) pairs with true != predicted.

    Args:
        trials: TRIAL_COLUMNS rows (needs ``true_name``, ``pred_name``, ``sign_id``).

    Returns:
        Columns ``true_name``, ``pred_name``, ``trials`` (trials with that prediction),
        ``share`` (of the true class's trials), ``signs`` (signs with at least one such
        trial); sorted by trials (descending), then by the names.
    """
    require(trials, ("true_name", "pred_name", "sign_id"))
    t = pd.DataFrame(
        {
            "true_name": trials["true_name"].astype(str),
            "pred_name": trials["pred_name"].astype(str),
            "sign_id": trials["sign_id"],
        }
    )
    per_class = t.groupby("true_name").size()
    wrong = t[t["true_name"] != t["pred_name"]]
    cols = ["true_name", "pred_name", "trials", "share", "signs"]
    if wrong.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if "name" in c else float) for c in cols})
    g = wrong.groupby(["true_name", "pred_name"])
    out = pd.DataFrame({"trials": g.size(), "signs": g["sign_id"].nunique()}).reset_index()
    out["share"] = out["trials"] / per_class.reindex(out["true_name"]).to_numpy(np.float64)
    out = out.sort_values(
        ["trials", "true_name", "pred_name"], ascending=[False, True, True], kind="mergesort"
    )
    return out[cols].head(n).reset_index(drop=True)


def n_classes(trials: pd.DataFrame) -> int:
    """Classes that occur as true or predicted class."""
    return len(set(trials["true_name"].astype(str)) | set(trials["pred_name"].astype(str)))


def fig_top_confusions(trials: pd.DataFrame, n: int = 20) -> Figure:
    """Horizontal bars of :func:`top_confusions`: ``true -> predicted``, trials per pair.

    Returns:
        The figure; its axes' bar heights are the pairs' trial counts, top pair first.
    """
    top = top_confusions(trials, n)
    fig = Figure(figsize=(10.0, 1.8 + 0.32 * max(len(top), 1)), layout="constrained")
    ax = fig.add_subplot()
    if top.empty:
        ax.text(0.5, 0.5, "no trial changed the prediction", ha="center", va="center")
        ax.set_axis_off()
        return fig
    labels = [
        f"{shorten(a, 34)} \u2192 {shorten(b, 34)}"
        for a, b in zip(top["true_name"], top["pred_name"], strict=True)
    ]
    y = np.arange(len(top))
    ax.barh(y, top["trials"].to_numpy(np.float64), color="#0072B2")
    for yi, (k, share, signs) in enumerate(
        zip(top["trials"], top["share"], top["signs"], strict=True)
    ):
        sign_word = "sign" if int(signs) == 1 else "signs"
        ax.text(
            float(k), yi, f" {int(k)}: {share:.0%} of the class, {int(signs)} {sign_word}",
            va="center", fontsize=7.5,
        )  # fmt: skip
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.tick_params(labelsize=8)
    ax.set_xlim(0, float(top["trials"].max()) * 1.6)
    ax.set_xlabel("attacked trials with this prediction")
    ax.set_title(
        f"Top {len(top)} confusions under attack (true \u2192 predicted)\n"
        f"{n_classes(trials)} classes, too many for a matrix; {len(trials)} attacked trials",
        fontsize=10,
    )
    return fig


def fig_confusion_auto(trials: pd.DataFrame) -> Figure:
    """The full confusion matrix up to :data:`MAX_MATRIX_CLASSES` classes, else the top
    confusions."""
    if n_classes(trials) > MAX_MATRIX_CLASSES:
        return fig_top_confusions(trials)
    return fig_confusion(trials)
