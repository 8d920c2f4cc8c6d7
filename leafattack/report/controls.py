"""The report's "Is it the leaf?" section: the leaf against neutral-occluder controls.

Reads ``controls_summary.csv`` (CONTROLS_SUMMARY_COLUMNS, written by ``leafattack
controls`` or ``run --controls``) and draws :func:`fig_leaf_vs_controls`: success rate
against leaf size (grid runs) or coverage (multi-leaf scene runs), the leaf and each control
on identical placements, with 95 % sign-level intervals.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from leafattack import schema
from leafattack.errors import LeafattackError
from leafattack.report.figures import OKABE_ITO

CONTROLS_FIGURE: Final[str] = "leaf_vs_controls"
"""Figure key (``figures/leaf_vs_controls.png``)."""

SUMMARY_FILE: Final[str] = "controls_summary.csv"


def read_controls_summary(run_dir: Path) -> pd.DataFrame | None:
    """``RUN_DIR/controls_summary.csv``, or None when the run has no controls.

    Raises:
        LeafattackError: an unreadable file or missing columns.
    """
    path = run_dir / SUMMARY_FILE
    if not path.exists():
        return None
    try:
        df = pd.read_csv(path, dtype=dict(schema.CONTROLS_SUMMARY_COLUMNS))
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeafattackError(f"{path}: unreadable CSV ({first})") from None
    missing = [c for c in schema.CONTROLS_SUMMARY_COLUMNS if c not in df.columns]
    if missing:
        raise LeafattackError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def _axis_factor(summary: pd.DataFrame) -> str:
    return "size" if (summary["factor"] == "size").any() else "coverage"


def fig_leaf_vs_controls(summary: pd.DataFrame) -> Figure:
    """Success rate of the leaf and of each control by leaf size (or coverage).

    Args:
        summary: CONTROLS_SUMMARY_COLUMNS rows.

    Returns:
        One axes: the leaf as a thick black line, each control in an Okabe-Ito colour,
        error bars the 95 % cluster-bootstrap intervals (signs resampled).
    """
    factor = _axis_factor(summary)
    part = summary[summary["factor"] == factor]
    if part.empty:
        raise LeafattackError(f"controls summary: no rows by {factor} to plot")
    levels = sorted(set(part["level"].astype(str)), key=lambda v: float(v.split("-")[0]))
    pos = np.arange(len(levels), dtype=np.float64)
    fig = Figure(figsize=(7.2, 4.4), layout="constrained")
    ax = fig.add_subplot()
    kinds = list(dict.fromkeys(part["control"].astype(str)))
    first = part[part["control"] == kinds[0]].set_index("level").reindex(levels)
    series = [("leaf", first["leaf_rate"], first["leaf_ci_low"], first["leaf_ci_high"], "black")]
    for i, kind in enumerate(kinds):
        r = part[part["control"] == kind].set_index("level").reindex(levels)
        series.append(
            (kind, r["control_rate"], r["control_ci_low"], r["control_ci_high"],
             OKABE_ITO[(i + 1) % len(OKABE_ITO)])
        )
    width = 0.6 / len(series)
    top = 0.0
    for j, (label, rate, lo, hi, colour) in enumerate(series):
        x = pos + (j - (len(series) - 1) / 2) * width
        y = rate.to_numpy(dtype=np.float64)
        err = np.vstack([y - lo.to_numpy(dtype=np.float64), hi.to_numpy(dtype=np.float64) - y])
        ax.errorbar(
            x, y, yerr=np.nan_to_num(err), color=colour, marker="o" if label == "leaf" else "s",
            linewidth=2.2 if label == "leaf" else 1.2, capsize=3, label=label,
        )
        top = max(top, float(np.nanmax(hi.to_numpy(dtype=np.float64))))
    ax.set_xticks(pos, levels)
    ax.set_xlabel(
        "leaf size (longest side, fraction of sign width)" if factor == "size"
        else "share of the sign face covered by the leaves"
    )
    ax.set_ylabel("attack success rate")
    ax.set_ylim(0.0, max(0.05, top * 1.1))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    ax.legend(title="occluder", fontsize=8, title_fontsize=8, loc="upper left")
    ax.set_title(
        "Leaf vs neutral occluders of the same shape (95% intervals, signs resampled)",
        fontsize=10,
    )
    return fig


def _pct(v: float) -> str:
    return "-" if v != v else f"{v:.1%}"


def controls_section(run_dir: Path, add: Callable[[str, Callable[[], Figure]], str]) -> str:
    """The HTML of the "Is it the leaf?" section (empty when the run has no controls).

    Args:
        add: the report's figure saver, ``add(key, build) -> <figure> html``.
    """
    summary = read_controls_summary(run_dir)
    if summary is None or summary.empty:
        return ""
    overall = summary[summary["factor"] == "overall"]
    r0 = overall.iloc[0]
    rows = [
        "<tr><th>occluder</th><th>success rate [95% CI]</th><th>leaf excess [95% CI]</th>"
        "<th>leaf only / control only</th><th>McNemar p</th></tr>",
        f"<tr><td>leaf</td><td>{_pct(r0['leaf_rate'])} [{_pct(r0['leaf_ci_low'])}, "
        f"{_pct(r0['leaf_ci_high'])}]</td><td></td><td></td><td></td></tr>",
    ]
    for r in overall.to_dict("records"):
        rows.append(
            f"<tr><td>{html.escape(str(r['control']))}</td>"
            f"<td>{_pct(r['control_rate'])} [{_pct(r['control_ci_low'])}, "
            f"{_pct(r['control_ci_high'])}]</td>"
            f"<td>{r['excess']:+.1%} [{r['excess_ci_low']:+.1%}, {r['excess_ci_high']:+.1%}]</td>"
            f"<td>{int(r['leaf_only'])} / {int(r['control_only'])}</td>"
            f"<td>{float(r['mcnemar_p']):.2g}</td></tr>"
        )
    intro = (
        "<p>Every attacked placement re-rendered with the leaf's alpha mask and placement "
        "kept and its colour replaced: <b>grey</b> (mid grey), <b>mean</b> (the sign's own "
        "mean colour under the leaf), <b>black</b>, <b>shuffled</b> (the leaf's pixels "
        "permuted inside its mask: same colours, no veins or texture) and <b>noise</b> "
        "(seeded uniform noise). A leaf excess near zero means the occlusion, not the leaf, "
        "does the work. Intervals: cluster bootstrap over "
        f"{html.escape(str(r0['resampled']))} ({int(r0['n_boot'])} resamples, "
        f"{int(r0['signs'])} signs); McNemar's exact test treats the "
        f"{int(r0['trials']):,} paired trials as independent and so overstates the evidence. "
        "Full table: controls_summary.csv.</p>"
    )
    table = '<table id="controls-table">' + "".join(rows) + "</table>"
    return intro + table + add(CONTROLS_FIGURE, lambda: fig_leaf_vs_controls(summary))
