"""The fixes a review of the code found (architecture issue, items a-k); each test failed
before its fix. Item g (a wheel install runs the default) is tests/test_wheel.py."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leafattack import api
from leafattack.analysis.best import safe_name
from leafattack.config import RunConfig
from leafattack.data import SignSet
from leafattack.engine.preparation import load_leaf_variants, select_signs
from leafattack.errors import LeafattackError, RunLockedError
from leafattack.grid import GridSpec
from leafattack.rundir import run_lock

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
GRID = GridSpec(species=("maple",), sizes=(0.4, 0.6), angles=(0.0, 90.0), positions=(3, 3))


def config(out: Path, signs: Path, **kw: object) -> RunConfig:
    base: dict[str, object] = dict(
        model="fixture_models:template", out=str(out), grid=GRID, signs=str(signs),
        quiet=True, batch_size=64, device="cpu",
    )
    base.update(kw)
    return RunConfig(**base)  # type: ignore[arg-type]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
    return subprocess.run(
        [sys.executable, "-m", "leafattack", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=600,
    )


# a. --colours natural,red on a leaf shipped red: one level, one colouring method


def test_colour_levels_make_distinct_variants() -> None:
    shipped_red = GridSpec(leaf_ids=("maple_red_0",), species=(), colours=("natural", "red"))
    variants = load_leaf_variants(RunConfig(grid=shipped_red))
    assert [v.leaf_id for v in variants] == ["maple_red_0", "maple_red_0@red"]
    assert [v.colour for v in variants] == ["red", "red"]
    # natural is the shipped image; "red" is the recolouring, as for every other leaf
    assert not np.array_equal(variants[0].rgba, variants[1].rgba)
    np.testing.assert_array_equal(variants[0].rgba[..., 3], variants[1].rgba[..., 3])
    green = load_leaf_variants(RunConfig(grid=dataclasses.replace(
        shipped_red, leaf_ids=("maple_green_0",))))
    assert [v.leaf_id for v in green] == ["maple_green_0", "maple_green_0@red"]
    with pytest.raises(LeafattackError, match="duplicates"):
        GridSpec(colours=("red", "natural", "red"))


# b. --limit-signs follows the seed


def _signs(per_class: int, classes: int) -> SignSet:
    n = per_class * classes
    return SignSet(
        images=tuple(np.zeros((4, 4, 3), np.uint8) for _ in range(n)),
        labels=np.repeat(np.arange(classes), per_class).astype(np.int64),
        class_names=tuple(f"c{i}" for i in range(classes)),
        files=tuple(f"{i}.png" for i in range(n)),
    )


def test_limit_signs_depends_on_the_seed_and_spreads_over_classes() -> None:
    signs = _signs(per_class=3, classes=16)
    picks = {seed: tuple(select_signs(signs, 4, seed)) for seed in range(12)}
    for seed, pick in picks.items():
        assert pick == tuple(select_signs(signs, 4, seed))  # reproducible
        assert len(set(np.asarray(signs.labels)[list(pick)])) == 4  # four classes
    classes = {tuple(sorted(np.asarray(signs.labels)[list(p)])) for p in picks.values()}
    assert len(classes) > 6  # not the first four classes every time
    every = select_signs(signs, 20, 3)
    counts = np.bincount(np.asarray(signs.labels)[every], minlength=16)
    assert counts.max() - counts.min() <= 1  # round-robin over the classes


# c, k. targeted runs: signs of the target class are not attacked; best = highest target


def test_targeted_run_skips_target_class_and_picks_best_by_target(
    tmp_path: Path, signs4: Path
) -> None:
    grid = GridSpec(species=("maple", "oak"), sizes=(0.5, 0.7), angles=(0.0, 90.0),
                    positions=(3, 3))
    res = api.run(config(tmp_path / "t", signs4, grid=grid, target="speedLimit45"))
    clean = pd.read_csv(res.run_dir / "clean.csv")
    assert clean["attacked"].all()  # no sign of the four is a speedLimit45
    other = api.run(config(tmp_path / "t2", signs4, grid=grid, target="stop"))
    clean2 = pd.read_csv(other.run_dir / "clean.csv")
    assert clean2.loc[~clean2["attacked"], "true_name"].tolist() == ["stop"]
    assert clean2["correct"].all() and "stop" not in set(other.trials["true_name"])
    assert res.trials["target_conf"].between(0, 1).all()
    best = pd.read_csv(res.run_dir / "best.csv")
    assert len(best) == 4
    for rec in best.to_dict("records"):
        mine = res.trials[res.trials["sign_id"] == rec["sign_id"]]
        wins = mine[mine["success"]]
        pool = wins if len(wins) else mine
        assert rec["target_conf"] == pytest.approx(pool["target_conf"].max())
        assert rec["rule"] == ("highest_target_conf_success" if len(wins)
                               else "highest_target_conf")
    assert best["success"].sum() == 1  # only speedLimit35 can be pushed to speedLimit45


# d. the attacked set is recorded and a resume that would change it is refused


def test_resume_refuses_a_changed_attacked_set(tmp_path: Path, signs4: Path) -> None:
    cfg = config(tmp_path / "d", signs4)
    res = api.run(cfg)
    progress_path = res.run_dir / "progress.json"
    progress = json.loads(progress_path.read_text())
    assert progress["attacked"] == [0, 1, 2, 3]
    progress.update(rows=progress["rows"] - 18, complete=False, attacked=[0, 1, 2])
    progress["bytes"] = len(b"".join(
        (res.run_dir / "trials.csv").read_bytes().splitlines(keepends=True)[: -18]))
    progress_path.write_text(json.dumps(progress))
    before = {n: (res.run_dir / n).read_bytes() for n in ("trials.csv", "clean.csv")}
    with pytest.raises(LeafattackError, match="attacked"):
        api.run(cfg)
    for name, data in before.items():  # refused before anything was written
        assert (res.run_dir / name).read_bytes() == data, name


# e. a run directory is self-describing from any working directory


@pytest.mark.slow  # three CLI processes
def test_edges_and_report_from_another_directory(tmp_path: Path, signs4: Path) -> None:
    work = tmp_path / "work"
    (work / "signs").mkdir(parents=True)
    for f in signs4.iterdir():
        (work / "signs" / f.name).write_bytes(f.read_bytes())
    made = cli("run", "--signs", "signs", "--model", "fixture_models:template",
               "--species", "maple", "--sizes", "0.5", "--angles", "0", "--positions", "2x2",
               "--out", "run", "--quiet", "--device", "cpu", cwd=work)
    assert made.returncode == 0, made.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir = str(work / "run")
    edges = cli("edges", run_dir, "--quiet", cwd=elsewhere)
    assert edges.returncode == 0, edges.stderr
    report = cli("report", run_dir, cwd=elsewhere)
    assert report.returncode == 0, report.stderr
    assert (work / "run" / "correlation.csv").is_file()
    assert (work / "run" / "report.html").is_file()


# f. class names with "/" give flat, safe file names


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Speed limit (20km/h)", "Speed_limit_20km_h"), ("Beware of ice/snow", "Beware_of_ice_snow"),
     ("..", "sign"), ("stop", "stop"), ("a/../../b", "a_b")],
)
def test_safe_name(name: str, expected: str) -> None:
    assert safe_name(name) == expected


def test_best_images_are_flat_for_class_names_with_slashes(
    tmp_path: Path, make_signs4: Callable[[Path], Path]
) -> None:
    from fixture_models import SLASHED

    signs = make_signs4(tmp_path / "signs")
    manifest = (signs / "manifest.csv").read_text().replace(",stop\n", f",{SLASHED}\n")
    (signs / "manifest.csv").write_text(manifest)
    res = api.run(config(tmp_path / "f", signs, model="fixture_models:template_slashed"))
    images = sorted(p.relative_to(res.run_dir / "best") for p in (res.run_dir / "best").rglob("*"))
    assert len(images) == 4 and all(len(p.parts) == 1 for p in images)
    assert any("stop_halt" in str(p) for p in images)
    best = pd.read_csv(res.run_dir / "best.csv")
    assert all((res.run_dir / img).is_file() for img in best["image"])


# h. a failing model gives one line; out of memory halves the batch and goes on


def test_a_raising_model_gives_one_line(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from leafattack.cli import main

    code = main(["run", "--signs", str(signs4), "--model", "fixture_models:raising",
                 "--species", "maple", "--positions", "2x2", "--out", str(tmp_path / "h"),
                 "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(
        "error: model 'fixture_models:raising' failed"), err
    assert "Traceback" not in err


def test_out_of_memory_halves_the_batch(tmp_path: Path, signs4: Path) -> None:
    import fixture_models

    fixture_models.SMALL_MEMORY_CALLS.clear()
    grid = GridSpec(species=("maple",), sizes=(0.5,), angles=(0.0,), positions=(3, 3))
    small = api.run(config(tmp_path / "oom", signs4, model="fixture_models:small_memory",
                           batch_size=32, grid=grid))
    assert max(fixture_models.SMALL_MEMORY_CALLS) == 32  # it was tried whole first
    assert 8 in fixture_models.SMALL_MEMORY_CALLS
    ref = api.run(config(tmp_path / "ref", signs4, batch_size=8, grid=grid))
    assert small.trials["trial_id"].tolist() == ref.trials["trial_id"].tolist()
    np.testing.assert_allclose(small.trials["true_conf"], ref.trials["true_conf"], atol=1e-6)


# i. the gallery caption states the Canny settings that were used


def test_gallery_caption_states_the_edge_settings(tmp_path: Path, signs4: Path) -> None:
    from leafattack.analysis.edge_analysis import run_edges
    from leafattack.analysis.edges import EdgeConfig
    from leafattack.report import write_report

    res = api.run(config(tmp_path / "i", signs4))
    run_edges(res.run_dir, config=EdgeConfig(low=20, high=90, blur_ksize=5), quiet=True,
              device="cpu")
    html = write_report(res.run_dir).read_text()
    caption = html.split('id="gallery-canny">', 1)[1].split("</span>", 1)[0]
    assert "thresholds 20/90" in caption and "5\u00d75 Gaussian blur" in caption
    assert "at 32\u00d732 px" in caption  # the analysis ran at the model's input size
    assert "50/150" not in caption


# j. run(edges=True, report=True) prepares once and keeps the lock throughout


def test_chained_run_prepares_once_and_holds_the_lock(
    tmp_path: Path, signs4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leafattack.engine import preparation as prepare_mod

    calls = {"prepare": 0, "locked_in_edges": False, "locked_in_report": False}
    real_prepare = prepare_mod.prepare

    def counting(cfg: RunConfig) -> object:
        calls["prepare"] += 1
        return real_prepare(cfg)

    def locked(run_dir: Path) -> bool:
        try:
            with run_lock(run_dir):
                return False
        except RunLockedError:
            return True

    real_edges, real_report = api.compute_edges, api.write_report

    def edges(run_dir: Path, *a: object, **kw: object) -> object:
        calls["locked_in_edges"] = locked(run_dir)
        return real_edges(run_dir, *a, **kw)  # type: ignore[arg-type]

    def report(run_dir: Path, **kw: object) -> Path:
        calls["locked_in_report"] = locked(run_dir)
        return real_report(run_dir, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "prepare", counting)
    monkeypatch.setattr(prepare_mod, "prepare", counting)
    monkeypatch.setattr(api, "compute_edges", edges)
    monkeypatch.setattr(api, "write_report", report)
    res = api.run(config(tmp_path / "j", signs4, edges=True, report=True))
    assert calls == {"prepare": 1, "locked_in_edges": True, "locked_in_report": True}
    assert res.edges is not None and (res.run_dir / "report.html").is_file()
    assert not locked(res.run_dir)  # released at the end
