"""Edges on photos: a warning that counts signs without clean edges, and an edges.csv that
is never silently replaced by one computed with other settings."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from leafattack.analysis.edge_analysis import run_edges, warn_edgeless
from leafattack.analysis.edges import EdgeConfig
from leafattack.api import run
from leafattack.cli import main
from leafattack.config import RunConfig
from leafattack.errors import LeafattackError
from leafattack.grid import GridSpec


def test_warning_counts_attacked_signs_without_clean_edges(
    caplog: pytest.LogCaptureFixture,
) -> None:
    edges = np.zeros((4, 8, 8), bool)
    edges[0, 2, 2] = True  # sign 0 has an edge on its face
    edges[3, 0, 0] = True  # sign 3's only edge lies off its face
    masks = np.zeros((4, 8, 8), bool)
    masks[:, 1:7, 1:7] = True
    prep = SimpleNamespace(
        signs=SimpleNamespace(files=["a.png", "b.png", "c.png", "d.png"]),
        sign_ids=np.arange(4),
    )
    plan = SimpleNamespace(active=np.array([True, True, False, True]))  # c is not attacked
    with caplog.at_level(logging.WARNING):
        cfg = EdgeConfig(resolution=8)
        n = warn_edgeless(prep, plan, edges, masks, cfg)  # type: ignore[arg-type]
    assert n == 2
    assert "2 of 3 attacked signs have no clean Canny edges" in caplog.text
    assert "b.png" in caplog.text and "d.png" in caplog.text and "c.png" not in caplog.text


def test_edges_with_other_settings_are_refused_without_overwrite(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = GridSpec(species=("maple",), sizes=(0.4,), angles=(0.0,), positions=(2, 2))
    out = tmp_path / "r"
    run(RunConfig(model="fixture_models:template", signs=str(signs4), out=str(out), grid=grid,
                  quiet=True, device="cpu", batch_size=64))
    first = run_edges(out, device="cpu", quiet=True, n_boot=20)
    again = run_edges(out, device="cpu", quiet=True, n_boot=20)  # same settings: resumed
    assert again.edges.equals(first.edges)
    with pytest.raises(LeafattackError, match="computed with other settings"):
        run_edges(out, config=EdgeConfig(auto=True), device="cpu", quiet=True, n_boot=20)
    assert main(["edges", str(out), "--auto", "--quiet", "--n-boot", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--overwrite" in err and "\n" not in err
    assert main(["edges", str(out), "--auto", "--quiet", "--n-boot", "20", "--overwrite"]) == 0
