"""Adaptive search (``leafattack search``): the method registry, the loss, the pooled
renderer, determinism, resume after SIGKILL, bad input, and the search directory."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fixture_search import search_config

from leafattack import api, schema
from leafattack.adaptive import (
    METHODS,
    SearchSpace,
    SignContext,
    curve_budgets,
    margin_loss,
)
from leafattack.cli import main
from leafattack.compose.pooled import render_pooled
from leafattack.compose.scenes import SceneBatch, render_scenes
from leafattack.config import RunConfig, SearchConfig
from leafattack.engine.preparation import prepare
from leafattack.engine.search import build_bank

ROOT = Path(__file__).resolve().parent.parent


class MethodCase(NamedTuple):
    budget: int
    leaves: int


METHOD_CASES: dict[str, MethodCase] = {
    "random": MethodCase(40, 2),
    "evolution": MethodCase(40, 2),
    "cmaes": MethodCase(40, 2),
    "greedy": MethodCase(40, 2),
    "grid": MethodCase(40, 1),
}
"""Every registered method with the settings its directory test uses."""


def test_every_method_is_in_the_table() -> None:
    assert set(METHOD_CASES) == set(METHODS)


@pytest.mark.parametrize("method", sorted(METHOD_CASES))
def test_method_writes_a_consistent_search_directory(
    method: str, tmp_path: Path, signs4: Path
) -> None:
    case = METHOD_CASES[method]
    cfg = search_config(
        tmp_path / "s", signs4, method=method, budget=case.budget,
        leaves_per_scene=case.leaves, stop_on_success=False,
    )
    res = api.search(cfg)
    rd = res.run_dir
    q = pd.read_csv(rd / "queries.csv")
    assert list(q.columns) == list(schema.QUERY_COLUMNS)
    assert (q["method"] == method).all()
    attacked = res.clean.loc[res.clean["attacked"], "sign_id"].tolist()
    assert sorted(q["sign_id"].unique()) == sorted(attacked)
    for _, part in q.groupby("sign_id"):  # --no-stop: the whole budget, numbered 1..budget
        assert part["query"].tolist() == list(range(1, case.budget + 1))
    leaves = pd.read_csv(rd / "query_leaves.csv")
    assert list(leaves.columns) == list(schema.QUERY_LEAF_COLUMNS)
    keys = set(zip(q["sign_id"], q["query"], strict=True))
    assert set(zip(leaves["sign_id"], leaves["query"], strict=True)) == keys
    per_query = leaves.groupby(["sign_id", "query"]).size()
    assert per_query.max() <= case.leaves
    assert ((leaves["size"] > 0) & (leaves["size"] <= 2)).all()
    best = pd.read_csv(rd / "best.csv")
    assert list(best.columns) == list(schema.SEARCH_BEST_COLUMNS)
    assert len(best) == len(attacked)
    for row in best.itertuples():
        mine = q[q["sign_id"] == row.sign_id]
        assert row.queries_used == len(mine)
        assert row.loss == pytest.approx(mine["loss"].min(), rel=1e-5, abs=1e-6)
        assert bool(row.success) == bool(mine["success"].any())
        assert (rd / row.image).exists()
    curve = pd.read_csv(rd / "curve.csv")
    assert curve["budget"].tolist() == curve_budgets(case.budget)
    assert curve["signs_fooled"].is_monotonic_increasing


def test_grid_method_follows_the_grid_order(tmp_path: Path, signs4: Path) -> None:
    res = api.search(search_config(tmp_path / "g", signs4, method="grid", budget=12,
                                   stop_on_success=False))
    leaves = pd.read_csv(res.run_dir / "query_leaves.csv")
    first = leaves[leaves["sign_id"] == leaves["sign_id"].iloc[0]]
    # position fastest (9 lattice cells), then angle: queries 1-9 at 0 degrees, 10-12 at 90
    assert first["angle"].tolist() == [0.0] * 9 + [90.0] * 3
    assert first["size"].nunique() == 1 and first["leaf_id"].nunique() == 1


def test_margin_loss_matches_a_hand_computation() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 7, generator=gen)
    labels = torch.randint(0, 7, (40,), generator=gen)
    got_u = margin_loss(logits, labels, None)
    got_t = margin_loss(logits, labels, 3)
    for i in range(40):
        row = logits[i].tolist()
        t = int(labels[i])
        others = [v for j, v in enumerate(row) if j != t]
        assert float(got_u[i]) == pytest.approx(row[t] - max(others), abs=1e-6)
        others_t = [v for j, v in enumerate(row) if j != 3]
        assert float(got_t[i]) == pytest.approx(max(others_t) - row[3], abs=1e-6)
    # below zero exactly where the top-1 class moved off the true class / onto the target
    assert torch.equal(got_u < 0, logits.argmax(1) != labels)
    assert torch.equal(got_t < 0, logits.argmax(1) == 3)


@pytest.mark.parametrize("method", ["random", "evolution", "cmaes", "greedy"])
def test_methods_find_a_known_optimum(method: str) -> None:
    """A weight-free objective with a known optimum: the distance of slot 0's leaf centre to
    (0.7, 0.3) plus its size to 0.25. Every adaptive method gets close within the budget,
    and evolution closer than random's first population."""
    space = SearchSpace(1, 3, (0.2, 0.5), (0.0, 0.0, 1.0, 1.0))
    ctx = SignContext(space, 600, 7, np.zeros((1, 2)), (0.3,), (0.0,))
    opt = METHODS[method](ctx)
    best, spent = np.inf, 0
    while spent < ctx.budget:
        sc = opt.ask(min(opt.population, ctx.budget - spent))
        if sc.n == 0:
            break
        loss = np.hypot(sc.x[:, 0] - 0.7, sc.y[:, 0] - 0.3) + np.abs(sc.size[:, 0] - 0.25)
        opt.tell(loss)
        best = min(best, float(loss.min()))
        spent += sc.n
    assert spent == ctx.budget
    assert best < (0.02 if method in ("evolution", "cmaes") else 0.08)


