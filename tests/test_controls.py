"""Neutral-occluder controls: every registered kind's properties, the engine's controls.csv
(resumable, byte-identical), the paired comparison, the CLI, and the must-show test with a
model that sees only mean colours."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from leafattack import schema
from leafattack.analysis.controls import CONTROLS_SUMMARY_FILE
from leafattack.api import run, run_controls
from leafattack.cli import main
from leafattack.compose import build_leaf_bank, composite
from leafattack.compose.controls import (
    CONTROLS,
    SHUFFLE_ALPHA,
    control_hook,
    leaf_keys,
    parse_kinds,
)
from leafattack.config import RunConfig
from leafattack.grid import GridSpec
from leafattack.imageio import write_png
from leafattack.leaves import builtin_leaves_dir, load_leaves

H = 64
N = 6


def _leaves() -> list[np.ndarray]:
    lib = {leaf.leaf_id: leaf for leaf in load_leaves(builtin_leaves_dir())}
    return [lib["maple_red_0"].rgba, lib["oak_green_0"].rgba]


def _scene(sign_rgb: torch.Tensor | None = None, leaves: list[np.ndarray] | None = None) -> dict:
    g = torch.Generator().manual_seed(3)
    signs = torch.rand((N, 3, H, H), generator=g) if sign_rgb is None else sign_rgb
    bank = build_leaf_bank(leaves or _leaves(), [0.4, 0.7], H)
    return {
        "signs": signs,
        "masks": torch.ones((N, H, H), dtype=torch.bool),
        "bank": bank,
        "entry": torch.tensor([0, 1, 2, 3, 1, 3]),
        "x": torch.tensor([0.5, 0.3, 0.6, 0.5, 0.9, 0.45]),
        "y": torch.tensor([0.5, 0.6, 0.4, 0.5, 0.2, 0.55]),
        "angle": torch.tensor([0.0, 30.0, 90.0, 200.0, 45.0, 10.0]),
    }


def _render(
    s: dict, kind: str | None, trial_ids: torch.Tensor | None = None, seed: int = 0,
    rows: slice = slice(None),
) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.arange(N, dtype=torch.int64) * 7 + 11 if trial_ids is None else trial_ids
    hook = None if kind is None else control_hook(kind, seed, ids[rows])
    images, _, alpha = composite(
        s["signs"][rows], s["masks"][rows], s["bank"], s["entry"][rows], s["x"][rows],
        s["y"][rows], s["angle"][rows], recolour=hook,
    )
    return images, alpha


# ---- properties of each kind ---------------------------------------------------------------


def _check_grey(s: dict) -> None:
    """Equals a leaf painted (128, 128, 128) with the same alpha."""
    painted = []
    for rgba in _leaves():
        p = rgba.copy()
        p[..., :3] = 128
        painted.append(p)
    grey_scene = {**s, "bank": build_leaf_bank(painted, [0.4, 0.7], H)}
    got, _ = _render(s, "grey")
    want, _ = _render(grey_scene, None)
    assert torch.allclose(got, want, atol=2e-6)


def _check_black(s: dict) -> None:
    """The sign darkened by the leaf's alpha, nothing added."""
    got, alpha = _render(s, "black")
    assert torch.allclose(got, s["signs"] * (1 - alpha[:, None]), atol=1e-6)


def _check_mean(s: dict) -> None:
    """On a sign of one flat colour, the mean occluder is invisible."""
    flat = torch.tensor([0.2, 0.7, 0.4])[None, :, None, None].expand(N, 3, H, H).contiguous()
    scene = {**s, "signs": flat}
    got, _ = _render(scene, "mean")
    assert torch.allclose(got, flat, atol=1e-5)


def _check_shuffled(s: dict) -> None:
    """The opaque pixels' colours are a permutation of the leaf's; the rim is the leaf's."""
    leaf, alpha = _render(s, None)
    got, _ = _render(s, "shuffled")
    assert not torch.allclose(got, leaf, atol=1e-3)  # texture moved
    for i in range(N):
        inside = alpha[i] >= SHUFFLE_ALPHA
        a = leaf[i][:, inside].T.numpy()
        b = got[i][:, inside].T.numpy()
        # alpha in [SHUFFLE_ALPHA, 1]: a moved colour meets the sign by at most 1 - SHUFFLE_ALPHA
        tol = 2.0 * (1.0 - SHUFFLE_ALPHA)
        assert np.allclose(np.sort(a, axis=0), np.sort(b, axis=0), atol=tol)
        assert np.allclose(a.sum(axis=0), b.sum(axis=0), atol=tol * len(a))
        assert torch.allclose(leaf[i][:, ~inside], got[i][:, ~inside], atol=1e-6)


