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
  with 95 % Wilson bands;
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

import base64
import html
import io
import json
import logging
import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

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

from leafattack import schema
from leafattack.errors import LeafattackError

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
}
"""Figure keys (``figures/<key>.png``) and their captions, in report order."""

HeatValue = Literal["success", "true_conf"]

# ----------------------------------------------------------------------------- reading a run


@dataclass(frozen=True)
class RunData:
    """The tables of one run directory, read with the dtypes of :mod:`leafattack.schema`.

    Attributes:
        run_dir: the run directory.
        config: the parsed ``config.toml`` (with its ``fingerprints``/``versions`` tables).
        config_text: ``config.toml`` as written.
        clean: CLEAN_COLUMNS rows, or None when ``clean.csv`` is missing.
        trials: TRIAL_COLUMNS rows (empty when ``trials.csv`` is missing or header only).
        summary: SUMMARY_COLUMNS rows (computed from ``trials`` when the file is missing).
        overall: the ``overall`` row of summary.csv as the exact strings in the file
            (keys ``trials``, ``successes``, ``rate``, ``ci_low``, ``ci_high``); empty
            when there are no trials.
        fooled: the same for the ``signs_fooled`` row (signs fooled by at least one
            trial), computed from the trials for runs whose summary lacks it.
        best: best.csv rows (TRIAL_COLUMNS + ``image``), empty when there are none.
        edges: edges.csv (``trial_id`` + one column per metric), or None.
        correlation: correlation.csv (CORRELATION_COLUMNS), or None.
        complete: whether ``progress.json`` marks the attack as finished (None: no file).
        notes: remarks about missing or recomputed files, for the report.
    """

    run_dir: Path
    config: dict[str, Any]
    config_text: str
    clean: pd.DataFrame | None
    trials: pd.DataFrame
    summary: pd.DataFrame
    overall: dict[str, str]
    fooled: dict[str, str]
    best: pd.DataFrame
    edges: pd.DataFrame | None
    correlation: pd.DataFrame | None
    complete: bool | None
    notes: tuple[str, ...] = field(default=())

    @property
    def positions(self) -> tuple[int, int]:
        """``(N, M)``: N lattice columns x M rows, from config.toml's ``positions``."""
        return _parse_positions(self.config.get("positions", "5x5"))


def _parse_positions(value: Any) -> tuple[int, int]:
    from leafattack.grid import parse_positions

    if isinstance(value, str):
        return parse_positions(value)
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise LeafattackError(f"config.toml: positions {value!r}: expected NxM, e.g. 5x5")


def _read_csv(
    path: Path,
    dtypes: Mapping[str, str],
    *,
    data: bytes | None = None,
    as_text: bool = False,
) -> pd.DataFrame:
    """Read a run CSV, check it has the schema's columns, one-line errors on failure."""
    source: Path | io.BytesIO = io.BytesIO(data) if data is not None else path
    try:
        if as_text:
            df = pd.read_csv(source, dtype=str, keep_default_na=False)
        else:
            df = pd.read_csv(source, dtype=dict(dtypes))
    except pd.errors.EmptyDataError:
        raise LeafattackError(f"{path}: empty file (expected a CSV header)") from None
    except (ValueError, TypeError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeafattackError(f"{path}: unreadable CSV ({first})") from None
    missing = [c for c in dtypes if c not in df.columns]
    if missing:
        raise LeafattackError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def _empty(dtypes: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(dtype=v) for k, v in dtypes.items()})


_ROW_KEYS: Final[tuple[str, ...]] = ("trials", "successes", "rate", "ci_low", "ci_high")


def _row_strings(text: pd.DataFrame, factor: str) -> dict[str, str]:
    """The first summary row of ``factor`` as strings (empty dict when there is none)."""
    rows = text[text["factor"].astype(str) == factor]
    if rows.empty:
        return {}
    return {k: str(rows.iloc[0][k]) for k in _ROW_KEYS}


def _as_text(summary: pd.DataFrame, float_format: str) -> pd.DataFrame:
    """A numeric summary formatted the way summary.csv is written."""
    out = summary.astype({"trials": "int64", "successes": "int64"}).astype(
        {"trials": str, "successes": str}
    )
    for k in ("rate", "ci_low", "ci_high"):
        out[k] = [float_format % float(v) for v in summary[k]]
    return out


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; empty when the file is missing or not a JSON object."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


def _read_trials(run_dir: Path, progress: Mapping[str, Any]) -> pd.DataFrame:
    """trials.csv up to the last complete batch recorded in progress.json."""
    path = run_dir / "trials.csv"
    if not path.exists():
        return _empty(schema.TRIAL_COLUMNS)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LeafattackError(f"{path}: cannot read ({exc.strerror or exc})") from None
    done = progress.get("bytes")
    if isinstance(done, int) and 0 < done < len(raw):
        raw = raw[:done]  # a batch being written (or killed mid-write) is not read
    if not raw.strip():
        return _empty(schema.TRIAL_COLUMNS)
    return _read_csv(path, schema.TRIAL_COLUMNS, data=raw)