def test_same_seed_gives_identical_bytes(tmp_path: Path, signs4: Path) -> None:
    a = api.search(search_config(tmp_path / "a", signs4, method="evolution", budget=48,
                                 leaves_per_scene=2))
    b = api.search(search_config(tmp_path / "b", signs4, method="evolution", budget=48,
                                 leaves_per_scene=2))
    for name in ("queries.csv", "query_leaves.csv", "best.csv", "curve.csv"):
        assert (a.run_dir / name).read_bytes() == (b.run_dir / name).read_bytes(), name
    c = api.search(search_config(tmp_path / "c", signs4, method="evolution", budget=48,
                                 leaves_per_scene=2, seed=1))
    assert (c.run_dir / "query_leaves.csv").read_bytes() != (
        a.run_dir / "query_leaves.csv"
    ).read_bytes()


def test_rerun_replays_and_cuts_a_partial_row(tmp_path: Path, signs4: Path) -> None:
    cfg = search_config(tmp_path / "r", signs4, method="evolution", budget=64,
                        stop_on_success=False)
    first = api.search(cfg)
    rd = first.run_dir
    want = {n: (rd / n).read_bytes() for n in ("queries.csv", "query_leaves.csv", "best.csv")}
    with open(rd / "queries.csv", "ab") as f:  # a row cut by a kill, after the last round
        f.write(b"3,65,evolution,0.12")
    again = api.search(cfg)
    assert again.evaluated == 0 and again.replayed == first.evaluated
    for name, data in want.items():
        assert (rd / name).read_bytes() == data, name


def test_stop_on_success_stops_each_sign_at_its_first_success(
    tmp_path: Path, signs4: Path
) -> None:
    res = api.search(search_config(tmp_path / "s", signs4, method="random", budget=200))
    q = pd.read_csv(res.run_dir / "queries.csv")
    for sid, part in q.groupby("sign_id"):
        hits = part.index[part["success"]]
        if len(hits):
            assert hits[0] == part.index[-1], sid  # nothing after the first success
    fooled = res.best[res.best["success"]]
    assert len(fooled) >= 1  # the fragile speed limits fall
    assert (fooled["queries_used"] == fooled["first_success"]).all()


