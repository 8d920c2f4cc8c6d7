"""Corrupt and unusual image files: each is converted to 8-bit RGB(A) with the right pixels,
or refused with a one-line error naming the file. A 10,000 x 10,000 image never costs a full
decode: a PNG is refused from its header, a JPEG is downscaled while decoding (peak memory is
measured in a subprocess)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from rel_support import ROOT, assert_one_error_line, child_env, run_args

from leafattack.cli import main
from leafattack.data.sources import load_signs
from leafattack.errors import LeafattackError
from leafattack.imageio import MAX_PIXELS, read_any, read_rgb, read_rgba
from leafattack.leaves.library import load_leaves

RNG = np.random.default_rng(3)
PICTURE = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def _write(path: Path, image: np.ndarray, **kw: object) -> Path:
    Image.fromarray(image).save(path, **kw)
    return path


def _refused(path: Path, *needles: str) -> LeafattackError:
    with pytest.raises(LeafattackError) as info:
        read_rgb(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for needle in needles:
        assert needle in message
    return info.value


# ----------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".ppm"])
@pytest.mark.parametrize("keep", [0.0, 0.02, 0.3, 0.7, 0.97, -1])
def test_truncated_file_is_refused_or_exact(tmp_path: Path, suffix: str, keep: float) -> None:
    full = _write(tmp_path / f"full{suffix}", PICTURE, **({"quality": 95} if suffix == ".jpg"
                                                          else {}))
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) - 1 if keep == -1 else int(len(data) * keep)])
    try:
        got = read_rgb(cut)
    except LeafattackError as exc:
        assert str(cut) in str(exc) and "\n" not in str(exc)
        assert keep != 0.0 or "empty file" in str(exc)
        return
    # Only the last byte (a trailer a decoder may not need) can be missing without harm,
    # and then the pixels must be the complete image's.
    assert keep == -1
    np.testing.assert_array_equal(got, read_rgb(full))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suffix=st.sampled_from([".png", ".jpg", ".ppm"]), at=st.integers(0, 10**6),
       value=st.integers(0, 255), count=st.integers(1, 4))
def test_damaged_bytes_give_an_image_or_a_one_line_error(
    tmp_path_factory: pytest.TempPathFactory, suffix: str, at: int, value: int, count: int
) -> None:
    folder = tmp_path_factory.getbasetemp() / "damaged"
    folder.mkdir(exist_ok=True)
    data = bytearray(_write(folder / f"ok{suffix}", PICTURE).read_bytes())
    for k in range(count):
        data[(at + 7919 * k) % len(data)] = value
    path = folder / f"bad{suffix}"
    path.write_bytes(bytes(data))
    try:
        got = read_rgb(path)
    except LeafattackError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3
    assert 1 <= got.shape[0] * got.shape[1] <= MAX_PIXELS


# ----------------------------------------------------------------------------- odd formats


def test_zero_byte_file(tmp_path: Path) -> None:
    for suffix in (".png", ".jpg", ".ppm"):
        empty = tmp_path / f"empty{suffix}"
        empty.write_bytes(b"")
        _refused(empty, "empty file")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".ppm", ".bmp"])
def test_one_pixel_images(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"dot{suffix}", np.array([[[200, 10, 30]]], np.uint8))
    got = read_rgb(path)
    assert got.shape == (1, 1, 3) and got.dtype == np.uint8
    tol = 12 if suffix == ".jpg" else 0
    assert np.abs(got[0, 0].astype(int) - [200, 10, 30]).max() <= tol


def test_sixteen_bit_png_gray_rgb_rgba(tmp_path: Path) -> None:
    gray = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1361)
    cv2.imwrite(str(tmp_path / "g16.png"), gray)
    got = read_rgb(tmp_path / "g16.png")
    expected = np.round(gray / 257.0).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], expected)
    rgb = np.stack([gray, 65535 - gray, np.full_like(gray, 257 * 77)], axis=-1)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])  # OpenCV writes BGR
    got = read_rgb(tmp_path / "c16.png")
    assert np.abs(got.astype(int) - np.round(rgb / 257.0)).max() <= 1
    rgba = np.concatenate([rgb, np.full_like(gray, 65535)[..., None]], axis=-1)
    cv2.imwrite(str(tmp_path / "a16.png"), rgba[..., [2, 1, 0, 3]])
    leaf = read_rgba(tmp_path / "a16.png")
    assert leaf.shape == (6, 8, 4) and (leaf[..., 3] == 255).all()
    assert np.abs(leaf[..., :3].astype(int) - np.round(rgb / 257.0)).max() <= 1


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".pgm"])
def test_grayscale_becomes_three_equal_channels(tmp_path: Path, suffix: str) -> None:
    gray = PICTURE[..., 0]
    got = read_rgb(_write(tmp_path / f"gray{suffix}", gray))
    assert got.shape == (24, 32, 3)
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
    if suffix != ".jpg":
        np.testing.assert_array_equal(got[..., 0], gray)


def test_cmyk_jpeg_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    img = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # red
    img.paste((255, 0, 255, 0), (8, 0, 16, 8))  # green on the right half
    img.save(path, quality=95)
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    got = read_rgb(path)
    assert got.shape == (8, 16, 3)
    assert np.abs(got[4, 2].astype(int) - [255, 0, 0]).max() <= 10
    assert np.abs(got[4, 13].astype(int) - [0, 255, 0]).max() <= 10


def test_palette_and_alpha(tmp_path: Path) -> None:
    pal = Image.fromarray(PICTURE).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert read_any(tmp_path / "p.png").shape == (24, 32, 4)
    assert read_rgb(tmp_path / "p.png").shape == (24, 32, 3)
    la = Image.fromarray(np.dstack([PICTURE[..., 0], np.full((24, 32), 128, np.uint8)]), "LA")
    la.save(tmp_path / "la.png")
    rgb = read_rgb(tmp_path / "la.png")  # composited over black: half the gray
    np.testing.assert_allclose(rgb[..., 0], PICTURE[..., 0] * (128 / 255), atol=1)


# ----------------------------------------------------------------------------- huge images


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _huge_png(path: Path, side: int, honest: bool) -> Path:
    """A ``side`` x ``side`` 8-bit gray PNG. Honest: all rows, zlib-streamed (about 100 kB
    for 10,000 x 10,000); otherwise only the header claims the size."""
    comp = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0, then black pixels
    body = b"".join(comp.compress(row) for _ in range(side if honest else 2)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body)
                     + _png_chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("huge")
    files = {"png_header": _huge_png(folder / "header.png", 10_000, honest=False),
             "png": _huge_png(folder / "real.png", 10_000, honest=True)}
    # A real 10,000 x 10,000 JPEG, written by a helper process (100 MB while encoding).
    jpg = folder / "real.jpg"
    subprocess.run([sys.executable, "-c", "import sys; from PIL import Image; "
                    "Image.new('L', (10000, 10000), 128).save(sys.argv[1], quality=60)",
                    str(jpg)], check=True, timeout=300)
    files["jpg"] = jpg
    return files


_MEASURE = r"""
import json, resource, sys
from leafattack.errors import LeafattackError
from leafattack.imageio import read_rgb
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    img = read_rgb(sys.argv[1])
    out = {"shape": list(img.shape), "mean": float(img.mean())}
