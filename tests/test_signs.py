"""Tests of the built-in sign renderer (leafattack.signs)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from leafattack.data import LISA_CLASSES
from leafattack.data.builtin import (
    SIGN_BACKGROUND,
    builtin_signs_dir,
    contact_sheet,
    render_sign,
    render_sign_set,
    write_builtin_signs,
)
from leafattack.data.signset import SignSet
from leafattack.errors import LeafattackError
from leafattack.imageio import read_any, read_rgb

WARNING = (
    "addedLane",
    "laneEnds",
    "merge",
    "pedestrianCrossing",
    "signalAhead",
    "stopAhead",
    "turnRight",
)
WHITE_RECTANGLES = (
    "keepRight",
    "schoolSpeedLimit25",
    "speedLimit25",
    "speedLimit30",
    "speedLimit35",
    "speedLimit45",
)


class Shape(NamedTuple):
    vertices: int
    area: float  # fraction of the image covered by the face, from the sign's geometry


# Faces span 0.9 of the image. Areas from textbook formulas for each outline.
OCTAGON = Shape(8, 8 * 0.45**2 * math.tan(math.pi / 8))  # apothem 0.45
DIAMOND = Shape(4, 2 * 0.45**2)  # half-diagonal 0.45
TRIANGLE = Shape(3, math.sqrt(3) / 4 * 0.9**2)  # equilateral, side 0.9
RECTANGLE = Shape(4, 0.72 * 0.9)  # 24 x 30 in sign, 0.9 tall
NARROW_RECTANGLE = Shape(4, 0.64 * 0.9)
PENTAGON = Shape(5, 0.9 * 0.47 + 0.9 * 0.43 / 2)  # 0.47 tall walls, 0.43 tall roof

SHAPES: dict[str, Shape] = {
    **{name: DIAMOND for name in WARNING},
    **{name: RECTANGLE for name in WHITE_RECTANGLES},
    "schoolSpeedLimit25": NARROW_RECTANGLE,
    "school": PENTAGON,
    "stop": OCTAGON,
    "yield": TRIANGLE,
}


@pytest.fixture(scope="module")
def renders() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: render_sign(name, 128) for name in LISA_CLASSES}


def outline(mask: np.ndarray) -> np.ndarray:
    """Vertices (K, 2) of the simplified convex hull of the mask's largest blob."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    return cv2.approxPolyDP(hull, 0.02 * cv2.arcLength(hull, True), True).reshape(-1, 2)


def test_class_list_is_the_lisa_order() -> None:
    assert len(LISA_CLASSES) == 16 == len(set(LISA_CLASSES))
    assert LISA_CLASSES[0] == "addedLane"
    assert LISA_CLASSES[12] == "stop"
    assert LISA_CLASSES[-1] == "yield"
    assert set(SHAPES) == set(LISA_CLASSES)


