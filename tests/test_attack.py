"""The attack engine: run directories, CSV schema, criteria, determinism, bad input.

Kill-and-resume and the run lock are tested in ``tests/reliability`` (test_kill_resume.py,
test_concurrency.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binomtest

import leafattack
from leafattack import schema
from leafattack.api import run
from leafattack.config import RunConfig
from leafattack.errors import LeafattackError
from leafattack.grid import GridSpec

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

SMALL = GridSpec(
    species=("maple", "oak"), sizes=(0.35, 0.6), angles=(0.0, 90.0), positions=(3, 3)
)


SIGNS4: Path = Path("unset")


@pytest.fixture(autouse=True, scope="module")
def _four_signs(signs4: Path) -> None:
    """The session's four-sign folder, for :func:`small_config`."""
    global SIGNS4
    SIGNS4 = signs4


def small_config(out: Path, **kw: object) -> RunConfig:
    base = dict(model="fixture_models:template", out=str(out), grid=SMALL,
                signs=str(SIGNS4), quiet=True, batch_size=64, device="cpu")
    base.update(kw)
    return RunConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> leafattack.RunResult:
    return run(small_config(tmp_path_factory.mktemp("run") / "r"))


def test_run_directory_is_complete(small_run: leafattack.RunResult) -> None:
    rd = small_run.run_dir
    for name in ("config.toml", "clean.csv", "trials.csv", "summary.csv", "best.csv"):
        assert (rd / name).is_file(), name
    trials = pd.read_csv(rd / "trials.csv")
    assert list(trials.columns) == list(schema.TRIAL_COLUMNS)
    clean = pd.read_csv(rd / "clean.csv")
    assert list(clean.columns) == list(schema.CLEAN_COLUMNS)
    assert len(clean) == 4 and clean["correct"].all()
    assert set(clean["true_name"]) == {"speedLimit30", "speedLimit35", "stop", "yield"}
    # 4 signs x (maple and oak leaves of the shipped library) x 2 sizes x 2 angles x 9 cells
    manifest = pd.read_csv(ROOT / "leafattack" / "assets" / "leaves" / "manifest.csv")
    n_leaves = int(manifest["species"].isin(["maple", "oak"]).sum())
    assert n_leaves == 6  # 2 species x 3 colours, as the README says
    assert set(trials["species"]) == {"maple", "oak"}
    assert len(trials) == 4 * n_leaves * 2 * 2 * 9
    assert trials["trial_id"].is_monotonic_increasing and trials["trial_id"].is_unique
    assert len(list((rd / "best").glob("*.png"))) == 4


def test_success_matches_predictions(small_run: leafattack.RunResult) -> None:
    t = small_run.trials
    assert (t["success"] == (t["pred_label"] != t["true_label"])).all()
    assert (t["pred_conf"] >= t["true_conf"] - 1e-6).all()
    assert t["occluded_frac"].between(0, 1).all()
    # Bigger leaves cover more of the sign and succeed at least as often.
    by_size = t.groupby("size")[["occluded_frac", "success"]].mean()
    assert by_size.loc[0.6, "occluded_frac"] > by_size.loc[0.35, "occluded_frac"]
    assert by_size.loc[0.6, "success"] >= by_size.loc[0.35, "success"]
    # The template model's speed-limit classes are close neighbours: some trials flip them.
    assert t["success"].any() and not t["success"].all()


def test_summary_counts_and_wilson(small_run: leafattack.RunResult) -> None:
    s = small_run.summary
    t = small_run.trials
    overall = s[s["factor"] == "overall"].iloc[0]
    assert overall["trials"] == len(t)
    assert overall["successes"] == int(t["success"].sum())
    ci = binomtest(int(t["success"].sum()), len(t)).proportion_ci(
        confidence_level=0.95, method="wilson")
    assert overall["wilson_trial_low"] == pytest.approx(ci.low, abs=1e-9)
    assert overall["wilson_trial_high"] == pytest.approx(ci.high, abs=1e-9)
    assert overall["ci_low"] <= overall["rate"] <= overall["ci_high"]  # signs resampled
    species = s[s["factor"] == "species"].set_index("level")
    for sp, grp in t.groupby("species"):
        assert species.loc[sp, "trials"] == len(grp)
        assert species.loc[sp, "rate"] == pytest.approx(grp["success"].mean())
    assert set(s["factor"]) >= {"overall", "sign_class", "species", "colour", "size", "angle",
                                "position", "sign_class x species"}


