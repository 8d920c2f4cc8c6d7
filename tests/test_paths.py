"""One path policy for manifests (:func:`leafattack.paths.resolve_inside`): each entry of the
table below is accepted or refused alike by the sign loader (``manifest.csv`` with
``file,name``) and the leaf loader (``manifest.csv`` with ``file,species,colour,source``).

Every refused entry names a readable image (or none at all), so a refusal is the path check
at work, not a missing file."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from leafattack.data.sources import load_folder
from leafattack.errors import LeafattackError
from leafattack.imageio import read_rgb, read_rgba, write_png
from leafattack.leaves.library import load_leaves
from leafattack.paths import resolve_inside


def _rgba(colour: tuple[int, int, int]) -> np.ndarray:
    """A 12x10 RGBA image of ``colour``, opaque but for a transparent top-left corner."""
    image = np.zeros((12, 10, 4), np.uint8)
    image[..., :3] = colour
    image[..., 3] = 255
    image[:3, :3, 3] = 0
    return image


class Layout(NamedTuple):
    root: Path  # the folder under test
    outside: Path  # a sibling folder with a readable image x.png


def _layout(tmp_path: Path) -> Layout:
    """``root/{good,x}.png``, ``root/sub/x.png`` and ``outside/x.png``, all different images,
    plus symlinks in ``root`` (in and out) where the OS allows them."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    write_png(root / "good.png", _rgba((10, 200, 30)))
    write_png(root / "x.png", _rgba((200, 60, 20)))
    write_png(root / "sub" / "x.png", _rgba((30, 60, 220)))
    write_png(outside / "x.png", _rgba((250, 250, 0)))
    try:
        (root / "link_in.png").symlink_to(root / "sub" / "x.png")
        (root / "link_out.png").symlink_to(outside / "x.png")
        (root / "linkdir").symlink_to(outside, target_is_directory=True)
    except (OSError, NotImplementedError):  # no symlinks here (e.g. Windows without rights)
        pass
    return Layout(root, outside)


class Case(NamedTuple):
    entry: Callable[[Layout], str]  # the manifest entry, built from the layout
    reads: str | None  # the image (relative to tmp_path) it names when accepted; None = refused
    symlink: bool = False


def _const(text: str) -> Callable[[Layout], str]:
    return lambda _layout: text


CASES: dict[str, Case] = {
    "plain": Case(_const("x.png"), "root/x.png"),
    "subfolder": Case(_const("sub/x.png"), "root/sub/x.png"),
    "dot-prefix": Case(_const("./sub//x.png"), "root/sub/x.png"),
    "dotdot-stays-inside": Case(_const("sub/../x.png"), "root/x.png"),
    "backslash-subfolder": Case(_const("sub\\x.png"), "root/sub/x.png"),
    "backslash-dotdot-inside": Case(_const("sub\\..\\x.png"), "root/x.png"),
    "blanks-around": Case(_const("  x.png  "), "root/x.png"),
    "dotdot-escape": Case(_const("../outside/x.png"), None),
    "deep-dotdot-escape": Case(_const("sub/../../outside/x.png"), None),
    "backslash-dotdot-escape": Case(_const("..\\outside\\x.png"), None),
    "climb-out-and-back": Case(_const("../root/x.png"), None),
    "posix-absolute": Case(_const("/abs/x.png"), None),
    "posix-absolute-existing": Case(lambda lay: str(lay.outside / "x.png"), None),
    "windows-drive": Case(_const("C:\\x.png"), None),
    "windows-drive-slash": Case(_const("C:/x.png"), None),
    "windows-drive-relative": Case(_const("C:x.png"), None),
    "windows-rooted": Case(_const("\\x.png"), None),
    "windows-unc": Case(_const("\\\\server\\share\\x.png"), None),
    "folder-itself": Case(_const("sub/.."), None),
    "nul-byte": Case(_const("x\0.png"), None),
    "empty": Case(_const(""), None),
    "blank": Case(_const("   "), None),
    "symlink-inside": Case(_const("link_in.png"), "root/sub/x.png", symlink=True),
    "symlink-file-out": Case(_const("link_out.png"), None, symlink=True),
    "symlink-dir-out": Case(_const("linkdir/x.png"), None, symlink=True),
}


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def _load_signs(root: Path, entry: str) -> np.ndarray:
    _write_csv(root / "manifest.csv", [["file", "name"], ["good.png", "stop"], [entry, "yield"]])
    signs = load_folder(root)
    assert signs.class_names[signs.labels[1]] == "yield"
    image: np.ndarray = signs.images[1]
    return image


