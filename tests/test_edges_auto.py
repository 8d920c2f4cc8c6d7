"""Automatic Canny thresholds (issue 14): per image from the median of the blurred grey
image, the default of the edge analysis on photo sources; rendered signs keep 50/150."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from leafattack.analysis.edges import EdgeConfig, auto_thresholds, canny_batch, thresholds_for
from leafattack.api import run
from leafattack.cli import main
from leafattack.config import RunConfig
from leafattack.data.builtin import render_sign
from leafattack.grid import GridSpec
from leafattack.imageio import write_png

GRID = GridSpec(species=("maple",), sizes=(0.4,), angles=(0.0,), positions=(2, 2))


def low_contrast_image() -> np.ndarray:
    """A grey 40 | 60 step, 60% of the columns dark: the blurred median is exactly 40."""
    img = np.full((1, 40, 40, 3), 40, np.uint8)
    img[0, :, 24:] = 60
    return img


def test_auto_thresholds_follow_the_median_as_a_direct_cv2_computation() -> None:
    img = low_contrast_image()
    gray = cv2.cvtColor(img[0], cv2.COLOR_RGB2GRAY)
    blurred = cv2.GaussianBlur(gray, (3, 3), 0)
    assert float(np.median(blurred)) == 40.0  # 60% of the pixels are untouched by the blur
    low, high = auto_thresholds(blurred[None])
    assert (float(low[0]), float(high[0])) == pytest.approx((40 * 0.67, 40 * 1.33))
    expected = cv2.Canny(blurred, 40 * 0.67, 40 * 1.33) != 0
    got = canny_batch(img, EdgeConfig(auto=True))[0]
    np.testing.assert_array_equal(got, expected)
    assert got.any()  # the step is found with thresholds from the median ...
    assert not canny_batch(img, EdgeConfig())[0].any()  # ... and lost at the fixed 50/150


def test_source_mode_is_auto_on_photos_and_fixed_on_renders() -> None:
    base = EdgeConfig(low=10.0, high=20.0)
    assert thresholds_for(base, "source", photo=True).auto
    assert not thresholds_for(base, "source", photo=False).auto
    assert thresholds_for(base, "auto", photo=False).auto
    assert not thresholds_for(base, "fixed", photo=True).auto
    with pytest.raises(ValueError):
        thresholds_for(base, "median", photo=True)


def _photo_folder(root: Path) -> Path:
    for name in ("speedLimit30", "stop", "yield"):
        (root / name).mkdir(parents=True)
        write_png(root / name / "0.png", render_sign(name, 64)[0])
    return root


def _edges_config(run_dir: Path) -> dict[str, object]:
    return dict(json.loads((run_dir / "edges_progress.json").read_text())["config"])


def test_edge_analysis_defaults_by_source_and_records_the_mode(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = dict(model="fixture_models:template", grid=GRID, quiet=True, device="cpu",
                  batch_size=64, edges=True)
    photos = _photo_folder(tmp_path / "photos")
    run(RunConfig(signs=str(photos), out=str(tmp_path / "p"), **common))  # type: ignore[arg-type]
    run(RunConfig(signs=str(signs4), out=str(tmp_path / "r"), **common))  # type: ignore[arg-type]
    assert _edges_config(tmp_path / "p")["auto"] is True
    rendered = _edges_config(tmp_path / "r")
    assert (rendered["auto"], rendered["low"], rendered["high"]) == (False, 50.0, 150.0)
    # asking for fixed thresholds on the photo run is refused without --overwrite ...
    assert main(["edges", str(tmp_path / "p"), "--thresholds", "fixed", "--quiet"]) == 2
    assert "computed with other settings (auto differ)" in capsys.readouterr().err
    # ... and --low/--high imply fixed thresholds
    assert main(["edges", str(tmp_path / "p"), "--low", "50", "--quiet", "--overwrite",
                 "--n-boot", "20"]) == 0
    assert "Canny thresholds: fixed 50/150" in capsys.readouterr().out
    assert _edges_config(tmp_path / "p")["auto"] is False