def _check_noise(s: dict) -> None:
    """Uniform noise in [0, 1) under an opaque leaf: mean 1/2, sd sqrt(1/12); seeded."""
    zero = {**s, "signs": torch.zeros_like(s["signs"])}
    got, alpha = _render(zero, "noise")
    inside = (alpha >= 0.999)[:, None].expand_as(got)
    vals = got[inside]
    assert vals.numel() > 4000  # mean within 0.015: over 3.5 standard errors
    assert abs(float(vals.mean()) - 0.5) < 0.015
    assert abs(float(vals.std()) - math.sqrt(1 / 12)) < 0.01
    other, _ = _render(zero, "noise", seed=1)
    assert not torch.allclose(got, other)


KIND_CHECKS: dict[str, Callable[[dict], None]] = {
    "grey": _check_grey,
    "mean": _check_mean,
    "black": _check_black,
    "shuffled": _check_shuffled,
    "noise": _check_noise,
}


def test_every_registered_kind_has_a_check() -> None:
    assert set(KIND_CHECKS) == set(CONTROLS)


@pytest.mark.parametrize("kind", list(CONTROLS))
def test_kind_specific_property(kind: str) -> None:
    KIND_CHECKS[kind](_scene())


@pytest.mark.parametrize("kind", list(CONTROLS))
def test_kind_keeps_alpha_and_is_batch_independent(kind: str) -> None:
    s = _scene()
    leaf, alpha = _render(s, None)
    got, alpha2 = _render(s, kind)
    assert torch.equal(alpha, alpha2)
    off = (alpha == 0)[:, None].expand_as(got)
    assert torch.equal(got[off], s["signs"][off])  # nothing changes outside the leaf
    assert not torch.allclose(got, leaf, atol=1e-3)  # the leaf's colour is replaced
    assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0
    again, _ = _render(s, kind)
    assert torch.equal(got, again)  # deterministic
    part, _ = _render(s, kind, rows=slice(2, 5))  # another batch: the same trials' pixels
    assert torch.allclose(part, got[2:5], atol=1e-6)


@pytest.mark.parametrize("kind", list(CONTROLS))
def test_kind_output_is_premultiplied_within_alpha(kind: str) -> None:
    g = torch.Generator().manual_seed(5)
    alpha = torch.rand((3, 1, 16, 16), generator=g)
    alpha[:, :, 4:12, 4:12] = 1.0
    colour = torch.rand((3, 3, 16, 16), generator=g)
    layer = torch.cat([colour * alpha, alpha], dim=1)
    out = CONTROLS[kind](layer, torch.rand((3, 3, 16, 16), generator=g), torch.arange(3))
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32
    assert bool((out >= 0).all()) and bool((out <= alpha + 1e-6).all())


def test_leaf_keys_differ_by_trial_slot_and_seed() -> None:
    ids = torch.arange(1000, dtype=torch.int64)
    k = leaf_keys(0, ids, 0)
    assert len(torch.unique(k)) == 1000
    assert not torch.equal(k, leaf_keys(1, ids, 0))
    assert not torch.equal(k, leaf_keys(0, ids, 1))
    assert int(k.min()) >= 0 and int(k.max()) < 2**32
    big = leaf_keys(0, torch.tensor([2**40 + 5, 5]), 0)
    assert int(big[0]) != int(big[1])


def test_parse_kinds() -> None:
    assert parse_kinds(None) == tuple(CONTROLS)
    assert parse_kinds("all") == tuple(CONTROLS)
    assert parse_kinds(" grey,noise ") == ("grey", "noise")
    for bad in ("purple", "grey,grey", ","):
        with pytest.raises(ValueError):
            parse_kinds(bad)


# ---- the engine, the comparison and the CLI ------------------------------------------------

SMALL = GridSpec(species=("maple", "oak"), sizes=(0.3, 0.5), angles=(0.0, 90.0), positions=(3, 3))


def _config(out: Path, signs: Path, **kw: object) -> RunConfig:
    base = dict(model="fixture_models:template", out=str(out), grid=SMALL, signs=str(signs),
                quiet=True, batch_size=64, device="cpu")
    base.update(kw)
    return RunConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def control_run(tmp_path_factory: pytest.TempPathFactory, signs4: Path) -> Path:
    out = tmp_path_factory.mktemp("controls") / "r"
    run(_config(out, signs4), controls=("grey", "shuffled", "black"))
    return out


