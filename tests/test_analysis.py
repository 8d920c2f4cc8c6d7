"""Edge analysis of run directories: edges.csv, correlation.csv, resume and bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from leafattack import schema
from leafattack.analysis.edge_analysis import run_edges
from leafattack.analysis.edges import EDGE_METRICS
from leafattack.api import run
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


def _grow(maps: np.ndarray, radius: int = 1) -> np.ndarray:
    """Square (Chebyshev) dilation with numpy shifts; outside the image counts as False."""
    h, w = maps.shape
    padded = np.pad(maps, radius)
    out = np.zeros_like(maps)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def test_metrics_match_a_per_trial_reference(
    analysed: Path, opencv_paste: Callable[..., tuple[np.ndarray, float]]
) -> None:
    """Sampled rows of edges.csv against metrics computed trial by trial without
    leafattack.analysis: the attacked image from the OpenCV ``opencv_paste`` fixture (rounded
    to uint8, as an image file would hold it), then per image cv2.resize INTER_AREA to the
    resolution the analysis recorded, grayscale, cv2.GaussianBlur 3x3, cv2.Canny(50, 150);
    and the metric definitions of the edges module docstring written out with numpy: sign
    region = mask (area-resized, >= half covered) grown by one pixel, kept / matched edge
    pixels within one pixel (Chebyshev), ``edges_lost = 1 - kept / clean``,
    ``edges_added = (attacked - matched) / clean``, ``edge_iou = M / (clean + attacked - M)``
    with ``M = (kept + matched) / 2``, ``edge_density_change = (attacked - clean) / region``.

    Measured here: all 864 trials agree to the CSV's rounding (largest deviation 5e-7), i.e.
    the edge maps are identical. The tolerance 1e-5 allows for that rounding; a single
    Canny pixel that flips at a uint8 rounding boundary (another OpenCV build) changes a
    metric by about 1/(clean edge pixels) > 2e-3, so up to one trial in 20 may deviate by
    at most 0.05.
    """
    cfg = json.loads((analysed / "edges_progress.json").read_text())["config"]
    assert (cfg["low"], cfg["high"], cfg["blur_ksize"], cfg["tolerance"]) == (50, 150, 3, 1)
    assert not cfg["auto"] and cfg["blur_sigma"] == 0
    res = cfg["resolution"]
    assert res == 32  # the model's input size

    def canny(img: np.ndarray) -> np.ndarray:
        small = cv2.resize(img, (res, res), interpolation=cv2.INTER_AREA)
        gray = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (3, 3), 0)
        return cv2.Canny(gray, 50, 150) > 0

    def read_rgb(path: Path) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    manifest = pd.read_csv(SIGNS4 / "manifest.csv").set_index("file")
    leaves = Path(__file__).resolve().parent.parent / "leafattack" / "assets" / "leaves"
    trials = pd.read_csv(analysed / "trials.csv").sample(96, random_state=1)
    edges = pd.read_csv(analysed / "edges.csv").set_index("trial_id")
    names = ("edges_lost", "edges_added", "edge_iou", "edge_density_change")
    deviations = []
    for row in trials.itertuples():
        sign = read_rgb(SIGNS4 / row.sign_file)
        mask = cv2.imread(str(SIGNS4 / manifest.loc[row.sign_file, "mask"]),
                          cv2.IMREAD_GRAYSCALE) > 127
        assert sign.shape[:2] == (128, 128)  # the run's sign_size: no resizing before pasting
        leaf = cv2.cvtColor(cv2.imread(str(leaves / f"{row.leaf_id}.png"), cv2.IMREAD_UNCHANGED),
                            cv2.COLOR_BGRA2RGBA)
        # sizes are fractions of the face width: the mask's bounding box
        cols = np.flatnonzero(mask.any(axis=0))
        size_img = row.size * (cols[-1] - cols[0] + 1) / sign.shape[1]
        img, _ = opencv_paste(sign, mask, leaf, row.x, row.y, size_img, row.angle)
        attacked = canny(np.round(img * 255).astype(np.uint8))
        clean = canny(sign)
        small_mask = cv2.resize(mask.astype(np.float32), (res, res),
                                interpolation=cv2.INTER_AREA) >= 0.5
        region = _grow(small_mask)
        c_in, a_in = clean & region, attacked & region
        n_clean, n_att = int(c_in.sum()), int(a_in.sum())
        kept = int((c_in & _grow(a_in)).sum())
        matched = int((a_in & _grow(c_in)).sum())
        assert n_clean > 0  # every sign has edges: no NaN expected
        m = (kept + matched) / 2
        union = n_clean + n_att - m
        want = {
            "edges_lost": (n_clean - kept) / n_clean,
            "edges_added": (n_att - matched) / n_clean,
            "edge_iou": 1.0 if union == 0 else m / union,
            "edge_density_change": (n_att - n_clean) / int(region.sum()),
        }
        got = edges.loc[row.trial_id]
        deviations.append(max(abs(float(got[k]) - want[k]) for k in names))
    dev = np.asarray(deviations)
    assert dev.max() < 0.05, dev.max()
    assert (dev < 1e-5).mean() >= 0.95, np.sort(dev)[-10:]
    # The sample is not trivial: some leaves remove edges, some leave them all.
    assert (edges.loc[trials["trial_id"], "edges_lost"] > 0.05).any()


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