def test_best_is_lowest_true_confidence(small_run: leafattack.RunResult) -> None:
    t = small_run.trials
    best = small_run.best
    assert len(best) == t["sign_id"].nunique()
    for row in best.itertuples():
        assert row.true_conf == pytest.approx(t.loc[t["sign_id"] == row.sign_id, "true_conf"].min())


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_engine_agrees_with_an_opencv_reference(
    small_run: leafattack.RunResult, opencv_paste: Callable[..., tuple[np.ndarray, float]]
) -> None:
    """Sampled rows of trials.csv against a per-trial reference that shares no code with the
    package's compositor or classifier wrapper.

    Inputs are read with OpenCV (the sign PNG and its 0/255 mask from the manifest folder,
    the shipped leaf PNG by its id); the leaf is scaled, rotated and alpha-blended by the
    ``opencv_paste`` fixture (cv2.resize INTER_AREA, cv2.warpAffine, "over" blending); the
    composite is area-downsampled to the model input with cv2.resize INTER_AREA, normalised
    with the model's metadata, and fed to the bare template module; the untargeted criterion
    is ``argmax != true class``.

    Measured here: the largest deviation over all 864 trials is 1.1e-6 in true_conf and
    5e-7 in occluded_frac, and pred_label and success agree on every trial (the two
    compositors follow the same pixel-edge convention, and warpAffine's 1/32-pixel
    sub-sampling averages out in the 4x area downsampling). The tolerance of 1e-3 leaves
    room for other OpenCV builds but not for a geometry error: shifting the leaf by half a
    pixel already moves true_conf by up to 2.4e-2 and occluded_frac by up to 4e-3.
    """
    from fixture_models import template

    module, meta = template()
    module.eval()
    names = list(meta["class_names"])
    mean = np.asarray(meta["mean"], np.float32)
    std = np.asarray(meta["std"], np.float32)
    size = int(meta["input_size"])
    rd = small_run.run_dir
    sign_size = tomllib.loads((rd / "config.toml").read_text())["sign_size"]
    manifest = pd.read_csv(SIGNS4 / "manifest.csv").set_index("file")
    leaves = ROOT / "leafattack" / "assets" / "leaves"
    trials = pd.read_csv(rd / "trials.csv")
    sample = trials.sample(120, random_state=0)
    conf_dev, occ_dev, near_ties = [], [], 0
    for row in sample.itertuples():
        sign = _read_rgb(SIGNS4 / row.sign_file)
        mask = cv2.imread(str(SIGNS4 / manifest.loc[row.sign_file, "mask"]),
                          cv2.IMREAD_GRAYSCALE) > 127
        if sign.shape[:2] != (sign_size, sign_size):
            sign = cv2.resize(sign, (sign_size, sign_size), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask.astype(np.uint8), (sign_size, sign_size),
                              interpolation=cv2.INTER_NEAREST) > 0
        assert "@" not in row.leaf_id  # colour "natural": the shipped PNG, named by its id
        leaf = cv2.cvtColor(cv2.imread(str(leaves / f"{row.leaf_id}.png"), cv2.IMREAD_UNCHANGED),
                            cv2.COLOR_BGRA2RGBA)
        # sizes are fractions of the face width: the mask's bounding box
        cols = np.flatnonzero(mask.any(axis=0))
        size_img = row.size * (cols[-1] - cols[0] + 1) / sign_size
        img, occ = opencv_paste(sign, mask, leaf, row.x, row.y, size_img, row.angle)
        small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(np.ascontiguousarray(((small - mean) / std).transpose(2, 0, 1)))
        with torch.no_grad():
            probs = torch.softmax(module(x[None]).double(), dim=1)[0].numpy()
        true = names.index(manifest.loc[row.sign_file, "name"])
        assert row.true_label == true and row.true_name == names[true]
        conf_dev.append(abs(probs[true] - row.true_conf))
        occ_dev.append(abs(occ - row.occluded_frac))
        top2 = np.sort(probs)[-2:]
        if top2[1] - top2[0] < 1e-3:  # a near tie may go either way
            near_ties += 1
            continue
        assert int(probs.argmax()) == row.pred_label, row.trial_id
        assert bool(probs.argmax() != true) == row.success, row.trial_id
    assert max(conf_dev) < 1e-3, max(conf_dev)
    assert max(occ_dev) < 1e-3, max(occ_dev)
    assert near_ties <= len(sample) // 20  # the labels are compared on >= 95% of the trials
    # The sample is not trivial: it holds fooled and unfooled trials.
    assert 0 < sample["success"].sum() < len(sample)


def test_same_config_same_bytes(tmp_path: Path, small_run: leafattack.RunResult) -> None:
    again = run(small_config(tmp_path / "again"))
    for name in ("trials.csv", "clean.csv", "summary.csv", "best.csv"):
        assert (again.run_dir / name).read_bytes() == (small_run.run_dir / name).read_bytes()