def test_min_confidence_is_the_runs_criterion(tmp_path: Path, signs4: Path) -> None:
    res = api.search(search_config(tmp_path / "m", signs4, method="random", budget=64,
                                   min_confidence=0.6, stop_on_success=False))
    q = pd.read_csv(res.run_dir / "queries.csv")
    clean = res.clean.set_index("sign_id")
    true = clean.loc[q["sign_id"], "true_label"].to_numpy()
    expected = (q["pred_label"].to_numpy() != true) & (q["pred_conf"].to_numpy() >= 0.6)
    assert np.array_equal(q["success"].to_numpy(), expected)


def test_best_leaves_render_to_the_best_images(tmp_path: Path, signs4: Path) -> None:
    res = api.search(search_config(tmp_path / "b", signs4, method="random", budget=30,
                                   leaves_per_scene=3))
    out = tmp_path / "rendered"
    code = main(["render", "--signs", str(signs4), "--scenes",
                 str(res.run_dir / "best_leaves.csv"), "--out", str(out), "--quiet",
                 "--device", "cpu"])
    assert code == 0
    for row in res.best.itertuples():
        assert (out / f"{row.sign_id}.png").read_bytes() == (
            res.run_dir / row.image
        ).read_bytes()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pooled_renderer_equals_pooling_the_full_render(k: int) -> None:
    prep = prepare(RunConfig(device="cpu", limit_signs=6))
    assert prep.stack is not None
    bank = build_bank(prep)
    rng = np.random.default_rng(k)
    n = 64
    present = rng.random((n, k)) < 0.8
    present[:, 0] = True

    def f32(lo: float, hi: float) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(lo, hi, (n, k)).astype(np.float32))

    batch = SceneBatch(
        sign=torch.from_numpy(rng.integers(0, 6, n)),
        variant=torch.from_numpy(rng.integers(0, bank.n_variants, (n, k))),
        size=f32(0.05, 1.2), angle=f32(0, 360), x=f32(-0.3, 1.3), y=f32(-0.3, 1.3),
        present=torch.from_numpy(present),
    )
    with torch.inference_mode():
        full, occ = render_scenes(prep.sign_images, prep.sign_masks, bank, batch)
        low, occ2 = render_pooled(prep.stack, bank, batch)
    f = prep.stack.factor
    assert torch.allclose(low, F.avg_pool2d(full, f), atol=2e-5)
    assert torch.allclose(occ, occ2, atol=1e-5)


