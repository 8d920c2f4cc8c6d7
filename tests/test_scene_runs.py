"""Runs of random multi-leaf scenes (``--scenes-per-sign N --leaves-per-scene K``)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from leafattack import api, schema
from leafattack.analysis.edge_analysis import run_edges
from leafattack.cli import main
from leafattack.config import RunConfig
from leafattack.data import load_signs
from leafattack.errors import LeafattackError
from leafattack.grid import GridSpec

GRID = GridSpec(species=("maple", "oak"), sizes=(0.25, 0.45), angles=(0.0, 300.0),
                positions=(3, 3))


def config(out: Path, signs: Path, **kw: object) -> RunConfig:
    base: dict[str, object] = dict(
        model="fixture_models:template", out=str(out), grid=GRID, signs=str(signs),
        quiet=True, batch_size=16, device="cpu", scenes_per_sign=24, leaves_per_scene=3,
    )
    base.update(kw)
    return RunConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def k3(tmp_path_factory: pytest.TempPathFactory, signs4: Path) -> api.RunResult:
    return api.run(config(tmp_path_factory.mktemp("k3") / "run", signs4))


def test_tables_of_a_scene_run(k3: api.RunResult, signs4: Path) -> None:
    rd = k3.run_dir
    trials = pd.read_csv(rd / "trials.csv")
    assert list(trials.columns) == list(schema.SCENE_TRIAL_COLUMNS)
    assert len(trials) == 4 * 24 and (trials["n_leaves"] == 3).all()
    assert trials["trial_id"].tolist() == list(range(96))
    assert trials["occluded_frac"].between(0, 1).all()
    leaves = pd.read_csv(rd / "leaves.csv")
    assert list(leaves.columns) == list(schema.LEAF_COLUMNS)
    assert len(leaves) == 96 * 3
    assert (leaves.groupby("trial_id")["slot"].apply(list) == pd.Series([[0, 1, 2]] * 96)).all()
    assert leaves["size"].between(0.25, 0.45).all() and leaves["angle"].between(0, 300).all()
    assert set(leaves["species"]) == {"maple", "oak"}
    # every centre lies on the sign face (the mask at the compositing resolution)
    signs = load_signs(str(signs4))
    sign_of = trials.set_index("trial_id")["sign_id"]
    for rec in leaves.itertuples(index=False):
        mask = cv2.resize(signs.mask(int(sign_of[rec.trial_id])).astype(np.uint8), (128, 128),
                          interpolation=cv2.INTER_NEAREST)
        assert mask[int(rec.y * 128), int(rec.x * 128)] == 1


def test_summary_and_coverage(k3: api.RunResult) -> None:
    s = k3.summary
    assert set(s["factor"]) == {"overall", "sign_class", "n_leaves", "coverage",
                                "signs_fooled", "signs_fooled by sign_class"}
    cov = s[s["factor"] == "coverage"]
    assert cov["trials"].sum() == 96 and cov["successes"].sum() == k3.trials["success"].sum()
    edges = np.asarray(schema.COVERAGE_BINS)
    for level, n in zip(cov["level"], cov["trials"], strict=True):
        lo, hi = (float(v) for v in level.split("-"))
        inside = k3.trials["occluded_frac"].between(lo, hi, inclusive="left")
        if hi == edges[-1]:
            inside |= k3.trials["occluded_frac"] == hi
        assert int(inside.sum()) == n


def test_more_leaves_cover_more(tmp_path: Path, signs4: Path, k3: api.RunResult) -> None:
    one = api.run(config(tmp_path / "k1", signs4, leaves_per_scene=1))
    assert one.trials["occluded_frac"].mean() < k3.trials["occluded_frac"].mean()
    assert (one.trials["n_leaves"] == 1).all()


def test_a_signs_scenes_do_not_depend_on_the_other_signs(
    tmp_path: Path, signs4: Path, k3: api.RunResult
) -> None:
    alone = api.run(config(tmp_path / "alone", signs4, limit_signs=1, seed=0))
    sid = int(alone.trials["sign_id"].iloc[0])
    mine = pd.read_csv(alone.run_dir / "leaves.csv")
    full = pd.read_csv(k3.run_dir / "leaves.csv")
    trials = pd.read_csv(k3.run_dir / "trials.csv")
    ids = trials.loc[trials["sign_id"] == sid, "trial_id"]
    theirs = full[full["trial_id"].isin(ids)].reset_index(drop=True)
    cols = ["slot", "leaf_id", "size", "angle", "x", "y"]
    pd.testing.assert_frame_equal(mine[cols], theirs[cols])


def test_same_seed_same_bytes_and_resume(tmp_path: Path, signs4: Path, k3: api.RunResult) -> None:
    cfg = config(tmp_path / "again", signs4)
    again = api.run(cfg)
    for name in ("trials.csv", "leaves.csv", "summary.csv", "best.csv"):
        assert (again.run_dir / name).read_bytes() == (k3.run_dir / name).read_bytes(), name
    # cut back to 3 batches, as a kill would leave it, and resume
    lines = (again.run_dir / "trials.csv").read_bytes().splitlines(keepends=True)
    progress = json.loads((again.run_dir / "progress.json").read_text())
    progress.update(rows=48, bytes=len(b"".join(lines[:49])), complete=False)
    (again.run_dir / "progress.json").write_text(json.dumps(progress))
    resumed = api.run(cfg)
    assert resumed.resumed_from == 48
    assert (again.run_dir / "trials.csv").read_bytes() == (k3.run_dir / "trials.csv").read_bytes()
    other = api.run(config(tmp_path / "seed1", signs4, seed=1))
    assert not other.trials["occluded_frac"].equals(k3.trials["occluded_frac"])


def test_report_and_best_images(k3: api.RunResult) -> None:
    from leafattack.report import write_report

    html = write_report(k3.run_dir).read_text()
    assert "success_vs_coverage" in html and "Leaves and coverage" in html
    best = pd.read_csv(k3.run_dir / "best.csv")
    assert len(best) == 4 and all((k3.run_dir / p).is_file() for p in best["image"])


def test_best_scenes_render_like_the_run(tmp_path: Path, signs4: Path, k3: api.RunResult) -> None:
    """leaves.csv is a scenes file: ``render`` gives the attacked half of best/*.png."""
    from leafattack.imageio import read_rgb

    best = pd.read_csv(k3.run_dir / "best.csv")
    leaves = pd.read_csv(k3.run_dir / "leaves.csv")
    trials = pd.read_csv(k3.run_dir / "trials.csv").set_index("trial_id")
    assert (leaves["sign_id"] == trials.loc[leaves["trial_id"], "sign_id"].to_numpy()).all()
    # the rows of leaves.csv as they are: trial_id is the scene id
    lines = (k3.run_dir / "leaves.csv").read_text().splitlines()
    keep = set(best["trial_id"].astype(str))
    picked = [lines[0]] + [ln for ln in lines[1:] if ln.split(",", 1)[0] in keep]
    (tmp_path / "scenes.csv").write_text("\n".join(picked) + "\n")
    paths = api.render(tmp_path / "scenes.csv", tmp_path / "png", signs=str(signs4), quiet=True)
    by_id = {int(p.stem): p for p in paths}
    for rec in best.itertuples(index=False):
        attacked = read_rgb(k3.run_dir / rec.image)[:, -128:].astype(int)
        mine = read_rgb(by_id[int(rec.trial_id)]).astype(int)
        # the same renderer and exact floats; other batch composition moves rare pixels by 1
        assert np.abs(mine - attacked).max() <= 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scenes-per-sign", "5", "--leaves-per-scene", "0"], "leaves_per_scene=0"),
        (["--scenes-per-sign", "5", "--leaves-per-scene", "17"], "leaves_per_scene=17"),
        (["--leaves-per-scene", "3"], "needs scenes_per_sign"),
        (["--scenes-per-sign", "-1"], "scenes_per_sign=-1"),
    ],
    ids=["k0", "k17", "k_without_scenes", "negative"],
)
def test_bad_scene_options_are_one_line(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code = main(["run", "--signs", str(signs4), "--model", "fixture_models:template",
                 "--out", str(tmp_path / "o"), "--quiet", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_scene_runs_refuse_ray_before_any_work(tmp_path: Path, signs4: Path) -> None:
    with pytest.raises(LeafattackError, match="local executor"):
        config(tmp_path / "x", signs4, executor="ray")
    assert not (tmp_path / "x").exists()
    with pytest.raises(LeafattackError, match="<= 1000000"):
        config(tmp_path / "x", signs4, scenes_per_sign=100_000, leaves_per_scene=16)


def test_full_circle_of_angles() -> None:
    from leafattack.grid import angle_range

    assert angle_range((0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)) == (0.0, 360.0)
    assert angle_range((10.0, 130.0, 250.0)) == (10.0, 370.0)
    assert angle_range((0.0, 90.0)) == (0.0, 90.0)  # a quarter circle, not evenly around
    assert angle_range((0.0, 45.0, 135.0)) == (0.0, 135.0)
    assert angle_range((30.0,)) == (30.0, 30.0)


def test_edges_of_scene_runs(k3: api.RunResult) -> None:
    """Every scene gets its edge metrics, with the union of its leaves as the leaf region
    (checked against the OpenCV reference in test_scenes), and the correlations are broken
    down by the number of leaves."""
    res = run_edges(k3.run_dir, quiet=True, device="cpu", n_boot=20)
    trials = pd.read_csv(k3.run_dir / "trials.csv")
    assert res.edges["trial_id"].tolist() == trials["trial_id"].tolist()
    assert res.edges["edges_lost"].between(0, 1).all()
    assert set(res.correlation["subset"].astype(str)) >= {"all"}
    # a scene covering more of its sign loses more of its edges, on average
    joined = trials.merge(res.edges, on="trial_id")
    rho = joined[["occluded_frac", "edges_lost"]].corr(method="spearman").iloc[0, 1]
    assert rho > 0.3