def test_controls_csv_pairs_every_attacked_trial(control_run: Path) -> None:
    trials = pd.read_csv(control_run / "trials.csv")
    ctl = pd.read_csv(control_run / "controls.csv")
    assert list(ctl.columns) == list(schema.CONTROL_COLUMNS)
    assert list(dict.fromkeys(ctl["control"])) == ["grey", "shuffled", "black"]  # kind-major
    for kind in ("grey", "shuffled", "black"):
        part = ctl[ctl["control"] == kind]
        assert part["trial_id"].tolist() == trials["trial_id"].tolist()
    assert ctl["pred_conf"].between(0, 1).all()
    progress = json.loads((control_run / "controls_progress.json").read_text())
    assert progress["complete"] and progress["rows"] == 3 * len(trials)


def test_controls_summary_agrees_with_an_independent_count(control_run: Path) -> None:
    trials = pd.read_csv(control_run / "trials.csv")
    ctl = pd.read_csv(control_run / "controls.csv")
    summ = pd.read_csv(control_run / CONTROLS_SUMMARY_FILE)
    assert list(summ.columns) == list(schema.CONTROLS_SUMMARY_COLUMNS)
    for kind in ("grey", "shuffled", "black"):
        row = summ[(summ["control"] == kind) & (summ["factor"] == "overall")].iloc[0]
        m = trials[["trial_id", "success"]].merge(
            ctl[ctl["control"] == kind][["trial_id", "success"]], on="trial_id",
            suffixes=("_leaf", "_ctl"),
        )
        b = int((m.success_leaf & ~m.success_ctl).sum())
        c = int((~m.success_leaf & m.success_ctl).sum())
        assert (row.leaf_only, row.control_only) == (b, c)
        six = {"rel": 1e-5, "abs": 1e-9}  # the CSV keeps 6 significant digits
        assert row.leaf_rate == pytest.approx(m.success_leaf.mean(), **six)
        assert row.control_rate == pytest.approx(m.success_ctl.mean(), **six)
        assert row.excess == pytest.approx(m.success_leaf.mean() - m.success_ctl.mean(), **six)
        n = b + c  # exact two-sided binomial p, written out
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n if n else 0.5
        assert row.mcnemar_p == pytest.approx(min(1.0, 2 * tail), **six)
        assert row.excess_ci_low <= row.excess <= row.excess_ci_high
        assert row.n_boot == 1000 and row.resampled == "signs+leaves"
    factors = set(summ["factor"])
    assert {"overall", "species", "colour", "size", "n_leaves"} <= factors


def test_controls_resume_after_a_kill_gives_the_same_bytes(
    control_run: Path, tmp_path: Path
) -> None:
    rd = tmp_path / "r"
    shutil.copytree(control_run, rd)
    full = (rd / "controls.csv").read_bytes()
    lines = full.split(b"\n")
    keep = b"\n".join(lines[: 1 + 64 + 64]) + b"\n"  # header and two batches (grey)
    (rd / "controls.csv").write_bytes(keep + lines[200][:7])  # a batch cut mid-line
    (rd / "controls_progress.json").write_text(json.dumps({
        **json.loads((control_run / "controls_progress.json").read_text()),
        "rows": 128, "bytes": len(keep), "complete": False,
    }))
    res = run_controls(rd, "grey,shuffled,black", device="cpu", quiet=True)
    assert res.resumed_from == 128
    assert (rd / "controls.csv").read_bytes() == full
    assert (rd / CONTROLS_SUMMARY_FILE).read_bytes() == (
        control_run / CONTROLS_SUMMARY_FILE
    ).read_bytes()


