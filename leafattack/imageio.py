"""Safe image reading and writing.

All images enter leafattack through :func:`read_rgb` or :func:`read_rgba`. They
check the header before decoding (so a 100-megapixel file is refused or
downscaled without being decoded in full), convert grayscale, palette, CMYK and
16-bit images to 8-bit RGB(A), and turn every decoding failure into a one-line
:class:`~leafattack.errors.LeafattackError` that names the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from leafattack.errors import LeafattackError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff")
"""File suffixes that the folder loaders pick up (compared case-insensitively)."""

MAX_PIXELS: int = 40_000_000
"""Images with more pixels than this are downscaled while decoding (JPEG) or refused."""

# Pillow's own decompression-bomb guard is replaced by the explicit checks below.
Image.MAX_IMAGE_PIXELS = None


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale an integer or float array to uint8, keeping the relative range."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
        return (arr.astype(np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
    if arr.dtype.kind == "f":
        scale = 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 1.0
        return np.nan_to_num(arr * scale).round().clip(0, 255).astype(np.uint8)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    return arr.clip(0, 255).astype(np.uint8)


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.exists():
        raise LeafattackError(f"{path}: file not found (expected an image file)")
    if not path.is_file():
        raise LeafattackError(f"{path}: not a regular file (expected an image file)")
    if path.stat().st_size == 0:
        raise LeafattackError(f"{path}: empty file (expected a PNG, JPEG or PPM image)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise LeafattackError(
            f"{path}: not a readable image ({type(exc).__name__}; expected PNG, JPEG or PPM)"
        ) from None
    w, h = img.size
    if w < 1 or h < 1:
        raise LeafattackError(f"{path}: image has size {w}x{h} (expected at least 1x1)")
    if w * h > max_pixels:
        if img.format == "JPEG":
            # Let the JPEG decoder downscale by a power of two while decoding.
            factor = 1
            while (w // factor) * (h // factor) > max_pixels and factor < 8:
                factor *= 2
            img.draft(img.mode, (w // factor, h // factor))
            if img.size[0] * img.size[1] > max_pixels:
                raise LeafattackError(
                    f"{path}: image is {w}x{h} pixels, too large "
                    f"(expected at most {max_pixels} pixels)"
                )
        else:
            raise LeafattackError(
                f"{path}: image is {w}x{h} pixels, too large (expected at most {max_pixels} pixels)"
            )
    return img


def _decode(path: Path, img: Image.Image) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise LeafattackError(
            f"{path}: corrupt or truncated image ({type(exc).__name__}: {exc})"
        ) from None
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        arr = _to_uint8(arr.astype(np.int64).clip(0, 65535).astype(np.uint16))
        return np.stack([arr] * 3, axis=-1)
    if mode == "F":
        return np.stack([_to_uint8(np.asarray(img, dtype=np.float32))] * 3, axis=-1)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        return np.asarray(img.convert("RGBA"))
    return np.asarray(img.convert("RGB"))


def read_any(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image as uint8, keeping an alpha channel when the file has one.

    Returns:
        uint8 array of shape (H, W, 3) RGB, or (H, W, 4) RGBA when the file has alpha.
    """
    p = Path(path)
    img = _open(p, max_pixels)
    with img:
        arr = _decode(p, img)
    return np.ascontiguousarray(arr)


def read_rgb(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image as RGB, compositing any alpha channel over black.

    Returns:
        uint8 array of shape (H, W, 3), values 0..255.

    Raises:
        LeafattackError: missing, empty, corrupt or oversized file.
    """
    arr = read_any(path, max_pixels=max_pixels)
    if arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        arr = (arr[..., :3].astype(np.float32) * alpha).round().astype(np.uint8)
    return arr


def read_rgba(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image that must carry an alpha channel (a segmented leaf).

    Returns:
        uint8 array of shape (H, W, 4): RGB plus alpha, 0 = transparent, 255 = opaque.

    Raises:
        LeafattackError: the file has no alpha channel, or is unreadable.
    """
    arr = read_any(path, max_pixels=max_pixels)
    if arr.shape[2] != 4:
        raise LeafattackError(
            f"{path}: image has no alpha channel (expected an RGBA PNG with the leaf's mask)"
        )
    return arr


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a uint8 (H, W), (H, W, 3) RGB or (H, W, 4) RGBA array as a PNG.

    The bytes are deterministic for a given array.
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise ValueError(f"write_png expects uint8 or bool, got {arr.dtype}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(p, format="PNG", optimize=False, compress_level=6)
