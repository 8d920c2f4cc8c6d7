"""report.html and figures/*.png: contents, numbers, self-containment, bad input, a browser."""

from __future__ import annotations

import base64
import csv
import html
import io
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from leafattack import schema
from leafattack.analysis.cluster import cluster_bootstrap
from leafattack.api import run
from leafattack.config import RunConfig
from leafattack.errors import LeafattackError
from leafattack.grid import GridSpec
from leafattack.report.figures import (
    confusion_counts,
    fig_class_species_matrix,
    fig_confusion,
    fig_edge_distributions,
    fig_position_heatmaps,
    fig_success_vs_rotation,
    fig_success_vs_size,
    position_stats,
)
from leafattack.report.html import write_report

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))

from fixture_models import META, TemplateModel, _templates  # noqa: E402

SMALL = GridSpec(species=("maple", "oak"), sizes=(0.3, 0.5), angles=(0.0, 90.0), positions=(3, 3))
# Leaves larger than the sign fool the template model often enough for both outcome groups.
BIG = GridSpec(species=("maple", "oak"), sizes=(0.6, 1.2), angles=(0.0, 90.0), positions=(3, 3))
TRIAL_FIGURES = (
    "position_success",
    "position_confidence",
    "success_vs_size",
    "success_vs_rotation",
    "class_species",
    "confusion",
    "gallery",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rolled_template() -> tuple[torch.nn.Module, dict[str, Any]]:
    """Model spec ``test_report:rolled_template``: every clean sign is called the next class."""
    return TemplateModel(_templates().roll(1, dims=0)), dict(META)


def config(out: Path, **kw: Any) -> RunConfig:
    base: dict[str, Any] = dict(
        model="fixture_models:template",
        out=str(out),
        grid=SMALL,
        limit_signs=4,
        quiet=True,
        batch_size=64,
        device="cpu",
    )
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small grid: the builtin leaves, no edge analysis."""
    return run(config(tmp_path_factory.mktemp("run") / "small")).run_dir


@pytest.fixture(scope="module")
def small_report(small_run: Path) -> str:
    path = write_report(small_run)
    assert path == small_run / "report.html"
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Big leaves, with the edge analysis and the report written by ``run`` itself."""
    out = tmp_path_factory.mktemp("run") / "big"
    rd = run(config(out, grid=BIG, edges=True, report=True, batch_size=1024)).run_dir
    trials = pd.read_csv(rd / "trials.csv")
    assert 0 < trials["success"].sum() < len(trials)  # both outcomes occur
    return rd


def span(page: str, ident: str) -> tuple[dict[str, str], str]:
    """Attributes and text of the element with id ``ident``."""
    m = re.search(rf'<span id="{ident}"([^>]*)>([^<]*)</span>', page)
    assert m, ident
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', m.group(1)))
    return attrs, html.unescape(m.group(2))


def xy(line: Line2D) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(line.get_xdata(), np.float64), np.asarray(line.get_ydata(), np.float64)


# ----------------------------------------------------------------------------- the full report


def test_figures_are_written_and_embedded(small_run: Path, small_report: str) -> None:
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', small_report)
    assert small_report.count("data:image/png;base64,") >= len(TRIAL_FIGURES)
    embedded = {base64.b64decode(u) for u in uris}
    for key in TRIAL_FIGURES:
        path = small_run / "figures" / f"{key}.png"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC), key
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(path) as im:
            w, h = im.size
            assert 500 <= w <= 3000 and 350 <= h <= 3500, (key, im.size)
            assert np.asarray(im.convert("L")).std() > 10, key  # not blank
        assert data in embedded, key  # the html embeds exactly the saved file
        assert f'id="fig-{key}"' in small_report
    # No edges.csv: no edge figure, and the report says how to add one.
    assert not (small_run / "figures" / "edge_distributions.png").exists()
    assert 'id="no-edges"' in small_report and "leafattack edges" in small_report


def test_report_is_self_contained(small_report: str) -> None:
    refs = re.findall(r'(?:src|href)\s*=\s*["\']?([^"\'\s>]+)', small_report, re.I)
    assert refs
    for ref in refs:
        assert ref.startswith(("data:image/png;base64,", "#")), ref[:60]
    assert "http://" not in small_report and "https://" not in small_report
    assert "<link" not in small_report.lower() and "@import" not in small_report
    assert "<style>" in small_report


