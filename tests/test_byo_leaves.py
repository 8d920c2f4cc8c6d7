"""Leaves as users have them (issue 18): ``--species all``, a leaf folder's own species,
free colour labels, luminance-keeping recolouring, leaves split, augmentation libraries."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from leafattack.cli import main
from leafattack.config import config_from_mapping, search_config_from_mapping
from leafattack.errors import LeafattackError
from leafattack.grid import DEFAULT_SPECIES, GridSpec
from leafattack.imageio import read_rgb, write_png
from leafattack.leaves import (
    FALL_COLOURS,
    Leaf,
    append_to_manifest,
    builtin_leaves_dir,
    load_leaves,
    recolour,
    select_leaves,
)
from leafattack.leaves.split import choose_attack_leaves, split_library

REAL = os.environ.get("LEAFATTACK_REAL_DATA")


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of uint8 RGB, written out here (not the code under test's CIELAB)."""
    x = rgb[..., :3].astype(np.float64)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def _library(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A leaf folder from built-in cut-outs: rows of (built-in leaf id, species, colour)."""
    shipped = {lf.leaf_id: lf for lf in load_leaves(builtin_leaves_dir())}
    entries = []
    for leaf_id, species, colour in rows:
        write_png(folder / f"{leaf_id}.png", np.asarray(shipped[leaf_id].rgba))
        entries.append((f"{leaf_id}.png", species, colour, "test"))
    append_to_manifest(folder, entries)
    return folder


@pytest.fixture()
def own_library(tmp_path: Path) -> Path:
    return _library(
        tmp_path / "lib",
        [
            ("maple_green_0", "elm", "grey-of-green"),
            ("oak_green_0", "beech", "red"),
            ("poplar_green_0", "beech", "natural"),
        ],
    )


# --- species ------------------------------------------------------------------------


def test_species_all_keeps_every_species() -> None:
    leaves = load_leaves(builtin_leaves_dir())
    expected = {lf.species for lf in leaves}
    assert len(expected) >= 5
    assert {lf.species for lf in select_leaves(leaves, species=["all"])} == expected
    assert {lf.species for lf in select_leaves(leaves, species="all")} == expected
    assert {lf.species for lf in select_leaves(leaves, species=["oak"])} == {"oak"}
    with pytest.raises(LeafattackError, match="'all' alone"):
        GridSpec(species=("all", "oak"))


def test_a_leaf_folder_without_species_uses_all_of_them(own_library: Path) -> None:
    assert config_from_mapping({}).grid.species == DEFAULT_SPECIES  # built-in: unchanged
    cfg = config_from_mapping({"leaves": str(own_library)})
    assert cfg.grid.species == ("all",)
    given = config_from_mapping({"leaves": str(own_library), "species": "elm"})
    assert given.grid.species == ("elm",)
    # a config file's species survives a later --leaves flag
    later = config_from_mapping({"leaves": str(own_library)}, base=given)
    assert later.grid.species == ("elm",)
    assert search_config_from_mapping({"leaves": str(own_library)}).run.grid.species == ("all",)


def test_run_on_own_folder_with_free_colour_labels(own_library: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--leaves", str(own_library), "--model", "fixture_models:template"]
    args += ["--limit-signs", "1", "--sizes", "0.3", "--angles", "0", "--positions", "1x1"]
    args += ["--colours", "natural,orange", "--out", str(out), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert set(trials["species"]) == {"elm", "beech"}
    natural = trials[~trials["leaf_id"].str.contains("@")]
    assert set(natural["colour"]) == {"grey-of-green", "red", "natural"}
    assert set(trials.loc[trials["leaf_id"].str.contains("@"), "colour"]) == {"orange"}


def test_species_all_on_the_builtin_library(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--species", "all", "--model", "fixture_models:template", "--quiet"]
    args += ["--limit-signs", "1", "--sizes", "0.3", "--angles", "0", "--positions", "1x1"]
    args += ["--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    shipped = {lf.species for lf in load_leaves(builtin_leaves_dir())}
    assert set(pd.read_csv(out / "trials.csv")["species"]) == shipped


def test_free_colour_label_loads_but_recolouring_targets_stay_named(own_library: Path) -> None:
    leaves = load_leaves(own_library)
    assert [lf.colour for lf in leaves] == ["grey-of-green", "red", "natural"]
    assert recolour(leaves[0], "brown").colour == "brown"
    with pytest.raises(LeafattackError, match="grey-of-green"):
        recolour(leaves[1], "grey-of-green")


# --- recolouring keeps luminance structure ---------------------------------------------


def _veined_leaf() -> Leaf:
    """An ellipse with dark veins, a light midrib, spots and fine texture (seeded)."""
    rng = np.random.default_rng(3)
    h, w = 160, 100
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - 80) / 75.0) ** 2 + ((xx - 50) / 45.0) ** 2 <= 1
    lum = 120 + 10 * rng.standard_normal((h, w))
    lum[np.abs(xx - 50) <= 1] += 70  # midrib
    for k in range(-4, 5):  # side veins
        lum[np.abs((yy - 80 - 15 * k) - 0.6 * np.abs(xx - 50)) <= 1] -= 45
    lum[(yy - 50) ** 2 + (xx - 35) ** 2 <= 16] -= 60  # a spot
    lum = np.clip(lum, 0, 255)
    rgb = np.stack([0.55 * lum, 1.0 * lum, 0.35 * lum], axis=2).clip(0, 255).astype(np.uint8)
    rgba = np.dstack([rgb, np.where(inside, 255, 0).astype(np.uint8)])
    return Leaf(rgba, "veined", "synthetic", "green")


@pytest.mark.parametrize("target", sorted(FALL_COLOURS))
def test_recolour_keeps_luminance_structure(target: str) -> None:
    leaf = _veined_leaf()
    new = recolour(leaf, target)
    inside = leaf.rgba[..., 3] == 255
    r = np.corrcoef(_luma(leaf.rgba)[inside], _luma(new.rgba)[inside])[0, 1]
    assert r >= 0.9
    # not flat: the veins' contrast survives (at least half the luminance spread)
    assert _luma(new.rgba)[inside].std() >= 0.5 * _luma(leaf.rgba)[inside].std()


@pytest.mark.skipif(not REAL, reason="LEAFATTACK_REAL_DATA is not set")
def test_recolour_keeps_luminance_of_real_leaves() -> None:
    from leafattack.leaves.segment import segment_leaf

    assert REAL is not None
    index = pd.read_csv(Path(REAL) / "leafsnap" / "index.csv")
    rows = index.groupby("species").head(1).head(6)
    for rel in rows["path"]:
        rgba = segment_leaf(read_rgb(Path(REAL) / "leafsnap" / rel))
        leaf = Leaf(rgba, Path(rel).stem, "photo", "natural")
        inside = leaf.rgba[..., 3] == 255
        for target in FALL_COLOURS:
            new = recolour(leaf, target)
            r = np.corrcoef(_luma(leaf.rgba)[inside], _luma(new.rgba)[inside])[0, 1]
            assert r >= 0.9, (rel, target, r)


# --- leaves split and augmentation libraries --------------------------------------------


def test_leaves_split_is_disjoint_complete_and_seeded(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["leaves", "split", "builtin", "--test-frac", "0.34", "--seed", "5"]
    assert main([*args, "--train-out", str(a / "train"), "--attack-out", str(a / "atk")]) == 0
    assert main([*args, "--train-out", str(b / "train"), "--attack-out", str(b / "atk")]) == 0
    train, attack = load_leaves(a / "train"), load_leaves(a / "atk")
    shipped = load_leaves(builtin_leaves_dir())
    train_ids, attack_ids = {lf.leaf_id for lf in train}, {lf.leaf_id for lf in attack}
    assert not train_ids & attack_ids
    assert train_ids | attack_ids == {lf.leaf_id for lf in shipped}
    # per species (3 leaves each, 0.34 -> 1 attack leaf): every species on both sides
    for species in {lf.species for lf in shipped}:
        assert sum(lf.species == species for lf in attack) == 1
        assert sum(lf.species == species for lf in train) == 2
    # pixels and labels unchanged, and the same seed gives the same files
    by_id = {lf.leaf_id: lf for lf in shipped}
    for lf in train:
        assert np.array_equal(lf.rgba, by_id[lf.leaf_id].rgba)
        assert (lf.species, lf.colour) == (by_id[lf.leaf_id].species, by_id[lf.leaf_id].colour)
    for sub in ("train", "atk"):
        assert (a / sub / "manifest.csv").read_bytes() == (b / sub / "manifest.csv").read_bytes()
    # another seed, another split (over 5 species, 3^5 outcomes)
    other = choose_attack_leaves(shipped, 0.34, seed=6)
    assert {lf.leaf_id for lf, m in zip(shipped, other, strict=True) if m} != attack_ids
    # an existing library is not overwritten
    assert main([*args, "--train-out", str(a / "train"), "--attack-out", str(a / "new")]) == 2


def test_leaves_split_by_species(tmp_path: Path) -> None:
    res = split_library("builtin", tmp_path / "t", tmp_path / "x", test_frac=0.4, by="species")
    train, attack = load_leaves(res.train_dir), load_leaves(res.attack_dir)
    assert not {lf.species for lf in train} & {lf.species for lf in attack}
    assert len({lf.species for lf in attack}) == 2
    with pytest.raises(LeafattackError, match="test_frac"):
        choose_attack_leaves(train, 1.0, 0)


def test_train_augments_with_the_given_library(tmp_path: Path) -> None:
    from leafattack.training.trainer import leaf_paster

    blue = np.zeros((40, 24, 4), np.uint8)
    blue[..., 2] = 255
    blue[..., 3] = 255
    write_png(tmp_path / "blue.png", blue)
    append_to_manifest(tmp_path, [("blue.png", "bluebell", "blue", "test")])
    paste = leaf_paster(1.0, 64, torch.device("cpu"), str(tmp_path))
    grey = torch.full((4, 3, 64, 64), 128, dtype=torch.uint8)
    out = paste(grey, torch.Generator().manual_seed(0))
    pure_blue = (out[:, 2] > 0.99) & (out[:, 0] < 0.01) & (out[:, 1] < 0.01)
    assert bool(pure_blue.flatten(1).any(dim=1).all())  # every image got a blue leaf
    builtin = leaf_paster(1.0, 64, torch.device("cpu"))(grey, torch.Generator().manual_seed(0))
    assert not bool(((builtin[:, 2] > 0.99) & (builtin[:, 0] < 0.01)).any())


def test_leaves_generate_species_all(tmp_path: Path) -> None:
    from leafattack.leaves import SPECIES

    args = ["leaves", "generate", "--species", "all", "--colours", "red", "--size", "64"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    assert sorted(manifest["species"]) == sorted(SPECIES)
    assert set(manifest["colour"]) == {"red"}
