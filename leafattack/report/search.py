"""The report of a search directory (``leafattack report`` on a ``leafattack search`` output).

A search directory holds ``queries.csv``; a folder whose sub-folders are search
directories (one per method, as ``benchmarks/bench_search.py`` or a user's loop writes them)
is reported as one page with a line per method. The page shows:

* signs fooled against queries, one line per method, with 95% Wilson intervals over the
  attacked signs (each sign is one Bernoulli trial at each budget: fooled within it or not;
  the signs are the unit, not the queries);
* the gallery of the best attacks (``best/*.png``), most confident first;
* the distribution of ``queries_used``.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from leafattack import schema
from leafattack.analysis.stats import wilson_interval
from leafattack.errors import LeafattackError
from leafattack.imageio import read_rgb
from leafattack.report.html import survival_paragraph, transfer_paragraph
from leafattack.report.split import split_html

log = logging.getLogger(__name__)

matplotlib.use("Agg")

GALLERY_SEARCH_MAX = 24
"""Most best attacks shown in the gallery."""


@dataclass(frozen=True, slots=True)
class SearchRun:
    """One search directory's tables."""

    path: Path
    method: str
    budget: int  # model evaluations per sign
    leaves_per_scene: int
    n_signs: int  # signs in the run (attacked or not)
    best: pd.DataFrame  # SEARCH_BEST_COLUMNS
    eot: int = 1  # views judging each query (``search --eot M``): a query costs M evaluations

    @property
    def queries(self) -> int:
        """Queries per sign: the budget in model evaluations over the views per query
        (``first_success`` and ``queries_used`` count queries)."""
        return max(1, self.budget // self.eot)

    @property
    def label(self) -> str:
        """The run's legend label: method, leaves per scene, and views when EOT."""
        eot = f", EOT {self.eot}" if self.eot > 1 else ""
        return f"{self.method} (K={self.leaves_per_scene}{eot})"


def search_dirs(path: Path) -> list[Path]:
    """``path`` itself when it is a search directory, else its search sub-directories."""
    if (path / "queries.csv").exists():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if (p / "queries.csv").exists())


def is_search_report(path: Path) -> bool:
    """Whether ``leafattack report PATH`` should write a search report."""
    run = (path / "trials.csv").exists() or (path / "trials.parquet").is_dir()
    return bool(search_dirs(path)) and not run


def load_search(path: Path) -> SearchRun:
    """Read one search directory (``config.toml``, ``clean.csv``, ``best.csv``)."""
    try:
        cfg = tomllib.loads((path / "config.toml").read_text(encoding="utf-8"))
        clean = pd.read_csv(path / "clean.csv")
        best = pd.read_csv(path / "best.csv", dtype=dict(schema.SEARCH_BEST_COLUMNS))
    except FileNotFoundError as exc:
        raise LeafattackError(
            f"{path}: {Path(str(exc.filename)).name} is missing (the search has not finished; "
            f"rerun it to complete it)"
        ) from None
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise LeafattackError(f"{path}: unreadable search tables ({exc})") from None
    return SearchRun(
        path, str(cfg.get("method", "?")), int(cfg.get("budget", 1)),
        int(cfg.get("leaves_per_scene", 1)), len(clean), best, int(cfg.get("eot", 1)),
    )


def fooled_by_budget(run: SearchRun) -> pd.DataFrame:
    """Signs fooled within each budget of 1..``run.queries`` queries (log-spaced), with
    Wilson 95% intervals. With EOT a query is judged under M views, so the budgets are in
    queries (model evaluations / M), the unit of ``first_success``.

    Returns:
        columns ``budget`` (queries), ``fooled``, ``attacked``, ``rate``, ``ci_low``,
        ``ci_high``.
    """
    first = run.best["first_success"].to_numpy(np.int64)
    n = len(first)
    budgets = np.unique(np.geomspace(1, run.queries, 60).round().astype(np.int64))
    fooled = np.array([int(((first > 0) & (first <= b)).sum()) for b in budgets])
    lo, hi = wilson_interval(fooled, np.full(len(budgets), n))
    rate = fooled / n if n else np.full(len(budgets), np.nan)
    return pd.DataFrame(
        {"budget": budgets, "fooled": fooled, "attacked": n, "rate": rate, "ci_low": lo,
         "ci_high": hi}
    )


