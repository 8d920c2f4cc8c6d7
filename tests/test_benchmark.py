"""Tests of ``leafattack benchmark`` (leafattack.benchmark): the protocol's figures against
independent recomputations from the run and search directories, resuming per model, the
one-line errors, and the leaderboard page (in headless Chromium when installed).

One small benchmark (four built-in signs, two weight-free template models, a grid of 2 sizes
x 2 angles x 3x3 positions, budget 20, 3 identity views) is shared by the module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leafattack import schema
from leafattack.analysis.leaderboard import robust_by_sign, sign_rate
from leafattack.benchmark import (
    PROTOCOL_VERSION,
    BenchmarkResult,
    Protocol,
    benchmark,
    parse_models,
)
from leafattack.cli import main
from leafattack.errors import LeafattackError
from leafattack.grid import GridSpec

MODELS = ["fixture_models:template", "bil=fixture_models:template_bilinear"]
NAMES = ["template", "bil"]


def _protocol(budget: int = 20) -> Protocol:
    grid = GridSpec(species=("maple",), sizes=(0.35, 0.6), angles=(0.0, 90.0), positions=(3, 3))
    # Identity views (distance 1): every successful scene must survive every view.
    return Protocol(budget=budget, grid=grid, views=3, view_spec="distance=1:1", n_boot=200)


@pytest.fixture(scope="module")
def bench(signs4: Path, tmp_path_factory: pytest.TempPathFactory) -> BenchmarkResult:
    out = tmp_path_factory.mktemp("bench") / "b"
    return benchmark(MODELS, str(signs4), out=out, protocol=_protocol(), device="cpu", quiet=True)


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------ the figures


def test_leaderboard_csv_has_one_row_per_model_with_the_schema(bench: BenchmarkResult) -> None:
    table = pd.read_csv(bench.csv_path)
    assert list(table.columns) == list(schema.LEADERBOARD_COLUMNS)
    assert table["model"].tolist() == NAMES
    assert (table["protocol_version"].astype(str) == PROTOCOL_VERSION).all()
    for text in table["settings"]:
        settings = json.loads(text)
        assert settings["protocol_version"] == PROTOCOL_VERSION
        assert settings["budget"] == 20 and settings["method"] == "cmaes"
        assert settings["leaves_per_scene"] == [1, 3] and settings["control"] == "grey"
        assert settings["grid"]["positions"] == "3x3" and "leafattack_version" in settings
    # every rate has its interval, and the interval holds the rate
    for col in schema.LEADERBOARD_COLUMNS:
        if f"{col}_ci_low" in schema.LEADERBOARD_COLUMNS:
            v, lo, hi = table[col], table[f"{col}_ci_low"], table[f"{col}_ci_high"]
            ok = v.isna() | lo.isna() | ((lo <= v + 1e-12) & (v <= hi + 1e-12))
            assert ok.all(), col


def test_clean_and_grid_figures_match_the_grid_run(bench: BenchmarkResult) -> None:
    for row in bench.rows.itertuples(index=False):
        grid = bench.out / "models" / row.model / "grid"
        clean = pd.read_csv(grid / "clean.csv")
        assert row.clean_accuracy == pytest.approx(clean["correct"].mean())
        assert row.n_signs == len(clean) == 4
        trials = pd.read_csv(grid / "trials.csv")
        assert row.grid_success_rate == pytest.approx(trials["success"].mean())
        fooled = trials.groupby("sign_id")["success"].any()
        assert row.grid_signs_attacked == len(fooled)
        assert row.grid_signs_fooled == int(fooled.sum())
        controls = pd.read_csv(grid / "controls.csv")
        grey = controls[controls["control"] == "grey"]
        assert row.grey_excess == pytest.approx(trials["success"].mean() - grey["success"].mean())
        # identity views: each sign whose best grid scene succeeded survives every view
        best = pd.read_csv(grid / "best.csv")
        assert row.survival_signs == int(best["success"].sum())
        if row.survival_signs:
            assert row.survival == 1.0
        else:
            assert np.isnan(row.survival)
    assert bench.rows["grid_signs_fooled"].sum() > 0  # the figures are not all zero
    assert (bench.rows["robust_k3_full"] < 1).any()


def test_robust_accuracy_matches_the_query_logs(bench: BenchmarkResult) -> None:
    """Recomputed from queries.csv (not best.csv): a sign is robust at budget b when it is
    correct clean and none of its first b queries succeeded."""
    for row in bench.rows.itertuples(index=False):
        for k in (1, 3):
            d = bench.out / "models" / row.model / f"search-k{k}"
            clean = pd.read_csv(d / "clean.csv")
            q = pd.read_csv(d / "queries.csv")
            for label, b in (("b10", 10), ("full", 20)):
                hit = q[(q["query"] <= b) & q["success"]].groupby("sign_id").size()
                robust = [
                    bool(c) and int(s) not in hit.index
                    for s, c in zip(clean["sign_id"], clean["correct"], strict=True)
                ]
                assert getattr(row, f"robust_k{k}_{label}") == pytest.approx(np.mean(robust))
            # b100 lies beyond the budget of 20: not claimed
            assert np.isnan(getattr(row, f"robust_k{k}_b100"))
            assert getattr(row, f"robust_k{k}_b10") >= getattr(row, f"robust_k{k}_full")


def test_curves_hold_every_model_and_k(bench: BenchmarkResult) -> None:
    curves = pd.read_csv(bench.out / "leaderboard_curves.csv")
    assert list(curves.columns) == list(schema.LEADERBOARD_CURVE_COLUMNS)
    for name in NAMES:
        for k in (1, 3):
            part = curves[(curves["model"] == name) & (curves["leaves_per_scene"] == k)]
            assert part["budget"].tolist() == [1, 2, 5, 10, 20]
            assert (np.diff(part["robust_accuracy"].to_numpy()) <= 1e-12).all()  # never rises


def test_robust_by_sign_against_a_loop() -> None:
    clean = pd.DataFrame({"sign_id": [0, 1, 2, 3, 4], "correct": [True, True, True, False, True]})
    best = pd.DataFrame({"sign_id": [0, 1, 2, 4], "first_success": [0, 5, 50, 10]})
    got = robust_by_sign(clean, best, [1, 10, 100])
    expected = np.array(
        [
            [True, True, True],
            [True, False, False],
            [True, True, False],
            [False] * 3,
            [True, False, False],
        ]
    )
    assert np.array_equal(got, expected)
    rate, lo, hi = sign_rate(got[:, 1], clean["sign_id"].to_numpy())
    assert rate == pytest.approx(0.4) and lo <= rate <= hi


# ---------------------------------------------------------------------------------- resuming


def test_rerun_reuses_finished_rows_and_writes_the_same_bytes(
    bench: BenchmarkResult, signs4: Path
) -> None:
    before = bench.csv_path.read_bytes()
    stamp = (bench.out / "models" / "bil" / "grid" / "trials.csv").stat().st_mtime_ns
    again = benchmark(
        MODELS, str(signs4), out=bench.out, protocol=_protocol(), device="cpu", quiet=True
    )
    assert again.reused == tuple(NAMES)
    assert again.csv_path.read_bytes() == before
    assert (bench.out / "models" / "bil" / "grid" / "trials.csv").stat().st_mtime_ns == stamp


def test_other_settings_in_the_same_folder_are_refused(
    bench: BenchmarkResult, signs4: Path
) -> None:
    with pytest.raises(LeafattackError, match="other spec, signs or settings"):
        benchmark(
            MODELS,
            str(signs4),
            out=bench.out,
            protocol=_protocol(budget=30),
            device="cpu",
            quiet=True,
        )


# ------------------------------------------------------------------------------- bad input


def test_parse_models_names() -> None:
    assert parse_models(["default", "robust=models/r.pt", " torchscript:/x/m.ts ", ""]) == [
        ("default", "default"),
        ("robust", "models/r.pt"),
        ("m", "torchscript:/x/m.ts"),
    ]
    with pytest.raises(LeafattackError, match="duplicate model name"):
        parse_models(["a/m.pt", "b/m.pt"])
    with pytest.raises(LeafattackError, match="no models"):
        parse_models([" ", ""])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--models", "fixture_models:template,template=fixture_models:template_bilinear"],
            "duplicate model name(s) template",
        ),
        (["--models", "fixture_models:gtsrb_mean"], "does not match the signs"),
        (["--models", "fixture_models:template", "--budget", "9"], "budget=9"),
    ],
    ids=["duplicate", "classes", "budget"],
)
def test_bad_input_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    out = tmp_path / "b"
    code = main(["benchmark", *args, "--out", str(out), "--device", "cpu", "--quiet"])
    assert code == 2
    assert needle in _one_error(capsys)
    assert not (out / "models").exists()


def test_a_folder_of_another_protocol_version_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / "benchmark.json").write_text('{"protocol_version": "0"}\n')
    code = main(
        [
            "benchmark",
            "--models",
            "fixture_models:template",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 2
    line = _one_error(capsys)
    assert "protocol version 0" in line and f"expected {PROTOCOL_VERSION}" in line
    assert not (out / "models").exists()


# ------------------------------------------------------------------------------------ the page


def test_leaderboard_html_is_self_contained(bench: BenchmarkResult) -> None:
    page = bench.html_path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["'](https?:|//|file:)""", page)
    imgs = re.findall(r'<img[^>]+src="data:image/png;base64,', page)
    assert len(imgs) == 1
    for name in NAMES:
        assert f"<b>{name}</b>" in page
    assert "white-box" in page and f"protocol {PROTOCOL_VERSION}" in page
    with Image.open(bench.out / "figures" / "robust_vs_budget.png") as im:
        assert im.size[0] > 400


