"""Tests of leafattack.datasets: folder/manifest, GTSRB, LISA, builtin, dispatch, fingerprints.

Synthetic datasets are written into ``tmp_path`` with images whose pixels encode their own
coordinates (R = x, G = y), so a crop can be checked against the box it should come from.
The real GTSRB photos are used when ``LEAFATTACK_REAL_DATA`` points at the shared data.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import sys
import types
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import leafattack.data.sources as sources
from leafattack.data.signset import GTSRB_CLASSES, LISA_CLASSES, SignSet, fingerprint, subset
from leafattack.data.sources import load_builtin, load_folder, load_gtsrb, load_lisa, load_signs
from leafattack.errors import LeafattackError

REAL_DATA = os.environ.get("LEAFATTACK_REAL_DATA")
needs_real = pytest.mark.skipif(not REAL_DATA, reason="LEAFATTACK_REAL_DATA is unset")
GTSRB_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
LISA_HEADER = (
    "Filename;Annotation tag;Upper left corner X;Upper left corner Y;Lower right corner X;"
    "Lower right corner Y;Occluded,On another road;Origin file;Origin frame number;"
    "Origin track;Origin track frame number"
)


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------


def coord_image(height: int, width: int, blue: int = 7) -> np.ndarray:
    """uint8 (H, W, 3): R = x mod 256, G = y mod 256, B = ``blue``."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = (np.arange(width) % 256)[None, :]
    img[..., 1] = (np.arange(height) % 256)[:, None]
    img[..., 2] = blue
    return img


