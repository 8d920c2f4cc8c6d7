"""Fixtures shared by the whole suite: the tests folder on ``sys.path`` (for the weight-free
model specs ``fixture_models:NAME``) and a small manifest folder of four built-in signs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

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