@pytest.mark.parametrize("name", LISA_CLASSES)
def test_render_shape_dtype_and_mask_placement(
    name: str, renders: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    rgb, mask = renders[name]
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
    assert mask.shape == (128, 128) and mask.dtype == bool
    # The face lies inside the image, leaves a border of background, and is centred.
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    ys, xs = np.nonzero(mask)
    assert abs((xs.min() + xs.max()) / 2 - 63.5) <= 1.0
    assert abs((ys.min() + ys.max()) / 2 - 63.5) <= 1.0
    longest = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert 0.85 * 128 <= longest <= 0.93 * 128
    # Corners are background.
    assert tuple(rgb[0, 0]) == SIGN_BACKGROUND
    assert tuple(rgb[-1, -1]) == SIGN_BACKGROUND


@pytest.mark.parametrize("name", LISA_CLASSES)
def test_face_outline_and_area_match_the_sign_shape(
    name: str, renders: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    _, mask = renders[name]
    expected = SHAPES[name]
    assert mask.mean() == pytest.approx(expected.area, rel=0.03)
    corners = outline(mask)
    assert len(corners) == expected.vertices
    centre = np.array([63.5, 63.5])
    if expected is DIAMOND:
        # Corners point up, right, down and left.
        angles = np.degrees(np.arctan2(*(corners - centre).T[::-1])) % 360
        assert np.allclose(np.sort(angles), [0, 90, 180, 270], atol=4)
    if expected in (RECTANGLE, NARROW_RECTANGLE):
        edges = np.diff(np.vstack([corners, corners[:1]]), axis=0)
        tilt = np.degrees(np.arctan2(np.abs(edges[:, 1]), np.abs(edges[:, 0])))
        assert np.all((tilt < 3) | (tilt > 87))
        width = np.ptp(corners[:, 0])
        height = np.ptp(corners[:, 1])
        assert height > width  # vertical rectangle
    if expected is TRIANGLE:
        # Inverted: one corner below the centre, two above it.
        assert (corners[:, 1] > 63.5).sum() == 1
    if expected is PENTAGON:
        # House shape: exactly one corner (the roof apex) in the top fifth.
        assert (corners[:, 1] < 0.2 * 128).sum() == 1


def colour_fraction(rgb: np.ndarray, mask: np.ndarray, lo: tuple, hi: tuple) -> float:
    face = rgb[mask].astype(int)
    inside = np.all((face >= lo) & (face <= hi), axis=1)
    return float(inside.mean())


RED = ((150, 0, 0), (255, 90, 90))
YELLOW = ((200, 160, 0), (255, 235, 90))
YELLOW_GREEN = ((150, 200, 0), (230, 255, 90))
WHITE = ((220, 220, 220), (255, 255, 255))


def test_stop_face_is_mostly_red(renders: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    rgb, mask = renders["stop"]
    assert colour_fraction(rgb, mask, *RED) > 0.6
    assert colour_fraction(rgb, mask, *WHITE) > 0.1  # border and letters


@pytest.mark.parametrize("name", WARNING)
def test_warning_signs_are_mostly_yellow(
    name: str, renders: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    rgb, mask = renders[name]
    assert colour_fraction(rgb, mask, *YELLOW) > 0.6
    # ... with a black pictogram.
    assert np.mean(rgb[mask].max(axis=1) < 60) > 0.04


def test_school_is_yellow_green(renders: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    rgb, mask = renders["school"]
    assert colour_fraction(rgb, mask, *YELLOW_GREEN) > 0.6
    assert colour_fraction(rgb, mask, *YELLOW) < 0.05


@pytest.mark.parametrize("name", WHITE_RECTANGLES)
def test_regulatory_rectangles_are_white_with_black(
    name: str, renders: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    rgb, mask = renders[name]
    # The school sign gives a fifth of its face to the yellow-green band.
    assert colour_fraction(rgb, mask, *WHITE) > (0.35 if name.startswith("school") else 0.55)
    assert np.mean(rgb[mask].max(axis=1) < 60) > 0.1


def test_school_speed_limit_has_a_yellow_green_band_on_top(
    renders: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    rgb, mask = renders["schoolSpeedLimit25"]
    top = np.zeros_like(mask)
    top[: int(0.3 * 128)] = True
    assert colour_fraction(rgb, mask & top, *YELLOW_GREEN) > 0.3
    assert colour_fraction(rgb, mask & ~top, *YELLOW_GREEN) < 0.01


def test_yield_is_red_band_around_white(
    renders: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    rgb, mask = renders["yield"]
    red = colour_fraction(rgb, mask, *RED)
    white = colour_fraction(rgb, mask, *WHITE)
    assert 0.3 < red < 0.75 and white > 0.25
    # The centre of the face is white, a point just inside the top edge is red.
    ys, xs = np.nonzero(mask)
    assert tuple(rgb[int(ys.min()) + 3, 64]) == pytest.approx((196, 28, 44), abs=30)
    assert rgb[int(ys.min()) + 40, 64].min() > 220


def test_all_signs_differ(renders: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    images = np.stack([renders[n][0] for n in LISA_CLASSES]).astype(np.float32)
    for i in range(16):
        for j in range(i + 1, 16):
            diff = np.abs(images[i] - images[j]).mean()
            assert diff > 4.0, (LISA_CLASSES[i], LISA_CLASSES[j], diff)


def test_speed_limits_differ_in_the_number(
    renders: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    names = ("speedLimit25", "speedLimit30", "speedLimit35", "speedLimit45")
    top = [renders[n][0][:50].astype(int) for n in names]
    bottom = [renders[n][0][64:].astype(int) for n in names]
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.array_equal(top[a], top[b])  # same "SPEED LIMIT"
            assert np.abs(bottom[a] - bottom[b]).mean() > 5  # different numbers


def test_render_is_deterministic() -> None:
    a, ma = render_sign("merge", 96)
    b, mb = render_sign("merge", 96)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)


@pytest.mark.parametrize("size", [16, 64, 256])
def test_size_is_honoured(size: int, renders: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for name in ("stop", "yield", "school", "speedLimit45"):
        rgb, mask = render_sign(name, size)
        assert rgb.shape == (size, size, 3) and mask.shape == (size, size)
        # The same design at another resolution covers the same fraction of the image.
        tol = 0.05 if size == 16 else 0.01
        assert mask.mean() == pytest.approx(renders[name][1].mean(), abs=tol)
        if size >= 64:
            small = cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA).astype(int)
            ref = cv2.resize(renders[name][0], (32, 32), interpolation=cv2.INTER_AREA)
            assert np.abs(small - ref.astype(int)).mean() < 4


@settings(max_examples=15, deadline=None)
@given(size=st.integers(16, 200), name=st.sampled_from(LISA_CLASSES))
def test_any_size_gives_a_centred_face_of_the_design_area(size: int, name: str) -> None:
    rgb, mask = render_sign(name, size)
    assert rgb.shape == (size, size, 3) and mask.shape == (size, size)
    ys, xs = np.nonzero(mask)
    centre = (size - 1) / 2
    assert abs((xs.min() + xs.max()) / 2 - centre) <= 1.0
    # The school pentagon's apex narrows below a pixel for its last rows, which are then not
    # drawn: its vertical box loses up to ~3 px at the top (1.5 px at size 174).
    assert abs((ys.min() + ys.max()) / 2 - centre) <= (2.0 if name == "school" else 1.0)
    # Half a pixel of rounding along the outline is at most ~4 / size of the area.
    assert mask.mean() == pytest.approx(SHAPES[name].area, abs=0.01 + 4 / size)


def test_bad_name_and_size_raise() -> None:
    with pytest.raises(LeafattackError, match="speedLimit25.*yield"):
        render_sign("speedLimit65")
    with pytest.raises(LeafattackError, match="at least 16"):
        render_sign("stop", 15)
    with pytest.raises(LeafattackError, match="at least 16"):
        render_sign("stop", 64.0)  # type: ignore[arg-type]


def test_render_sign_set() -> None:
    signs = render_sign_set(64)
    assert isinstance(signs, SignSet)
    assert len(signs) == 16
    assert signs.class_names == LISA_CLASSES
    assert signs.files == tuple(f"{n}.png" for n in LISA_CLASSES)
    assert signs.labels.tolist() == list(range(16))
    assert signs.labels.dtype == np.int64
    assert signs.source == "builtin"
    assert signs.masks is not None
    rgb, mask = render_sign("stopAhead", 64)
    assert np.array_equal(signs.images[13], rgb) and np.array_equal(signs.masks[13], mask)


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_write_builtin_signs_is_byte_identical(tmp_path: Path) -> None:
    first = write_builtin_signs(tmp_path / "a", size=32)
    second = write_builtin_signs(tmp_path / "b", size=32)
    assert first.name == "manifest.csv"
    files_a = sorted(p.name for p in first.parent.iterdir())
    assert files_a == sorted(p.name for p in second.parent.iterdir())
    assert len(files_a) == 33
    for name in files_a:
        assert (first.parent / name).read_bytes() == (second.parent / name).read_bytes()
    rows = read_manifest(first)
    assert list(rows[0]) == ["file", "mask", "label", "name"]
    assert [r["name"] for r in rows] == list(LISA_CLASSES)
    assert [int(r["label"]) for r in rows] == list(range(16))
    for row in rows:
        rgb, mask = render_sign(row["name"], 32)
        assert np.array_equal(read_rgb(first.parent / row["file"]), rgb)
        with Image.open(first.parent / row["mask"]) as im:
            assert im.mode == "L"
            stored = np.asarray(im)
        assert set(np.unique(stored).tolist()) == {0, 255}
        assert np.array_equal(stored == 255, mask)


def test_committed_signs_folder_matches_the_renderer(tmp_path: Path) -> None:
    committed = builtin_signs_dir()
    assert committed == Path(__file__).resolve().parent.parent / "leafattack" / "assets" / "signs"
    fresh = write_builtin_signs(tmp_path)
    assert (committed / "manifest.csv").read_text() == fresh.read_text()
    for row in read_manifest(fresh):
        for key in ("file", "mask"):
            assert np.array_equal(read_any(committed / row[key]), read_any(tmp_path / row[key])), (
                row[key]
            )


def test_contact_sheet_layout() -> None:
    images = [np.full((20, 30, 3), 10 * i, np.uint8) for i in range(5)]
    images[4] = np.full((10, 10, 3), 200, np.uint8)  # smaller: centred in its cell
    sheet = contact_sheet(images, [f"s{i}" for i in range(5)], ncols=2)
    pad, label_h = 4, 12  # max(4, 30 // 16), max(12, 30 // 6)
    assert sheet.shape == (3 * (20 + label_h + pad) + pad, 2 * (30 + pad) + pad, 3)
    for i in range(4):
        r, c = divmod(i, 2)
        y, x = pad + r * (20 + label_h + pad), pad + c * (30 + pad)
        assert np.array_equal(sheet[y : y + 20, x : x + 30], images[i])
        caption = sheet[y + 20 : y + 20 + label_h, x : x + 30]
        assert caption.min() < 128  # dark text on white
    y, x = pad + 2 * (20 + label_h + pad), pad
    assert np.array_equal(sheet[y + 5 : y + 15, x + 10 : x + 20], images[4])
    assert sheet[y, x].tolist() == [255, 255, 255]
    with pytest.raises(LeafattackError, match="one label per image"):
        contact_sheet(images, ["a"], ncols=2)


def test_committed_contact_sheet_matches() -> None:
    path = Path(__file__).resolve().parent.parent / "docs" / "signs.png"
    signs = render_sign_set(128)
    assert np.array_equal(read_rgb(path), contact_sheet(signs.images, LISA_CLASSES, 4))