def test_pooled_renderer_windows_hold_small_leaves_drawn_large() -> None:
    """Leaves far smaller than they are drawn (tight support windows must still hold their
    upscaled, bilinear edges): pooled render == pooling the full render."""
    from leafattack.compose.bank import build_sign_stack
    from leafattack.compose.scenes import build_variant_bank

    rng = np.random.default_rng(11)
    leaves = []
    for h, w in ((9, 6), (5, 12), (14, 14)):
        leaf = np.zeros((h, w, 4), np.uint8)
        yy, xx = np.mgrid[0:h, 0:w]
        inside = ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2 <= 1
        leaf[inside] = (200, 60, 20, 255)
        leaves.append(leaf)
    size = 64
    signs = torch.from_numpy(rng.integers(0, 256, (4, 3, size, size), dtype=np.uint8))
    masks = torch.from_numpy(rng.random((4, size, size)) > 0.2)
    bank = build_variant_bank(leaves, size)
    n = 48
    batch = SceneBatch(
        sign=torch.from_numpy(rng.integers(0, 4, n)),
        variant=torch.from_numpy(rng.integers(0, 3, (n, 1))),
        size=torch.from_numpy(rng.uniform(0.3, 1.5, (n, 1)).astype(np.float32)),
        angle=torch.from_numpy(rng.uniform(0, 360, (n, 1)).astype(np.float32)),
        x=torch.from_numpy(rng.uniform(0.1, 0.9, (n, 1)).astype(np.float32)),
        y=torch.from_numpy(rng.uniform(0.1, 0.9, (n, 1)).astype(np.float32)),
        present=torch.ones((n, 1), dtype=torch.bool),
    )
    with torch.inference_mode():
        full, occ = render_scenes(signs, masks, bank, batch)
        low, occ2 = render_pooled(build_sign_stack(signs, masks, 4), bank, batch)
    torch.testing.assert_close(low, F.avg_pool2d(full, 4), atol=2e-5, rtol=0)
    torch.testing.assert_close(occ2, occ, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "flags",
    [
        ["--budget", "0"],
        ["--method", "annealing"],
        ["--size-range", "0:0.5"],
        ["--size-range", "0.5:0.2"],
        ["--size-range", "0.2:2.5"],
        ["--size-range", "big"],
        ["--leaves-per-scene", "0"],
        ["--leaves-per-scene", "6"],
    ],
    ids=["budget0", "method", "lo0", "inverted", "hi", "text", "k0", "k6"],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    code = main(["search", "--out", str(out), "--quiet", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in err
    assert not out.exists()


def test_toml_config_uses_the_run_and_search_keys(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "search.toml"
    cfg.write_text(
        f'signs = "{signs4}"\nmodel = "fixture_models:template"\nspecies = ["maple"]\n'
        'method = "greedy"\nbudget = 20\nleaves_per_scene = 2\nsize_range = [0.25, 0.4]\n'
        "stop_on_success = false\ndevice = \"cpu\"\nquiet = true\n"
    )
    out = tmp_path / "t"
    assert main(["search", "--config", str(cfg), "--out", str(out)]) == 0
    assert "fooled" in capsys.readouterr().out
    leaves = pd.read_csv(out / "query_leaves.csv")
    assert leaves["size"].between(0.25 - 1e-6, 0.4 + 1e-6).all()
    assert set(leaves["species"]) == {"maple"}
    assert leaves.groupby(["sign_id", "query"]).size().max() == 2
    assert (pd.read_csv(out / "queries.csv").groupby("sign_id").size() == 20).all()
    # a different budget in the same directory is refused, with one line
    assert main(["search", "--config", str(cfg), "--out", str(out), "--budget", "30"]) == 2
    assert "different config" in capsys.readouterr().err


def test_report_on_a_search_directory(tmp_path: Path, signs4: Path) -> None:
    res = api.search(search_config(tmp_path / "rep", signs4, method="random", budget=50))
    assert main(["report", str(res.run_dir)]) == 0
    page = (res.run_dir / "report.html").read_text()
    assert "Signs fooled against queries" in page
    assert "queries_used" in page or "Queries used" in page


@pytest.mark.slow
def test_sigkill_mid_search_resumes_to_identical_bytes(tmp_path: Path, signs4: Path) -> None:
    """A search killed with SIGKILL mid-way and rerun writes the same queries.csv as an
    uninterrupted search."""
    args = [
        sys.executable, "-m", "leafattack", "search", "--signs", str(signs4),
        "--model", "fixture_models:template", "--method", "evolution", "--budget", "2000",
        "--leaves-per-scene", "2", "--no-stop", "--batch-size", "64", "--device", "cpu",
        "--quiet", "--species", "maple,oak",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    whole = tmp_path / "whole"
    subprocess.run([*args, "--out", str(whole)], env=env, check=True, capture_output=True,
                   timeout=900)
    cut = tmp_path / "cut"
    proc = subprocess.Popen([*args, "--out", str(cut)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    progress = cut / "queries_progress.json"
    deadline = time.monotonic() + 600
    rows = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if progress.exists():
            try:
                rows = int(pd.read_json(progress, typ="series")["rows"])
            except ValueError:
                rows = 0
            if rows >= 800:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    total = 4 * 2000  # more than FLUSH_ROWS: a flush is durable well before the end
    assert 0 < rows < total
    res = subprocess.run([*args, "--out", str(cut)], env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr
    assert "replayed" in res.stdout
    for name in ("queries.csv", "query_leaves.csv", "best.csv", "curve.csv"):
        assert (cut / name).read_bytes() == (whole / name).read_bytes(), name


def test_search_config_is_frozen_and_validated() -> None:
    cfg = SearchConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.budget = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="budget"):
        SearchConfig(budget=0)
    with pytest.raises(ValueError, match="method"):
        SearchConfig(method="nope")


def test_top_level_search_is_the_api_function() -> None:
    import leafattack
    import leafattack.adaptive  # the choosing half, imported first on purpose

    assert leafattack.search is api.search
    assert leafattack.SearchConfig is SearchConfig
    assert leafattack.run is api.run
