"""Tests of leaf segmentation: synthetic photos with known masks, and real Leafsnap photos."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from leafattack.errors import LeafattackError
from leafattack.imageio import read_rgb, read_rgba, write_png
from leafattack.leaves.colours import FALL_COLOURS, NATURAL
from leafattack.leaves.leaf import composite, fit_into
from leafattack.leaves.library import load_leaves
from leafattack.leaves.segment import (
    cutout,
    orient_leaf,
    petiole_direction,
    rotate_rgba,
    segment_files,
    segment_leaf,
    segment_mask,
    segment_mask_and_holes,
)
from leafattack.leaves.species import SPECIES, generate_leaf

REAL_DATA = os.environ.get("LEAFATTACK_REAL_DATA")
PLAIN = (240, 238, 232)


# ---------------------------------------------------------------------------
# synthetic photos with a known mask
# ---------------------------------------------------------------------------


def paper(
    rng: np.random.Generator, h: int, w: int, base: tuple[int, int, int] = (236, 232, 222)
) -> np.ndarray:
    """Light paper: smooth blotches, fibres and grain (about +-10 grey levels)."""

    def noise(sigma: float, amplitude: float) -> np.ndarray:
        n = rng.standard_normal((h, w)).astype(np.float32)
        if sigma > 0:
            n = np.asarray(cv2.GaussianBlur(n, (0, 0), sigma))
        return np.asarray(n / n.std() * amplitude)

    field = noise(25, 5) + noise(1.5, 3) + noise(0, 4)
    img = np.asarray(base, np.float32)[None, None, :] + field[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def place(
    rgba: np.ndarray, background: np.ndarray, top: int, left: int
) -> tuple[np.ndarray, np.ndarray]:
    """Composite a leaf onto a background; returns the photo and the true mask (alpha >= 0.5)."""
    h, w = rgba.shape[:2]
    layer = np.zeros((*background.shape[:2], 4), np.uint8)
    layer[top : top + h, left : left + w] = rgba
    return composite(layer, background), layer[..., 3] >= 128


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def one_component(mask: np.ndarray) -> bool:
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return n == 2


def has_holes(mask: np.ndarray) -> bool:
    _, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    return hierarchy is not None and bool((hierarchy.reshape(-1, 4)[:, 3] >= 0).any())


def add_chart(photo: np.ndarray) -> np.ndarray:
    """A Kodak-like colour chart along the right edge and a grey ruler along the bottom."""
    out = photo.copy()
    h, w = out.shape[:2]
    x0, y0 = int(0.84 * w), int(0.86 * h)
    out[:, x0:] = (60, 60, 62)  # dark frame
    patches = [(40, 50, 150), (70, 170, 220), (60, 150, 80), (240, 220, 30), (200, 40, 40),
               (200, 50, 150), (245, 245, 245), (20, 20, 20)]  # fmt: skip
    ph = (y0 - 10) // len(patches)
    for i, colour in enumerate(patches):
        out[8 + i * ph : 8 + (i + 1) * ph - 4, x0 + 5 : w - 5] = colour
    ramp = np.linspace(10, 250, x0 - 10).astype(np.uint8)
    out[y0:, 10:x0] = ramp[None, :, None]
    return out


CASES = [(sp, c) for sp in sorted(SPECIES) for c in sorted(FALL_COLOURS)]


@pytest.mark.parametrize("background", ["plain", "paper"])
def test_synthetic_leaves_are_segmented_back(background: str) -> None:
    rng = np.random.default_rng(11 if background == "plain" else 12)
    worst = 1.0
    for species, colour in CASES:
        lf = generate_leaf(species, colour, rng, size=180)
        rgba = rotate_rgba(np.asarray(lf.rgba), float(rng.uniform(-180, 180)))
        h, w = 300, 320
        bg = np.full((h, w, 3), PLAIN, np.uint8) if background == "plain" else paper(rng, h, w)
        lh, lw = rgba.shape[:2]
        top, left = int(rng.integers(5, h - lh - 5)), int(rng.integers(5, w - lw - 5))
        photo, truth = place(rgba, bg, top, left)
        alpha = segment_mask(photo)
        assert alpha.dtype == np.float32 and alpha.shape == (h, w)
        mask = alpha >= 0.5
        score = iou(mask, truth)
        assert score >= 0.95, (species, colour, score)
        assert one_component(mask) and not has_holes(mask), (species, colour)
        worst = min(worst, score)
    assert worst >= 0.95


def test_segment_leaf_crop_matches_the_known_leaf() -> None:
    lf = generate_leaf("maple", "yellow", np.random.default_rng(2), size=200)
    photo, truth = place(np.asarray(lf.rgba), paper(np.random.default_rng(3), 280, 300), 40, 50)
    crop = segment_leaf(photo)
    assert crop.dtype == np.uint8 and crop.ndim == 3 and crop.shape[2] == 4
    ys, xs = np.nonzero(truth)
    iy, ix = np.nonzero(crop[..., 3] >= 128)
    # the opaque part has the leaf's size ...
    assert abs(np.ptp(iy) - np.ptp(ys)) <= 2 and abs(np.ptp(ix) - np.ptp(xs)) <= 2
    # ... and the crop is tight: at most the feathered fringe (< 4 px) around it
    assert 0 < iy.min() <= 4 and 0 < crop.shape[0] - 1 - iy.max() <= 4
    assert 0 < ix.min() <= 4 and 0 < crop.shape[1] - 1 - ix.max() <= 4
    # the same pixels as the photo-sized mask, mapped back through the crop box
    alpha, holes = segment_mask_and_holes(photo)
    again, (top, left, bottom, right) = cutout(photo, alpha, holes)
    assert np.array_equal(again, crop)
    assert (bottom - top, right - left) == crop.shape[:2]
    inside = crop[..., 3] >= 128
    assert iou(inside, truth[top:bottom, left:right]) >= 0.95
    # colours are the photo's, and no light background halo at the edge
    core = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert np.abs(crop[..., :3][core].astype(int) - photo[top:bottom, left:right][core]).max() == 0
    edge = inside & ~core
    assert (
        crop[..., :3][edge].astype(float).mean() < photo[top:bottom, left:right][core].mean() + 20
    )


def test_petioles_are_kept() -> None:
    rng = np.random.default_rng(5)
    for species in ("maple", "ginkgo", "poplar"):
        lf = generate_leaf(species, "green", rng, size=220)
        photo, truth = place(np.asarray(lf.rgba), np.full((260, 260, 3), PLAIN, np.uint8), 10, 15)
        mask = segment_mask(photo) >= 0.5
        ys, _ = np.nonzero(truth)
        stalk = truth.copy()
        stalk[: ys.max() - int(0.15 * np.ptp(ys))] = False  # the bottom 15 %: the petiole
        assert (mask & stalk).sum() >= 0.9 * stalk.sum(), species


def test_feathering() -> None:
    lf = generate_leaf("oak", "red", np.random.default_rng(1), size=160)
    photo, _ = place(np.asarray(lf.rgba), np.full((200, 200, 3), PLAIN, np.uint8), 20, 30)
    hard = segment_mask(photo, feather=0)
    soft = segment_mask(photo, feather=1.5)
    assert set(np.unique(hard)) == {0.0, 1.0}
    assert np.array_equal(soft >= 0.5, hard >= 0.5)
    contours, _ = cv2.findContours(
        (hard > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    edge_length = sum(len(c) for c in contours)
    partial = (soft > 0.02) & (soft < 0.98)
    assert partial.sum() > edge_length  # a soft band at least one pixel wide all round


def test_holes_are_filled_and_inpainted() -> None:
    lf = generate_leaf("poplar", "green", np.random.default_rng(4), size=200)
    rgba = np.asarray(lf.rgba).copy()
    ys, xs = np.nonzero(rgba[..., 3] == 255)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    hole = np.zeros(rgba.shape[:2], np.uint8)
    cv2.circle(hole, (cx, cy), 9, 1, -1)
    rgba[hole > 0, 3] = 0
    photo, truth = place(rgba, np.full((240, 240, 3), PLAIN, np.uint8), 10, 10)
    alpha, holes = segment_mask_and_holes(photo)
    mask = alpha >= 0.5
    assert not has_holes(mask)
    assert holes.sum() >= 0.8 * hole.sum()
    crop, (top, left, _, _) = cutout(photo, alpha, holes)
    filled = crop[
        cy + 10 - top - 4 : cy + 10 - top + 5, cx + 10 - left - 4 : cx + 10 - left + 5, :3
    ]
    leaf_colour = photo[truth].mean(axis=0)
    assert np.abs(filled.reshape(-1, 3).mean(axis=0) - leaf_colour).max() < 40
    assert np.abs(filled.reshape(-1, 3).mean(axis=0) - np.array(PLAIN)).max() > 60


def test_colour_chart_and_ruler_are_not_leaves() -> None:
    rng = np.random.default_rng(9)
    for species, colour in [("maple", "green"), ("birch", "yellow"), ("oak", "red")]:
        lf = generate_leaf(species, colour, rng, size=150)
        photo, truth = place(np.asarray(lf.rgba), paper(rng, 300, 330), 40, 60)
        photo = add_chart(photo)
        truth[:, int(0.84 * 330) :] = False
        mask = segment_mask(photo) >= 0.5
        assert iou(mask, truth) >= 0.95, species
        assert not mask[:, int(0.84 * 330) :].any() and not mask[int(0.86 * 300) :].any()


def test_ignore_border_excludes_the_right_and_bottom() -> None:
    rng = np.random.default_rng(3)
    big = generate_leaf("poplar", "green", rng, size=150)
    small = generate_leaf("birch", "green", rng, size=80)
    photo, big_truth = place(
        np.asarray(big.rgba), np.full((400, 400, 3), PLAIN, np.uint8), 235, 235
    )
    photo, small_truth = place(np.asarray(small.rgba), photo, 20, 20)
    assert iou(segment_mask(photo) >= 0.5, big_truth) >= 0.95  # the larger leaf wins ...
    kept = segment_mask(photo, ignore_border=(0.3, 0.3)) >= 0.5
    assert iou(kept, small_truth) >= 0.95  # ... unless its region is ignored
    with pytest.raises(ValueError, match="ignore_border"):
        segment_mask(photo, ignore_border=(1.5, 0.2))


def test_photo_without_a_leaf_and_bad_input() -> None:
    with pytest.raises(LeafattackError, match="no leaf-like region"):
        segment_leaf(paper(np.random.default_rng(0), 200, 200))
    with pytest.raises(ValueError, match="uint8"):
        segment_leaf(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        segment_leaf(np.zeros((50, 50), np.uint8))
    with pytest.raises(ValueError, match="feather"):
        segment_mask(np.full((50, 50, 3), 200, np.uint8), feather=-1)


# ---------------------------------------------------------------------------
# orientation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("species", sorted(SPECIES))
def test_orient_leaf_puts_the_petiole_down(species: str) -> None:
    rng = np.random.default_rng(21)
    for _ in range(3):
        lf = generate_leaf(species, "green", rng, size=160)
        angle = float(rng.uniform(-180, 180))
        turned = rotate_rgba(np.asarray(lf.rgba), angle)
        direction = petiole_direction(turned[..., 3] >= 128)
        assert direction is not None
        # a petiole that pointed down (0, 1) now points that way, turned by `angle` on screen
        expected = (math.sin(math.radians(angle)), math.cos(math.radians(angle)))
        assert direction[0] * expected[0] + direction[1] * expected[1] > math.cos(math.radians(25))
        upright = orient_leaf(turned)
        m = upright[..., 3] >= 128
        ys, xs = np.nonzero(m)
        band = m[ys.max() - int(0.06 * np.ptp(ys)) :]
        cols = np.nonzero(band.any(axis=0))[0]
        assert (cols.max() - cols.min() + 1) < 0.15 * np.ptp(xs), (species, angle)


def test_orient_leaf_without_petiole_makes_the_long_axis_vertical() -> None:
    ellipse = np.zeros((120, 120, 4), np.uint8)
    cv2.ellipse(ellipse, (60, 60), (50, 20), 30, 0, 360, (40, 120, 40, 255), -1)
    upright = orient_leaf(ellipse)
    assert upright.shape[0] > 2 * upright.shape[1] - 6


# ---------------------------------------------------------------------------
# segment_files
# ---------------------------------------------------------------------------


def _photos(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for folder, species, colour, suffix in [("acer", "maple", "red", ".png"),
                                            ("acer", "maple", "green", ".jpg"),
                                            ("betula", "birch", "yellow", ".png")]:  # fmt: skip
        lf = generate_leaf(species, colour, rng, size=150)
        photo, _ = place(np.asarray(lf.rgba), paper(rng, 220, 240), 30, 40)
        path = tmp_path / "photos" / folder / f"{species}_{colour}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".png":
            write_png(path, photo)
        else:
            cv2.imwrite(
                str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
            )
        paths.append(path)
    return paths


def test_segment_files_writes_a_leaf_folder(tmp_path: Path) -> None:
    paths = _photos(tmp_path)
    out = tmp_path / "out"
    written = segment_files(paths, out)
    assert written == [out / f"{p.stem}.png" for p in paths]
    for path in written:
        rgba = read_rgba(path)
        assert rgba[..., 3].any() and not rgba[..., 3].all()
    rows = list(csv.reader((out / "manifest.csv").open()))
    assert rows == [
        ["file", "species", "colour", "source"],
        ["maple_red.png", "acer", NATURAL, str(paths[0])],
        ["maple_green.png", "acer", NATURAL, str(paths[1])],
        ["birch_yellow.png", "betula", NATURAL, str(paths[2])],
    ]
    sheet = read_rgb(out / "segmentation_sheet.png")
    assert sheet.shape[1] == 2 * 3 * 150 and sheet.shape[0] == 2 * (150 + 16)
    leaves = load_leaves(out)
    assert [lf.leaf_id for lf in leaves] == ["maple_red", "maple_green", "birch_yellow"]
    assert all(lf.colour == NATURAL for lf in leaves)
    # oriented: petiole at the bottom centre
    for lf in leaves:
        m = lf.rgba[..., 3] >= 128
        ys, xs = np.nonzero(m)
        cols = np.nonzero(m[ys.max() - int(0.06 * np.ptp(ys)) :].any(axis=0))[0]
        assert cols.max() - cols.min() < 0.15 * np.ptp(xs)
    # rerunning replaces the rows instead of duplicating them
    before = (out / "manifest.csv").read_bytes()
    segment_files(paths[:1], out, contact_sheet=False)
    assert (out / "manifest.csv").read_bytes() == before
    segment_files(paths[2:], out, species="birch", contact_sheet=False)
    assert list(csv.reader((out / "manifest.csv").open()))[3][1] == "birch"


def test_segment_contact_sheet_shows_the_whole_library(tmp_path: Path) -> None:
    paths = _photos(tmp_path)
    out = tmp_path / "out"
    heights = []
    for batch in (paths[:1], paths[1:2], paths[2:]):  # one photo per call
        segment_files(batch, out)
        sheet = read_rgb(out / "contact_sheet.png")
        n = len(load_leaves(out))
        cols = math.ceil(math.sqrt(n))
        # library sheet: ceil(sqrt(n)) columns of 140 px cells with 18 px captions
        assert sheet.shape[:2] == (math.ceil(n / cols) * (140 + 18), cols * 140)
        heights.append(n)
        # every leaf shows: each cell holds leaf pixels (darker than the background)
        for i in range(n):
            r, c = divmod(i, cols)
            cell = sheet[r * 158 : r * 158 + 140, c * 140 : (c + 1) * 140].astype(int)
            assert (np.abs(cell - np.array([236, 236, 230])).sum(axis=2) > 60).mean() > 0.05
        # this call's segmentation sheet shows only this call's photo
        assert read_rgb(out / "segmentation_sheet.png").shape[1] == 3 * 150
    assert heights == [1, 2, 3]
    with pytest.raises(LeafattackError, match="'all'"):
        segment_files(paths[:1], out, species="all")


def test_segment_files_errors_name_the_file(tmp_path: Path) -> None:
    paths = _photos(tmp_path)
    blank = tmp_path / "photos" / "blank.png"
    write_png(blank, paper(np.random.default_rng(1), 100, 100))
    with pytest.raises(LeafattackError, match=r"blank\.png.*no leaf-like region"):
        segment_files([paths[0], blank], tmp_path / "o1")
    twin = tmp_path / "photos" / "other" / paths[0].name
    twin.parent.mkdir()
    twin.write_bytes(paths[0].read_bytes())
    with pytest.raises(LeafattackError, match="same file name stem"):
        segment_files([paths[0], twin], tmp_path / "o2")
    with pytest.raises(LeafattackError, match="no photos"):
        segment_files([], tmp_path / "o3")
    broken = tmp_path / "photos" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(LeafattackError, match=r"broken\.jpg"):
        segment_files([broken], tmp_path / "o4")


# ---------------------------------------------------------------------------
# real Leafsnap photos
# ---------------------------------------------------------------------------


def ruler_top(photo: np.ndarray) -> int:
    """Row where the ruler along the bottom edge begins, found independently of segment.py.

    A ruler row is one where more than 80 % of the pixels between 15 % and 70 % of the
    width differ strongly (> 40 levels in some channel) from the background colour of the
    top-left corner; the ruler is the lowest run of such rows. (Its top lies between 78 %
    and 99 % of the photo's height, while leaves reach down to 87 %: a fixed "bottom 20 %"
    would wrongly flag correct leaves.)
    """
    h, w = photo.shape[:2]
    background = np.median(photo[: h // 10, : w // 10].reshape(-1, 3), axis=0)
    off = np.abs(photo.astype(np.int16) - background.astype(np.int16)).max(axis=2) > 40
    full = off[:, int(0.15 * w) : int(0.7 * w)].mean(axis=1) > 0.8
    rows = np.nonzero(full)[0]
    assert len(rows), "no ruler found"
    y = int(rows.max())
    while y > 0 and full[y - 1]:
        y -= 1
    assert h - y < 0.3 * h, "ruler implausibly tall"
    return y


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA, reason="LEAFATTACK_REAL_DATA is not set")
def test_real_leafsnap_photos_give_one_leaf_clear_of_the_chart() -> None:
    root = Path(str(REAL_DATA)) / "leafsnap"
    rows = list(csv.DictReader((root / "index.csv").open()))
    assert len(rows) == 160
    failures = []
    for row in rows:
        photo = fit_into(read_rgb(root / row["path"]), 600)  # segment downscaled photos
        h, w = photo.shape[:2]
        alpha, holes = segment_mask_and_holes(photo)
        crop, (top, left, bottom, right) = cutout(photo, alpha, holes)
        # map the crop back into the photo
        mask = np.zeros((h, w), bool)
        mask[top:bottom, left:right] = crop[..., 3] >= 128
        assert np.array_equal(mask, alpha >= 0.5)
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        solidity = mask.sum() / cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
        ys, xs = np.nonzero(mask)
        problems = []
        if not one_component(mask):
            problems.append("not one component")
        if has_holes(mask):
            problems.append("holes")
        if not 0.005 <= mask.mean() <= 0.4:
            problems.append(f"area {mask.mean():.3f}")
        if solidity < 0.3:  # compound and palmate leaves reach ~0.4; chart blocks are ~1
            problems.append(f"solidity {solidity:.2f}")
        if right > 0.8 * w:  # the colour chart: rightmost 20 %
            problems.append(f"reaches x = {right / w:.2f}")
        if bottom > ruler_top(photo):  # the ruler along the bottom
            problems.append(f"reaches the ruler at y = {bottom / h:.2f}")
        if mask[0].any() or mask[:, 0].any() or mask[-1].any() or mask[:, -1].any():
            problems.append("touches the border")
        if problems:
            failures.append(f"{row['path']}: {', '.join(problems)}")
    assert not failures, "\n".join(failures)