def test_fast_and_full_resolution_paths_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pooled window fast path and the full-frame compositor give the same trials."""
    from leafattack.engine import preparation as prepare_mod

    grid = GridSpec(species=("maple", "poplar"), sizes=(0.4, 0.7), angles=(30.0,),
                    positions=(3, 3))
    a = run(small_config(tmp_path / "a", grid=grid))
    monkeypatch.setattr(prepare_mod, "pooled_stack", lambda *args: None)
    b = run(small_config(tmp_path / "b", grid=grid))
    assert a.trials["trial_id"].tolist() == b.trials["trial_id"].tolist()
    np.testing.assert_allclose(a.trials["occluded_frac"], b.trials["occluded_frac"], atol=1e-5)
    np.testing.assert_allclose(a.trials["true_conf"], b.trials["true_conf"], atol=1e-4)
    assert (a.trials["pred_label"] == b.trials["pred_label"]).mean() > 0.99


def test_targeted_and_confidence_criteria(tmp_path: Path) -> None:
    res = run(small_config(tmp_path / "t", target="stop", min_confidence=0.2))
    t = res.trials
    expect = (t["pred_name"] == "stop") & (t["true_name"] != "stop") & (t["pred_conf"] >= 0.2)
    assert (t["success"] == expect).all()


def test_on_sign_only_keeps_centres_on_the_mask(tmp_path: Path) -> None:
    from leafattack.data.sources import load_builtin

    grid = GridSpec(species=("maple",), sizes=(0.3,), angles=(0.0,), positions=(7, 7),
                    on_sign_only=True)
    res = run(small_config(tmp_path / "o", grid=grid, signs="builtin", limit_signs=16))
    signs = load_builtin()
    t = res.trials
    per_sign = t.groupby("sign_id").size()
    assert (per_sign <= 49 * 3).all() and (per_sign < 49 * 3).any()  # yield/diamonds lose corners
    for row in t.drop_duplicates(["sign_id", "position"]).itertuples():
        m = signs.masks[row.sign_id]
        h, w = m.shape
        assert m[min(int(row.y * h), h - 1), min(int(row.x * w), w - 1)]


def test_changed_config_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "c"
    run(small_config(out))
    other = GridSpec(species=("maple",), sizes=(0.3,), angles=(0.0,), positions=(2, 2))
    with pytest.raises(LeafattackError, match="different config"):
        run(small_config(out, grid=other))
    res = run(small_config(out, grid=other, overwrite=True))
    assert len(res.trials) == res.n_trials


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(grid=GridSpec(species=("cactus",))), "cactus"),
        (dict(target="unicorn"), "unicorn"),
        (dict(model="no/such/model.pt"), "model.pt"),
        (dict(signs="foo:bar"), "unknown sign source prefix"),
        (dict(grid=GridSpec(species=("maple",), colours=("purple",))), "purple"),
    ],
    ids=["species", "target", "model", "signs", "colour"],
)
def test_bad_input_fails_before_work(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(LeafattackError, match=message):
        run(small_config(tmp_path / "bad", **kw))
    assert not (tmp_path / "bad" / "trials.csv").exists()


@pytest.mark.parametrize("sizes", [(0.0,), (2.5,), (-0.1,), (float("nan"),)])
def test_impossible_sizes_are_refused(sizes: tuple[float, ...]) -> None:
    with pytest.raises(LeafattackError, match="size"):
        GridSpec(sizes=sizes)


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run([sys.executable, "-m", "leafattack", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args",
    [
        ["--sizes", "0"], ["--sizes", "abc"], ["--angles", "0:360:0"], ["--positions", "5y5"],
        ["--species", "cactus"], ["--target", "unicorn"], ["--min-confidence", "1.5"],
        ["--model", "nothing.pt"], ["--signs", "foo:bar"], ["--batch-size", "0"],
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from leafattack.cli import main

    code = main(["run", "--model", "fixture_models:template", "--out", str(tmp_path / "x"),
                 "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert not (tmp_path / "x" / "trials.csv").exists()


def test_cli_error_in_a_fresh_process_has_no_traceback(tmp_path: Path) -> None:
    res = _cli("run", "--model", "fixture_models:template", "--out", str(tmp_path / "x"),
               "--quiet", "--species", "cactus")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error:")
    assert "Traceback" not in res.stderr and "cactus" in res.stderr


def test_cli_unwritable_output(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = "/proc/leafattack-run"  # not writable even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "run")
    res = _cli("run", "--model", "fixture_models:template", "--out", target, "--quiet")
    assert res.returncode == 2 and "cannot be written" in res.stderr
