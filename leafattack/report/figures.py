"""Figures and a self-contained HTML report of a run directory.

``write_report(run_dir)`` reads a run directory (see :mod:`leafattack.schema` for its
layout), draws every figure with matplotlib, saves them as ``RUN_DIR/figures/*.png``
and writes ``RUN_DIR/report.html``: one file with inline CSS and the figures embedded
as base64 ``data:`` URIs, so it opens offline and can be mailed around on its own.

Each figure is a public function of the run's DataFrames and returns a
:class:`matplotlib.figure.Figure` (created without pyplot, so nothing global changes and
no GUI backend is needed), so a script can draw any one of them on its own:

* :func:`fig_position_heatmaps`: success rate or mean true-class probability over the
  lattice of leaf centres, over each sign class's clean image;
* :func:`fig_success_vs_size`: success rate against leaf size, one line per species,
  with 95 % sign-level bands (cluster bootstrap over signs and leaves);
* :func:`fig_success_vs_rotation`: success rate against rotation, polar;
* :func:`fig_class_species_matrix`: sign class x species success rates;
* :func:`fig_confusion`: true class -> predicted class counts under attack;
* :func:`fig_edge_distributions`: each edge metric for successes vs failures;
* :func:`fig_gallery`: the strongest attacks, clean | attacked | Canny clean | Canny
  attacked.

Colour choices are colour-blind safe: viridis / cividis colour maps and the Okabe-Ito
palette for categorical lines.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Literal

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.projections.polar import PolarAxes
from matplotlib.ticker import PercentFormatter

from leafattack.analysis.edges import EdgeConfig, canny_batch
from leafattack.analysis.summary import coverage_bins, rate_by
from leafattack.errors import LeafattackError
from leafattack.report.text import shorten, wrap_title

log = logging.getLogger(__name__)


DPI: Final[int] = 110
"""Resolution of the saved figures."""


GALLERY_MAX: Final[int] = 16
"""At most this many strongest attacks are shown in the gallery."""


OKABE_ITO: Final[tuple[str, ...]] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
"""The Okabe-Ito colour-blind-safe palette, ordered for contrast on white."""


_LINESTYLES: Final[tuple[str, ...]] = ("-", "--", "-.", ":")


_MARKERS: Final[tuple[str, ...]] = ("o", "s", "^", "D", "v", "P", "X", "*")


_OVERALL_COLOUR: Final[str] = "#444444"


FIGURES: Final[dict[str, str]] = {
    "position_success": "Success rate by leaf position",
    "position_confidence": "True-class probability by leaf position",
    "success_vs_size": "Success rate vs leaf size",
    "success_vs_rotation": "Success rate vs rotation",
    "class_species": "Sign class x species",
    "confusion": "Confusion under attack",
    "edge_distributions": "Edge metrics, successes vs failures",
    "gallery": "Strongest attacks",
    "leaf_vs_controls": "Leaf vs neutral occluders by size",
    "survival": "Survival of the attacks under viewing changes",
    "transfer": "Transfer of the attacks to other models",
}
"""Figure keys (``figures/<key>.png``) and their captions, in report order."""


HeatValue = Literal["success", "true_conf"]


def require(df: pd.DataFrame, columns: Sequence[str], what: str = "trials") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise LeafattackError(f"{what}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise LeafattackError(f"{what}: no rows to plot")


def _colour(i: int) -> str:
    return OKABE_ITO[i % len(OKABE_ITO)]


def _linestyle(i: int) -> str:
    return _LINESTYLES[(i // len(OKABE_ITO)) % len(_LINESTYLES)]


def _marker(i: int) -> str:
    return _MARKERS[i % len(_MARKERS)]


def _rate_top(values: np.ndarray) -> float:
    """Upper y limit for rates: room above the largest value, at least 1 %, at most 100 %."""
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    return min(1.0, max(0.01, top * 1.15))


def _cell_pct(value: float) -> str:
    """Short percentage for a heatmap cell: 0%, 0.4%, 7.5%, 42%."""
    p = 100.0 * value
    if p == 0 or p >= 10:
        return f"{p:.0f}%"
    return f"{p:.1f}%"


def _text_colour(rgba: tuple[float, float, float, float]) -> str:
    """Black or white, whichever reads better on ``rgba`` (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def _cmap(name: str, bad: str = "#f2f2f2") -> Colormap:
    return matplotlib.colormaps[name].with_extremes(bad=bad)


def position_stats(trials: pd.DataFrame) -> pd.DataFrame:
    """Outcomes per sign class and lattice position.

    Args:
        trials: TRIAL_COLUMNS rows (needs ``true_name``, ``position``, ``x``, ``y``,
            ``success``, ``true_conf``).

    Returns:
        DataFrame sorted by (``true_name``, ``position``) with columns ``true_name``,
        ``position``, ``x``, ``y`` (mean leaf centre, fractions of the sign image),
        ``trials``, ``successes``, ``rate`` and ``true_conf`` (mean true-class probability).
    """
    require(trials, ("true_name", "position", "x", "y", "success", "true_conf"))
    t = trials.assign(success=trials["success"].astype(bool).astype(np.int64))
    g = t.groupby(["true_name", "position"], sort=True)
    out = g.agg(
        x=("x", "mean"),
        y=("y", "mean"),
        trials=("success", "size"),
        successes=("success", "sum"),
        true_conf=("true_conf", "mean"),
    ).reset_index()
    out["rate"] = out["successes"] / out["trials"]
    return out[["true_name", "position", "x", "y", "trials", "successes", "rate", "true_conf"]]


def _cell_size(coord: np.ndarray, index: np.ndarray, n: int) -> float:
    """Lattice spacing along one axis from cell centres (fraction of the image side).

    Centres are ``x0 + (i + 0.5) * (x1 - x0) / n``, so the slope of centre against index
    is the cell size. With one cell (or one index present) the bounding box is assumed
    to be centred on the mean centre and as wide as the image allows.
    """
    if n > 1 and len(np.unique(index)) > 1:
        slope = float(np.polyfit(index.astype(np.float64), coord.astype(np.float64), 1)[0])
        if slope > 1e-6:
            return slope
    c = float(np.mean(coord))
    return max(0.05, 2.0 * min(c, 1.0 - c)) / max(n, 1)


def _grey_backdrop(image: np.ndarray) -> np.ndarray:
    """Lightened grayscale copy of an RGB image, so the heatmap colours stay readable."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
    return 0.35 + 0.65 * (img / 255.0)


def fig_position_heatmaps(
    trials: pd.DataFrame,
    clean_images: Mapping[str, np.ndarray],
    positions: tuple[int, int],
    value: HeatValue = "success",
) -> Figure:
    """Small multiples, one per sign class: an outcome over the lattice of leaf centres.

    Each lattice cell is a semi-transparent square centred on the mean leaf centre of
    that position for that class, coloured by the success rate (viridis) or the mean
    true-class probability (cividis), over a grayscale copy of the class's clean image.

    Args:
        trials: TRIAL_COLUMNS rows.
        clean_images: sign class name -> uint8 (H, W, 3) clean image (classes without
            an image get a plain background).
        positions: ``(N, M)``: N lattice columns x M rows (config.toml's ``positions``).
        value: ``"success"`` (success rate) or ``"true_conf"`` (mean true-class
            probability).

    Returns:
        The figure; each class's axes holds one Rectangle patch per lattice position.
    """
    if value not in ("success", "true_conf"):
        raise LeafattackError(f"heatmap value {value!r}: expected success or true_conf")
    stats = position_stats(trials)
    n_cols, n_rows = int(positions[0]), int(positions[1])
    classes = sorted(set(stats["true_name"].astype(str)))
    k = len(classes)
    ncols = min(4, k)
    nrows = math.ceil(k / ncols)
    fig = Figure(figsize=(2.7 * ncols + 1.3, 2.85 * nrows + 1.0), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    cmap = matplotlib.colormaps["viridis" if value == "success" else "cividis"]
    if value == "success":
        norm = Normalize(0.0, 1.0)
    else:  # probabilities: the data's range, in steps of 0.1, so differences show
        conf = stats["true_conf"].to_numpy(dtype=np.float64)
        lo = math.floor(float(np.nanmin(conf)) * 10) / 10
        hi = math.ceil(float(np.nanmax(conf)) * 10) / 10
        norm = Normalize(lo, hi) if hi > lo else Normalize(0.0, 1.0)
    annotate = max(n_cols, n_rows) <= 6
    halo = [patheffects.withStroke(linewidth=2.2, foreground="black")]
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.set_axis_off()
            continue
        cls = classes[i]
        sub = stats[stats["true_name"].astype(str) == cls]
        img = clean_images.get(cls)
        if img is not None:
            ax.imshow(
                _grey_backdrop(img),
                cmap="gray",
                vmin=0.0,
                vmax=1.0,
                extent=(0.0, 1.0, 1.0, 0.0),
                interpolation="bilinear",
            )
            ax.set_aspect(img.shape[0] / img.shape[1])
        else:
            ax.set_facecolor("#e6e6e6")
            ax.set_aspect(1.0)
        pos = sub["position"].to_numpy(dtype=np.int64)
        xs = sub["x"].to_numpy(dtype=np.float64)
        ys = sub["y"].to_numpy(dtype=np.float64)
        vals = sub["rate" if value == "success" else "true_conf"].to_numpy(dtype=np.float64)
        dx = _cell_size(xs, pos % n_cols, n_cols)
        dy = _cell_size(ys, pos // n_cols, n_rows)
        for x, y, v in zip(xs, ys, vals, strict=True):
            ax.add_patch(
                Rectangle(
                    (x - dx / 2, y - dy / 2),
                    dx,
                    dy,
                    facecolor=cmap(norm(v)),
                    alpha=0.72,
                    edgecolor="white",
                    linewidth=0.6,
                )
            )
            if annotate:
                label = _cell_pct(v) if value == "success" else f"{v:.2f}"
                ax.text(
                    x,
                    y,
                    label,
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="white",
                    path_effects=halo,
                )
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(1.0, 0.0)
        ax.set_xticks([0.0, 0.5, 1.0])
        ax.set_yticks([0.0, 0.5, 1.0])
        ax.tick_params(labelsize=7, length=2)
        if i % ncols:
            ax.set_yticklabels([])
        if i + ncols < k:
            ax.set_xticklabels([])
        n_trials = int(sub["trials"].sum())
        if value == "success":
            overall = float(sub["successes"].sum()) / max(n_trials, 1)
            detail = f"{100 * overall:.1f}% of {n_trials} trials"
        else:
            overall = float((sub["true_conf"] * sub["trials"]).sum()) / max(n_trials, 1)
            detail = f"mean p(true) {overall:.2f}, {n_trials} trials"
        ax.set_title(f"{wrap_title(cls, 30, 2)}\n{detail}", fontsize=9)
    what = "Attack success rate" if value == "success" else "Mean true-class probability"
    fig.suptitle(
        f"{what} by leaf-centre position ({n_cols}\u00d7{n_rows} lattice over each sign)",
        fontsize=11,
    )
    fig.supxlabel("leaf centre x (fraction of sign width)", fontsize=9)
    fig.supylabel("leaf centre y (fraction of sign height)", fontsize=9)
    shrink = 0.85 if nrows <= 3 else max(0.2, 2.6 / nrows)  # many classes: a short bar
    cbar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=shrink, aspect=30 * shrink / 0.85
    )
    cbar.set_label("success rate" if value == "success" else "mean p(true class)")
    if value == "success":
        cbar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return fig


def fig_success_vs_size(trials: pd.DataFrame, size_unit: str = "face") -> Figure:
    """Success rate against leaf size: one line per species with a 95 % sign-level band
    (cluster bootstrap over signs and leaves, :func:`~leafattack.analysis.summary.rate_by`).

    Args:
        trials: TRIAL_COLUMNS rows (needs ``species``, ``size``, ``success``).
        size_unit: ``face`` (fractions of the sign face width) or ``cm``, for the axis.

    Returns:
        The figure. Its lines are labelled with the species (and ``all species`` for
        the overall line when there are several species); their y data are the rates.
    """
    require(trials, ("species", "size", "success"))
    fig = Figure(figsize=(7.2, 4.6), layout="constrained")
    ax = fig.add_subplot()
    tops: list[float] = []
    species = sorted(set(trials["species"].astype(str)))
    groups: list[tuple[str, pd.DataFrame, str, str, str]] = [
        (sp, trials[trials["species"].astype(str) == sp], _colour(i), _linestyle(i), _marker(i))
        for i, sp in enumerate(species)
    ]
    if len(species) > 1:
        groups.append(("all species", trials, _OVERALL_COLOUR, ":", "x"))
    for label, grp, colour, ls, marker in groups:
        r = rate_by(grp, "size")
        x = r["level"].to_numpy(dtype=np.float64)
        if label != "all species":
            ax.fill_between(x, r["ci_low"], r["ci_high"], color=colour, alpha=0.16, linewidth=0)
            if len(x) == 1:
                ax.errorbar(
                    x,
                    r["rate"],
                    yerr=[r["rate"] - r["ci_low"], r["ci_high"] - r["rate"]],
                    color=colour,
                    capsize=4,
                    linewidth=1,
                )
        ax.plot(
            x,
            r["rate"].to_numpy(),
            color=colour,
            linestyle=ls,
            marker=marker,
            linewidth=2 if label != "all species" else 1.5,
            label=label,
        )
        tops.append(float(r["ci_high"].max()))
    sizes = np.unique(trials["size"].to_numpy(dtype=np.float64))
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{s:g}" for s in sizes])
    ax.set_ylim(0.0, _rate_top(np.asarray(tops)))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(
        "leaf size (longest side, cm)"
        if size_unit == "cm"
        else "leaf size (longest side, fraction of the sign face width)"
    )
    ax.set_ylabel("attack success rate")
    ax.set_title(
        "Success rate vs leaf size by species (bands: 95% interval, signs resampled)",
        fontsize=11,
    )
    ax.grid(alpha=0.3)
    ax.legend(title="species", fontsize=8, title_fontsize=8, loc="upper left")
    return fig


def fig_success_vs_rotation(trials: pd.DataFrame) -> Figure:
    """Success rate against leaf rotation as a polar plot, one line per species.

    Angles are degrees counter-clockwise (0 at the right), taken modulo 360. A line is
    closed into a loop only when its angles go round the circle without a gap larger
    than the others.

    Args:
        trials: TRIAL_COLUMNS rows (needs ``species``, ``angle``, ``success``).

    Returns:
        The figure (one polar axes); lines labelled like :func:`fig_success_vs_size`.
    """
    require(trials, ("species", "angle", "success"))
    t = trials.assign(angle_mod=np.mod(trials["angle"].to_numpy(dtype=np.float64), 360.0))
    fig = Figure(figsize=(7.2, 5.6), layout="constrained")
    ax = fig.add_subplot(projection="polar")
    assert isinstance(ax, PolarAxes)
    species = sorted(set(t["species"].astype(str)))
    groups: list[tuple[str, pd.DataFrame, str, str, str]] = [
        (sp, t[t["species"].astype(str) == sp], _colour(i), _linestyle(i), _marker(i))
        for i, sp in enumerate(species)
    ]
    if len(species) > 1:
        groups.append(("all species", t, _OVERALL_COLOUR, ":", "x"))
    tops: list[float] = []
    for label, grp, colour, ls, marker in groups:
        r = rate_by(grp, "angle_mod")
        deg = r["level"].to_numpy(dtype=np.float64)
        rate = r["rate"].to_numpy(dtype=np.float64)
        if len(deg) > 2:
            gaps = np.diff(np.append(deg, deg[0] + 360.0))
            if gaps[-1] <= gaps[:-1].max() + 1e-9:
                deg = np.append(deg, deg[0] + 360.0)
                rate = np.append(rate, rate[0])
        ax.plot(
            np.deg2rad(deg),
            rate,
            color=colour,
            linestyle=ls,
            marker=marker,
            linewidth=2 if label != "all species" else 1.5,
            label=label,
        )
        tops.append(float(np.max(rate)))
    top = _rate_top(np.asarray(tops))
    ax.set_ylim(0.0, top)
    ax.set_theta_zero_location("E")
    ax.set_theta_direction(1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0 if top > 0.2 else 1))
    ax.set_rlabel_position(67.5)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(
        "Success rate vs leaf rotation (degrees counter-clockwise;\nradius = attack success rate)",
        fontsize=11,
    )
    fig.legend(title="species", loc="outside right upper", fontsize=8, title_fontsize=8)
    return fig


def fig_class_species_matrix(trials: pd.DataFrame) -> Figure:
    """Annotated heatmap of success rates by sign class (rows) and species (columns).

    Args:
        trials: TRIAL_COLUMNS rows (needs ``true_name``, ``species``, ``success``).

    Returns:
        The figure; its image's array holds the rates (NaN where a pair has no trials).
    """
    require(trials, ("true_name", "species", "success"))
    t = trials.assign(success=trials["success"].astype(bool).astype(np.int64))
    g = t.groupby([t["true_name"].astype(str), t["species"].astype(str)])["success"]
    hits_df = g.sum().unstack(fill_value=0).sort_index().sort_index(axis=1)
    counts_df = g.size().unstack(fill_value=0).reindex_like(hits_df)
    classes = [str(c) for c in hits_df.index]
    species = [str(s) for s in hits_df.columns]
    hits = hits_df.to_numpy(dtype=np.int64)
    counts = counts_df.to_numpy(dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    width = min(16.0, 3.2 + 1.15 * len(species))
    height = min(24.0, 1.6 + 0.42 * len(classes))
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    cmap = _cmap("viridis")
    norm = Normalize(0.0, 1.0)
    im = ax.imshow(np.ma.masked_invalid(rates), cmap=cmap, norm=norm, aspect="auto")
    if rates.size <= 600:
        for i in range(len(classes)):
            for j in range(len(species)):
                if counts[i, j] == 0:
                    continue
                colour = _text_colour(cmap(norm(rates[i, j])))
                ax.text(
                    j,
                    i,
                    f"{_cell_pct(rates[i, j])}\n{hits[i, j]}/{counts[i, j]}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=colour,
                    linespacing=1.1,
                )
    ax.set_xticks(range(len(species)), species, rotation=30 if len(species) > 6 else 0)
    ax.set_yticks(range(len(classes)), classes)
    ax.tick_params(labelsize=8)
    ax.set_xlabel("leaf species")
    ax.set_ylabel("sign class")
    ax.set_title(
        "Attack success rate by sign class and leaf species\n(cell: rate, successes/trials)",
        fontsize=10,
    )
    cbar = fig.colorbar(im, ax=ax, shrink=0.9)
    cbar.set_label("attack success rate")
    cbar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return fig


def confusion_counts(trials: pd.DataFrame) -> pd.DataFrame:
    """Counts of predicted class (columns) per true class (rows) over the given trials.

    Rows are the true classes, sorted; columns are the true classes that occur as
    predictions in the same order, then the other predicted classes, sorted.
    """
    require(trials, ("true_name", "pred_name"))
    true = trials["true_name"].astype(str).rename("true_name")
    pred = trials["pred_name"].astype(str).rename("pred_name")
    ct = pd.crosstab(true, pred)
    rows = sorted(set(true))
    preds = set(pred)
    cols = [c for c in rows if c in preds] + sorted(preds - set(rows))
    return ct.reindex(index=rows, columns=cols, fill_value=0).astype(np.int64)


def fig_confusion(trials: pd.DataFrame) -> Figure:
    """Heatmap of true class -> predicted class counts over the attacked trials.

    Log colour scale (viridis); empty cells are left white; cells where the prediction
    kept the true class (the attack failed) are outlined.

    Args:
        trials: TRIAL_COLUMNS rows; every row is an attacked trial.

    Returns:
        The figure; its image's array holds :func:`confusion_counts` (0 masked).
    """
    ct = confusion_counts(trials)
    counts = ct.to_numpy()
    rows, cols = list(ct.index), list(ct.columns)
    width = min(22.0, 3.4 + 0.48 * len(cols))
    height = min(22.0, 2.2 + 0.42 * len(rows))
    fig = Figure(figsize=(max(width, 6.0), max(height, 3.8)), layout="constrained")
    ax = fig.add_subplot()
    cmap = _cmap("viridis", bad="white")
    norm = LogNorm(vmin=1.0, vmax=max(2.0, float(counts.max())))
    im = ax.imshow(np.ma.masked_equal(counts, 0), cmap=cmap, norm=norm, aspect="auto")
    if counts.size <= 900:
        for i in range(len(rows)):
            for j in range(len(cols)):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        str(counts[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=_text_colour(cmap(norm(counts[i, j]))),
                    )
    for i, name in enumerate(rows):
        if name in cols:
            j = cols.index(name)
            ax.add_patch(
                Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#D55E00", linewidth=1.4)
            )
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(labelsize=8)
    ax.set_xlabel("predicted class with the leaf")
    ax.set_ylabel("true class")
    ax.set_title(
        f"Predictions under attack ({len(trials)} trials; log colour scale;\n"
        "outlined: prediction unchanged)",
        fontsize=10,
    )
    cbar = fig.colorbar(im, ax=ax, shrink=0.9)
    cbar.set_label("trials (log scale)")
    return fig


def edge_metric_columns(edges: pd.DataFrame) -> list[str]:
    """The metric columns of an edges table: registry metrics first, in registry order."""
    try:
        from leafattack.analysis.edges import EDGE_METRICS

        known = [m for m in EDGE_METRICS if m in edges.columns]
    except ImportError:  # pragma: no cover - edges is part of the package
        known = []
    others = [
        c
        for c in edges.columns
        if c != "trial_id" and c not in known and pd.api.types.is_numeric_dtype(edges[c])
    ]
    return known + others


def fig_edge_distributions(trials: pd.DataFrame, edges: pd.DataFrame) -> Figure:
    """Distribution of each edge metric for successful vs failed attacks.

    Small multiples, one per metric: overlaid density histograms on shared bins
    (failures in blue, successes in vermillion), with the group sizes and medians.
    NaN values (e.g. "nothing to lose") are left out metric by metric.

    Args:
        trials: TRIAL_COLUMNS rows (needs ``trial_id``, ``success``).
        edges: ``trial_id`` + one numeric column per metric (edges.csv).

    Returns:
        The figure, one axes per metric (titled with the metric's name).
    """
    require(trials, ("trial_id", "success"))
    require(edges, ("trial_id",), "edges")
    metrics = edge_metric_columns(edges)
    if not metrics:
        raise LeafattackError("edges: no metric columns besides trial_id")
    df = trials[["trial_id", "success"]].merge(edges, on="trial_id", how="inner")
    if df.empty:
        raise LeafattackError("edges: no trial_id in common with the trials")
    success = df["success"].astype(bool).to_numpy()
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(3.4 * ncols + 0.4, 2.7 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    groups = (("failure", ~success, OKABE_ITO[0]), ("success", success, OKABE_ITO[1]))
    for i, ax in enumerate(axes.flat):
        if i >= len(metrics):
            ax.set_axis_off()
            continue
        name = metrics[i]
        values = df[name].to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        else:
            lo, hi = float(finite.min()), float(finite.max())
            bins = np.linspace(lo, hi, 31) if hi > lo else np.array([lo - 0.5, lo + 0.5])
            for label, sel, colour in groups:
                v = values[sel & np.isfinite(values)]
                if v.size == 0:
                    continue
                dens, _ = np.histogram(v, bins=bins, density=True)
                ax.stairs(dens, bins, fill=True, color=colour, alpha=0.35, linewidth=0)
                ax.stairs(
                    dens,
                    bins,
                    color=colour,
                    linewidth=1.3,
                    label=f"{label} (n={v.size}, median {np.median(v):.3g})",
                )
            ax.set_ylim(0.0, ax.get_ylim()[1] * 1.4)  # headroom for the legend
            ax.legend(fontsize=6.5, loc="upper right")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Edge-map change for successful vs failed attacks", fontsize=11)
    return fig




def canny_images(images: np.ndarray, config: EdgeConfig | None = None) -> np.ndarray:
    """Canny edge maps of uint8 (N, H, W, 3) RGB images as bool (N, R, R) (R: the config's
    resolution, or H when it is None), by :func:`~leafattack.analysis.edges.canny_batch`."""
    arr = np.ascontiguousarray(images, dtype=np.uint8)
    return np.asarray(canny_batch(arr, config or EdgeConfig()), dtype=bool)


def fig_success_vs_coverage(trials: pd.DataFrame) -> Figure:
    """Success rate against the union coverage of the sign face, one line per number of
    leaves, with 95% sign-level intervals (signs resampled; random multi-leaf scene runs).

    Args:
        trials: SCENE_TRIAL_COLUMNS rows (``n_leaves``, ``occluded_frac``, ``success``).
    """
    require(trials, ("n_leaves", "occluded_frac", "success"))
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    bins = coverage_bins(trials["occluded_frac"])
    labels = sorted(set(bins), key=lambda b: float(b.split("-")[0]))
    for i, (key, grp) in enumerate(trials.groupby("n_leaves", sort=True)):
        k = int(str(key))
        r = rate_by(grp.assign(coverage=bins[grp.index]), "coverage").set_index("level")
        r = r.reindex([b for b in labels if b in r.index])
        pos = [labels.index(b) for b in r.index]
        ax.errorbar(
            pos, r["rate"], yerr=[r["rate"] - r["ci_low"], r["ci_high"] - r["rate"]],
            color=_colour(i), marker=_marker(i), linestyle=_linestyle(i), capsize=3,
            label="1 leaf" if k == 1 else f"{k} leaves",
        )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("share of the sign face covered by the leaves")
    ax.set_ylabel("success rate")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, _rate_top(trials.groupby(bins)["success"].mean().to_numpy()))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def fig_gallery(
    best: pd.DataFrame,
    clean_images: np.ndarray,
    attacked_images: np.ndarray,
    clean_conf: Sequence[float] | None = None,
    edge_config: EdgeConfig | None = None,
) -> Figure:
    """The strongest attacks: clean | attacked | Canny clean | Canny attacked.

    Args:
        best: TRIAL_COLUMNS rows to show, in display order (e.g. best.csv sorted by
            ``true_conf``).
        clean_images: uint8 (N, H, W, 3), the clean sign of each row.
        attacked_images: uint8 (N, H, W, 3), the recomposed attacked image of each row.
        clean_conf: per row, the true-class probability without the leaf (optional).
        edge_config: the Canny settings of the edge maps (default: EdgeConfig()).

    Returns:
        The figure: two attacks per row of panels, each labelled with
        true class -> predicted class and the probabilities.
    """
    scenes = "n_leaves" in best.columns
    leaf_columns = ("n_leaves", "occluded_frac") if scenes else ("species", "size", "angle")
    require(best, ("true_name", "pred_name", "pred_conf", "true_conf", *leaf_columns), "best")
    n = len(best)
    if len(clean_images) != n or len(attacked_images) != n:
        raise LeafattackError(
            f"gallery: {n} rows but {len(clean_images)} clean and {len(attacked_images)} "
            "attacked images"
        )
    edges_clean = canny_images(clean_images, edge_config)
    edges_attacked = canny_images(attacked_images, edge_config)
    per_row = 2 if n > 1 else 1
    nrows = math.ceil(n / per_row)
    fig = Figure(figsize=(6.2 * per_row, 2.25 * nrows + 0.5), layout="constrained")
    subfigs = fig.subfigures(nrows, per_row, squeeze=False, wspace=0.03, hspace=0.02)
    colour_cols = best.get("colour")
    for i, sf in enumerate(subfigs.flat):
        if i >= n:
            continue
        row = best.iloc[i]
        axes = sf.subplots(1, 4)
        true_name, pred_name = str(row["true_name"]), str(row["pred_name"])
        cc = f" {float(clean_conf[i]):.2f}" if clean_conf is not None else ""
        short_true, short_pred = shorten(true_name, 20), shorten(pred_name, 20)  # panel width
        panels = (
            (clean_images[i], None, f"clean\n{short_true}{cc}"),
            (attacked_images[i], None, f"attacked\n{short_pred} {float(row['pred_conf']):.2f}"),
            (edges_clean[i], "gray_r", "Canny, clean"),
            (edges_attacked[i], "gray_r", "Canny, attacked"),
        )
        for ax, (img, cmap, title) in zip(axes, panels, strict=True):
            ax.imshow(img, cmap=cmap, interpolation="nearest" if cmap else "antialiased")
            ax.set_title(title, fontsize=7.5, linespacing=1.1)
            ax.set_xticks([])
            ax.set_yticks([])
        colour = f"/{row['colour']}" if colour_cols is not None else ""
        verdict = "" if bool(row.get("success", True)) else " (not fooled)"
        if scenes:
            what = f"{int(row['n_leaves'])} leaves covering {float(row['occluded_frac']):.0%}"
        else:
            what = (
                f"{row['species']}{colour}, size {float(row['size']):g}, "
                f"{float(row['angle']):g}\u00b0"
            )
        sf.suptitle(
            f"{true_name} \u2192 {pred_name}{verdict}: {what}, "
            f"p(true) {float(row['true_conf']):.2f}",
            fontsize=8,
        )
    fig.suptitle("Strongest attack per sign", fontsize=11)
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG at :data:`DPI` on white, without a software tag (stable bytes)."""
    fig.savefig(path, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})


def fig_transfer(summary: pd.DataFrame) -> Figure:
    """Transfer heatmap: rows are source models, columns target models, cells the share of
    the source's successful scenes that also fool the target (sign-level rate, with its
    95 % bootstrap interval written in the cell).

    Args:
        summary: ``transfer_summary.csv`` rows of one or more runs (``source, model, rate,
            ci_low, ci_high``).
    """
    require(summary, ("source", "model", "rate", "ci_low", "ci_high"), "transfer summary")
    sources = list(dict.fromkeys(summary["source"].astype(str)))
    targets = list(dict.fromkeys(summary["model"].astype(str)))
    grid = np.full((len(sources), len(targets)), np.nan)
    text = [["" for _ in targets] for _ in sources]
    rates = summary["rate"].to_numpy(dtype=float)
    lows = summary["ci_low"].to_numpy(dtype=float)
    highs = summary["ci_high"].to_numpy(dtype=float)
    for n, (src, tgt) in enumerate(zip(summary["source"].astype(str),
                                       summary["model"].astype(str), strict=True)):
        i, j = sources.index(src), targets.index(tgt)
        grid[i, j] = rates[n]
        lo, hi = lows[n], highs[n]
        band = f"\n[{lo:.0%}, {hi:.0%}]" if math.isfinite(lo) and math.isfinite(hi) else ""
        text[i][j] = (f"{rates[n]:.0%}" if math.isfinite(rates[n]) else "n/a") + band
    fig = Figure(figsize=(1.9 * len(targets) + 2.6, 1.1 * len(sources) + 1.6),
                 layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i in range(len(sources)):
        for j in range(len(targets)):
            light = math.isfinite(grid[i, j]) and grid[i, j] < 0.6
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8,
                    color="white" if light else "black")
    ax.set_xticks(range(len(targets)), targets, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(sources)), sources, fontsize=8)
    ax.set_xlabel("target model")
    ax.set_ylabel("attacks found against")
    fig.colorbar(im, ax=ax, format=PercentFormatter(1.0), label="transfer rate")
    ax.set_title("Transfer of successful leaf scenes (sign-level rate, 95% CI)", fontsize=10)
    return fig


def fig_survival(summary: pd.DataFrame) -> Figure:
    """Survival of the attacks against each view factor: one panel per factor (binned),
    the sign-level survival rate with its 95 % bootstrap interval.

    Args:
        summary: ``robustness_summary.csv`` rows (``factor, level, rate, ci_low, ci_high``).
    """
    require(summary, ("factor", "level", "rate", "ci_low", "ci_high"), "survival summary")
    factors = [f for f in dict.fromkeys(summary["factor"].astype(str))
               if f not in ("overall", "sign")]
    if not factors:
        raise LeafattackError("survival summary has no view factors (identity views?)")
    fig = Figure(figsize=(3.0 * len(factors) + 0.8, 3.4), layout="constrained")
    axes = fig.subplots(1, len(factors), squeeze=False, sharey=True)[0]
    overall = summary[summary["factor"] == "overall"]
    for ax, factor in zip(axes, factors, strict=True):
        part = summary[summary["factor"] == factor]
        x = np.arange(len(part))
        rate = part["rate"].to_numpy(dtype=float)
        lo = part["ci_low"].to_numpy(dtype=float)
        hi = part["ci_high"].to_numpy(dtype=float)
        ax.errorbar(x, rate, yerr=[np.nan_to_num(rate - lo), np.nan_to_num(hi - rate)],
                    fmt="o-", color=OKABE_ITO[0], capsize=3)
        if not overall.empty:
            ax.axhline(float(overall["rate"].iloc[0]), color=_OVERALL_COLOUR, ls="--", lw=0.8)
        ax.set_xticks(x, part["level"].astype(str), rotation=30, ha="right", fontsize=7)
        ax.set_xlabel(factor)
        ax.set_ylim(0, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes[0].set_ylabel("attacks surviving the view")
    fig.suptitle("Survival under viewing changes (sign-level, 95% CI; dashed: overall)",
                 fontsize=10)
    return fig