def test_scene_run_controls(tmp_path: Path, signs4: Path) -> None:
    out = tmp_path / "s"
    cfg = _config(out, signs4, scenes_per_sign=20, leaves_per_scene=3)
    run(cfg, controls=("noise", "mean"))
    trials = pd.read_csv(out / "trials.csv")
    ctl = pd.read_csv(out / "controls.csv")
    assert len(ctl) == 2 * len(trials)
    summ = pd.read_csv(out / CONTROLS_SUMMARY_FILE)
    assert set(summ["factor"]) >= {"overall", "n_leaves", "coverage"}
    assert (summ["resampled"] == "signs").all()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["controls", "{missing}"], "not a run directory"),
        (["controls", "{empty}"], "not a run directory"),
        (["controls", "{run}", "--kinds", "purple"], "unknown control kind"),
    ],
    ids=["missing", "not-a-run", "unknown-kind"],
)
def test_cli_errors_are_one_line(
    args: list[str], needle: str, control_run: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "run": control_run}
    argv = [a.format(**paths) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err


# ---- must show: a model that sees only mean colours ----------------------------------------


def _grey_library(folder: Path) -> Path:
    lib = {leaf.leaf_id: leaf for leaf in load_leaves(builtin_leaves_dir())}
    folder.mkdir()
    rows = ["file,species,colour,source"]
    for name, rgba in (("maple_red_0", lib["maple_red_0"].rgba),):
        painted = rgba.copy()
        painted[..., :3] = 128
        write_png(folder / f"{name}.png", rgba)
        write_png(folder / "maple_grey.png", painted)
        rows += [f"{name}.png,maple,red,test", "maple_grey.png,maple,natural,test"]
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_mean_colour_model_cannot_tell_grey_from_a_grey_leaf_or_shuffled_from_the_leaf(
    tmp_path: Path, signs4: Path,
) -> None:
    leaves = _grey_library(tmp_path / "leaves")
    grid = GridSpec(species=("maple",), sizes=(0.3, 0.5, 0.8), angles=(0.0, 70.0),
                    positions=(4, 4))
    out = tmp_path / "m"
    cfg = _config(out, signs4, model="fixture_controls:mean_colour", leaves=str(leaves),
                  grid=grid)
    run(cfg, controls=("grey", "shuffled"))
    trials = pd.read_csv(out / "trials.csv")
    ctl = pd.read_csv(out / "controls.csv")
    assert len(trials) > 0
    keys = ["sign_id", "size", "angle", "position"]
    outcome = ["pred_label", "success"]
    leaf = trials[trials["leaf_id"] == "maple_red_0"]
    grey_leaf = trials[trials["leaf_id"] == "maple_grey"]
    red = leaf[["trial_id", *keys, "true_conf"]].rename(columns={"true_conf": "red_conf"})
    grey_ctl = red.merge(ctl[ctl["control"] == "grey"], on="trial_id")
    pair = grey_ctl.merge(grey_leaf, on=keys, suffixes=("_ctl", "_leaf"))
    assert len(pair) == len(leaf)
    for col in outcome:
        assert (pair[f"{col}_ctl"] == pair[f"{col}_leaf"]).all(), col
    assert np.allclose(pair["true_conf_ctl"], pair["true_conf_leaf"], atol=1e-4)
    shuf = trials.merge(ctl[ctl["control"] == "shuffled"], on="trial_id",
                        suffixes=("_leaf", "_ctl"))
    assert len(shuf) == len(trials)
    for col in outcome:
        assert (shuf[f"{col}_ctl"] == shuf[f"{col}_leaf"]).all(), col
    assert np.allclose(shuf["true_conf_ctl"], shuf["true_conf_leaf"], atol=1e-4)
    # Not vacuous: the red leaf and its grey stand-in do differ for this model.
    assert (np.abs(pair["true_conf_ctl"] - pair["red_conf"]) > 1e-3).any()
    assert leaf["success"].any() or grey_leaf["success"].any()


def test_report_has_the_is_it_the_leaf_section(control_run: Path, tmp_path: Path) -> None:
    from leafattack.report.controls import fig_leaf_vs_controls, read_controls_summary
    from leafattack.report.html import write_report

    rd = tmp_path / "r"
    shutil.copytree(control_run, rd)
    page = write_report(rd).read_text()
    assert "Is it the leaf?" in page and 'id="controls-table"' in page
    assert (rd / "figures" / "leaf_vs_controls.png").exists()
    summary = read_controls_summary(rd)
    assert summary is not None
    ax = fig_leaf_vs_controls(summary).axes[0]
    trials = pd.read_csv(rd / "trials.csv")
    ctl = pd.read_csv(rd / "controls.csv")
    want_leaf = trials.groupby("size")["success"].mean().to_numpy()
    lines = {str(c.get_label()): c.lines[0] for c in ax.containers}  # one errorbar each
    assert set(lines) == {"leaf", "grey", "shuffled", "black"}
    np.testing.assert_allclose(np.asarray(lines["leaf"].get_ydata(), float), want_leaf, atol=1e-6)
    grey = ctl[ctl["control"] == "grey"].merge(trials[["trial_id", "size"]], on="trial_id")
    np.testing.assert_allclose(
        np.asarray(lines["grey"].get_ydata(), float),
        grey.groupby("size")["success"].mean().to_numpy(), atol=1e-6,
    )
