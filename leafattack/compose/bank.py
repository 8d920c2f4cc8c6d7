"""The leaf bank and sign stack: pre-scaled leaves and pooled signs on the device."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from leafattack.errors import LeafattackError


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one leaf goes on one sign.

    Attributes:
        x, y: leaf centre as fractions of the sign image's width and height.
        size: leaf's longest side as a fraction of the sign image width, in (0, 2].
        angle: degrees counter-clockwise.
    """

    x: float
    y: float
    size: float
    angle: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.x) and math.isfinite(self.y)):
            raise ValueError(f"Placement x, y = {self.x}, {self.y}: expected finite fractions")
        if not (math.isfinite(self.size) and 0 < self.size <= 2):
            raise ValueError(f"Placement size={self.size}: expected a fraction in (0, 2]")
        if not math.isfinite(self.angle):
            raise ValueError(f"Placement angle={self.angle}: expected finite degrees")


def leaf_pixels(size: float, width: float) -> int:
    """Longest side in pixels of a leaf of relative ``size`` on a sign ``width`` pixels wide."""
    return max(1, int(round(size * width)))


def scale_leaf(rgba: np.ndarray, longest: int) -> np.ndarray:
    """Resize a leaf so its longest side is ``longest`` pixels, premultiplying by alpha.

    Args:
        rgba: uint8 (h, w, 4) leaf.
        longest: target longest side in pixels (>= 1).

    Returns:
        float32 (h', w', 4) with premultiplied RGB and alpha, all in [0, 1].
    """
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise LeafattackError(f"leaf image has shape {rgba.shape}, expected uint8 (h, w, 4)")
    h, w = rgba.shape[:2]
    f = longest / max(h, w)
    nh, nw = max(1, int(round(h * f))), max(1, int(round(w * f)))
    img = rgba.astype(np.float32) / 255.0
    img[..., :3] *= img[..., 3:4]
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    out = cv2.resize(img, (nw, nh), interpolation=interp)
    return np.clip(out, 0.0, 1.0).reshape(nh, nw, 4)


def support_radius(alpha: np.ndarray) -> float:
    """Distance from the centre of ``alpha``'s box to the farthest corner of a pixel with
    alpha > 0 (0 for an empty leaf).

    Args:
        alpha: float (h, w) in [0, 1].
    """
    ys, xs = np.nonzero(alpha > 0)
    if not len(ys):
        return 0.0
    h, w = alpha.shape
    dx = np.abs(xs + 0.5 - w / 2.0) + 0.5
    dy = np.abs(ys + 0.5 - h / 2.0) + 0.5
    return float(np.sqrt(dx * dx + dy * dy).max())


@dataclass(frozen=True, slots=True)
class LeafBank:
    """Pre-scaled leaves, one entry per (width, leaf variant, size): entry
    ``(g * V + v) * n_sizes + s`` for width ``g`` of G (``v * n_sizes + s`` with one width).

    Attributes:
        images: float32 (V*S, 4, C, C): premultiplied RGB + alpha in [0, 1], each leaf centred
            (its bounding box centre at ``C/2 + shift``) on a transparent canvas of side C.
        shift: float32 (V*S, 2): offset in pixels (x, y) of each leaf's bbox centre from C/2.
        n_sizes: number of sizes S.
        extent: float32 (V*S,): radius in pixels of each scaled leaf's support about its
            bounding-box centre (the farthest corner of a pixel with alpha > 0; at most the
            box's half-diagonal): the leaf, at any rotation, lies within this distance of
            its centre, and its bilinear samples within this distance plus one pixel.
        distance: uint8 (V*S, C + 2p, C + 2p), p = :data:`DISTANCE_PAD`: for each pixel
            centre of the canvas padded by p on every side, its distance to the nearest
            canvas pixel where the leaf is not transparent (any channel > 0), in pixels
            times :data:`DISTANCE_SCALE`, rounded down and capped at 255 (an empty leaf:
            255 everywhere). Rounding down keeps every test "is this far from the leaf"
            conservative; the compositor uses it to skip window blocks the leaf cannot reach.
    """

    images: torch.Tensor
    shift: torch.Tensor
    n_sizes: int
    extent: torch.Tensor
    distance: torch.Tensor

    @property
    def canvas(self) -> int:
        return int(self.images.shape[-1])

    def to(self, device: torch.device | str) -> LeafBank:
        return LeafBank(
            self.images.to(device),
            self.shift.to(device),
            self.n_sizes,
            self.extent.to(device),
            self.distance.to(device),
        )


DISTANCE_PAD = 6
"""Pixels of padding around the canvas in :attr:`LeafBank.distance`: more than any
distance the compositor asks about for pooling factors up to 6 (larger factors sample
every block), so a point outside the padded map is farther than that from the leaf."""

DISTANCE_SCALE = 16
""":attr:`LeafBank.distance` holds ``floor(distance * DISTANCE_SCALE)``, capped at 255."""