except LeafattackError as exc:
    out = {"error": str(exc)}
out["grew_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(out))
"""
FULL_DECODE_MB = 10_000 * 10_000 * (1 + 3) / 2**20
"""381 MiB: a full decode holds the 8-bit gray pixels and their RGB conversion at once."""


def _measure(path: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], cwd=ROOT,
                         env=child_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


@pytest.mark.parametrize("kind", ["png_header", "png"])
def test_huge_png_is_refused_before_decoding(huge: dict[str, Path], kind: str) -> None:
    got = _measure(huge[kind])
    assert str(huge[kind]) in got["error"] and "10000x10000" in got["error"]
    assert "too large" in got["error"]
    assert got["grew_mb"] < 40, got  # nothing close to a decode


def test_huge_jpeg_is_downscaled_while_decoding(huge: dict[str, Path]) -> None:
    got = _measure(huge["jpg"])
    h, w, c = got["shape"]
    assert c == 3 and h * w <= MAX_PIXELS and 10_000 % h == 0 and h == w  # 1/2, 1/4 or 1/8
    assert abs(got["mean"] - 128) <= 2
    assert got["grew_mb"] < 0.85 * FULL_DECODE_MB, got  # measured: about 170-210 MiB


def test_huge_sign_through_the_cli(
    huge: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signs = tmp_path / "signs" / "stop"
    signs.mkdir(parents=True)
    target = signs / "huge.png"
    target.write_bytes(huge["png"].read_bytes())
    code = main(run_args(tmp_path / "out", tmp_path / "signs"))
    assert_one_error_line(code, capsys.readouterr().err, str(target), "too large")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_damaged_sign_is_named_by_the_loader_and_the_cli(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "signs"
    (folder / "stop").mkdir(parents=True)
    _write(folder / "stop" / "good.png", PICTURE)
    bad = folder / "stop" / "zz_bad.png"
    data = (folder / "stop" / "good.png").read_bytes()
    bad.write_bytes({"truncated": data[:200], "empty": b"", "text": b"not an image\n"}[damage])
    with pytest.raises(LeafattackError, match="zz_bad.png"):
        load_signs(str(folder))
    code = main(run_args(tmp_path / "out", folder))
    assert_one_error_line(code, capsys.readouterr().err, str(bad))


def test_unusual_signs_are_converted_by_the_loader(tmp_path: Path) -> None:
    folder = tmp_path / "signs"
    (folder / "stop").mkdir(parents=True)
    Image.new("CMYK", (5, 4), (0, 255, 255, 0)).save(folder / "stop" / "a_cmyk.jpg")
    cv2.imwrite(str(folder / "stop" / "b_16bit.png"), np.full((3, 2), 65535, np.uint16))
    _write(folder / "stop" / "c_gray.png", PICTURE[..., 1])
    _write(folder / "stop" / "d_dot.png", np.zeros((1, 1, 3), np.uint8))
    signs = load_signs(str(folder))
    assert [im.shape for im in signs.images] == [(4, 5, 3), (3, 2, 3), (24, 32, 3), (1, 1, 3)]
    assert all(im.dtype == np.uint8 for im in signs.images)
    assert (signs.images[1] == 255).all()


@pytest.mark.parametrize("damage", ["truncated", "no_alpha", "empty_alpha"])
def test_damaged_leaf_is_named(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "leaves"
    folder.mkdir()
    rgba = np.dstack([PICTURE, np.full((24, 32), 255, np.uint8)])
    leaf = folder / "leaf.png"
    if damage == "truncated":
        _write(leaf, rgba)
        leaf.write_bytes(leaf.read_bytes()[:150])
    elif damage == "no_alpha":
        _write(leaf, PICTURE)
    else:
        rgba[..., 3] = 0
        _write(leaf, rgba)
    (folder / "manifest.csv").write_text("file,species,colour,source\nleaf.png,oak,red,x\n")
    with pytest.raises(LeafattackError, match="leaf.png") as info:
        load_leaves(folder)
    assert "\n" not in str(info.value)
