"""The CLI's foundation commands: signs render, leaves generate, segment, info, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from leafattack.cli import main
from leafattack.data.builtin import builtin_signs_dir
from leafattack.leaves.library import builtin_leaves_dir

REAL = os.environ.get("LEAFATTACK_REAL_DATA")


def test_signs_render_reproduces_the_committed_folder(tmp_path: Path) -> None:
    assert main(["signs", "render", "--out", str(tmp_path)]) == 0
    committed = builtin_signs_dir()
    names = sorted(p.name for p in committed.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for name in names:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name


def test_signs_render_size(tmp_path: Path) -> None:
    assert main(["signs", "render", "--out", str(tmp_path), "--size", "64"]) == 0
    img = cv2.imread(str(tmp_path / "stop.png"))
    assert img.shape == (64, 64, 3)
    assert len(pd.read_csv(tmp_path / "manifest.csv")) == 16


def test_leaves_generate_reproduces_the_committed_manifest(tmp_path: Path) -> None:
    assert main(["leaves", "generate", "--out", str(tmp_path)]) == 0
    ours = pd.read_csv(tmp_path / "manifest.csv")
    committed = pd.read_csv(builtin_leaves_dir() / "manifest.csv")
    pd.testing.assert_frame_equal(ours, committed)
    assert len(ours) >= 15 and ours["species"].nunique() >= 5
    assert {"maple", "oak", "poplar"} <= set(ours["species"])


def test_info_lists_registries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("lisacnn", "gtsrbcnn", "maple", "poplar", "untargeted", "brown"):
        assert word in out


@pytest.mark.skipif(not REAL, reason="LEAFATTACK_REAL_DATA is not set")
def test_segment_real_photos(tmp_path: Path) -> None:
    assert REAL is not None
    index = pd.read_csv(Path(REAL) / "leafsnap" / "index.csv")
    rows = index[index["species"].isin(["acer_palmatum", "populus_grandidentata"])].head(3)
    photos = [str(Path(REAL) / "leafsnap" / p) for p in rows["path"]]
    out = tmp_path / "lib"
    assert main(["segment", *photos, "--out", str(out), "--species", "maple"]) == 0
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 3 and set(manifest["species"]) == {"maple"}
    assert (out / "contact_sheet.png").is_file()
    for f in manifest["file"]:
        rgba = cv2.imread(str(out / f), cv2.IMREAD_UNCHANGED)
        assert rgba.shape[2] == 4
        alpha = rgba[..., 3] > 127
        assert 0.2 < alpha.mean() < 0.95  # a tight crop around one leaf
    # The segmented library is usable as --leaves.
    from leafattack.leaves.library import load_leaves

    assert len(load_leaves(out)) == 3


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A corrupt photo for segmentation.
    bad = tmp_path / "leaf.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["segment", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "leaf.jpg" in _one_error(capsys)
    # A leaf PNG without alpha in a leaf library.
    lib = tmp_path / "lib"
    lib.mkdir()
    cv2.imwrite(str(lib / "flat.png"), np.zeros((20, 10, 3), np.uint8))
    (lib / "manifest.csv").write_text("file,species,colour,source\nflat.png,maple,red,test\n")
    assert main(["run", "--leaves", str(lib), "--species", "maple", "--quiet",
                 "--out", str(tmp_path / "r")]) == 2
    assert "alpha" in _one_error(capsys)
    # An empty sign folder, a manifest without columns, an unknown spec prefix.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--signs", str(empty)]) == 2
    assert "empty" in _one_error(capsys)
    nocols = tmp_path / "nocols"
    nocols.mkdir()
    (nocols / "manifest.csv").write_text("path\nx.png\n")
    assert main(["evaluate", "--signs", str(nocols)]) == 2
    assert "manifest.csv" in _one_error(capsys)
    assert main(["evaluate", "--signs", "foo:bar"]) == 2
    assert "unknown sign source prefix" in _one_error(capsys)