def support_distance(leaf: np.ndarray) -> np.ndarray:
    """Distance map of one bank canvas (see :attr:`LeafBank.distance`).

    Args:
        leaf: float32 (4, C, C) premultiplied RGBA canvas.

    Returns:
        uint8 (C + 2p, C + 2p), p = :data:`DISTANCE_PAD`.
    """
    p = DISTANCE_PAD
    support = np.pad(leaf.max(axis=0) > 0, p)
    if not support.any():
        return np.full(support.shape, 255, dtype=np.uint8)
    # exact Euclidean distance (Felzenszwalb's algorithm) to the nearest zero: the support
    d = cv2.distanceTransform((~support).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.minimum(np.floor(d * DISTANCE_SCALE), 255).astype(np.uint8)


def build_leaf_bank(
    leaves: Sequence[np.ndarray],
    sizes: Sequence[float],
    width: float | Sequence[float],
    device: torch.device | str = "cpu",
) -> LeafBank:
    """Pre-scale every leaf to every size for signs ``width`` pixels wide.

    Args:
        leaves: uint8 (h, w, 4) RGBA leaves (tight crops).
        sizes: longest side as fractions of ``width``.
        width: pixels of a leaf of size 1, or several such widths G (signs whose faces
            differ in width); entries are width-major.
    """
    if not leaves:
        raise LeafattackError("no leaves selected (expected at least one leaf)")
    widths = [float(width)] if isinstance(width, int | float) else [float(x) for x in width]
    if not widths:
        raise LeafattackError("no sign widths given (expected at least one)")
    scaled = [scale_leaf(lf, leaf_pixels(s, wd)) for wd in widths for lf in leaves for s in sizes]
    canvas = max(max(a.shape[:2]) for a in scaled) + 2
    images = np.zeros((len(scaled), 4, canvas, canvas), dtype=np.float32)
    shift = np.zeros((len(scaled), 2), dtype=np.float32)
    extent = np.zeros(len(scaled), dtype=np.float32)
    for i, a in enumerate(scaled):
        h, w = a.shape[:2]
        oy, ox = (canvas - h) // 2, (canvas - w) // 2
        images[i, :, oy : oy + h, ox : ox + w] = a.transpose(2, 0, 1)
        shift[i] = (ox + w / 2 - canvas / 2, oy + h / 2 - canvas / 2)
        extent[i] = support_radius(a[..., 3])
    distance = np.stack([support_distance(img) for img in images])
    return LeafBank(
        torch.from_numpy(images).to(device),
        torch.from_numpy(shift).to(device),
        len(sizes),
        torch.from_numpy(extent).to(device),
        torch.from_numpy(distance).to(device),
    )


@dataclass(frozen=True, slots=True)
class SignStack:
    """Signs prepared for :func:`composite_pooled`, stored in f×f blocks.

    A window aligned to the pooling blocks is then gathered with one ``index_select`` row
    per block instead of one index per pixel.

    Attributes:
        blocks: (S * H/f * W/f, 3 * f * f) values 0..255: row ``(s * H/f + i) * W/f + j``
            holds block (i, j) of sign s, channel-major (c, dy, dx). float32 when the stack
            is small (the compositor then converts nothing per trial), else uint8.
        mask_blocks: (S * H/f * W/f, f * f) sign masks (0/1), blocked the same way, of the
            same dtype.
        low: float32 (S, H/f, W/f, 3) clean signs average-pooled by ``factor`` (channels last).
        area: float32 (S,) sign-mask pixel counts (at least 1).
        factor: pooling factor f; H and W are multiples of it.
    """

    blocks: torch.Tensor
    mask_blocks: torch.Tensor
    low: torch.Tensor
    area: torch.Tensor
    factor: int

    @property
    def low_size(self) -> tuple[int, int]:
        """(H/f, W/f)."""
        return int(self.low.shape[1]), int(self.low.shape[2])


FLOAT_STACK_BYTES = 256 * 2**20
"""Largest sign stack kept in float32 (4 bytes per pixel and channel); larger ones (many
photos) stay uint8 and are converted window by window."""


def build_sign_stack(images: torch.Tensor, masks: torch.Tensor, factor: int) -> SignStack:
    """Prepare uint8 (S, 3, H, W) signs and bool (S, H, W) masks for pooled compositing."""
    h, w = images.shape[-2:]
    if factor < 1 or h % factor or w % factor:
        raise ValueError(f"sign size {h}x{w} is not a multiple of the pooling factor {factor}")
    f = factor
    n = images.shape[0]
    low = F.avg_pool2d(images.float().div(255.0), f).permute(0, 2, 3, 1).contiguous()
    blocks = images.reshape(n, 3, h // f, f, w // f, f).permute(0, 2, 4, 1, 3, 5)
    mask_blocks = masks.to(torch.uint8).reshape(n, h // f, f, w // f, f).permute(0, 1, 3, 2, 4)
    area = masks.float().sum(dim=(1, 2)).clamp_min(1.0)
    dtype = torch.float32 if images.numel() * 4 <= FLOAT_STACK_BYTES else torch.uint8
    return SignStack(
        blocks.reshape(-1, 3 * f * f).to(dtype).contiguous(),
        mask_blocks.reshape(-1, f * f).to(dtype).contiguous(),
        low,
        area,
        f,
    )