def test_headline_matches_summary_and_clean(small_run: Path, small_report: str) -> None:
    with open(small_run / "summary.csv", newline="") as fh:
        overall = next(r for r in csv.DictReader(fh) if r["factor"] == "overall")
    attrs, text = span(small_report, "overall-rate")
    assert attrs["data-value"] == overall["rate"]
    pct = 100 * float(overall["rate"])
    assert text == (f"{pct:.2f}%" if 0 < pct < 1 else f"{pct:.1f}%")
    attrs, text = span(small_report, "overall-ci")
    assert (attrs["data-low"], attrs["data-high"]) == (overall["ci_low"], overall["ci_high"])
    attrs, text = span(small_report, "n-trials")
    assert attrs["data-value"] == overall["trials"]
    trials = pd.read_csv(small_run / "trials.csv")
    assert int(text.replace(",", "")) == len(trials) == int(overall["trials"])
    _, text = span(small_report, "n-successes")
    assert int(text) == int(trials["success"].sum()) == int(overall["successes"])
    clean = pd.read_csv(small_run / "clean.csv")
    attrs, text = span(small_report, "clean-accuracy")
    assert int(attrs["data-correct"]) == int(clean["correct"].sum())
    assert int(attrs["data-total"]) == len(clean) == 4
    assert text == f"{100 * clean['correct'].mean():.1f}%"
    _, text = span(small_report, "n-attacked")
    assert int(text) == trials["sign_id"].nunique()
    attrs, _ = span(small_report, "signs-fooled")
    per_sign = trials.groupby("sign_id")["success"].any()
    assert (int(attrs["data-successes"]), int(attrs["data-trials"])) == (
        int(per_sign.sum()),
        len(per_sign),
    )


def test_strongest_per_class_table(small_run: Path, small_report: str) -> None:
    trials = pd.read_csv(small_run / "trials.csv")
    table = re.search(r'<table id="strongest-table">(.*?)</table>', small_report, re.S)
    assert table
    rows = re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", table.group(1), re.S)
    assert [name for name, _ in rows] == sorted(trials["true_name"].unique())
    for name, cells in rows:
        values = re.findall(r"<td[^>]*>([^<]*)</td>", cells)
        lowest = trials.loc[trials["true_name"] == name, "true_conf"].min()
        assert values[8] == f"{lowest:.3f}"  # p(true) of the strongest attack


def test_provenance_section(small_run: Path, small_report: str) -> None:
    import tomllib

    cfg = tomllib.loads((small_run / "config.toml").read_text())
    for key in ("leafattack", "torch", "numpy"):
        assert f"<code>{html.escape(cfg['versions'][key])}</code>" in small_report
    for key in ("model", "signs", "leaves"):
        assert f"<code>{cfg['fingerprints'][key]}</code>" in small_report
    pre = re.search(r'<pre id="config">(.*?)</pre>', small_report, re.S)
    assert pre and html.unescape(pre.group(1)) == (small_run / "config.toml").read_text()


# ----------------------------------------------------------------------------- figure functions


def test_position_heatmap_cells(big_run: Path) -> None:
    trials = pd.read_csv(big_run / "trials.csv")
    stats = position_stats(trials)
    for (cls, pos), grp in trials.groupby(["true_name", "position"]):
        row = stats[(stats["true_name"] == cls) & (stats["position"] == pos)].iloc[0]
        assert row["trials"] == len(grp)
        assert row["rate"] == pytest.approx(grp["success"].mean())
        assert (row["x"], row["y"]) == pytest.approx((grp["x"].mean(), grp["y"].mean()))
    images = {c: np.full((64, 64, 3), 200, np.uint8) for c in trials["true_name"].unique()}
    fig = fig_position_heatmaps(trials, images, (3, 3), "success")
    import matplotlib

    viridis = matplotlib.colormaps["viridis"]
    classes = sorted(trials["true_name"].unique())
    for ax, cls in zip(fig.axes, classes, strict=False):
        cells = [p for p in ax.patches if isinstance(p, Rectangle)]
        sub = stats[stats["true_name"] == cls].sort_values("position")
        assert len(cells) == len(sub) == 9
        for cell, rec in zip(cells, sub.itertuples(), strict=True):
            cx = cell.get_x() + cell.get_width() / 2
            cy = cell.get_y() + cell.get_height() / 2
            assert (cx, cy) == pytest.approx((rec.x, rec.y))
            assert cell.get_facecolor()[:3] == pytest.approx(viridis(rec.rate)[:3])
        # The lattice spans the sign: 3 cells per axis tile the spread of the centres.
        assert cells[0].get_width() == pytest.approx((sub["x"].max() - sub["x"].min()) / 2)


