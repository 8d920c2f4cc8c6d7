"""Fixtures shared by the whole suite: the tests folder on ``sys.path`` (for the weight-free
model specs ``fixture_models:NAME``), a small manifest folder of four built-in signs, an
OpenCV per-trial compositor that shares no code with :mod:`leafattack.compose`, and
hypothesis's profiles (derandomised unless ``HYPOTHESIS_PROFILE=explore``)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import settings

# Property tests draw their examples from a fixed seed by default, so a run of the suite is
# reproducible like every other output of the project; ``HYPOTHESIS_PROFILE=explore``
# draws fresh examples each run (and keeps hypothesis's example database) to hunt for new
# counterexamples. Each test's own @settings (examples, deadline) still apply.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

FOUR_SIGNS = ("speedLimit30", "speedLimit35", "stop", "yield")
"""The signs of :func:`signs4`: two fragile speed limits and two robust signs."""


def write_four_signs(folder: Path) -> Path:
    """Write the :data:`FOUR_SIGNS` with their masks and a ``manifest.csv`` into ``folder``."""
    from leafattack.data.builtin import render_sign
    from leafattack.imageio import write_png

    folder.mkdir(parents=True, exist_ok=True)
    rows = ["file,mask,name"]
    for name in FOUR_SIGNS:
        img, mask = render_sign(name)
        write_png(folder / f"{name}.png", img)
        write_png(folder / f"{name}_mask.png", mask)
        rows.append(f"{name}.png,{name}_mask.png,{name}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="session")
def signs4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four built-in signs with masks, as a manifest folder (two of them are fragile)."""
    return write_four_signs(tmp_path_factory.mktemp("signs4"))


def _opencv_paste(
    sign: np.ndarray, mask: np.ndarray, leaf: np.ndarray, x: float, y: float, size: float,
    angle: float,
) -> tuple[np.ndarray, float]:
    """Paste one RGBA leaf onto one sign with OpenCV only, trial by trial.

    The documented geometry (README, ``Placement``): the leaf's longest side is
    ``size`` x the sign width (rounded to whole pixels, at least 1), it is rotated
    ``angle`` degrees counter-clockwise as seen on screen about the centre of its
    bounding box, and that centre goes to ``(x W, y H)`` in pixel-edge coordinates (0 =
    left/top edge of the image, 1 = right/bottom edge). Steps: premultiply by alpha,
    ``cv2.resize`` (INTER_AREA when shrinking, INTER_LINEAR when enlarging),
    ``cv2.warpAffine`` (bilinear, transparent outside the leaf), then "over" blending.

    Args:
        sign: uint8 (H, W, 3) RGB; mask: bool (H, W) sign mask; leaf: uint8 (h, w, 4) RGBA.

    Returns:
        ``(image, occluded_frac)``: float32 (H, W, 3) composite in [0, 1], and the
        alpha-weighted fraction of the mask covered by the leaf.
    """
    h, w = sign.shape[:2]
    longest = max(1, round(size * w))
    lh, lw = leaf.shape[:2]
    f = longest / max(lh, lw)
    nh, nw = max(1, round(lh * f)), max(1, round(lw * f))
    rgba = leaf.astype(np.float32) / 255.0
    rgba[..., :3] *= rgba[..., 3:4]
    small = cv2.resize(rgba, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    rot = np.array([[c, s], [-s, c]])  # counter-clockwise on screen, y pointing down
    src_c = np.array([(nw - 1) / 2, (nh - 1) / 2])  # pixel-centre coordinates
    dst_c = np.array([x * w - 0.5, y * h - 0.5])
    m = np.hstack([rot, (dst_c - rot @ src_c)[:, None]])
    layer = cv2.warpAffine(small, m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a = layer[..., 3:4]
    out = np.clip(sign.astype(np.float32) / 255.0 * (1 - a) + layer[..., :3], 0.0, 1.0)
    occ = float((layer[..., 3] * mask).sum() / max(int(mask.sum()), 1))
    return out, occ


@pytest.fixture(scope="session")
def opencv_paste() -> Callable[..., tuple[np.ndarray, float]]:
    """The independent OpenCV compositor ``(sign, mask, leaf, x, y, size, angle) ->
    (float32 image in [0, 1], occluded_frac)``: the reference the batched compositor and the
    engine are checked against."""
    return _opencv_paste


@pytest.fixture(scope="session")
def make_signs4() -> Callable[[Path], Path]:
    """:func:`write_four_signs`, for tests that need their own editable copy."""
    return write_four_signs


def _chromium_page(html: Path, profile: Path, window: str) -> tuple[Path, str]:
    """Open ``html`` in headless Chromium: a screenshot at ``window`` ("W,H") and the DOM
    after scripts ran. Skips the test when Chromium is not installed."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (CI installs Debian's chromium package)")
    url = html.resolve().as_uri()
    base = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile / 'profile'}",
    ]
    shot = profile / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", f"--window-size={window}", url],
                   capture_output=True, timeout=120, check=True)
    dom = subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return shot, dom


@pytest.fixture()
def chromium_page() -> Callable[[Path, Path, str], tuple[Path, str]]:
    """``chromium_page(html, folder, "W,H") -> (screenshot path, DOM)`` in headless
    Chromium (the test skips without Chromium)."""
    return _chromium_page