def save(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB (or bool/uint8 2-D mask) array with PIL; the suffix picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


def assert_crop_of(crop: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """``crop`` is exactly the half-open box (x1, y1, x2, y2) of a :func:`coord_image`."""
    x1, y1, x2, y2 = box
    assert crop.shape == (y2 - y1, x2 - x1, 3)
    np.testing.assert_array_equal(crop[0, :, 0], np.arange(x1, x2) % 256)
    np.testing.assert_array_equal(crop[:, 0, 1], np.arange(y1, y2) % 256)


def write_gt(path: Path, rows: Sequence[tuple[object, ...]], header: str = GTSRB_HEADER) -> None:
    lines = [header] + [";".join(str(v) for v in row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_gtsrb(root: Path) -> dict[str, tuple[int, tuple[int, int, int, int]]]:
    """A tiny GTSRB tree: train classes 0 and 2 (3 + 2 images), test 3 images.

    Returns:
        file (relative to root) -> (ClassId, ROI) for every image.
    """
    expected: dict[str, tuple[int, tuple[int, int, int, int]]] = {}
    train = {
        0: [
            ("00000_00000.ppm", 30, 28, (5, 6, 25, 22)),
            ("00000_00001.ppm", 40, 41, (5, 5, 35, 36)),
            ("00001_00000.ppm", 25, 25, (5, 5, 20, 20)),
        ],
        2: [
            ("00000_00000.ppm", 50, 33, (6, 5, 44, 28)),
            ("00003_00002.ppm", 26, 27, (5, 5, 21, 22)),
        ],
    }
    for class_id, items in train.items():
        folder = root / "Final_Training" / "Images" / f"{class_id:05d}"
        rows = []
        for k, (name, w, h, roi) in enumerate(items):
            save(folder / name, coord_image(h, w, blue=10 * class_id + k))
            rows.append((name, w, h, *roi, class_id))
            expected[f"Final_Training/Images/{class_id:05d}/{name}"] = (class_id, roi)
        write_gt(folder / f"GT-{class_id:05d}.csv", rows)
    test_items = [
        ("00000.ppm", 31, 30, (5, 5, 26, 25), 14),
        ("00001.ppm", 29, 35, (5, 6, 24, 29), 42),
        ("00002.ppm", 40, 40, (6, 6, 34, 35), 14),
    ]
    rows = []
    for name, w, h, roi, class_id in test_items:
        save(root / "Final_Test" / "Images" / name, coord_image(h, w))
        rows.append((name, w, h, *roi, class_id))
        expected[f"Final_Test/Images/{name}"] = (class_id, roi)
    write_gt(root / "Final_Test" / "Images" / "GT-final_test.csv", rows)
    return expected


def make_class_folders(root: Path) -> None:
    save(root / "stop" / "a.png", coord_image(20, 30))
    save(root / "stop" / "B.PNG", coord_image(12, 14, blue=1))
    save(root / "yield" / "c.ppm", coord_image(16, 16, blue=2))
    save(root / "yield" / "d.JPEG", coord_image(18, 22, blue=3))
    (root / "yield" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()


def write_manifest(root: Path, header: str, rows: list[str]) -> None:
    (root / "manifest.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------
# class names
# ---------------------------------------------------------------------------


def test_class_name_tables() -> None:
    assert len(GTSRB_CLASSES) == 43 and len(set(GTSRB_CLASSES)) == 43
    assert GTSRB_CLASSES[0] == "Speed limit (20km/h)"
    assert GTSRB_CLASSES[14] == "Stop"
    assert GTSRB_CLASSES[42] == "End of no passing by vehicles over 3.5 metric tons"
    assert LISA_CLASSES == tuple(sorted(LISA_CLASSES, key=str.lower))  # alphabetical, 16 tags
    assert len(LISA_CLASSES) == 16 and LISA_CLASSES.index("stop") == 12


@needs_real
def test_gtsrb_class_names_match_signnames_csv() -> None:
    with open(Path(str(REAL_DATA)) / "gtsrb" / "signnames.csv", newline="") as fh:
        names = {int(r["ClassId"]): r["SignName"] for r in csv.DictReader(fh)}
    assert tuple(names[i] for i in range(43)) == GTSRB_CLASSES


# ---------------------------------------------------------------------------
# folder layout and manifest
# ---------------------------------------------------------------------------


def test_class_folders_sorted_labels_and_pixels(tmp_path: Path) -> None:
    make_class_folders(tmp_path)
    signs = load_folder(tmp_path)
    assert signs.class_names == ("stop", "yield")  # the empty folder is not a class
    assert signs.files == ("stop/B.PNG", "stop/a.png", "yield/c.ppm", "yield/d.JPEG")
    assert signs.labels.dtype == np.int64
    assert signs.labels.tolist() == [0, 0, 1, 1]
    assert [im.shape for im in signs.images] == [(12, 14, 3), (20, 30, 3), (16, 16, 3), (18, 22, 3)]
    np.testing.assert_array_equal(signs.images[1], coord_image(20, 30))  # lossless PNG
    np.testing.assert_array_equal(signs.images[2], coord_image(16, 16, blue=2))  # lossless PPM
    assert signs.masks is None
    assert signs.source == str(tmp_path)


def test_class_folders_with_given_class_names(tmp_path: Path) -> None:
    make_class_folders(tmp_path)
    signs = load_folder(tmp_path, class_names=LISA_CLASSES)
    assert signs.class_names == LISA_CLASSES
    assert signs.labels.tolist() == [12, 12, 15, 15]
    save(tmp_path / "Stop sign" / "x.png", coord_image(5, 5))
    with pytest.raises(LeafattackError, match=r"Stop sign.*not a known class.*addedLane"):
        load_folder(tmp_path, class_names=LISA_CLASSES)


def test_manifest_with_masks_and_labels(tmp_path: Path) -> None:
    save(tmp_path / "img" / "one.png", coord_image(10, 12))
    save(tmp_path / "img" / "two.png", coord_image(8, 8, blue=9))
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[2:7, 3:9] = 255
    save(tmp_path / "masks" / "one.png", mask)
    write_manifest(
        tmp_path,
        "file,mask,label,name",
        ["img/two.png,,1,yield", "./img/one.png,masks/one.png,0,stop"],
    )
    signs = load_folder(tmp_path)
    assert signs.class_names == ("stop", "yield")  # label -> name
    assert signs.labels.tolist() == [1, 0]  # manifest order
    assert signs.files == ("img/two.png", "img/one.png")
    assert signs.masks is not None
    assert signs.masks[0].all() and signs.masks[0].shape == (8, 8)  # empty mask cell
    np.testing.assert_array_equal(signs.masks[1], mask == 255)
    assert int(signs.masks[1].sum()) == 5 * 6
    np.testing.assert_array_equal(signs.images[1], coord_image(10, 12))


def test_manifest_without_label_uses_sorted_names(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        save(tmp_path / f"{name}.png", coord_image(4, 4))
    write_manifest(tmp_path, "name,file", ["zebra,a.png", "apple,b.png", "zebra,c.png"])
    signs = load_folder(tmp_path)
    assert signs.class_names == ("apple", "zebra")
    assert signs.labels.tolist() == [1, 0, 1]
    signs = load_folder(tmp_path, class_names=["x", "zebra", "apple"])
    assert signs.labels.tolist() == [1, 2, 1]


@pytest.mark.parametrize(
    ("header", "row", "pattern"),
    [
        ("file,label", "a.png,0", r"manifest\.csv: missing columns name \(expected file,name"),
        ("file,label,name", "a.png,3,stop", r"labels skip 0, 1, 2 .*pass class_names"),
        ("file,label,name", "a.png,x,stop", r"line 2: label = 'x' \(expected an integer\)"),
        ("file,name", "a.png,", r"line 2: empty name"),
        ("file,name,mask", "a.png,stop,m.png", r"m\.png: mask is 5x4 pixels but .*a\.png is 6x6"),
    ],
    ids=["missing-column", "label-gap", "bad-label", "empty-name", "mask-size"],
)
def test_manifest_errors(tmp_path: Path, header: str, row: str, pattern: str) -> None:
    save(tmp_path / "a.png", coord_image(6, 6))
    save(tmp_path / "m.png", np.zeros((4, 5), dtype=np.uint8))
    write_manifest(tmp_path, header, [row])
    with pytest.raises(LeafattackError, match=pattern) as info:
        load_folder(tmp_path)
    assert "\n" not in str(info.value)


def test_manifest_label_must_match_given_class_names(tmp_path: Path) -> None:
    save(tmp_path / "a.png", coord_image(6, 6))
    write_manifest(tmp_path, "file,label,name", ["a.png,3,stop"])
    with pytest.raises(
        LeafattackError, match=r"label 3 does not match name 'stop' \(expected label 12\)"
    ):
        load_folder(tmp_path, class_names=LISA_CLASSES)
    write_manifest(tmp_path, "file,name", ["a.png,Stop"])
    with pytest.raises(LeafattackError, match=r"class 'Stop' is not a known class"):
        load_folder(tmp_path, class_names=LISA_CLASSES)


def test_manifest_refuses_paths_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "set"
    save(root / "in.png", coord_image(6, 6))
    outside = save(tmp_path / "secret.png", coord_image(6, 6))
    cases = {
        "../secret.png": "outside",
        "sub/../../secret.png": "outside",
        str(outside): "absolute path",
        "C:/secret.png": "absolute path",
    }
    for rel, word in cases.items():
        write_manifest(root, "file,name", [f"{rel},stop"])
        with pytest.raises(LeafattackError, match=rf"manifest\.csv line 2: .*{word}"):
            load_folder(root)
    (root / "link.png").symlink_to(outside)
    write_manifest(root, "file,name", ["link.png,stop"])
    with pytest.raises(LeafattackError, match=r"'link\.png' resolves to .*outside"):
        load_folder(root)
    write_manifest(root, "file,name,mask", ["in.png,stop,../secret.png"])
    with pytest.raises(LeafattackError, match=r"'\.\./secret\.png' resolves to .*outside"):
        load_folder(root)
    # A symlink that stays inside the root is fine.
    (root / "inner.png").symlink_to(root / "in.png")
    write_manifest(root, "file,name", ["inner.png,stop", "sub/../in.png,stop"])
    assert load_folder(root).files == ("inner.png", "in.png")


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(LeafattackError, match=rf"{re.escape(str(tmp_path / 'empty'))}: no images"):
        load_folder(tmp_path / "empty")
    with pytest.raises(LeafattackError, match=r"nope: folder not found"):
        load_folder(tmp_path / "nope")
    write_manifest(tmp_path / "empty", "file,name", [])
    with pytest.raises(LeafattackError, match=r"manifest\.csv: no rows"):
        load_folder(tmp_path / "empty")


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    make_class_folders(tmp_path)
    (tmp_path / "yield" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(LeafattackError, match=r"yield/broken\.png: ") as info:
        load_folder(tmp_path)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------
# GTSRB
# ---------------------------------------------------------------------------


def test_gtsrb_synthetic_train_and_test(tmp_path: Path) -> None:
    expected = make_gtsrb(tmp_path)
    signs = load_gtsrb(tmp_path)  # auto: train then test
    assert len(signs) == 8
    assert signs.class_names == GTSRB_CLASSES
    assert signs.files == tuple(expected)  # class-folder order, then CSV order
    for file, label, crop in zip(signs.files, signs.labels, signs.images, strict=True):
        class_id, roi = expected[file]
        assert label == class_id
        assert_crop_of(crop, roi)
    assert signs.source == f"gtsrb:{tmp_path}"

    train = load_gtsrb(tmp_path, split="train")
    assert train.labels.tolist() == [0, 0, 0, 2, 2]
    test = load_gtsrb(tmp_path, split="test")
    assert test.labels.tolist() == [14, 42, 14]
    assert test.files[0] == "Final_Test/Images/00000.ppm"
    # The split folders themselves, or a GTSRB/ wrapper, work as roots too.
    assert load_gtsrb(tmp_path / "Final_Test").files[0] == "Images/00000.ppm"
    only_train = load_gtsrb(tmp_path / "Final_Training")
    assert only_train.files[0] == "Images/00000/00000_00000.ppm" and len(only_train) == 5
    wrapped = tmp_path / "wrap"
    (wrapped / "GTSRB").mkdir(parents=True)
    (wrapped / "GTSRB" / "Final_Test").symlink_to(tmp_path / "Final_Test")
    assert load_gtsrb(wrapped).labels.tolist() == [14, 42, 14]


def test_gtsrb_test_csv_next_to_images(tmp_path: Path) -> None:
    make_gtsrb(tmp_path)
    images = tmp_path / "Final_Test" / "Images"
    (images / "GT-final_test.csv").rename(tmp_path / "Final_Test" / "GT-final_test.csv")
    assert load_gtsrb(tmp_path, split="test").labels.tolist() == [14, 42, 14]
    (tmp_path / "Final_Test" / "GT-final_test.csv").unlink()
    write_gt(
        images / "GT-final_test.test.csv",
        [("00000.ppm", 31, 30, 5, 5, 26, 25)],
        header="Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2",
    )
    with pytest.raises(LeafattackError, match=r"GT-final_test\.csv not found .*has no ClassId"):
        load_gtsrb(tmp_path, split="test")


def test_gtsrb_max_per_class_spreads_evenly(tmp_path: Path) -> None:
    folder = tmp_path / "Final_Training" / "Images" / "00005"
    rows = []
    for k in range(10):
        name = f"00000_{k:05d}.ppm"
        save(folder / name, coord_image(12, 12, blue=k))
        rows.append((name, 12, 12, 1, 1, 11, 11, 5))
    write_gt(folder / "GT-00005.csv", rows)
    signs = load_gtsrb(tmp_path, max_per_class=4)
    assert [int(img[0, 0, 2]) for img in signs.images] == [0, 2, 5, 7]  # floor(i * 10 / 4)
    assert len(load_gtsrb(tmp_path, max_per_class=99)) == 10
    with pytest.raises(LeafattackError, match=r"max_per_class = 0 \(expected an integer >= 1\)"):
        load_gtsrb(tmp_path, max_per_class=0)


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ((30, 28, 5, 6, 31, 22, 0), r"00000_00000\.ppm\): box .* \(5, 6, 31, 22\) does not lie"),
        ((30, 28, 5, 6, 25, 29, 0), r"00000_00000\.ppm\): box .* does not lie inside the 30x28"),
        ((30, 28, 25, 6, 5, 22, 0), r"00000_00000\.ppm\): box .*expected 0 <= x1 < x2 <= 30"),
        ((30, 28, -1, 6, 25, 22, 0), r"00000_00000\.ppm\): box .* \(-1, 6, 25, 22\)"),
        ((30, 28, 5, 6, 25, 22, 43), r"00000_00000\.ppm\): ClassId = 43 \(expected 0\.\.42\)"),
        ((30, 28, 5, 6, 25, 22, 3), r"ClassId = 3 in class folder 00000 \(expected 0\)"),
        ((30, "x", 5, 6, 25, 22, 0), r"00000_00000\.ppm\): Height = 'x' \(expected an integer\)"),
    ],
    ids=["x2>width", "y2>height", "x1>x2", "negative", "classid-43", "wrong-folder", "not-int"],
)
def test_gtsrb_bad_rows_name_the_file(
    tmp_path: Path, row: tuple[object, ...], pattern: str
) -> None:
    folder = tmp_path / "Final_Training" / "Images" / "00000"
    save(folder / "00000_00000.ppm", coord_image(28, 30))
    write_gt(folder / "GT-00000.csv", [("00000_00000.ppm", *row)])
    with pytest.raises(LeafattackError, match=pattern) as info:
        load_gtsrb(tmp_path)
    assert "GT-00000.csv line 2" in str(info.value)


def test_gtsrb_missing_columns(tmp_path: Path) -> None:
    folder = tmp_path / "Final_Training" / "Images" / "00003"
    save(folder / "a.ppm", coord_image(28, 30))
    write_gt(
        folder / "GT-00003.csv",
        [("a.ppm", 30, 28, 6, 25, 22)],
        header="Filename;Width;Height;Roi.Y1;Roi.X2;Roi.Y2",
    )
    expected = (
        f"{folder / 'GT-00003.csv'}: missing columns Roi.X1, ClassId (expected {GTSRB_HEADER})"
    )
    with pytest.raises(LeafattackError) as info:
        load_gtsrb(tmp_path)
    assert str(info.value) == expected


def test_gtsrb_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(LeafattackError, match=r"no Final_Training or Final_Test folder found"):
        load_gtsrb(tmp_path)
    make_gtsrb(tmp_path)
    with pytest.raises(LeafattackError, match=r"split 'val' .*expected one of auto, train, test"):
        load_gtsrb(tmp_path, split="val")
    (tmp_path / "Final_Training" / "Images" / "00000" / "00000_00001.ppm").unlink()
    with pytest.raises(LeafattackError, match=r"00000/00000_00001\.ppm: file not found"):
        load_gtsrb(tmp_path, split="train")
    assert len(load_gtsrb(tmp_path, split="test")) == 3  # only the train split is broken
    (tmp_path / "Final_Training" / "Images" / "00002" / "GT-00002.csv").unlink()
    with pytest.raises(LeafattackError, match=r"00002/GT-00002\.csv: file not found"):
        load_gtsrb(tmp_path)


def test_gtsrb_resized_copy_scales_roi(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "Final_Test" / "Images"
    save(folder / "00000.ppm", coord_image(20, 20))  # stored 20x20, CSV says 40x40
    write_gt(folder / "GT-final_test.csv", [("00000.ppm", 40, 40, 6, 5, 34, 31, 1)])
    with caplog.at_level(logging.WARNING, logger="leafattack.data.sources"):
        signs = load_gtsrb(tmp_path)
    assert_crop_of(signs.images[0], (3, 3, 17, 16))  # 6/2, 2.5->3, 34/2, 15.5->16
    assert "1 image(s) differ from their CSV Width/Height" in caplog.text
    with pytest.raises(LeafattackError, match=r"00000\.ppm: image is 20x20 pixels but .*40x40"):
        load_gtsrb(tmp_path, strict_size=True)


@pytest.fixture(scope="module")
def real_gtsrb() -> SignSet:
    return load_gtsrb(Path(str(REAL_DATA)) / "gtsrb")


@pytest.fixture(scope="module")
def real_index() -> list[dict[str, str]]:
    with open(Path(str(REAL_DATA)) / "gtsrb" / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@needs_real
def test_real_gtsrb_labels_and_crops(real_gtsrb: SignSet, real_index: list[dict[str, str]]) -> None:
    signs = real_gtsrb
    assert len(signs) == 2000 == len(real_index)
    assert signs.class_names == GTSRB_CLASSES
    assert sorted(set(signs.labels.tolist())) == list(range(43))
    by_file = {row["path"]: row for row in real_index}
    assert set(signs.files) == set(by_file)
    root = Path(str(REAL_DATA)) / "gtsrb"
    for file, label, crop in zip(signs.files, signs.labels, signs.images, strict=True):
        row = by_file[file]
        x1, y1, x2, y2 = (int(row[k]) for k in ("roi_x1", "roi_y1", "roi_x2", "roi_y2"))
        assert int(label) == int(row["class_id"])
        assert crop.shape == (y2 - y1, x2 - x1, 3)  # half-open ROI
        raw = cv2.imread(str(root / file), cv2.IMREAD_COLOR)  # independent decoder
        assert raw is not None
        assert raw.shape[:2] == (int(row["height"]), int(row["width"]))
        np.testing.assert_array_equal(crop, raw[y1:y2, x1:x2, ::-1])


@needs_real
def test_real_gtsrb_roi_convention_keeps_documented_border(
    real_index: list[dict[str, str]],
) -> None:
    # GTSRB documents a border of at least 5 px around the sign: it holds on every side
    # only when Roi.X2 / Roi.Y2 are exclusive, the convention the loader uses.
    margins = [
        (
            int(r["roi_x1"]),
            int(r["roi_y1"]),
            int(r["width"]) - int(r["roi_x2"]),
            int(r["height"]) - int(r["roi_y2"]),
        )
        for r in real_index
    ]
    assert min(min(m) for m in margins) >= 5
    assert sum(min(m[2], m[3]) - 1 < 5 for m in margins) > 1000  # inclusive would break it


@needs_real
def test_real_gtsrb_max_per_class_and_split_root(real_gtsrb: SignSet) -> None:
    root = Path(str(REAL_DATA)) / "gtsrb"
    few = load_signs(f"gtsrb:{root}", max_per_class=3)
    assert len(few) == 43 * 3
    assert np.bincount(few.labels, minlength=43).tolist() == [3] * 43
    assert set(few.files) <= set(real_gtsrb.files)
    index = {f: i for i, f in enumerate(real_gtsrb.files)}
    for file, crop in zip(few.files, few.images, strict=True):
        np.testing.assert_array_equal(crop, real_gtsrb.images[index[file]])
    inner = load_gtsrb(root / "Final_Training", max_per_class=1)
    assert len(inner) == 43 and all(f.startswith("Images/000") for f in inner.files)
    assert fingerprint(load_gtsrb(root)) == fingerprint(real_gtsrb)


# ---------------------------------------------------------------------------
# LISA
# ---------------------------------------------------------------------------


def make_lisa(root: Path, extra: list[str] | None = None) -> None:
    save(root / "vid0" / "scene1.png", coord_image(60, 80))
    save(root / "vid1" / "scene2.png", coord_image(50, 70, blue=1))
    rows = [
        "vid0/scene1.png;stop;10;5;30;25;0,0;a.avi;1;t1;1",
        "vid0/scene1.png;doNotEnter;40;5;50;15;0,0;a.avi;1;t2;1",
        "vid0/scene1.png;yield;40;30;70;55;0,0;a.avi;1;t3;1",
        "vid1/scene2.png;speedLimit25;0;0;70;50;1,0;b.avi;4;t4;1",
        "vid1/scene2.png;doNotEnter;1;1;5;5;0,0;b.avi;4;t5;1",
        "vid1/scene2.png;truckSpeedLimit55;1;1;5;5;0,0;b.avi;4;t6;1",
        *(extra or []),
    ]
    (root / "allAnnotations.csv").write_text("\n".join([LISA_HEADER, *rows]) + "\n")


def test_lisa_crops_known_tags(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_lisa(tmp_path)
    with caplog.at_level(logging.INFO, logger="leafattack.data.sources"):
        signs = load_lisa(tmp_path)
    assert signs.class_names == LISA_CLASSES
    assert signs.labels.tolist() == [12, 15, 8]  # stop, yield, speedLimit25
    assert signs.files == (
        "vid0/scene1.png#10,5,30,25",
        "vid0/scene1.png#40,30,70,55",
        "vid1/scene2.png#0,0,70,50",
    )
    assert_crop_of(signs.images[0], (10, 5, 30, 25))
    assert_crop_of(signs.images[1], (40, 30, 70, 55))
    np.testing.assert_array_equal(signs.images[2], coord_image(50, 70, blue=1))
    assert "skipped 3 annotation(s)" in caplog.text
    assert "doNotEnter x2" in caplog.text and "truckSpeedLimit55 x1" in caplog.text


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (
            "vid1/scene2.png;stop;60;10;71;20;0,0;b.avi;4;t;1",
            r"line 8 \(vid1/scene2\.png\): box .* \(60, 10, 71, 20\) does not lie inside the 70x50",
        ),
        (
            "vid1/scene2.png;stop;10;10;20;x;0,0;b.avi;4;t;1",
            r"line 8 \(vid1/scene2\.png\): Lower right corner Y = 'x'",
        ),
        ("vid2/missing.png;stop;1;1;5;5;0,0;c.avi;1;t;1", r"vid2/missing\.png: file not found"),
        ("../../etc/passwd;stop;1;1;5;5;0,0;c.avi;1;t;1", r"'\.\./\.\./etc/passwd' resolves to"),
    ],
    ids=["box-outside", "not-int", "missing-image", "escape"],
)
def test_lisa_errors(tmp_path: Path, extra: str, pattern: str) -> None:
    make_lisa(tmp_path, [extra])
    with pytest.raises(LeafattackError, match=pattern):
        load_lisa(tmp_path)


def test_lisa_missing_columns_and_no_known_tags(tmp_path: Path) -> None:
    save(tmp_path / "s.png", coord_image(10, 10))
    (tmp_path / "allAnnotations.csv").write_text("Filename;Annotation tag\ns.png;stop\n")
    with pytest.raises(LeafattackError, match=r"missing columns Upper left corner X, .*Lower "):
        load_lisa(tmp_path)
    (tmp_path / "allAnnotations.csv").write_text(f"{LISA_HEADER}\ns.png;bogus;1;1;3;3\n")
    with pytest.raises(LeafattackError, match=r"allAnnotations\.csv: no annotation with a known"):
        load_lisa(tmp_path)
    with pytest.raises(LeafattackError, match=r"other\.csv: file not found"):
        load_lisa(tmp_path, annotations="other.csv")


# ---------------------------------------------------------------------------
# builtin signs
# ---------------------------------------------------------------------------

REPO_SIGNS = Path(__file__).resolve().parent.parent / "leafattack" / "assets" / "signs"


@pytest.mark.skipif(not (REPO_SIGNS / "manifest.csv").is_file(), reason="signs/ not generated yet")
def test_builtin_repo_signs() -> None:
    signs = load_builtin()
    assert len(signs) == 16
    assert signs.class_names == LISA_CLASSES
    assert sorted(signs.labels.tolist()) == list(range(16))
    assert signs.masks is not None
    for mask in signs.masks:
        assert 0 < mask.mean() < 1  # a sign face on a background
    assert signs.source == "builtin"


def test_builtin_rendered_when_folder_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "_BUILTIN_DIR", tmp_path / "absent")
    signs = load_builtin(size=40)
    assert len(signs) == 16 and signs.class_names == LISA_CLASSES
    assert all(img.shape == (40, 40, 3) for img in signs.images)
    assert signs.masks is not None and signs.source == "builtin"


def fake_render(calls: list[int]) -> types.ModuleType:
    module = types.ModuleType("leafattack.data.builtin")

    def render_sign_set(size: int) -> SignSet:
        calls.append(size)
        images = tuple(coord_image(size, size, blue=i) for i in range(16))
        return SignSet(
            images=images,
            labels=np.arange(16, dtype=np.int64),
            class_names=LISA_CLASSES,
            files=tuple(f"{n}.png" for n in LISA_CLASSES),
            masks=tuple(np.ones((size, size), dtype=bool) for _ in range(16)),
        )

    module.render_sign_set = render_sign_set  # type: ignore[attr-defined]
    return module


def test_builtin_reads_folder_and_rerenders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = []
    for i, name in enumerate(LISA_CLASSES):
        save(tmp_path / f"{name}.png", coord_image(32, 32, blue=i))
        mask = np.zeros((32, 32), dtype=np.uint8)
        mask[4:28, 4:28] = 255
        save(tmp_path / f"{name}_mask.png", mask)
        rows.append(f"{name}.png,{name}_mask.png,{i},{name}")
    write_manifest(tmp_path, "file,mask,label,name", rows)
    calls: list[int] = []
    monkeypatch.setattr(sources, "_BUILTIN_DIR", tmp_path)
    monkeypatch.setitem(sys.modules, "leafattack.data.builtin", fake_render(calls))

    signs = load_builtin()
    assert len(signs) == 16 and signs.labels.tolist() == list(range(16))
    assert signs.masks is not None and all(int(m.sum()) == 24 * 24 for m in signs.masks)
    assert load_builtin(size=32).files == signs.files and calls == []
    resized = load_builtin(size=48)
    assert calls == [48] and resized.images[0].shape == (48, 48, 3)
    assert resized.source == "builtin"
    assert load_signs("builtin").files == signs.files

    monkeypatch.setattr(sources, "_BUILTIN_DIR", tmp_path / "absent")
    assert load_builtin().images[0].shape == (128, 128, 3) and calls == [48, 128]
    with pytest.raises(LeafattackError, match=r"size = 0 \(expected an integer >= 1\)"):
        load_builtin(size=0)


# ---------------------------------------------------------------------------
# load_signs dispatch
# ---------------------------------------------------------------------------


def test_load_signs_dispatches_every_prefix(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "folder")
    make_gtsrb(tmp_path / "gtsrb")
    make_lisa(tmp_path / "lisa")
    plain = load_signs(str(tmp_path / "folder"))
    assert plain.source == str(tmp_path / "folder") and len(plain) == 4
    spelled = load_signs(f"folder:{tmp_path / 'folder'}", class_names=LISA_CLASSES)
    assert spelled.source == f"folder:{tmp_path / 'folder'}"
    assert spelled.labels.tolist() == [12, 12, 15, 15]
    gtsrb = load_signs(f"gtsrb:{tmp_path / 'gtsrb'}", split="test")
    assert gtsrb.labels.tolist() == [14, 42, 14] and gtsrb.source.startswith("gtsrb:")
    lisa = load_signs(f"lisa:{tmp_path / 'lisa'}")
    assert lisa.labels.tolist() == [12, 15, 8] and lisa.source == f"lisa:{tmp_path / 'lisa'}"
    # fingerprints identify the data, not the spelling of the spec
    assert fingerprint(plain) == fingerprint(load_folder(tmp_path / "folder"))


def test_load_signs_unknown_prefix_and_paths_with_colons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(LeafattackError) as info:
        load_signs("foo:bar")
    assert str(info.value) == (
        "unknown sign source prefix 'foo' (expected builtin, PATH, gtsrb:PATH or lisa:PATH)"
    )
    with pytest.raises(LeafattackError, match=r"missing PATH \(expected gtsrb:PATH\)"):
        load_signs("gtsrb:")
    with pytest.raises(LeafattackError, match=r"C:/no/such/signs: folder not found"):
        load_signs("C:/no/such/signs")  # a drive letter is a path, not a prefix
    monkeypatch.chdir(tmp_path)
    make_class_folders(tmp_path / "my:signs")
    assert len(load_signs("my:signs")) == 4  # an existing path wins over the prefix reading
    (tmp_path / "void").mkdir()
    with pytest.raises(LeafattackError, match=r"^void: no images found"):
        load_signs("void")
    with pytest.raises(LeafattackError, match=r"^void: no images found"):
        load_signs("folder:void")


# ---------------------------------------------------------------------------
# subset and fingerprint
# ---------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> SignSet:
    save(tmp_path / "a.png", coord_image(6, 7))
    save(tmp_path / "b.png", coord_image(5, 5, blue=1))
    save(tmp_path / "c.png", coord_image(4, 8, blue=2))
    for n in "abc":
        save(
            tmp_path / f"m{n}.png",
            np.full((6, 7) if n == "a" else (5, 5) if n == "b" else (4, 8), 255, dtype=np.uint8),
        )
    write_manifest(
        tmp_path, "file,name,mask", ["a.png,x,ma.png", "b.png,y,mb.png", "c.png,x,mc.png"]
    )
    return load_folder(tmp_path)


def test_subset_picks_items(small: SignSet) -> None:
    sub = subset(small, [2, 0, 2])
    assert sub.files == ("c.png", "a.png", "c.png")
    assert sub.labels.tolist() == [0, 0, 0] and sub.labels.dtype == np.int64
    assert sub.class_names == small.class_names and sub.source == small.source
    assert sub.masks is not None and sub.masks[0].shape == (4, 8)
    np.testing.assert_array_equal(sub.images[1], small.images[0])
    assert len(subset(small, [])) == 0
    assert subset(small, np.array([1], dtype=np.int32)).files == ("b.png",)
    with pytest.raises(
        LeafattackError, match=r"subset index 3 out of range .*3 signs \(expected 0\.\.2\)"
    ):
        subset(small, [0, 3])
    with pytest.raises(LeafattackError, match=r"index -1 out of range"):
        subset(small, [-1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2), max_size=6), st.lists(st.integers(0, 5), max_size=6))
def test_subset_composes(a: list[int], b: list[int]) -> None:
    base = SignSet(
        images=tuple(coord_image(3, 3, blue=i) for i in range(3)),
        labels=np.array([0, 1, 1], dtype=np.int64),
        class_names=("p", "q"),
        files=("0", "1", "2"),
    )
    b = [i for i in b if i < len(a)]
    twice = subset(subset(base, a), b)
    once = subset(base, [a[i] for i in b])
    assert fingerprint(twice) == fingerprint(once)
    assert twice.files == once.files


def test_fingerprint_stable_and_sensitive(small: SignSet) -> None:
    fp = fingerprint(small)
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert fingerprint(subset(small, [0, 1, 2])) == fp
    assert fingerprint(replace(small, source="elsewhere")) == fp
    copy = replace(small, images=tuple(im.copy() for im in small.images))
    assert fingerprint(copy) == fp

    pixel = small.images[1].copy()
    pixel[2, 3, 1] ^= 1  # one channel of one pixel
    changed = [
        replace(small, images=(small.images[0], pixel, small.images[2])),
        replace(small, labels=np.array([0, 1, 1], dtype=np.int64)),
        replace(small, files=("a.png", "b.png", "d.png")),
        replace(small, class_names=("x", "z")),
        replace(small, masks=None),
        subset(small, [1, 0, 2]),
    ]
    assert small.masks is not None
    mask = small.masks[2].copy()
    mask[0, 0] = False
    changed.append(replace(small, masks=(small.masks[0], small.masks[1], mask)))
    fps = [fingerprint(s) for s in changed]
    assert fp not in fps and len(set(fps)) == len(fps)
    # the same bytes in a different shape are different data
    flat = small.images[2].reshape(8, 4, 3)
    assert fingerprint(replace(small, images=(*small.images[:2], flat), masks=None)) != fingerprint(
        replace(small, masks=None)
    )
