"""Square canvases for signs: pad, never squash; and where the sign face lies on them.

Photo crops (GTSRB, LISA, folders) are rarely square. Squashing a 40 x 52 crop to 128 x 128
would make a round sign oval and a leaf on it a different shape per sign, so every crop is
padded to a square first (by repeating its outermost pixels, which continues the
background without inventing an edge) and then resized. The face mask is padded with
``False``: the padding is background.

* :func:`pad_square` - one image (and optional mask) padded to a square.
* :func:`square_canvas` - pad, then resize to ``size x size``.
* :func:`face_width` - width of a face mask's bounding box, the unit of leaf size.
"""

from __future__ import annotations

import cv2
import numpy as np

from leafattack.errors import LeafattackError


def pad_square(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``image`` to a square, centred, by replicating its border pixels.

    Args:
        image: uint8 (H, W, 3).
        mask: bool (H, W) face mask, or None for the whole image.

    Returns:
        ``(image, mask)``: uint8 (L, L, 3) and bool (L, L) with ``L = max(H, W)``; the
        shorter side gets ``(L - n) // 2`` pixels before and the rest after. The mask is
        False on the padding.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise LeafattackError(
            f"sign image has dtype {image.dtype} and shape {image.shape}, expected uint8 (H, W, 3)"
        )
    h, w = image.shape[:2]
    m = np.ones((h, w), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != (h, w):
        raise LeafattackError(f"sign mask has shape {m.shape}, expected {(h, w)}")
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    bottom, right = side - h - top, side - w - left
    if top == bottom == left == right == 0:
        return image, m
    img = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REPLICATE)
    out = np.zeros((side, side), dtype=bool)
    out[top : top + h, left : left + w] = m
    return img, out


def square_canvas(
    image: np.ndarray, mask: np.ndarray | None, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pad to a square (:func:`pad_square`), then resize to ``size x size``.

    Area interpolation when shrinking, bilinear when enlarging; the mask by nearest
    neighbour.

    Returns:
        uint8 (size, size, 3) and bool (size, size).
    """
    img, m = pad_square(image, mask)
    side = img.shape[0]
    if side == size:
        return img, m
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    out = cv2.resize(img, (size, size), interpolation=interp)
    mo = cv2.resize(m.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    return out, mo


def face_width(mask: np.ndarray) -> int:
    """Width in pixels of the bounding box of a bool (H, W) face mask (W when empty).

    Leaf sizes are fractions of this width: a leaf of size 0.5 is half as long as the
    sign face is wide, whatever the source and however much background the crop holds.
    """
    cols = np.flatnonzero(np.asarray(mask, dtype=bool).any(axis=0))
    if len(cols) == 0:
        return int(mask.shape[1])
    return int(cols[-1] - cols[0] + 1)
