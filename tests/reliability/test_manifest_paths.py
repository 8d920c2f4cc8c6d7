"""Manifest paths that leave their folder (``..``, absolute paths, symlinks pointing out) are
refused with a one-line error naming the manifest, by every loader alike (one policy:
:func:`leafattack.paths.resolve_inside`; backslashes are separators on every OS); the files
they point to are readable, so only the check stands between them and the run. Symlinks and
``sub/../x`` entries that stay inside are accepted."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rel_support import assert_one_error_line, run_args

from leafattack.cli import main
from leafattack.data.sources import load_gtsrb, load_lisa, load_signs
from leafattack.errors import LeafattackError
from leafattack.leaves.library import load_leaves

LEAF = np.dstack([np.full((20, 14, 3), (180, 60, 20), np.uint8), np.full((20, 14), 255, np.uint8)])
SIGN = np.full((16, 16, 3), 200, np.uint8)


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    """``tmp_path/outside`` with a valid leaf, sign, mask and ppm; ``tmp_path/lib/data`` (the
    folder under test) with a valid inside leaf/sign and symlinks out of it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(LEAF).save(outside / "leaf.png")
    Image.fromarray(SIGN).save(outside / "sign.png")
    Image.fromarray(SIGN).save(outside / "sign.ppm")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(outside / "mask.png")
    folder = tmp_path / "lib" / "data"
    folder.mkdir(parents=True)
    Image.fromarray(LEAF).save(folder / "inside_leaf.png")
    Image.fromarray(SIGN).save(folder / "inside_sign.png")
    for name in ("leaf.png", "sign.png", "sign.ppm", "mask.png"):
        (folder / f"link_{name}").symlink_to(outside / name)
    (folder / "linkdir").symlink_to(outside, target_is_directory=True)
    (folder / "ok_link.png").symlink_to(folder / "inside_leaf.png")  # stays inside
    return folder, outside


ESCAPES = ("dotdot", "deep_dotdot", "absolute", "symlink_file", "symlink_dir", "backslashes")


def _entry(kind: str, name: str, outside: Path, base: Path) -> str:
    """A manifest entry, relative to ``base``, that reaches ``outside/name``."""
    up = os.path.relpath(outside / name, base)  # ../../outside/name
    return {"dotdot": up, "deep_dotdot": f"sub/../{up}", "absolute": str(outside / name),
            "symlink_file": f"link_{name}", "symlink_dir": f"linkdir/{name}",
            "backslashes": up.replace("/", "\\")}[kind]


@pytest.mark.parametrize("kind", ESCAPES)
def test_leaf_manifest_escape_is_refused(
    tmp_path: Path, kind: str, signs4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, outside = _layout(tmp_path)
    entry = _entry(kind, "leaf.png", outside, folder)
    manifest = folder / "manifest.csv"
    manifest.write_text(f"file,species,colour,source\ninside_leaf.png,oak,red,x\n"
                        f"{entry},oak,red,x\n")
    with pytest.raises(LeafattackError) as info:
        load_leaves(folder)
    assert str(manifest) in str(info.value) and "line 3" in str(info.value)
    code = main(run_args(tmp_path / "out", signs4, 8, "--leaves", str(folder),
                         "--species", "oak"))
    assert_one_error_line(code, capsys.readouterr().err, str(manifest))
    assert not (tmp_path / "out" / "trials.csv").exists()


def test_leaf_manifest_inside_paths_and_symlinks_are_accepted(tmp_path: Path) -> None:
    folder, _ = _layout(tmp_path)
    (folder / "sub").mkdir()
    Image.fromarray(LEAF).save(folder / "sub" / "deeper.png")
    (folder / "manifest.csv").write_text("file,species,colour,source\ninside_leaf.png,oak,red,x\n"
                                         "ok_link.png,oak,red,x\nsub/deeper.png,oak,red,x\n")
    leaves = load_leaves(folder)
    assert [leaf.leaf_id for leaf in leaves] == ["inside_leaf", "ok_link", "deeper"]
    np.testing.assert_array_equal(leaves[1].rgba, LEAF)


@pytest.mark.parametrize("column", ["file", "mask"])
@pytest.mark.parametrize("kind", ESCAPES)
def test_sign_manifest_escape_is_refused(
    tmp_path: Path, kind: str, column: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, outside = _layout(tmp_path)
    escape = _entry(kind, "sign.png" if column == "file" else "mask.png", outside, folder)
    file, mask = (escape, "") if column == "file" else ("inside_sign.png", escape)
    manifest = folder / "manifest.csv"
    manifest.write_text(f'file,name,mask\ninside_sign.png,stop,\n"{file}",stop,"{mask}"\n')
    with pytest.raises(LeafattackError) as info:
        load_signs(str(folder))
    assert f"{manifest} line 3" in str(info.value)
    code = main(run_args(tmp_path / "out", folder))
    assert_one_error_line(code, capsys.readouterr().err, f"{manifest} line 3")


def test_sign_manifest_inside_symlink_is_accepted(tmp_path: Path) -> None:
    folder, _ = _layout(tmp_path)
    (folder / "ok_sign.png").symlink_to("inside_sign.png")
    (folder / "manifest.csv").write_text("file,name\ninside_sign.png,stop\nok_sign.png,yield\n")
    signs = load_signs(str(folder))
    assert signs.files == ("inside_sign.png", "ok_sign.png")


@pytest.mark.parametrize("kind", ESCAPES)
def test_gtsrb_filename_escape_is_refused(tmp_path: Path, kind: str) -> None:
    folder, outside = _layout(tmp_path)
    cls = folder / "Final_Training" / "Images" / "00014"
    cls.mkdir(parents=True)
    for name in ("sign.ppm",):
        (cls / f"link_{name}").symlink_to(outside / name)
    (cls / "linkdir").symlink_to(outside, target_is_directory=True)
    entry = _entry(kind, "sign.ppm", outside, cls)
    csv_path = cls / "GT-00014.csv"
    csv_path.write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
                        f"{entry};16;16;1;1;15;15;14\n")
    with pytest.raises(LeafattackError) as info:
        load_gtsrb(folder)
    assert f"{csv_path} line 2" in str(info.value)


@pytest.mark.parametrize("kind", ESCAPES)
def test_lisa_filename_escape_is_refused(tmp_path: Path, kind: str) -> None:
    folder, outside = _layout(tmp_path)
    table = folder / "allAnnotations.csv"
    table.write_text("Filename;Annotation tag;Upper left corner X;Upper left corner Y;"
                     "Lower right corner X;Lower right corner Y\n"
                     "inside_sign.png;stop;0;0;8;8\n"
                     f"{_entry(kind, 'sign.png', outside, folder)};stop;0;0;8;8\n")
    with pytest.raises(LeafattackError) as info:
        load_lisa(folder)
    assert f"{table} line 3" in str(info.value)


def test_escapes_are_readable_files(tmp_path: Path) -> None:
    """The targets of the refused entries exist and load, so the refusals above are the
    path checks at work, not missing files."""
    folder, outside = _layout(tmp_path)
    from leafattack.imageio import read_rgb, read_rgba

    for kind in ESCAPES:
        if kind == "backslashes" and os.sep == "/":
            continue
        if kind == "deep_dotdot":
            (folder / "sub").mkdir(exist_ok=True)
        target = folder / _entry(kind, "leaf.png", outside, folder)
        np.testing.assert_array_equal(read_rgba(target), LEAF)
        assert read_rgb(folder / _entry(kind, "sign.png", outside, folder)).shape == (16, 16, 3)
