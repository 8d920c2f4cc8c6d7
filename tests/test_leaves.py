"""Tests of the leaf library: generation, recolouring, leaf folders and selection."""

from __future__ import annotations

import csv
import math
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest

from leafattack.errors import LeafattackError
from leafattack.imageio import read_rgba, write_png
from leafattack.leaves.colours import FALL_COLOURS, LIBRARY_COLOURS, NATURAL
from leafattack.leaves.leaf import Leaf
from leafattack.leaves.library import (
    MANIFEST_COLUMNS,
    append_to_manifest,
    builtin_leaves_dir,
    contact_sheet,
    load_leaves,
    select_leaves,
    write_leaf_library,
)
from leafattack.leaves.recolouring import recolour
from leafattack.leaves.species import LIBRARY_SPECIES, SPECIES, generate_leaf

SIZE = 160  # render size used by most tests (fast, still detailed)


# ---------------------------------------------------------------------------
# helpers: independent shape and colour measurements
# ---------------------------------------------------------------------------


def mask_of(alpha: np.ndarray) -> np.ndarray:
    """uint8 0/1 mask of alpha >= 0.5 (alpha given as float in [0, 1] or uint8)."""
    a = alpha.astype(np.float32) / (255.0 if alpha.dtype == np.uint8 else 1.0)
    return (a >= 0.5).astype(np.uint8)


class BladeShape(NamedTuple):
    solidity: float  # blade area / convex hull area
    deep_defects: int  # concavities deeper than 8 % of the blade's longest side
    aspect: float  # blade bounding box width / height


def blade_shape(alpha: np.ndarray) -> BladeShape:
    """Shape of the blade: the mask opened with a disk (which removes the petiole)."""
    m = mask_of(alpha)
    ys, xs = np.nonzero(m)
    side = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    r = max(2, int(0.03 * side))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    blade = cv2.morphologyEx(m, cv2.MORPH_OPEN, disk)
    contours, _ = cv2.findContours(blade, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea)
    solidity = cv2.contourArea(c) / cv2.contourArea(cv2.convexHull(c))
    defects = cv2.convexityDefects(c, cv2.convexHull(c, returnPoints=False))
    bys, bxs = np.nonzero(blade)
    bh, bw = bys.max() - bys.min() + 1, bxs.max() - bxs.min() + 1
    depth = np.zeros(0) if defects is None else defects.reshape(-1, 4)[:, 3] / 256.0
    return BladeShape(float(solidity), int((depth > 0.08 * max(bh, bw)).sum()), bw / bh)


def petiole_at_bottom(alpha: np.ndarray) -> tuple[float, float]:
    """(width, centre) of the bottom 6 % of the leaf's rows, as fractions of the leaf width."""
    m = mask_of(alpha)
    ys, xs = np.nonzero(m)
    h = ys.max() - ys.min() + 1
    w = xs.max() - xs.min() + 1
    band = m[ys.max() - int(0.06 * h) : ys.max() + 1]
    cols = np.nonzero(band.any(axis=0))[0]
    return (cols.max() - cols.min() + 1) / w, ((cols.max() + cols.min()) / 2 - xs.min()) / w


