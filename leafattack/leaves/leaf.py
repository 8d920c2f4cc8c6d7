"""The Leaf type: an RGBA cut-out with an id, a species and a colour."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class Leaf:
    """One leaf cut-out.

    Attributes:
        rgba: uint8 array (H, W, 4), RGB plus alpha (0 = transparent, 255 = opaque),
            cropped tight around the leaf; canonical orientation with the petiole at
            the bottom and the tip up. Stored read-only.
        leaf_id: unique name in its library, e.g. ``"maple_red_0"``; a recoloured leaf
            is ``"<base id>@<colour>"``.
        species: e.g. ``"maple"`` (a :data:`SPECIES` key for generated leaves, any
            name for photographed ones).
        colour: a free label of the leaf as shipped: a :data:`FALL_COLOURS` name for
            generated leaves, ``"natural"`` for segmented photos, or any other name
            (``"grey-of-green"``); recolouring targets remain the fall colours.
        source: ``"generated"`` or the path of the photo the leaf was cut from.
    """

    rgba: np.ndarray
    leaf_id: str
    species: str
    colour: str
    source: str = "generated"

    def __post_init__(self) -> None:
        arr = self.rgba
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"Leaf.rgba is a {type(arr).__name__}, expected a numpy array")
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 4:
            raise ValueError(
                f"Leaf.rgba has dtype {arr.dtype} and shape {arr.shape}, expected uint8 (H, W, 4)"
            )
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"Leaf.rgba has shape {arr.shape}, expected at least 1x1 pixels")
        if not arr[..., 3].any():
            raise ValueError(
                f"Leaf {self.leaf_id!r} has an empty alpha channel, expected some opaque pixels"
            )
        for name in ("leaf_id", "species", "colour"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Leaf.{name} = {value!r}, expected a non-empty string")
        if "\n" in self.colour or "\r" in self.colour:
            raise ValueError(f"Leaf.colour = {self.colour!r}, expected a one-line label")
        view = arr.view()
        view.flags.writeable = False
        object.__setattr__(self, "rgba", view)

    @property
    def alpha(self) -> np.ndarray:
        """float32 (H, W) alpha in [0, 1]."""
        return self.rgba[..., 3].astype(np.float32) / 255.0

    @property
    def base_id(self) -> str:
        """The id without any ``@colour`` suffix added by :func:`recolour`."""
        return self.leaf_id.split("@", 1)[0]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a bool (H, W) mask: every False region not connected to the border."""
    padded = np.pad(mask, 1).astype(np.uint8)
    flood = padded.copy()
    ff_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 1)
    return np.asarray((padded.astype(bool) | (flood == 0))[1:-1, 1:-1])


def bleed_colours(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Copy each pixel's nearest in-mask colour to the pixels outside the mask.

    Keeps edges clean when a non-premultiplied RGBA leaf is resized or rotated.

    Shape:
        rgb: uint8 (H, W, 3); mask: bool (H, W) with at least one True. Returns uint8 (H, W, 3).
    """
    if mask.all() or not mask.any():
        return rgb.copy()
    _, labels = cv2.distanceTransformWithLabels(
        (~mask).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    ys, xs = np.nonzero(mask)
    # labels of zero pixels (inside the mask) are numbered in row-major scan order
    lut = np.zeros((int(labels.max()) + 1, 3), np.uint8)
    lut[labels[ys, xs]] = rgb[ys, xs]
    out = lut[labels]
    out[mask] = rgb[mask]
    return np.asarray(out)


def crop_to_alpha(rgba: np.ndarray, pad: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Crop an RGBA image to the bounding box of its non-zero alpha (plus ``pad`` pixels).

    Returns:
        The cropped uint8 (h, w, 4) copy and the box ``(top, left, bottom, right)``
        (exclusive bottom/right) in the input's pixel coordinates.
    """
    ys, xs = np.nonzero(rgba[..., 3])
    if len(ys) == 0:
        raise ValueError("crop_to_alpha: alpha is empty, expected some opaque pixels")
    top, left = max(0, int(ys.min()) - pad), max(0, int(xs.min()) - pad)
    bottom = min(rgba.shape[0], int(ys.max()) + 1 + pad)
    right = min(rgba.shape[1], int(xs.max()) + 1 + pad)
    return rgba[top:bottom, left:right].copy(), (top, left, bottom, right)


def composite(rgba: np.ndarray, background: np.ndarray | Sequence[int]) -> np.ndarray:
    """Alpha-composite a uint8 (H, W, 4) image over a colour or a uint8 (H, W, 3) image."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    bg = np.broadcast_to(np.asarray(background, np.float32), rgba[..., :3].shape)
    out = rgba[..., :3].astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def fit_into(image: np.ndarray, side: int) -> np.ndarray:
    """Scale an image (any channels, uint8) so that its longer side is ``side`` pixels."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    new = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, new, interpolation=interp))