def _load_leaf(root: Path, entry: str) -> np.ndarray:
    _write_csv(
        root / "manifest.csv",
        [
            ["file", "species", "colour", "source"],
            ["good.png", "oak", "red", "test"],
            [entry, "maple", "natural", "test"],
        ],
    )
    leaves = load_leaves(root)
    assert leaves[1].species == "maple"
    return np.asarray(leaves[1].rgba)


LOADERS: dict[str, tuple[Callable[[Path, str], np.ndarray], Callable[[Path], np.ndarray]]] = {
    "sign": (_load_signs, read_rgb),
    "leaf": (_load_leaf, read_rgba),
}


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("name", list(CASES))
def test_signs_and_leaves_share_one_path_policy(tmp_path: Path, name: str, kind: str) -> None:
    case = CASES[name]
    layout = _layout(tmp_path)
    if case.symlink and not (layout.root / "link_out.png").is_symlink():
        pytest.skip("symlinks are not available here")
    load, read = LOADERS[kind]
    entry = case.entry(layout)
    if case.reads is not None:
        np.testing.assert_array_equal(load(layout.root, entry), read(tmp_path / case.reads))
        return
    with pytest.raises(LeafattackError) as info:
        load(layout.root, entry)
    message = str(info.value)
    assert "\n" not in message
    assert str(layout.root / "manifest.csv") in message and "line 3" in message, message
    assert "expected" in message, message


def test_the_refused_entries_name_readable_files(tmp_path: Path) -> None:
    """Without the check, the escaping entries would load an image from ``outside``."""
    layout = _layout(tmp_path)
    for name in ("dotdot-escape", "deep-dotdot-escape", "posix-absolute-existing"):
        path = layout.root / CASES[name].entry(layout)
        assert read_rgba(path).shape == (12, 10, 4), name
    if (layout.root / "link_out.png").is_symlink():
        for name in ("symlink-file-out", "symlink-dir-out"):
            assert read_rgba(layout.root / CASES[name].entry(layout)).shape == (12, 10, 4)
    if os.sep == "\\":
        assert read_rgba(layout.root / CASES["backslash-dotdot-escape"].entry(layout)).any()


def test_resolve_inside_returns_the_normalised_path_under_root(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    root = layout.root
    assert resolve_inside(root, "sub/../x.png", "m line 2") == root / "x.png"
    assert resolve_inside(root, "sub\\x.png", "m line 2") == root / "sub" / "x.png"
    assert resolve_inside(root, "./a/./b/../c.png", "m line 2") == root / "a" / "c.png"
    if (root / "link_in.png").is_symlink():  # the link's own name is kept, not its target's
        assert resolve_inside(root, "link_in.png", "m line 2") == root / "link_in.png"
    for bad, words in [
        ("../x.png", ("'../x.png'", "outside", "'..'")),
        ("C:\\x.png", ("absolute path", "'C:\\\\x.png'")),
        ("", ("empty path",)),
        ("a\0b", ("NUL",)),
    ]:
        with pytest.raises(LeafattackError) as info:
            resolve_inside(root, bad, "m line 2")
        message = str(info.value)
        assert message.startswith("m line 2: ") and "expected" in message, message
        for word in words:
            assert word in message, (bad, message)
