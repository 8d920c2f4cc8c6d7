"""Edge analysis of run directories: edges.csv, correlation.csv, resume and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from leafattack import schema
from leafattack.analysis.edge_analysis import run_edges
from leafattack.analysis.edges import EDGE_METRICS, EdgeConfig, canny_batch, edge_metrics
from leafattack.api import run
from leafattack.compose.bank import Placement
from leafattack.compose.functional import paste_leaf
from leafattack.config import RunConfig
from leafattack.errors import LeafattackError
from leafattack.grid import GridSpec

SIGNS4: Path = Path("unset")


@pytest.fixture(autouse=True, scope="module")
def _four_signs(signs4: Path) -> None:
    """The session's four-sign folder, for :func:`config`."""
    global SIGNS4
    SIGNS4 = signs4

GRID = GridSpec(species=("maple", "poplar"), sizes=(0.3, 0.6), angles=(0.0, 120.0),
                positions=(3, 3))


def config(out: Path, **kw: object) -> RunConfig:
    base = dict(model="fixture_models:template", out=str(out), grid=GRID,
                signs=str(SIGNS4), quiet=True, batch_size=64, device="cpu")
    base.update(kw)
    return RunConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("edges") / "run"
    res = run(config(out, edges=True))
    assert res.edges is not None
    return out


def test_edges_csv_joins_trials(analysed: Path) -> None:
    trials = pd.read_csv(analysed / "trials.csv")
    edges = pd.read_csv(analysed / "edges.csv")
    assert list(edges.columns) == ["trial_id", *EDGE_METRICS]
    assert edges["trial_id"].tolist() == trials["trial_id"].tolist()
    assert edges["edge_iou"].between(0, 1).all()
    assert edges["edges_lost"].dropna().between(0, 1).all()
    # Larger leaves remove more of the sign's edges on average.
    merged = trials.merge(edges, on="trial_id")
    by_size = merged.groupby("size")["edges_lost"].mean()
    assert by_size.loc[0.6] > by_size.loc[0.3]


def test_correlation_table(analysed: Path) -> None:
    corr = pd.read_csv(analysed / "correlation.csv")
    assert list(corr.columns) == list(schema.CORRELATION_COLUMNS)
    overall = corr[(corr["subset"] == "all") & (corr["target"] == "success")]
    assert overall["metric"].tolist() == list(EDGE_METRICS)
    assert (overall["n"] > 0).all()
    assert set(corr["subset"]) >= {"all", "species=maple", "species=poplar", "size=0.3",
                                   "size=0.6"}
    # Against scipy on the joined data: the point-biserial r of edges_lost and success.
    from scipy import stats

    trials = pd.read_csv(analysed / "trials.csv")
    edges = pd.read_csv(analysed / "edges.csv")
    m = trials.merge(edges, on="trial_id").dropna(subset=["edges_lost"])
    r, _ = stats.pointbiserialr(m["success"].astype(int), m["edges_lost"])
    got = overall.set_index("metric").loc["edges_lost", "point_biserial_r"]
    assert got == pytest.approx(r, abs=1e-6)


def test_metrics_match_a_per_trial_reference(analysed: Path) -> None:
    """Recompose single trials, run cv2.Canny on the area-resized image, compare metrics."""
    from leafattack.data.sources import load_signs
    from leafattack.engine.prepare import open_run

    prep, _ = open_run(analysed, device="cpu")
    signs = load_signs(str(SIGNS4))
    variants = {(v.leaf_id, v.colour): v.rgba for v in prep.variants}
    trials = pd.read_csv(analysed / "trials.csv").sample(12, random_state=1)
    edges = pd.read_csv(analysed / "edges.csv").set_index("trial_id")
    cfg = EdgeConfig(resolution=32)
    for row in trials.itertuples():
        img = signs.images[row.sign_id]
        att, _ = paste_leaf(img, variants[(row.leaf_id, row.colour)],
                            Placement(row.x, row.y, row.size, row.angle), signs.masks[row.sign_id])

        def canny(im: np.ndarray) -> np.ndarray:
            small = cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA)
            gray = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (3, 3), 0)
            return cv2.Canny(gray, 50, 150) > 0

        ce, ae = canny(img)[None], canny(att)[None]
        np.testing.assert_array_equal(ae, canny_batch(att[None], cfg))
        mask = cv2.resize(signs.masks[row.sign_id].astype(np.uint8), (32, 32),
                          interpolation=cv2.INTER_NEAREST)[None] > 0
        ref = edge_metrics(ce, ae, np.zeros((1, 32, 32)), mask, config=cfg)
        for name in ("edges_lost", "edges_added", "edge_iou"):
            want = float(ref[name][0])
            got = float(edges.loc[row.trial_id, name])
            if np.isnan(want):
                assert np.isnan(got)
            else:
                assert got == pytest.approx(want, abs=0.02), name


def test_edges_resume_after_a_crash(
    analysed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rd = tmp_path / "copy"
    shutil.copytree(analysed, rd)
    for name in ("edges.csv", "edges_progress.json", "correlation.csv"):
        (rd / name).unlink()
    import leafattack.analysis.edge_analysis as analysis

    real = analysis.edge_metrics
    calls = {"n": 0}

    def flaky(*args: object, **kw: object) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(analysis, "edge_metrics", flaky)
    with pytest.raises(RuntimeError):
        run_edges(rd, device="cpu", batch_size=64, quiet=True)
    partial = pd.read_csv(rd / "edges.csv")
    assert 0 < len(partial) < len(pd.read_csv(rd / "trials.csv"))
    monkeypatch.setattr(analysis, "edge_metrics", real)
    run_edges(rd, device="cpu", batch_size=64, quiet=True)
    assert (rd / "edges.csv").read_bytes() == (analysed / "edges.csv").read_bytes()


def test_bad_run_directories(analysed: Path, tmp_path: Path) -> None:
    with pytest.raises(LeafattackError, match="not a run directory"):
        run_edges(tmp_path, device="cpu")
    rd = tmp_path / "cols"
    shutil.copytree(analysed, rd)
    t = pd.read_csv(rd / "trials.csv").drop(columns=["success"])
    t.to_csv(rd / "trials.csv", index=False)
    with pytest.raises(LeafattackError, match="missing columns success"):
        run_edges(rd, device="cpu")
    rd2 = tmp_path / "empty"
    shutil.copytree(analysed, rd2)
    header = (rd2 / "trials.csv").read_text().splitlines()[0]
    (rd2 / "trials.csv").write_text(header + "\n")
    with pytest.raises(LeafattackError, match="no trials"):
        run_edges(rd2, device="cpu")


def test_changed_leaves_are_detected(tmp_path: Path) -> None:
    """A leaf library edited after the run no longer matches the stored fingerprint."""
    from leafattack.leaves.library import builtin_leaves_dir

    lib = tmp_path / "leaves"
    shutil.copytree(builtin_leaves_dir(), lib)
    small = GridSpec(species=("maple",), sizes=(0.5,), angles=(0.0,), positions=(2, 2))
    rd = tmp_path / "run"
    run(config(rd, grid=small, leaves=str(lib)))
    png = lib / "maple_red_0.png"
    from leafattack.imageio import read_rgba, write_png

    rgba = read_rgba(png).copy()
    rgba[..., 0] = 255 - rgba[..., 0]
    write_png(png, rgba)
    with pytest.raises(LeafattackError, match="leaves.*no longer match"):
        run_edges(rd, device="cpu")
