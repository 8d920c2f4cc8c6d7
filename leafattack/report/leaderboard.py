"""The self-contained leaderboard.html of ``leafattack benchmark``: the table of
leaderboard.csv and a figure of robust accuracy against budget, one line per model."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from leafattack import schema
from leafattack.errors import LeafattackError
from leafattack.report.figures import DPI, OKABE_ITO, require
from leafattack.report.html import esc
from leafattack.report.text import IMAGES_LOADED_SCRIPT
from leafattack.version import __version__


def fig_robust_vs_budget(curves: pd.DataFrame) -> Figure:
    """Robust accuracy against the query budget (log scale), one panel per K leaves per
    scene and one line per model, with its 95% sign-level interval as a band.

    Args:
        curves: ``leaderboard_curves.csv`` rows (LEADERBOARD_CURVE_COLUMNS).
    """
    require(
        curves,
        ("model", "leaves_per_scene", "budget", "robust_accuracy"),
        "leaderboard curves",
    )
    if curves.empty:
        raise LeafattackError("leaderboard curves are empty (no model finished)")
    ks = sorted(int(k) for k in curves["leaves_per_scene"].unique())
    models = list(dict.fromkeys(curves["model"].astype(str)))
    fig = Figure(figsize=(4.6 * len(ks) + 1.6, 3.8), layout="constrained")
    axes = fig.subplots(1, len(ks), squeeze=False, sharey=True)[0]
    for ax, k in zip(axes, ks, strict=True):
        for i, name in enumerate(models):
            part = curves[
                (curves["model"].astype(str) == name) & (curves["leaves_per_scene"] == k)
            ].sort_values("budget")
            if part.empty:
                continue
            x = part["budget"].to_numpy(dtype=float)
            y = part["robust_accuracy"].to_numpy(dtype=float)
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            ax.plot(
                x,
                y,
                marker="osD^v<>"[i % 7],
                ms=4,
                color=colour,
                label=name,
                ls=("-", "--", ":", "-.")[i % 4],
            )
            lo = part["robust_accuracy_ci_low"].to_numpy(dtype=float)
            hi = part["robust_accuracy_ci_high"].to_numpy(dtype=float)
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=colour, alpha=0.15, lw=0)
        ax.set_xscale("log")
        ticks = sorted(int(b) for b in curves["budget"].unique())
        ax.set_xticks(ticks, [f"{b:,}" for b in ticks], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("queries per sign (budget)")
        ax.set_title(f"{k} lea{'f' if k == 1 else 'ves'} per scene", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("robust accuracy")
    axes[-1].legend(fontsize=8, loc="lower left")
    fig.suptitle("Robust accuracy against budget (95% CI over signs)", fontsize=10)
    return fig


_CSS = """
body { font-family: system-ui, "DejaVu Sans", sans-serif; color: #1a1a1a; margin: 0 auto;
  max-width: 1400px; padding: 1.2rem 1.6rem 3rem; line-height: 1.45; background: #fff; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; border-bottom: 2px solid #d9d9d9; }
.sub { color: #5a5a5a; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.8rem; margin: 0.4rem 0 1rem; }
th, td { border-bottom: 1px solid #d9d9d9; padding: 0.25rem 0.5rem; text-align: left;
  vertical-align: top; }
th { background: #f6f7f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.num small { color: #5a5a5a; }
figure img { max-width: 100%; height: auto; border: 1px solid #d9d9d9; }
figcaption { color: #5a5a5a; font-size: 0.88rem; }
pre { background: #f6f7f9; border: 1px solid #d9d9d9; padding: 0.6rem; font-size: 0.8rem;
  overflow-x: auto; }
"""



def _rate_text(row: pd.Series, name: str) -> str:
    """A rate with its interval as HTML: ``42.0% <small>[30.1, 55.2]</small>``."""
    value = float(row[name])
    if math.isnan(value):
        return "n/a"
    lo, hi = float(row[f"{name}_ci_low"]), float(row[f"{name}_ci_high"])
    sign = "+" if name.endswith("excess") and value > 0 else ""
    band = (
        f"<br><small>[{100 * lo:.1f}, {100 * hi:.1f}]</small>"
        if math.isfinite(lo) and math.isfinite(hi)
        else ""
    )
    return f"{sign}{100 * value:.1f}%{band}"


def _cell(row: pd.Series, name: str) -> str:
    return f'<td class="num">{_rate_text(row, name)}</td>'


def _table(rows: pd.DataFrame) -> str:
    budget = int(rows["budget"].iloc[0]) if len(rows) else 0
    heads = ["model", "clean acc.", "grid success", "grid signs fooled"]
    at = {"b10": 10, "b100": 100, "full": budget}
    rob = [
        (f"robust_k{k}_{lab}", f"robust K={k} @{at[lab]}")
        for k in schema.LEADERBOARD_LEAVES
        for lab in schema.LEADERBOARD_BUDGET_LABELS
    ]
    heads += [h for _, h in rob] + ["leaf − grey", "survival (views)"]
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in heads) + "</tr>"]
    for _, r in rows.iterrows():
        cells = [
            f"<td><b>{esc(r['model'])}</b><br><small><code>{esc(r['spec'])}</code></small></td>",
            _cell(r, "clean_accuracy"),
            _cell(r, "grid_success_rate"),
            f'<td class="num">{int(r["grid_signs_fooled"])}/{int(r["grid_signs_attacked"])}'
            f" = {_rate_text(r, 'grid_signs_fooled_rate')}</td>",
        ]
        cells += [_cell(r, col) for col, _ in rob]
        cells += [_cell(r, "grey_excess"), _cell(r, "survival")]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def leaderboard_html(rows: pd.DataFrame, curves: pd.DataFrame, figure_png: bytes | None) -> str:
    """The leaderboard page: the table, the figure (embedded as base64) and the protocol.

    Args:
        rows: leaderboard.csv (LEADERBOARD_COLUMNS). curves: leaderboard_curves.csv.
        figure_png: PNG bytes of :func:`fig_robust_vs_budget`, or None (left out).
    """
    require(rows, tuple(schema.LEADERBOARD_COLUMNS), "leaderboard")
    version = str(rows["protocol_version"].iloc[0]) if len(rows) else "?"
    settings = str(rows["settings"].iloc[0]) if len(rows) else "{}"
    try:
        pretty = json.dumps(json.loads(settings), indent=2, sort_keys=True)
    except json.JSONDecodeError:
        pretty = settings
    signs = str(rows["signs"].iloc[0]) if len(rows) else "?"
    n_signs = int(rows["n_signs"].iloc[0]) if len(rows) else 0
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>leafattack leaderboard (protocol {esc(version)})</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Leaf-robustness leaderboard</h1><p class='sub'>protocol {esc(version)} · signs "
        f"<code>{esc(signs)}</code> ({n_signs} signs) · {len(rows)} model(s) · "
        f"leafattack {esc(__version__)}</p>",
        "<p>Every figure is a share of signs (or of trials, for the grid success rate) with "
        "its 95% interval at the level of signs in brackets. Robust accuracy: signs correct "
        "when clean and not fooled by the adaptive search within the budget, over all signs; "
        "the search queries the benchmarked model itself (white-box queries), never a "
        "proxy. Leaf − grey: the grid success of the leaves minus that of their grey "
        "cut-outs. Survival: the share of seeded viewing changes under which each sign's "
        "best grid attack still succeeds.</p>",
        "<h2>Models</h2>",
        f'<div class="wide">{_table(rows)}</div>',
        "<h2>Robust accuracy against budget</h2>",
    ]
    if figure_png is not None:
        b64 = base64.b64encode(figure_png).decode("ascii")
        parts.append(
            f'<figure><img id="fig-robust_vs_budget" src="data:image/png;base64,{b64}" '
            'alt="robust accuracy against budget, one line per model">'
            "<figcaption>Robust accuracy against the query budget of the adaptive search "
            "(from each search's query log), one line per model; bands: 95% CI over "
            "signs (figures/robust_vs_budget.png).</figcaption></figure>"
        )
    else:
        parts.append("<p>No curve to draw.</p>")
    parts.append("<h2>Protocol settings</h2><pre>" + esc(pretty) + "</pre>")
    parts.append(f"<script>{IMAGES_LOADED_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def figure_bytes(fig: Figure) -> bytes:
    """PNG bytes of a figure at :data:`DPI` on white, without a software tag."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def write_leaderboard_html(out: Path, rows: pd.DataFrame, curves: pd.DataFrame) -> Path:
    """Write ``OUT/figures/robust_vs_budget.png`` and ``OUT/leaderboard.html``.

    Raises:
        LeafattackError: the folder cannot be written.
    """
    png = figure_bytes(fig_robust_vs_budget(curves)) if len(curves) else None
    page = leaderboard_html(rows, curves, png)
    path = out / "leaderboard.html"
    try:
        if png is not None:
            (out / "figures").mkdir(exist_ok=True)
            (out / "figures" / "robust_vs_budget.png").write_bytes(png)
        tmp = out / "leaderboard.html.tmp"
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise LeafattackError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path