def mean_hue(rgba: np.ndarray) -> float:
    """Alpha-weighted circular mean of the CIELAB hue angle, degrees."""
    lab = cv2.cvtColor(rgba[..., :3].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    weight = rgba[..., 3].astype(np.float64)
    ang = np.arctan2(lab[..., 2], lab[..., 1])
    return math.degrees(
        math.atan2(float((np.sin(ang) * weight).sum()), float((np.cos(ang) * weight).sum()))
    )


def hue_of(rgb: tuple[int, int, int]) -> float:
    return mean_hue(np.array([[[*rgb, 255]]], np.uint8))


def hue_gap(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def leaf(species: str = "maple", colour: str = "red", seed: int = 0, size: int = SIZE) -> Leaf:
    return generate_leaf(species, colour, np.random.default_rng(seed), size=size)


# ---------------------------------------------------------------------------
# Colours and the Leaf type
# ---------------------------------------------------------------------------


def test_fall_colours_cover_the_season() -> None:
    assert {"green", "yellow", "orange", "red", "brown"} <= set(FALL_COLOURS)
    for name, rgb in FALL_COLOURS.items():
        assert len(rgb) == 3 and all(0 <= c <= 255 for c in rgb), name
    # ordered along the season: hue falls from green through yellow and orange to red
    hues = [hue_of(FALL_COLOURS[c]) for c in ("green", "yellow", "orange", "red")]
    assert hues == sorted(hues, reverse=True)
    # brown is a dark orange: the darkest and least saturated of the warm colours
    assert sum(FALL_COLOURS["brown"]) < sum(FALL_COLOURS["orange"])


def test_leaf_validates_its_fields() -> None:
    good = np.zeros((4, 5, 4), np.uint8)
    good[1:3, 1:4, 3] = 255
    lf = Leaf(good, "a", "maple", "red")
    assert lf.source == "generated" and lf.alpha.dtype == np.float32
    assert lf.alpha.max() == 1.0
    with pytest.raises(ValueError, match="read-only"):
        lf.rgba[0, 0, 0] = 1
    cases: list[tuple[np.ndarray, str, str, str, str]] = [
        (good.astype(np.float32), "a", "maple", "red", "dtype float32"),
        (good[..., :3].copy(), "a", "maple", "red", r"shape \(4, 5, 3\)"),
        (np.zeros((4, 5, 4), np.uint8), "a", "maple", "red", "empty alpha"),
        (good, "", "maple", "red", "leaf_id"),
        (good, "a", "maple", "pur\nple", "one-line label"),
    ]
    for rgba, leaf_id, species, colour, message in cases:
        with pytest.raises(ValueError, match=message):
            Leaf(rgba, leaf_id, species, colour)
    assert Leaf(good, "b", "oak", NATURAL, "photo.jpg").colour == NATURAL
    assert Leaf(good, "c", "oak", "grey-of-green").colour == "grey-of-green"  # a free label


# ---------------------------------------------------------------------------
# Shape generators: one row per registered species (a new species must be added here)
# ---------------------------------------------------------------------------


class Traits(NamedTuple):
    solidity: tuple[float, float]  # range of blade solidity
    deep_defects: tuple[int, int]  # range of deep concavities (sinuses, notch)
    aspect: tuple[float, float]  # range of blade width / height


TRAITS: dict[str, Traits] = {
    "maple": Traits((0.55, 0.8), (4, 8), (0.95, 1.45)),  # five palmate lobes, deep sinuses
    "oak": Traits((0.65, 0.86), (3, 10), (0.55, 0.85)),  # rounded lobes, deep sinuses
    "poplar": Traits((0.88, 1.0), (0, 0), (0.95, 1.4)),  # broad deltoid, toothed only
    "birch": Traits((0.92, 1.0), (0, 0), (0.6, 0.85)),  # ovate, toothed only
    "ginkgo": Traits((0.9, 1.0), (1, 1), (1.35, 1.8)),  # fan wider than tall, one notch
    "elm": Traits((0.92, 1.0), (0, 0), (0.45, 0.7)),  # elliptic
    "beech": Traits((0.92, 1.0), (0, 0), (0.45, 0.7)),  # narrow elliptic
}


def test_every_registered_species_has_traits() -> None:
    assert set(TRAITS) == set(SPECIES)
    assert set(LIBRARY_SPECIES) <= set(SPECIES)
    assert {"maple", "oak", "poplar", "birch", "ginkgo"} <= set(SPECIES)


@pytest.mark.parametrize("species", sorted(SPECIES))
def test_shape_generator_output(species: str) -> None:
    alpha, veins = SPECIES[species](np.random.default_rng(3), SIZE)
    for arr in (alpha, veins):
        assert arr.dtype == np.float32 and arr.shape == (SIZE, SIZE)
        assert 0.0 <= arr.min() and arr.max() <= 1.0
    # anti-aliased: a band of partial alpha along the edge, not a hard 0/1 mask
    partial = ((alpha > 0.05) & (alpha < 0.95)).sum()
    assert partial > 0.1 * np.sqrt((alpha > 0.5).sum())
    # veins lie on the leaf, and cover a small part of it
    assert (veins > 0.5).sum() <= ((veins > 0.5) & (alpha > 0.4)).sum()
    assert 0.02 < (veins > 0.5).sum() / (alpha > 0.5).sum() < 0.35
    # the leaf fills the canvas without touching its edge
    m = mask_of(alpha)
    assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())
    ys, xs = np.nonzero(m)
    assert max(np.ptp(ys), np.ptp(xs)) > 0.85 * SIZE


@pytest.mark.parametrize("species", sorted(SPECIES))
def test_silhouettes_are_recognisable(species: str) -> None:
    traits = TRAITS[species]
    for seed in range(4):
        shape = blade_shape(SPECIES[species](np.random.default_rng(seed), SIZE)[0])
        assert traits.solidity[0] <= shape.solidity <= traits.solidity[1], (seed, shape)
        assert traits.deep_defects[0] <= shape.deep_defects <= traits.deep_defects[1], (
            seed,
            shape,
        )
        assert traits.aspect[0] <= shape.aspect <= traits.aspect[1], (seed, shape)


def test_maple_is_more_lobed_than_poplar_and_birch() -> None:
    maple = [blade_shape(leaf("maple", seed=s).rgba[..., 3]) for s in range(3)]
    smooth = [
        blade_shape(leaf(sp, seed=s).rgba[..., 3]) for sp in ("poplar", "birch") for s in range(3)
    ]
    assert max(m.solidity for m in maple) + 0.1 < min(s.solidity for s in smooth)
    assert min(m.deep_defects for m in maple) > max(s.deep_defects for s in smooth)
    ginkgo = leaf("ginkgo").rgba
    assert blade_shape(ginkgo[..., 3]).aspect > 1.3  # the fan is wider than tall


@pytest.mark.parametrize("species", sorted(SPECIES))
def test_every_leaf_has_a_petiole_at_the_bottom_centre(species: str) -> None:
    for seed in range(3):
        lf = leaf(species, "green", seed)
        width, centre = petiole_at_bottom(lf.rgba[..., 3])
        assert width < 0.1, (seed, width)  # a thin stalk, not the blade
        assert 0.35 < centre < 0.65, (seed, centre)
        # tip up: the top rows are blade, wider than the stalk
        m = mask_of(lf.rgba[..., 3])
        assert m[: max(2, m.shape[0] // 10)].any(axis=0).sum() > 2 * width * m.shape[1]


# ---------------------------------------------------------------------------
# generate_leaf
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("species", sorted(SPECIES))
def test_generation_is_deterministic(species: str) -> None:
    a = leaf(species, "yellow", seed=7)
    b = leaf(species, "yellow", seed=7)
    c = leaf(species, "yellow", seed=8)
    assert np.array_equal(a.rgba, b.rgba)
    assert a.rgba.shape != c.rgba.shape or not np.array_equal(a.rgba, c.rgba)


def test_generated_leaf_fields_and_crop() -> None:
    lf = generate_leaf("oak", "brown", np.random.default_rng(0), size=128, leaf_id="x")
    assert (lf.leaf_id, lf.species, lf.colour, lf.source) == ("x", "oak", "brown", "generated")
    assert lf.rgba.dtype == np.uint8 and lf.rgba.ndim == 3 and lf.rgba.shape[2] == 4
    assert max(lf.rgba.shape[:2]) <= 128
    a = lf.rgba[..., 3]
    # tight crop: every border row/column of the crop has some alpha
    assert a[0].any() and a[-1].any() and a[:, 0].any() and a[:, -1].any()
    assert leaf("oak", "brown").leaf_id == "oak_brown"


def test_same_seed_gives_the_same_silhouette_in_every_colour() -> None:
    alphas = [leaf("birch", c, seed=5).rgba[..., 3] for c in FALL_COLOURS]
    for a in alphas[1:]:
        assert np.array_equal(a, alphas[0])


@pytest.mark.parametrize("colour", sorted(FALL_COLOURS))
def test_painted_colour_matches_the_palette(colour: str) -> None:
    lf = leaf("poplar", colour, seed=1)
    assert hue_gap(mean_hue(np.asarray(lf.rgba)), hue_of(FALL_COLOURS[colour])) < 15.0
    # texture: veins, gradients and noise, not a flat fill
    lab = cv2.cvtColor(lf.rgba[..., :3].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    inside = lf.rgba[..., 3] == 255
    assert lab[..., 0][inside].std() > 2.0


def test_margins_differ_from_the_centre() -> None:
    """Fall colour gradient: the margin of a red leaf is darker/redder than its centre."""
    lf = leaf("birch", "red", seed=2)
    m = mask_of(lf.rgba[..., 3])
    dist = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    rgb = lf.rgba[..., :3].astype(np.float32)
    edge = (dist > 0) & (dist <= 4)
    centre = dist >= 0.6 * dist.max()
    assert rgb[edge].sum(axis=1).mean() < rgb[centre].sum(axis=1).mean() - 15


def test_generate_leaf_rejects_unknown_names_listing_the_known_ones() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(LeafattackError, match="'fern'.*maple.*ginkgo"):
        generate_leaf("fern", "red", rng)
    with pytest.raises(LeafattackError, match="'blue'.*green.*brown"):
        generate_leaf("maple", "blue", rng)
    with pytest.raises(LeafattackError, match="size"):
        generate_leaf("maple", "red", rng, size=8)


# ---------------------------------------------------------------------------
# recolour
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["green", "yellow", "red"])
@pytest.mark.parametrize("target", sorted(FALL_COLOURS))
def test_recolour_moves_hue_to_the_target_and_keeps_alpha(source: str, target: str) -> None:
    lf = leaf("maple", source, seed=4)
    new = recolour(lf, target)
    assert np.array_equal(new.rgba[..., 3], lf.rgba[..., 3])
    assert new.colour == target and new.species == lf.species
    assert new.leaf_id == f"{lf.leaf_id}@{target}"
    goal = hue_of(FALL_COLOURS[target])
    before, after = (
        hue_gap(mean_hue(np.asarray(lf.rgba)), goal),
        hue_gap(mean_hue(np.asarray(new.rgba)), goal),
    )
    assert after < 10.0
    assert after <= before + 1e-6
    # luminance detail (veins, texture) survives: lightness stays correlated
    inside = lf.rgba[..., 3] == 255
    l0 = cv2.cvtColor(lf.rgba[..., :3].astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[..., 0]
    l1 = cv2.cvtColor(new.rgba[..., :3].astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[..., 0]
    assert np.corrcoef(l0[inside], l1[inside])[0, 1] > 0.9


def test_recolour_natural_leaf_and_chained_ids() -> None:
    base = leaf("oak", "green", seed=1)
    natural = Leaf(np.asarray(base.rgba).copy(), "photo_1", "quercus", NATURAL, "x.jpg")
    red = recolour(natural, "red")
    assert (red.leaf_id, red.colour, red.source) == ("photo_1@red", "red", "x.jpg")
    assert recolour(red, "brown").leaf_id == "photo_1@brown"
    assert hue_gap(mean_hue(np.asarray(red.rgba)), hue_of(FALL_COLOURS["red"])) < 10
    with pytest.raises(LeafattackError, match="'violet'"):
        recolour(natural, "violet")


# ---------------------------------------------------------------------------
# Leaf folders
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("library")
    write_leaf_library(out, seed=0)
    return out


def test_write_leaf_library_layout(library: Path) -> None:
    rows = list(csv.DictReader((library / "manifest.csv").open()))
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    assert len(rows) == len(LIBRARY_SPECIES) * len(LIBRARY_COLOURS) >= 15
    assert {r["species"] for r in rows} == set(LIBRARY_SPECIES)
    assert {r["colour"] for r in rows} == set(LIBRARY_COLOURS)
    assert {r["file"] for r in rows} == {
        f"{s}_{c}_0.png" for s in LIBRARY_SPECIES for c in LIBRARY_COLOURS
    }
    assert sorted(p.name for p in library.glob("*.png")) == sorted(r["file"] for r in rows)


def test_load_leaves_round_trip(library: Path) -> None:
    leaves = load_leaves(library)
    assert len(leaves) == len(LIBRARY_SPECIES) * len(LIBRARY_COLOURS)
    first = leaves[0]
    again = generate_leaf(
        first.species,
        first.colour,
        np.random.default_rng([0, zlib.crc32(first.species.encode())]),
        leaf_id=first.leaf_id,
    )
    assert np.array_equal(first.rgba, again.rgba)
    for lf in leaves:
        assert lf.leaf_id == f"{lf.species}_{lf.colour}_0"
        assert lf.source == "generated"
        assert np.array_equal(lf.rgba, read_rgba(library / f"{lf.leaf_id}.png"))


def test_write_leaf_library_is_byte_identical(library: Path, tmp_path: Path) -> None:
    write_leaf_library(tmp_path, seed=0, species=["maple", "ginkgo"], colours=["red"])
    write_leaf_library(tmp_path / "again", seed=0, species=["maple", "ginkgo"], colours=["red"])
    for name in ("maple_red_0.png", "ginkgo_red_0.png", "manifest.csv"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    for name in ("maple_red_0.png", "ginkgo_red_0.png"):
        assert (tmp_path / name).read_bytes() == (library / name).read_bytes()
    before = (tmp_path / "manifest.csv").read_bytes()
    write_leaf_library(tmp_path, seed=0, species=["maple", "ginkgo"], colours=["red"])
    assert (tmp_path / "manifest.csv").read_bytes() == before
    other = write_leaf_library(tmp_path / "seed1", seed=1, species=["maple"], colours=["red"])
    assert (other.parent / "maple_red_0.png").read_bytes() != (
        tmp_path / "maple_red_0.png"
    ).read_bytes()


def test_committed_library_matches_the_generator(library: Path) -> None:
    committed = builtin_leaves_dir()
    assert committed == Path(__file__).resolve().parent.parent / "leafattack" / "assets" / "leaves"
    assert (committed / "manifest.csv").read_text() == (library / "manifest.csv").read_text()
    ours, theirs = load_leaves(committed), load_leaves(library)
    assert [lf.leaf_id for lf in ours] == [lf.leaf_id for lf in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert a.rgba.shape == b.rgba.shape, a.leaf_id
        diff = np.abs(a.rgba.astype(np.int16) - b.rgba.astype(np.int16))
        # identical when regenerated on the same platform; allow float noise elsewhere
        assert diff.max() <= 2 and (diff > 0).mean() < 0.01, a.leaf_id


def test_append_to_manifest_replaces_rows_of_the_same_file(tmp_path: Path) -> None:
    append_to_manifest(tmp_path, [("a.png", "oak", "red", "generated")])
    append_to_manifest(
        tmp_path, [("b.png", "elm", NATURAL, "x/b.jpg"), ("a.png", "oak", "brown", "g")]
    )
    rows = list(csv.reader((tmp_path / "manifest.csv").open()))
    assert rows == [
        list(MANIFEST_COLUMNS),
        ["a.png", "oak", "brown", "g"],
        ["b.png", "elm", NATURAL, "x/b.jpg"],
    ]
    with pytest.raises(ValueError, match="expected"):
        append_to_manifest(tmp_path, [("", "oak", "red", "g")])


def test_contact_sheet_shape() -> None:
    leaves = [leaf("maple", c) for c in ("green", "red", "yellow")]
    sheet = contact_sheet(leaves, columns=2, cell=64)
    assert sheet.dtype == np.uint8 and sheet.shape == (2 * (64 + 18), 128, 3)
    # the leaves are drawn: some cells differ from the background
    assert (np.abs(sheet.astype(int) - np.array([236, 236, 230])).sum(axis=2) > 60).mean() > 0.05


# ---------------------------------------------------------------------------
# load_leaves errors: each one line, naming the file
# ---------------------------------------------------------------------------


def _folder(tmp_path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    folder = tmp_path / "leaves"
    folder.mkdir(exist_ok=True)
    with (folder / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header or list(MANIFEST_COLUMNS))
        w.writerows(rows)
    return folder


def _png(path: Path, channels: int = 4, alpha: int = 255) -> None:
    img = np.zeros((8, 8, channels), np.uint8)
    img[2:6, 2:6] = 90
    if channels == 4:
        img[..., 3] = 0
        img[2:6, 2:6, 3] = alpha
    write_png(path, img)


def _raises(folder: Path, *needles: str) -> str:
    with pytest.raises(LeafattackError) as info:
        load_leaves(folder)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_load_leaves_folder_and_manifest_errors(tmp_path: Path) -> None:
    _raises(tmp_path / "nope", str(tmp_path / "nope"), "not found")
    (tmp_path / "file").write_text("x")
    _raises(tmp_path / "file", "not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    _raises(empty, str(empty / "manifest.csv"), "not found")
    _raises(_folder(tmp_path, [], ["file", "species"]), "manifest.csv", "colour, source")
    _raises(_folder(tmp_path, []), "manifest.csv", "no rows")
    _raises(
        _folder(tmp_path, [["a.png", "oak", "blue\nish", "g"]]), "line 2", "one-line label"
    )
    _raises(_folder(tmp_path, [["a.png", "", "red", "g"]]), "line 2", "'species'")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "manifest.csv").write_bytes(b"\xff\xfe\x00bad")
    _raises(tmp_path / "bin", "manifest.csv", "UTF-8")


def test_load_leaves_image_errors(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [["a.png", "oak", "red", "g"]])
    _raises(folder, "a.png", "not found")
    _png(folder / "a.png", channels=3)
    _raises(folder, "a.png", "no alpha")
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    _raises(folder, "a.png")
    _png(folder / "a.png", alpha=0)
    _raises(folder, "a.png", "alpha")
    _png(folder / "a.png")
    assert load_leaves(folder)[0].leaf_id == "a"
    _folder(tmp_path, [["a.png", "oak", "red", "g"], ["sub/a.png", "oak", "red", "g"]])
    (folder / "sub").mkdir()
    _png(folder / "sub" / "a.png")
    _raises(folder, "line 3", "'a'", "repeats")


def test_load_leaves_refuses_paths_outside_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    _png(outside)
    for bad in (str(outside), "../outside.png", "sub/../../outside.png"):
        folder = _folder(tmp_path, [[bad, "oak", "red", "g"]])
        _raises(folder, "manifest.csv", "line 2", repr(bad), "escapes")
    if hasattr(os, "symlink"):
        folder = _folder(tmp_path, [["link.png", "oak", "red", "g"]])
        (folder / "link.png").symlink_to(outside)
        _raises(folder, "manifest.csv", "'link.png'", "outside")
        inner = folder / "real.png"
        _png(inner)
        (folder / "link.png").unlink()
        (folder / "link.png").symlink_to(inner)
        assert load_leaves(folder)[0].leaf_id == "link"


# ---------------------------------------------------------------------------
# select_leaves
# ---------------------------------------------------------------------------


def test_select_leaves_filters_in_library_order(library: Path) -> None:
    leaves = load_leaves(library)
    assert select_leaves(leaves) == leaves
    reds = select_leaves(leaves, colours=["red"])
    assert [lf.leaf_id for lf in reds] == [f"{s}_red_0" for s in LIBRARY_SPECIES]
    both = select_leaves(leaves, species=["oak", "maple"], colours=["yellow", "red"])
    assert [lf.leaf_id for lf in both] == [
        "maple_yellow_0",
        "maple_red_0",
        "oak_yellow_0",
        "oak_red_0",
    ]
    one = select_leaves(leaves, ids=["ginkgo_green_0"], species=["ginkgo"])
    assert [lf.leaf_id for lf in one] == ["ginkgo_green_0"]


def test_select_leaves_errors_list_what_is_available(library: Path) -> None:
    leaves = load_leaves(library)
    with pytest.raises(
        LeafattackError, match="'fern'.*available: maple, oak, poplar, birch, ginkgo"
    ):
        select_leaves(leaves, species=["oak", "fern"])
    with pytest.raises(LeafattackError, match="'orange'.*available: green, yellow, red"):
        select_leaves(leaves, colours=["orange"])
    with pytest.raises(LeafattackError, match="'oak_0'.*maple_green_0"):
        select_leaves(leaves, ids=["oak_0"])
    with pytest.raises(LeafattackError, match="no leaf matches"):
        select_leaves(leaves, ids=["oak_red_0"], colours=["green"])