def load_run(run_dir: str | os.PathLike[str]) -> RunData:
    """Read every table of a run directory.

    Args:
        run_dir: a directory written by ``leafattack run``.

    Returns:
        :class:`RunData`. Missing optional files (trials, summary, best, edges,
        correlation) give empty tables or None; a missing summary/best is recomputed
        from the trials.

    Raises:
        LeafattackError: not a run directory (no ``config.toml``), an unreadable
            ``config.toml``, or a CSV without the schema's columns.
    """
    rd = Path(run_dir)
    cfg_path = rd / "config.toml"
    if not rd.is_dir():
        raise LeafattackError(f"{rd}: not a run directory (no such folder)")
    if not cfg_path.is_file():
        raise LeafattackError(
            f"{rd}: not a run directory (expected config.toml written by leafattack run)"
        )
    try:
        config_text = cfg_path.read_text(encoding="utf-8")
        config = tomllib.loads(config_text)
    except (OSError, UnicodeDecodeError) as exc:
        raise LeafattackError(f"{cfg_path}: cannot read ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise LeafattackError(f"{cfg_path}: invalid TOML ({exc})") from None
    from leafattack.attack import FLOAT_FORMAT, strongest, summarise  # imports torch

    notes: list[str] = []
    progress = _read_json(rd / "progress.json")
    complete = progress.get("complete") if isinstance(progress.get("complete"), bool) else None

    clean_path = rd / "clean.csv"
    clean = _read_csv(clean_path, schema.CLEAN_COLUMNS) if clean_path.exists() else None
    trials = _read_trials(rd, progress)

    summary_path = rd / "summary.csv"
    text = _empty({k: "string" for k in schema.SUMMARY_COLUMNS})
    if summary_path.exists():
        text = _read_csv(summary_path, schema.SUMMARY_COLUMNS, as_text=True)
        summary = _read_csv(summary_path, schema.SUMMARY_COLUMNS)
    else:
        summary = summarise(trials)
        if len(trials):
            notes.append("summary.csv is missing; success rates were computed from trials.csv.")
    overall = _row_strings(text, "overall")
    fooled = _row_strings(text, "signs_fooled")
    if len(trials) and not overall:
        summary = summarise(trials)
        overall = _row_strings(_as_text(summary, FLOAT_FORMAT), "overall")
    if len(trials) and not fooled:  # summaries written before signs_fooled existed
        per_sign = trials["success"].astype(bool).groupby(trials["sign_id"]).any()
        k, n = int(per_sign.sum()), len(per_sign)
        lo, hi = _wilson(np.array([k]), np.array([n]))
        fooled = {
            "trials": str(n),
            "successes": str(k),
            **{
                key: FLOAT_FORMAT % v
                for key, v in (("rate", k / n), ("ci_low", lo[0]), ("ci_high", hi[0]))
            },
        }

    best_path = rd / "best.csv"
    best_dtypes = {**schema.TRIAL_COLUMNS, "image": "string"}
    if best_path.exists():
        best = _read_csv(best_path, schema.TRIAL_COLUMNS)
        best = best.astype({"image": "string"}) if "image" in best.columns else best
    else:
        best = strongest(trials) if len(trials) else _empty(best_dtypes)

    edges: pd.DataFrame | None = None
    edges_path = rd / "edges.csv"
    if edges_path.exists():
        edges = _read_csv(edges_path, {"trial_id": "int64"})
    correlation: pd.DataFrame | None = None
    corr_path = rd / "correlation.csv"
    if corr_path.exists():
        correlation = _read_csv(corr_path, schema.CORRELATION_COLUMNS)
    return RunData(
        run_dir=rd,
        config=config,
        config_text=config_text,
        clean=clean,
        trials=trials,
        summary=summary,
        overall=overall,
        fooled=fooled,
        best=best,
        edges=edges,
        correlation=correlation,
        complete=complete,
        notes=tuple(notes),
    )


# ----------------------------------------------------------------------------- helpers


def _require(df: pd.DataFrame, columns: Sequence[str], what: str = "trials") -> None:
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


def _wilson(successes: np.ndarray, trials: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from leafattack.stats import wilson_interval

    lo, hi = wilson_interval(successes.astype(np.int64), trials.astype(np.int64))
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def rate_by(trials: pd.DataFrame, column: str) -> pd.DataFrame:
    """Success counts and rates by the values of one column.

    Args:
        trials: rows with ``column`` and a bool ``success`` column.
        column: the factor.

    Returns:
        DataFrame sorted by ``level`` with columns ``level``, ``trials``, ``successes``,
        ``rate``, ``ci_low``, ``ci_high`` (95 % Wilson).
    """
    g = trials["success"].astype(bool).groupby(trials[column], sort=True)
    n = g.size().to_numpy(dtype=np.int64)
    k = g.sum().to_numpy(dtype=np.int64)
    lo, hi = _wilson(k, n)
    return pd.DataFrame(
        {
            "level": g.size().index.to_numpy(),
            "trials": n,
            "successes": k,
            "rate": k / np.maximum(n, 1),
            "ci_low": lo,
            "ci_high": hi,
        }
    )


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


# ----------------------------------------------------------------------------- position heatmaps


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
    _require(trials, ("true_name", "position", "x", "y", "success", "true_conf"))
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
        ax.set_title(f"{cls}\n{detail}", fontsize=9)
    what = "Attack success rate" if value == "success" else "Mean true-class probability"
    fig.suptitle(
        f"{what} by leaf-centre position ({n_cols}\u00d7{n_rows} lattice over each sign)",
        fontsize=11,
    )
    fig.supxlabel("leaf centre x (fraction of sign width)", fontsize=9)
    fig.supylabel("leaf centre y (fraction of sign height)", fontsize=9)
    cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.85, aspect=30)
    cbar.set_label("success rate" if value == "success" else "mean p(true class)")
    if value == "success":
        cbar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return fig


# ----------------------------------------------------------------------------- factor plots


def fig_success_vs_size(trials: pd.DataFrame) -> Figure:
    """Success rate against leaf size: one line per species with a 95 % Wilson band.

    Args:
        trials: TRIAL_COLUMNS rows (needs ``species``, ``size``, ``success``).

    Returns:
        The figure. Its lines are labelled with the species (and ``all species`` for
        the overall line when there are several species); their y data are the rates.
    """
    _require(trials, ("species", "size", "success"))
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
    ax.set_xlabel("leaf size (longest side, fraction of sign width)")
    ax.set_ylabel("attack success rate")
    ax.set_title("Success rate vs leaf size by species (bands: 95% Wilson interval)", fontsize=11)
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
    _require(trials, ("species", "angle", "success"))
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
    _require(trials, ("true_name", "species", "success"))
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
    _require(trials, ("true_name", "pred_name"))
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


# ----------------------------------------------------------------------------- edges


def edge_metric_columns(edges: pd.DataFrame) -> list[str]:
    """The metric columns of an edges table: registry metrics first, in registry order."""
    try:
        from leafattack.edges import EDGE_METRICS

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
    _require(trials, ("trial_id", "success"))
    _require(edges, ("trial_id",), "edges")
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


def correlation_html(correlation: pd.DataFrame, subset: str = "all") -> str:
    """One subset of correlation.csv as an HTML table (metrics sorted by |r| per target).

    Args:
        correlation: CORRELATION_COLUMNS rows.
        subset: which subset to show.

    Returns:
        An HTML ``<table class="corr">`` (a paragraph when the subset has no rows).
    """
    _require(correlation, tuple(schema.CORRELATION_COLUMNS), "correlation")
    rows = correlation[correlation["subset"].astype(str) == subset]
    if rows.empty:
        return f'<p class="note">correlation.csv has no rows for subset {_e(subset)}.</p>'

    def num(v: Any, spec: str) -> str:
        x = float(v)
        return "\u2013" if math.isnan(x) else format(x, spec)

    def pval(v: Any) -> str:
        x = float(v)
        if math.isnan(x):
            return "\u2013"
        return f"{x:.1e}" if x < 1e-4 else f"{x:.4f}"

    out = [
        '<table class="corr" id="correlation-table"><thead><tr><th>target</th><th>metric</th>'
        "<th>n</th><th>r</th><th>p (BH)</th><th>Spearman \u03c1</th><th>AUC [95% CI]</th>"
        "<th>odds ratio / SD</th></tr></thead><tbody>"
    ]
    for target in dict.fromkeys(rows["target"].astype(str)):
        part = rows[rows["target"].astype(str) == target].copy()
        part["_key"] = part["point_biserial_r"].abs()
        part = part.sort_values("_key", ascending=False, na_position="last", kind="mergesort")
        for rec in part.to_dict("records"):
            auc = num(rec["auc"], ".3f")
            if auc != "\u2013":
                auc += f" [{num(rec['auc_ci_low'], '.3f')}, {num(rec['auc_ci_high'], '.3f')}]"
            out.append(
                f"<tr><td>{_e(target)}</td><td>{_e(rec['metric'])}</td><td>{int(rec['n'])}</td>"
                f"<td>{num(rec['point_biserial_r'], '+.3f')}</td>"
                f"<td>{pval(rec['p_adjusted'])}</td>"
                f"<td>{num(rec['spearman_rho'], '+.3f')}</td><td>{auc}</td>"
                f"<td>{num(rec['odds_ratio'], '.3g')}</td></tr>"
            )
    out.append("</tbody></table>")
    return "".join(out)


# ----------------------------------------------------------------------------- gallery


def canny_images(images: np.ndarray) -> np.ndarray:
    """Canny edge maps of uint8 (N, H, W, 3) RGB images as bool (N, H, W).

    Uses :func:`leafattack.edges.canny_batch` with its default :class:`EdgeConfig`,
    or ``cv2.Canny(gray, 50, 150)`` when that is unavailable.
    """
    arr = np.ascontiguousarray(images, dtype=np.uint8)
    try:
        from leafattack.edges import EdgeConfig, canny_batch

        return np.asarray(canny_batch(arr, EdgeConfig()), dtype=bool)
    except (ImportError, AttributeError):  # pragma: no cover - fallback for partial installs
        import cv2

        out = [cv2.Canny(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), 50, 150) > 0 for im in arr]
        return np.stack(out) if out else np.zeros(arr.shape[:3], dtype=bool)