def test_size_and_rotation_lines(big_run: Path) -> None:
    trials = pd.read_csv(big_run / "trials.csv")
    fig = fig_success_vs_size(trials)
    ax = fig.axes[0]
    lines = {str(ln.get_label()): ln for ln in ax.get_lines()}
    assert set(lines) == {"maple", "oak", "all species"}
    for sp, grp in trials.groupby("species"):
        by = grp.groupby("size")["success"]
        np.testing.assert_allclose(xy(lines[str(sp)])[0], np.array([0.6, 1.2]))
        np.testing.assert_allclose(xy(lines[str(sp)])[1], by.mean().to_numpy())
    np.testing.assert_allclose(
        xy(lines["all species"])[1], trials.groupby("size")["success"].mean().to_numpy()
    )
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    grp = trials[trials["species"] == "maple"]
    at_size = grp[grp["size"] == 1.2]  # the band is the sign-level (cluster-bootstrap) interval
    reps = cluster_bootstrap(
        at_size["success"].to_numpy(dtype=float)[:, None], at_size["sign_id"].to_numpy(),
        at_size["leaf_id"].to_numpy() if at_size["leaf_id"].nunique() > 1 else None,
        n_boot=1000, seed=0,
    )[:, 0]
    lo, hi = np.quantile(reps, [0.025, 0.975])
    ys = np.asarray(bands[0].get_paths()[0].vertices, dtype=np.float64)
    at = ys[np.isclose(ys[:, 0], 1.2), 1]
    assert at.min() == pytest.approx(lo, abs=1e-9) and at.max() == pytest.approx(hi, abs=1e-9)

    polar = fig_success_vs_rotation(trials).axes[0]
    assert polar.name == "polar"
    lines = {str(ln.get_label()): ln for ln in polar.get_lines()}
    for sp, grp in trials.groupby("species"):
        # Angles 0 and 90 leave most of the circle empty, so the line is not closed.
        np.testing.assert_allclose(xy(lines[str(sp)])[0], np.deg2rad([0.0, 90.0]))
        np.testing.assert_allclose(
            xy(lines[str(sp)])[1], grp.groupby("angle")["success"].mean().to_numpy()
        )


def test_rotation_loop_closes_when_angles_go_round() -> None:
    angles = np.repeat([0.0, 120.0, 240.0], 4)
    trials = pd.DataFrame(
        {"species": "maple", "angle": angles, "success": [1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0]}
    )
    ln = fig_success_vs_rotation(trials).axes[0].get_lines()[0]
    np.testing.assert_allclose(xy(ln)[0], np.deg2rad([0, 120, 240, 360]))
    np.testing.assert_allclose(xy(ln)[1], [0.25, 0.5, 0.75, 0.25])


def test_matrix_and_confusion(big_run: Path) -> None:
    trials = pd.read_csv(big_run / "trials.csv")
    arr = fig_class_species_matrix(trials).axes[0].get_images()[0].get_array()
    assert arr is not None
    expected = trials.pivot_table(
        index="true_name", columns="species", values="success", aggfunc="mean"
    ).sort_index()
    np.testing.assert_allclose(np.ma.getdata(arr), expected.to_numpy())
    counts = confusion_counts(trials)
    assert counts.to_numpy().sum() == len(trials)
    for cls in counts.index:
        unchanged = int(((trials["true_name"] == cls) & (trials["pred_name"] == cls)).sum())
        assert (counts.loc[cls, cls] if cls in counts.columns else 0) == unchanged
    fig = fig_confusion(trials)
    arr = fig.axes[0].get_images()[0].get_array()
    assert arr is not None
    np.testing.assert_array_equal(np.ma.filled(arr, 0), counts.to_numpy())


def test_figure_functions_refuse_empty_trials() -> None:
    empty = pd.DataFrame({k: pd.Series(dtype=v) for k, v in schema.TRIAL_COLUMNS.items()})
    with pytest.raises(LeafattackError, match="no rows"):
        fig_success_vs_size(empty)
    with pytest.raises(LeafattackError, match="missing column"):
        fig_confusion(pd.DataFrame({"true_name": ["stop"]}))


# ----------------------------------------------------------------------------- edges


def test_edge_figures_and_correlation_table(big_run: Path) -> None:
    from leafattack.analysis.edges import EDGE_METRICS

    rd = big_run
    metrics = list(EDGE_METRICS)
    page = (rd / "report.html").read_text()
    assert (rd / "figures" / "edge_distributions.png").read_bytes().startswith(PNG_MAGIC)
    assert 'id="fig-edge_distributions"' in page and 'id="no-edges"' not in page

    trials = pd.read_csv(rd / "trials.csv")
    edges = pd.read_csv(rd / "edges.csv")
    fig = fig_edge_distributions(trials, edges)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == metrics
    merged = trials.merge(edges, on="trial_id")
    for ax, m in zip(titled, metrics, strict=True):
        legend = ax.get_legend()
        assert legend is not None
        labels = " ".join(t.get_text() for t in legend.get_texts())
        for outcome, name in ((True, "success"), (False, "failure")):
            v = merged.loc[merged["success"] == outcome, m].dropna()
            assert f"{name} (n={len(v)}, median {np.median(v):.3g})" in labels

    corr = pd.read_csv(rd / "correlation.csv")
    table = re.search(r'<table class="corr" id="correlation-table">(.*?)</table>', page, re.S)
    assert table
    shown = re.findall(
        r"<tr><td>(success|conf_drop)</td><td>([^<]+)</td><td>(\d+)</td>", table.group(1)
    )
    expect = corr[corr["subset"] == "all"]
    assert len(shown) == len(expect) == 2 * len(metrics)
    for target, metric, n in shown:
        row = expect[(expect["target"] == target) & (expect["metric"] == metric)].iloc[0]
        assert int(n) == row["n"]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kind", ["missing", "header-only"])