def fig_fooled_vs_queries(runs: list[SearchRun]) -> Figure:
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    for run in runs:
        c = fooled_by_budget(run)
        line = ax.plot(c["budget"], c["rate"], drawstyle="steps-post", label=run.label)[0]
        ax.fill_between(c["budget"], c["ci_low"], c["ci_high"], step="post", alpha=0.18,
                        color=line.get_color(), linewidth=0)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    eot = any(r.eot > 1 for r in runs)
    ax.set_xlabel("queries per sign" + (" (an EOT query is M model evaluations)" if eot else ""))
    ax.set_ylabel("share of attacked signs fooled")
    ax.set_title("Signs fooled against queries (bands: 95% Wilson interval over signs)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def fig_queries_used(runs: list[SearchRun]) -> Figure:
    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.subplots()
    top = max(r.queries for r in runs)
    bins = np.unique(np.geomspace(1, max(2, top + 1), 25).round())
    for run in runs:
        ax.hist(run.best["queries_used"], bins=bins.tolist(), histtype="step", linewidth=1.6,
                label=run.label)
    ax.set_xscale("log")
    ax.set_xlabel("queries used per sign (the budget when never fooled)")
    ax.set_ylabel("signs")
    ax.set_title("Distribution of queries_used")
    ax.legend()
    fig.tight_layout()
    return fig


def fig_gallery(runs: list[SearchRun]) -> Figure | None:
    rows: list[tuple[bool, float, SearchRun, Any]] = []
    for run in runs:
        for r in run.best.itertuples():
            rows.append((not bool(r.success), float(r.true_conf), run, r))  # type: ignore[arg-type]
    rows.sort(key=lambda t: (t[0], t[1]))
    rows = rows[:GALLERY_SEARCH_MAX]
    if not rows:
        return None
    cols = min(6, len(rows))
    nrows = (len(rows) + cols - 1) // cols
    fig = Figure(figsize=(2.0 * cols, 2.35 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (_, _, run, r) in zip(axes, rows, strict=False):
        try:
            ax.imshow(read_rgb(run.path / str(r.image)))
        except LeafattackError:
            continue
        verdict = f"q={r.first_success}" if r.success else "not fooled"
        ax.set_title(f"{r.true_name} → {r.pred_name}\n{run.method}, {verdict}", fontsize=7)
    fig.tight_layout()
    return fig


def _embed(fig: Figure, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, facecolor="white", metadata={"Software": None})
    path.write_bytes(buf.getvalue())
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{b64}" alt="{path.stem}"></figure>'


def write_search_report(path: str | os.PathLike[str]) -> Path:
    """Write ``PATH/report.html`` (and ``PATH/figures/search_*.png``) for search results.

    Raises:
        LeafattackError: no search directory there, unreadable tables, or an unwritable
            folder.
    """
    root = Path(path)
    dirs = search_dirs(root)
    if not dirs:
        raise LeafattackError(f"{root}: not a search directory (expected queries.csv)")
    runs = [load_search(d) for d in dirs]
    folder = root / "figures"
    try:
        folder.mkdir(exist_ok=True)
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'><title>leafattack search"
            "</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto;"
            "padding:1rem}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
            "img{max-width:100%}</style></head><body>",
            f"<h1>Adaptive search: {html.escape(str(root))}</h1>",
            *(split_html(d) for d in dirs),
            "<h2>Signs fooled against queries</h2>",
            _embed(fig_fooled_vs_queries(runs), folder / "search_fooled_vs_queries.png"),
            "<p>Each attacked sign counts once at each budget (fooled within it or not); the "
            "bands are 95% Wilson intervals over the attacked signs.</p>",
            _summary_table(runs),
            "<h2>Best attacks</h2>",
        ]
        gallery = fig_gallery(runs)
        parts.append(
            _embed(gallery, folder / "search_gallery.png") if gallery is not None
            else "<p>No sign was searched.</p>"
        )
        parts += [
            "<h2>Queries used (queries_used)</h2>",
            _embed(fig_queries_used(runs), folder / "search_queries_used.png"),
            *_lasting(root, folder),
            "</body></html>\n",
        ]
        out = root / "report.html"
        out.write_text("\n".join(parts), encoding="utf-8")
    except OSError as exc:
        raise LeafattackError(f"{root}: cannot write the report ({exc.strerror or exc})") from None
    log.info("wrote %s", out)
    return out


def _lasting(root: Path, folder: Path) -> list[str]:
    """"Do the attacks last?": survival and transfer of a search directory's found scenes,
    when ``leafattack robustness`` / ``transfer`` have written their summaries."""
    from leafattack.report.figures import fig_survival, fig_transfer

    parts: list[str] = []
    surv_path, tr_path = root / "robustness_summary.csv", root / "transfer_summary.csv"
    if surv_path.exists():
        surv = pd.read_csv(surv_path)
        sentence = survival_paragraph(surv, "the best attacks")
        if sentence:
            parts.append(sentence)
        try:  # identity views have no factor to plot
            parts.append(_embed(fig_survival(surv), folder / "survival.png"))
        except LeafattackError:
            pass
    if tr_path.exists():
        parts.append(transfer_paragraph("the found successful scenes"))
        parts.append(_embed(fig_transfer(pd.read_csv(tr_path)), folder / "transfer.png"))
    return ["<h2>Do the attacks last?</h2>", *parts] if parts else []


def _summary_table(runs: list[SearchRun]) -> str:
    head = (
        "<table><tr><th>method</th><th>K</th><th>budget (model evaluations)</th>"
        "<th>views per query (EOT)</th><th>queries per sign</th><th>signs attacked</th>"
        "<th>fooled</th><th>95% CI</th><th>median queries to success</th></tr>"
    )
    rows = []
    for run in runs:
        b = run.best
        k, n = int(b["success"].sum()), len(b)
        lo, hi = wilson_interval(k, n)
        med = b.loc[b["success"], "first_success"].median() if k else float("nan")
        rows.append(
            f"<tr><td>{html.escape(run.method)}</td><td>{run.leaves_per_scene}</td>"
            f"<td>{run.budget}</td><td>{run.eot}</td><td>{run.queries}</td><td>{n}</td>"
            f"<td>{k}</td>"
            f"<td>[{float(lo):.0%}, {float(hi):.0%}]</td><td>{med:g}</td></tr>"
        )
    return head + "".join(rows) + "</table>"