def fig_gallery(
    best: pd.DataFrame,
    clean_images: np.ndarray,
    attacked_images: np.ndarray,
    clean_conf: Sequence[float] | None = None,
) -> Figure:
    """The strongest attacks: clean | attacked | Canny clean | Canny attacked.

    Args:
        best: TRIAL_COLUMNS rows to show, in display order (e.g. best.csv sorted by
            ``true_conf``).
        clean_images: uint8 (N, H, W, 3), the clean sign of each row.
        attacked_images: uint8 (N, H, W, 3), the recomposed attacked image of each row.
        clean_conf: per row, the true-class probability without the leaf (optional).

    Returns:
        The figure: two attacks per row of panels, each labelled with
        true class -> predicted class and the probabilities.
    """
    _require(
        best,
        ("true_name", "pred_name", "pred_conf", "true_conf", "species", "size", "angle"),
        "best",
    )
    n = len(best)
    if len(clean_images) != n or len(attacked_images) != n:
        raise LeafattackError(
            f"gallery: {n} rows but {len(clean_images)} clean and {len(attacked_images)} "
            "attacked images"
        )
    edges_clean = canny_images(clean_images)
    edges_attacked = canny_images(attacked_images)
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
        panels = (
            (clean_images[i], None, f"clean\n{true_name}{cc}"),
            (attacked_images[i], None, f"attacked\n{pred_name} {float(row['pred_conf']):.2f}"),
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
        sf.suptitle(
            f"{true_name} \u2192 {pred_name}{verdict}: {row['species']}{colour}, "
            f"size {float(row['size']):g}, {float(row['angle']):g}\u00b0, "
            f"p(true) {float(row['true_conf']):.2f}",
            fontsize=8,
        )
    fig.suptitle("Strongest attack per sign (lowest true-class probability)", fontsize=11)
    return fig


def _gallery_rows(best: pd.DataFrame) -> pd.DataFrame:
    if best.empty:
        return best
    return best.sort_values(["true_conf", "trial_id"], kind="mergesort").head(GALLERY_MAX)


def _split_pair(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A best/*.png clean | gap | attacked pair split into its two images."""
    from leafattack.imageio import read_rgb

    try:
        pair = read_rgb(path)
    except LeafattackError:
        return None
    w = (pair.shape[1] - 4) // 2
    if w < 1:
        return None
    return pair[:, :w], pair[:, w + 4 : 2 * w + 4]


# ----------------------------------------------------------------------------- html


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float) -> str:
    """A rate as a percentage: 42.0%, 0.38%, 0.004%; n/a for NaN."""
    if math.isnan(value):
        return "n/a"
    p = 100.0 * value
    if 0 < p < 0.01:
        return f"{p:.1g}%"
    return f"{p:.2f}%" if 0 < p < 1 else f"{p:.1f}%"


_CSS = """
:root { --fg: #1a1a1a; --muted: #5a5a5a; --line: #d9d9d9; --accent: #0072B2; --bg2: #f6f7f9; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--fg); margin: 0 auto; max-width: 1240px; padding: 1.2rem 1.6rem 3rem;
  line-height: 1.45; background: #fff; }
h1 { font-size: 1.7rem; margin: 0.2rem 0 0.2rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 0.6rem; padding-bottom: 0.25rem;
  border-bottom: 2px solid var(--line); }
.sub { color: var(--muted); margin: 0 0 1rem; }
nav { font-size: 0.9rem; margin: 0.6rem 0 1rem; }
nav a { color: var(--accent); margin-right: 0.9rem; text-decoration: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); gap: 0.8rem; }
.card { background: var(--bg2); border: 1px solid var(--line); border-radius: 8px;
  padding: 0.7rem 0.9rem; }
.card .label { color: var(--muted); font-size: 0.85rem; }
.card .value { font-size: 1.6rem; font-weight: 650; }
.card .detail { color: var(--muted); font-size: 0.85rem; }
.note { background: #fff8e6; border-left: 4px solid #E69F00; padding: 0.5rem 0.8rem; }
table { border-collapse: collapse; font-size: 0.86rem; margin: 0.4rem 0 1rem; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.6rem; text-align: left;
  vertical-align: top; }
th { background: var(--bg2); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 0.6rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 0.88rem; margin-top: 0.3rem; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 1rem; }
pre { background: var(--bg2); border: 1px solid var(--line); padding: 0.7rem; overflow-x: auto;
  font-size: 0.8rem; }
"""

# Diagnostic only (the page needs no script): records how many images decoded, so a
# headless browser's DOM dump can tell whether every embedded figure loaded.
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (im) { return im.complete && im.naturalWidth > 0; });
  document.body.dataset.imagesTotal = String(imgs.length);
  document.body.dataset.imagesOk = String(ok.length);
  document.body.dataset.imagesLoaded = ok.map(function (im) { return im.id; }).join(" ");
});
"""


@dataclass
class _Figures:
    """Saves figures to figures/*.png and keeps their base64 for embedding."""

    folder: Path
    written: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, build: Callable[[], Figure]) -> str:
        """Draw, save and return an ``<figure>`` element (or a note when drawing fails)."""
        try:
            fig = build()
        except LeafattackError as exc:
            log.warning("figure %s left out: %s", key, exc)
            return f'<p class="note">Figure left out: {_e(exc)}</p>'
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
        data = buf.getvalue()
        path = self.folder / f"{key}.png"
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise LeafattackError(f"{path}: cannot write ({exc.strerror or exc})") from None
        self.written[key] = path.name
        b64 = base64.b64encode(data).decode("ascii")
        w, h = fig.get_size_inches() * DPI
        return (
            f'<figure><img id="fig-{key}" src="data:image/png;base64,{b64}" '
            f'width="{round(w)}" height="{round(h)}" alt="{_e(FIGURES.get(key, key))}">'
            f"<figcaption>{_e(FIGURES.get(key, key))} (figures/{_e(path.name)})</figcaption>"
            "</figure>"
        )


def _clean_accuracy(data: RunData) -> tuple[str, int, int]:
    if data.clean is None:
        return '<span id="clean-accuracy" data-correct="" data-total="">n/a</span>', 0, 0
    total = len(data.clean)
    correct = int(data.clean["correct"].astype(bool).sum())
    shown = _pct(correct / total) if total else "n/a"
    return (
        f'<span id="clean-accuracy" data-correct="{correct}" data-total="{total}">{shown}</span>',
        correct,
        total,
    )


def _headline(data: RunData) -> str:
    acc, correct, total = _clean_accuracy(data)
    attacked = correct if data.clean is not None else int(data.trials["sign_id"].nunique())
    ov = data.overall
    if ov:
        rate, lo, hi = float(ov["rate"]), float(ov["ci_low"]), float(ov["ci_high"])
        rate_html = f'<span id="overall-rate" data-value="{_e(ov["rate"])}">{_pct(rate)}</span>'
        ci_html = (
            f'<span id="overall-ci" data-low="{_e(ov["ci_low"])}" data-high="{_e(ov["ci_high"])}">'
            f"[{_pct(lo)}, {_pct(hi)}]</span>"
        )
        n_trials, n_succ = ov["trials"], ov["successes"]
    else:
        rate_html = '<span id="overall-rate" data-value="">n/a</span>'
        ci_html = '<span id="overall-ci" data-low="" data-high="">n/a</span>'
        n_trials, n_succ = "0", "0"
    cards = [
        ("Clean accuracy", acc, f"{correct} of {total} signs correct without a leaf"),
        (
            "Signs attacked",
            f'<span id="n-attacked">{attacked}</span>',
            "signs classified correctly when clean",
        ),
        (
            "Trials",
            f'<span id="n-trials" data-value="{_e(n_trials)}">{int(n_trials):,}</span>',
            "leaf placements evaluated",
        ),
        (
            "Attack success rate",
            rate_html,
            f'95% Wilson interval {ci_html}; <span id="n-successes">{_e(n_succ)}</span> successes',
        ),
    ]
    fo = data.fooled
    if fo:
        cards.append(
            (
                "Signs fooled",
                f'<span id="signs-fooled" data-successes="{_e(fo["successes"])}" '
                f'data-trials="{_e(fo["trials"])}" data-value="{_e(fo["rate"])}">'
                f"{_pct(float(fo['rate']))}</span>",
                f"{_e(fo['successes'])} of {_e(fo['trials'])} signs by at least one placement; "
                f"95% CI [{_pct(float(fo['ci_low']))}, {_pct(float(fo['ci_high']))}]",
            )
        )
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="label">{label}</div><div class="value">{value}</div>'
            f'<div class="detail">{detail}</div></div>'
            for label, value, detail in cards
        )
        + "</div>"
    )


def _criterion_text(config: Mapping[str, Any]) -> str:
    target = config.get("target")
    text = (
        f"targeted: success = predicted class is {target!r}"
        if target
        else "untargeted: success = predicted class differs from the true class"
    )
    if config.get("min_confidence") is not None:
        text += f" with probability \u2265 {config['min_confidence']}"
    return text


def strongest_per_class(trials: pd.DataFrame) -> pd.DataFrame:
    """The trial with the lowest true-class probability per sign class (ties: lowest id).

    Returns:
        One TRIAL_COLUMNS row per ``true_name``, sorted by class name.
    """
    _require(trials, ("true_name", "true_conf", "trial_id"))
    order = trials.sort_values(["true_name", "true_conf", "trial_id"], kind="mergesort")
    return order.drop_duplicates("true_name", keep="first").reset_index(drop=True)


def _strongest_table(data: RunData) -> str:
    t = data.trials
    best = strongest_per_class(t)
    rates = rate_by(t.assign(true_name=t["true_name"].astype(str)), "true_name").set_index("level")
    signs = t.groupby(t["true_name"].astype(str))["sign_id"].nunique()
    head = (
        '<table id="strongest-table"><thead><tr><th>sign class</th><th>signs</th>'
        "<th>success rate [95% CI]</th><th>strongest leaf</th><th>size</th><th>angle</th>"
        "<th>centre (x, y)</th><th>predicted</th><th>p(pred)</th><th>p(true)</th>"
        "<th>fooled</th></tr></thead><tbody>"
    )
    body = []
    for rec in best.to_dict("records"):
        cls = str(rec["true_name"])
        r: dict[str, Any] = {str(key): val for key, val in rates.loc[cls].items()}
        leaf = f"{rec['species']}/{rec.get('colour', '?')} ({rec.get('leaf_id', '?')})"
        body.append(
            f'<tr><td>{_e(cls)}</td><td class="num">{int(signs[cls])}</td>'
            f'<td class="num">{_pct(float(r["rate"]))} [{_pct(float(r["ci_low"]))}, '
            f"{_pct(float(r['ci_high']))}]</td><td>{_e(leaf)}</td>"
            f'<td class="num">{float(rec["size"]):g}</td>'
            f'<td class="num">{float(rec["angle"]):g}\u00b0</td>'
            f'<td class="num">({float(rec["x"]):.2f}, {float(rec["y"]):.2f})</td>'
            f'<td>{_e(rec["pred_name"])}</td><td class="num">{float(rec["pred_conf"]):.3f}</td>'
            f'<td class="num">{float(rec["true_conf"]):.3f}</td>'
            f"<td>{'yes' if bool(rec['success']) else 'no'}</td></tr>"
        )
    return head + "".join(body) + "</tbody></table>"


def _provenance(data: RunData) -> str:
    import leafattack

    cfg = data.config
    versions = cfg.get("versions", {}) if isinstance(cfg.get("versions"), dict) else {}
    fps = cfg.get("fingerprints", {}) if isinstance(cfg.get("fingerprints"), dict) else {}
    rows = [
        ("model", cfg.get("model", "?"), fps.get("model", "?")),
        ("signs", cfg.get("signs", "?"), fps.get("signs", "?")),
        ("leaves", cfg.get("leaves", "?"), fps.get("leaves", "?")),
    ]
    fp_table = (
        '<table id="fingerprints"><thead><tr><th>input</th><th>spec</th><th>fingerprint</th>'
        "</tr></thead><tbody>"
        + "".join(
            f"<tr><td>{_e(a)}</td><td><code>{_e(b)}</code></td><td><code>{_e(c)}</code></td></tr>"
            for a, b, c in rows
        )
        + "</tbody></table>"
    )
    ver_rows = [(f"{k} (run)", v) for k, v in versions.items()] + [
        ("leafattack (report)", leafattack.__version__),
        ("matplotlib (report)", matplotlib.__version__),
        ("pandas (report)", pd.__version__),
    ]
    ver_table = (
        '<table id="versions"><thead><tr><th>package</th><th>version</th></tr></thead><tbody>'
        + "".join(f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in ver_rows)
        + "</tbody></table>"
    )
    return (
        "<p>The run was produced with the versions and inputs below; the fingerprints "
        "identify the exact model weights, sign images and leaf images.</p>"
        f'<div class="pair"><div>{fp_table}</div><div>{ver_table}</div></div>'
        f'<h3>config.toml</h3><pre id="config">{_e(data.config_text)}</pre>'
    )


def _prepared(data: RunData) -> tuple[Any, Any, str]:
    """``open_run`` on the run (CPU), or (None, None, reason) when it cannot be re-created."""
    from leafattack.attack import open_run

    try:
        prep, plan = open_run(data.run_dir, device="cpu")
    except (LeafattackError, OSError, RuntimeError, ImportError) as exc:
        log.warning("cannot re-create the run's images: %s", exc)
        return None, None, str(exc)
    return prep, plan, ""


def _class_images(data: RunData, prep: Any) -> dict[str, np.ndarray]:
    """Clean image of the lowest attacked sign id of each class."""
    first = data.trials.sort_values("sign_id").drop_duplicates("true_name")
    wanted = {int(s): str(c) for s, c in zip(first["sign_id"], first["true_name"], strict=True)}
    out: dict[str, np.ndarray] = {}
    if prep is not None:
        ids = [int(s) for s in prep.sign_ids]
        imgs = prep.sign_images.permute(0, 2, 3, 1).cpu().numpy()
        for sid, cls in wanted.items():
            if sid in ids:
                out[cls] = imgs[ids.index(sid)]
        return out
    try:
        from leafattack.datasets import load_signs

        signs = load_signs(str(data.config.get("signs", "builtin")))
    except (LeafattackError, OSError) as exc:
        log.warning("heatmaps drawn without sign images: %s", exc)
        return out
    for sid, cls in wanted.items():
        if 0 <= sid < len(signs):
            out[cls] = signs.images[sid]
    return out


def _gallery(data: RunData, figs: _Figures, prep: Any, plan: Any, reason: str) -> str:
    rows = _gallery_rows(data.best)
    if rows.empty:
        return '<p class="note">best.csv holds no attacks, so there is no gallery.</p>'
    clean_conf: list[float] | None = None
    if data.clean is not None:
        conf = data.clean.set_index("sign_id")["true_conf"]
        clean_conf = [float(conf.get(int(s), math.nan)) for s in rows["sign_id"]]
    note = ""
    clean: np.ndarray | None = None
    attacked: np.ndarray | None = None
    if prep is not None:
        from leafattack.attack import recompose

        try:
            attacked = recompose(prep, plan, rows["trial_id"].to_numpy(dtype=np.int64))
            ids = [int(s) for s in prep.sign_ids]
            imgs = prep.sign_images.permute(0, 2, 3, 1).cpu().numpy()
            clean = np.stack([imgs[ids.index(int(s))] for s in rows["sign_id"]])
        except (LeafattackError, ValueError, RuntimeError) as exc:  # trial ids off the grid
            log.warning("cannot recompose the strongest attacks: %s", exc)
            reason = str(exc)
            attacked = clean = None
    if attacked is None or clean is None:
        pairs = []
        kept = []
        for i, name in enumerate(rows.get("image", pd.Series([""] * len(rows)))):
            pair = _split_pair(data.run_dir / str(name)) if isinstance(name, str) and name else None
            if pair is not None:
                pairs.append(pair)
                kept.append(i)
        if not pairs:
            return (
                f'<p class="note">The attacked images cannot be re-created ({_e(reason)}) '
                "and best/*.png is missing, so there is no gallery.</p>"
            )
        rows = rows.iloc[kept]
        clean_conf = [clean_conf[i] for i in kept] if clean_conf is not None else None
        clean = np.stack([p[0] for p in pairs])
        attacked = np.stack([p[1] for p in pairs])
        note = (
            f'<p class="note">Images taken from best/*.png: the run could not be '
            f"re-created ({_e(reason)}).</p>"
        )
    gallery_clean, gallery_attacked = clean, attacked
    fig_html = figs.add(
        "gallery", lambda: fig_gallery(rows, gallery_clean, gallery_attacked, clean_conf)
    )
    return (
        f"<p>The {len(rows)} attacks with the lowest true-class probability (one per sign, "
        f"at most {GALLERY_MAX}), recomposed from their trial ids. Canny edge maps "
        "(OpenCV, 3\u00d73 Gaussian blur, thresholds 50/150) at the sign resolution.</p>"
        + note
        + fig_html
    )


def _edges_section(data: RunData, figs: _Figures) -> str:
    if data.edges is None:
        return (
            '<p class="note" id="no-edges">This run has no edge analysis (no edges.csv). '
            "Run <code>leafattack edges RUN_DIR</code>, then <code>leafattack report "
            "RUN_DIR</code> again, to add it.</p>"
        )
    edges = data.edges
    settings = _read_json(data.run_dir / "edges_progress.json").get("config")
    how = ""
    if isinstance(settings, dict) and settings:
        how = " Canny settings: " + ", ".join(f"{_e(k)} {_e(v)}" for k, v in settings.items())
        how += "."
    parts = [
        "<p>How much each attack changed the Canny edge map of the sign (edges.csv), "
        f"for attacks that fooled the model and attacks that did not.{how}</p>",
        figs.add("edge_distributions", lambda: fig_edge_distributions(data.trials, edges)),
    ]
    if data.correlation is None:
        parts.append(
            '<p class="note">correlation.csv is missing, so there is no correlation table.</p>'
        )
    else:
        parts.append(
            "<h3>Correlation of each metric with the outcome (all trials)</h3>"
            "<p>r: point-biserial (success) or Pearson (confidence drop) correlation; "
            "p: Benjamini-Hochberg adjusted; AUC: how well the metric alone separates "
            "successes from failures, with a bootstrap 95% interval.</p>"
            + correlation_html(data.correlation, "all")
        )
    return "".join(parts)


def _status_notes(data: RunData) -> list[tuple[str, str]]:
    """(element id, html) of the remarks about the run's state, for the headline."""
    notes = [(f"note-{i}", _e(n)) for i, n in enumerate(data.notes)]
    correct = None if data.clean is None else data.clean["correct"].astype(bool)
    if correct is None:
        notes.append(
            (
                "no-clean",
                "clean.csv is missing: the run stopped before classifying "
                "the clean signs, so no attack was run.",
            )
        )
    elif len(correct) and not correct.any():
        notes.append(
            ("no-trials", "No sign was classified correctly when clean, so no attack was run.")
        )
    elif not correct.all():
        assert data.clean is not None
        wrong = data.clean.loc[~correct, "sign_file"].astype(str)
        shown = ", ".join(wrong.head(8)) + (", ..." if len(wrong) > 8 else "")
        notes.append(
            (
                "misclassified",
                f"{len(wrong)} of {len(correct)} signs were "
                f"misclassified when clean and were not attacked ({_e(shown)}).",
            )
        )
    if data.trials.empty and correct is not None and correct.any():
        notes.append(
            (
                "no-trials",
                "trials.csv holds no trials (the run was interrupted before "
                "its first batch, or has not started), so the figures that need trials "
                "are left out.",
            )
        )
    if data.complete is False and not data.trials.empty:
        notes.append(
            (
                "incomplete",
                f"The run is incomplete: these results cover the "
                f"{len(data.trials):,} trials written so far; rerun the same command "
                "to finish it.",
            )
        )
    return notes


def render_html(data: RunData, figs: _Figures) -> str:
    """Build the report page for ``data``, saving its figures through ``figs``."""
    cfg = data.config
    title = f"leafattack report: {data.run_dir.resolve().name}"
    has_trials = not data.trials.empty
    notes = _status_notes(data)
    sections: list[tuple[str, str, str]] = []
    head = _headline(data)
    note_html = "".join(f'<p class="note" id="{ident}">{text}</p>' for ident, text in notes)
    body = head + note_html + f"<p>Criterion: {_e(_criterion_text(cfg))}.</p>"
    if has_trials:
        body += "<h3>Strongest attack per sign class</h3>" + _strongest_table(data)
    sections.append(("headline", "Headline", body))
    if has_trials:
        prep, plan, reason = _prepared(data)
        images = _class_images(data, prep)
        positions = data.positions
        t = data.trials
        sections.append(
            (
                "positions",
                "Where the leaf sits",
                "<p>Each cell is one leaf-centre position of the lattice over the sign's bounding "
                "box, placed at the mean centre of that position for the class and drawn over the "
                "class's clean sign (grayscale).</p>"
                + figs.add(
                    "position_success",
                    lambda: fig_position_heatmaps(t, images, positions, "success"),
                )
                + figs.add(
                    "position_confidence",
                    lambda: fig_position_heatmaps(t, images, positions, "true_conf"),
                ),
            )
        )
        sections.append(
            (
                "size-rotation",
                "Leaf size and rotation",
                '<div class="pair"><div>'
                + figs.add("success_vs_size", lambda: fig_success_vs_size(t))
                + "</div><div>"
                + figs.add("success_vs_rotation", lambda: fig_success_vs_rotation(t))
                + "</div></div>",
            )
        )
        sections.append(
            (
                "class-species",
                "Sign class \u00d7 species",
                figs.add("class_species", lambda: fig_class_species_matrix(t)),
            )
        )
        sections.append(
            (
                "confusion",
                "Confusion under attack",
                "<p>What the model predicts with a leaf on the sign, over all attacked trials.</p>"
                + figs.add("confusion", lambda: fig_confusion(t)),
            )
        )
        sections.append(("edges", "Edge analysis", _edges_section(data, figs)))
        sections.append(("gallery", "Strongest attacks", _gallery(data, figs, prep, plan, reason)))
    sections.append(("provenance", "What produced this report", _provenance(data)))
    nav = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name, _ in sections)
    subtitle = (
        f"model <code>{_e(cfg.get('model', '?'))}</code> \u00b7 signs "
        f"<code>{_e(cfg.get('signs', '?'))}</code> \u00b7 leaves "
        f"<code>{_e(cfg.get('leaves', '?'))}</code> \u00b7 grid: species "
        f"{_e(', '.join(map(str, cfg.get('species', []))) or 'all')}, sizes "
        f"{_e(', '.join(f'{float(s):g}' for s in cfg.get('sizes', [])))}, "
        f"{len(cfg.get('angles', []))} angles, positions {_e(cfg.get('positions', '?'))}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f'<h1>{_e(title)}</h1><p class="sub">{subtitle}</p><nav>{nav}</nav>',
    ]
    for sid, name, content in sections:
        parts.append(f'<section id="{sid}"><h2>{_e(name)}</h2>{content}</section>')
    parts.append(f"<script>{_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def write_report(run_dir: str | os.PathLike[str]) -> Path:
    """Write ``RUN_DIR/figures/*.png`` and a self-contained ``RUN_DIR/report.html``.

    A run without trials (none attacked, or interrupted before the first batch) still
    gets a report that says so and leaves out the figures that need trials.

    Args:
        run_dir: a run directory written by ``leafattack run``.

    Returns:
        The path of ``report.html``.

    Raises:
        LeafattackError: not a run directory, unreadable tables, or the directory
            cannot be written.
    """
    data = load_run(run_dir)
    rd = data.run_dir
    folder = rd / "figures"
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise LeafattackError(f"{folder}: cannot create ({exc.strerror or exc})") from None
    figs = _Figures(folder)
    page = render_html(data, figs)
    for key in FIGURES:  # figures of an earlier report that this one left out
        if key not in figs.written:
            (folder / f"{key}.png").unlink(missing_ok=True)
    out = rd / "report.html"
    tmp = rd / "report.html.tmp"
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise LeafattackError(f"{out}: cannot write ({exc.strerror or exc})") from None
    log.info("wrote %s with %d figures", out, len(figs.written))
    return out