def test_report_without_trials(small_run: Path, tmp_path: Path, kind: str) -> None:
    rd = tmp_path / kind
    shutil.copytree(small_run, rd, ignore=shutil.ignore_patterns("figures", "report.html"))
    for name in ("summary.csv", "best.csv", "progress.json"):
        (rd / name).unlink()
    shutil.rmtree(rd / "best")
    if kind == "missing":
        (rd / "trials.csv").unlink()
    else:
        (rd / "trials.csv").write_text(",".join(schema.TRIAL_COLUMNS) + "\n")
    page = write_report(rd).read_text()
    assert 'id="no-trials"' in page and "trials.csv holds no trials" in page
    assert "data:image/png" not in page and not list((rd / "figures").glob("*.png"))
    assert span(page, "n-trials")[1] == "0" and span(page, "overall-rate")[1] == "n/a"
    assert span(page, "clean-accuracy")[0]["data-correct"] == "4"


def test_report_when_every_sign_is_misclassified(tmp_path: Path) -> None:
    res = run(config(tmp_path / "wrong", model="test_report:rolled_template"))
    assert not res.clean["correct"].any() and len(res.trials) == 0
    page = write_report(res.run_dir).read_text()
    assert "No sign was classified correctly when clean, so no attack was run." in page
    attrs, text = span(page, "clean-accuracy")
    assert (attrs["data-correct"], attrs["data-total"], text) == ("0", "4", "0.0%")
    assert span(page, "n-attacked")[1] == "0" and "data:image/png" not in page


def test_not_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from leafattack.cli import main

    with pytest.raises(LeafattackError, match="not a run directory"):
        write_report(tmp_path)
    with pytest.raises(LeafattackError, match="not a run directory"):
        write_report(tmp_path / "nowhere")
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == [
        f"error: {tmp_path}: not a run directory (expected config.toml written by leafattack run)"
    ]


def test_gallery_falls_back_to_best_pngs(small_run: Path, tmp_path: Path) -> None:
    """When the run cannot be re-created (stale fingerprint), best/*.png feeds the gallery."""
    rd = tmp_path / "stale"
    shutil.copytree(small_run, rd, ignore=shutil.ignore_patterns("figures", "report.html"))
    cfg = (rd / "config.toml").read_text()
    (rd / "config.toml").write_text(
        re.sub(r'(\[fingerprints\]\s*signs = )"\w+"', r'\1"0000000000000000"', cfg)
    )
    page = write_report(rd).read_text()
    assert "Images taken from best/*.png" in page
    fresh = np.asarray(Image.open(rd / "figures" / "gallery.png").convert("L"), np.float64)
    orig = np.asarray(Image.open(small_run / "figures" / "gallery.png").convert("L"), np.float64)
    assert fresh.shape == orig.shape and np.abs(fresh - orig).mean() < 2.0  # same pictures


# ----------------------------------------------------------------------------- a real browser


@pytest.mark.slow
def test_report_renders_in_headless_chromium(
    small_run: Path, small_report: str, tmp_path: Path,
    chromium_page: Callable[[Path, Path, str], tuple[Path, str]],
) -> None:
    shot, dom = chromium_page(small_run / "report.html", tmp_path, "1400,3000")
    body = re.search(r"<body([^>]*)>", dom)
    assert body
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    n_img = len(re.findall(r"<img\b", small_report))
    assert n_img >= len(TRIAL_FIGURES)
    assert attrs["data-images-total"] == attrs["data-images-ok"] == str(n_img)
    assert "fig-position_success" in attrs["data-images-loaded"].split()
    with Image.open(shot) as im:
        assert im.size == (1400, 3000)
        pixels = np.asarray(im.convert("RGB"), np.float64)
    assert pixels.std() > 20  # text, cards and figures, not a blank page
    # The figures are on screen: the page itself is white, grey and black, so strongly
    # coloured pixels come from the embedded figures (heatmaps, gallery).
    hi, lo = pixels.max(axis=2), pixels.min(axis=2)
    saturated = ((hi - lo) / np.maximum(hi, 1.0) > 0.4) & (hi > 40)
    assert saturated.mean() > 0.02