@pytest.mark.slow
def test_leaderboard_renders_in_headless_chromium(
    bench: BenchmarkResult, tmp_path: Path,
    chromium_page: Callable[[Path, Path, str], tuple[Path, str]],
) -> None:
    shot, dom = chromium_page(bench.html_path, tmp_path, "1400,1400")
    body = re.search(r"<body([^>]*)>", dom)
    assert body
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert attrs["data-images-total"] == attrs["data-images-ok"] == "1"
    assert dom.count("<tr>") == 1 + len(NAMES)  # the header and one row per model
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"), np.float64)
    assert pixels.std() > 20  # text, table and figure, not a blank page
    hi, lo = pixels.max(axis=2), pixels.min(axis=2)
    coloured = ((hi - lo) / np.maximum(hi, 1.0) > 0.4) & (hi > 40)
    assert coloured.mean() > 0.001  # the figure's coloured lines are on screen


def test_text_table_prints_each_model_and_marks_unmeasured_figures(
    bench: BenchmarkResult,
) -> None:
    from leafattack.cli import format_leaderboard

    lines = format_leaderboard(bench.rows).splitlines()
    assert len(lines) == 1 + len(NAMES) and "@20" in lines[0]
    for line, row in zip(lines[1:], bench.rows.itertuples(index=False), strict=True):
        assert line.split()[0] == row.model
        assert f"{row.clean_accuracy:.1%}" in line
        assert "n/a" in line  # robust accuracy at 100 lies beyond the budget of 20
