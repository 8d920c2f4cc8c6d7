"""The batched compositor: paste leaves onto signs with affine warps on tensors.

A batch of (sign, leaf, placement) triples becomes a batch of composites in one
``affine_grid`` + ``grid_sample`` call, on whatever device the tensors live on.

Leaves are pre-scaled once per (leaf, size) with area interpolation into a *leaf bank*, so
the per-trial warp is a rotation and a sub-pixel translation at scale 1: the alpha edge
stays anti-aliased and small leaves do not alias. Colours are premultiplied by alpha so
that bilinear sampling gives no dark fringes. Compositing happens at the sign's resolution;
the classifier resizes to its own input afterwards.

Geometry: ``x``, ``y`` are the centre of the leaf's bounding box as fractions of the sign
image's width and height (pixel-edge convention: 0 = left/top edge, 1 = right/bottom
edge), ``size`` is the leaf's longest side as a fraction of the sign width, and ``angle``
rotates the leaf counter-clockwise as seen on screen, in degrees.
"""

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


def leaf_pixels(size: float, width: int) -> int:
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


@dataclass(frozen=True, slots=True)
class LeafBank:
    """Pre-scaled leaves, one entry per (leaf variant, size): entry ``v * n_sizes + s``.

    Attributes:
        images: float32 (V*S, 4, C, C): premultiplied RGB + alpha in [0, 1], each leaf centred
            (its bounding box centre at ``C/2 + shift``) on a transparent canvas of side C.
        shift: float32 (V*S, 2): offset in pixels (x, y) of each leaf's bbox centre from C/2.
        n_sizes: number of sizes S.
        extent: float32 (V*S,): half-diagonal in pixels of each scaled leaf's bounding box; the
            leaf, at any rotation, lies within this distance of its centre.
    """

    images: torch.Tensor
    shift: torch.Tensor
    n_sizes: int
    extent: torch.Tensor

    @property
    def canvas(self) -> int:
        return int(self.images.shape[-1])

    def to(self, device: torch.device | str) -> LeafBank:
        return LeafBank(
            self.images.to(device), self.shift.to(device), self.n_sizes, self.extent.to(device)
        )


def build_leaf_bank(
    leaves: Sequence[np.ndarray],
    sizes: Sequence[float],
    width: int,
    device: torch.device | str = "cpu",
) -> LeafBank:
    """Pre-scale every leaf to every size for signs ``width`` pixels wide.

    Args:
        leaves: uint8 (h, w, 4) RGBA leaves (tight crops).
        sizes: longest side as fractions of the sign width.
        width: sign width in pixels.
    """
    if not leaves:
        raise LeafattackError("no leaves selected (expected at least one leaf)")
    scaled = [scale_leaf(lf, leaf_pixels(s, width)) for lf in leaves for s in sizes]
    canvas = max(max(a.shape[:2]) for a in scaled) + 2
    images = np.zeros((len(scaled), 4, canvas, canvas), dtype=np.float32)
    shift = np.zeros((len(scaled), 2), dtype=np.float32)
    extent = np.zeros(len(scaled), dtype=np.float32)
    for i, a in enumerate(scaled):
        h, w = a.shape[:2]
        oy, ox = (canvas - h) // 2, (canvas - w) // 2
        images[i, :, oy : oy + h, ox : ox + w] = a.transpose(2, 0, 1)
        shift[i] = (ox + w / 2 - canvas / 2, oy + h / 2 - canvas / 2)
        extent[i] = math.hypot(h, w) / 2
    return LeafBank(
        torch.from_numpy(images).to(device),
        torch.from_numpy(shift).to(device),
        len(sizes),
        torch.from_numpy(extent).to(device),
    )


def placement_theta(
    x: torch.Tensor,
    y: torch.Tensor,
    angle: torch.Tensor,
    shift: torch.Tensor,
    canvas: int,
    height: int,
    width: int,
) -> torch.Tensor:
    """Affine matrices for ``affine_grid`` mapping sign-frame to leaf-canvas coordinates.

    Args:
        x, y: float (N,) leaf centres as fractions of width/height.
        angle: float (N,) degrees counter-clockwise.
        shift: float (N, 2) leaf bbox-centre offsets on the canvas, pixels.
        canvas: leaf canvas side in pixels; height, width: sign frame in pixels.

    Returns:
        float (N, 2, 3) ``theta`` for ``F.affine_grid(..., align_corners=False)``.
    """
    t = torch.deg2rad(angle)
    c, s = torch.cos(t), torch.sin(t)
    # Inverse of the on-screen counter-clockwise rotation in y-down coordinates.
    r = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (N, 2, 2)
    half = torch.tensor([width / 2.0, height / 2.0], dtype=x.dtype, device=x.device)
    a = r * half / (canvas / 2.0)  # R @ diag(W/2, H/2) / (C/2)
    d = torch.stack([width / 2.0 - x * width, height / 2.0 - y * height], -1)  # (N, 2)
    b = (torch.einsum("nij,nj->ni", r, d) + shift) / (canvas / 2.0)
    return torch.cat([a, b.unsqueeze(-1)], dim=-1)


def composite(
    signs: torch.Tensor,
    sign_masks: torch.Tensor,
    bank: LeafBank,
    entry: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    angle: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste one leaf onto each sign of a batch.

    Args:
        signs: float32 (N, 3, H, W) in [0, 1], or uint8 in 0..255.
        sign_masks: bool (N, H, W), True on the sign face.
        bank: the leaf bank; ``entry`` int64 (N,) picks ``variant * n_sizes + size_index``.
        x, y: float32 (N,) leaf centres as fractions; angle: float32 (N,) degrees CCW.

    Returns:
        ``(images, occluded_frac, alpha)``: float32 (N, 3, H, W) composites in [0, 1],
        float32 (N,) alpha-weighted fraction of each sign mask covered by the leaf, and the
        leaf's float32 (N, H, W) alpha in the sign frame.
    """
    if signs.dtype == torch.uint8:
        signs = signs.float().div_(255.0)
    n, _, h, w = signs.shape
    theta = placement_theta(
        x.float(), y.float(), angle.float(), bank.shift[entry], bank.canvas, h, w
    )
    grid = F.affine_grid(theta, [n, 4, h, w], align_corners=False)
    layer = F.grid_sample(
        bank.images[entry], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    alpha = layer[:, 3]
    images = signs * (1.0 - alpha.unsqueeze(1)) + layer[:, :3]
    images = images.clamp_(0.0, 1.0)
    m = sign_masks.float()
    area = m.sum(dim=(1, 2)).clamp_min(1.0)
    occluded = (alpha * m).sum(dim=(1, 2)) / area
    return images, occluded, alpha


@dataclass(frozen=True, slots=True)
class SignStack:
    """Signs prepared for :func:`composite_pooled`, stored in f×f blocks.

    A window aligned to the pooling blocks is then gathered with one ``index_select`` row
    per block instead of one index per pixel.

    Attributes:
        blocks: uint8 (S * H/f * W/f, 3 * f * f): row ``(s * H/f + i) * W/f + j`` holds
            block (i, j) of sign s, channel-major (c, dy, dx).
        mask_blocks: uint8 (S * H/f * W/f, f * f) sign masks (0/1), blocked the same way.
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
    return SignStack(
        blocks.reshape(-1, 3 * f * f).contiguous(),
        mask_blocks.reshape(-1, f * f).contiguous(),
        low,
        area,
        f,
    )


_OUTSIDE = 1000.0
"""Added to the sampling coordinates of window pixels outside the sign image: the leaf
canvas spans [-1, 1], so those pixels sample nothing (the leaf is cut off at the edge)."""


def _window_grid(
    bank: LeafBank,
    entry: torch.Tensor,
    angle: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    win: int,
    inside: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """``grid_sample`` grid (N, win, win, 2) of the leaf canvas over a window.

    Same mapping as :func:`placement_theta`, built from separable row and column terms
    (cheaper than ``affine_grid``). ``cx``, ``cy``: leaf centre in window pixels (edge
    convention); ``inside``: bool (N, win) rows and columns that lie on the sign image.
    """
    t = torch.deg2rad(angle.float())
    c, s = torch.cos(t)[:, None], torch.sin(t)[:, None]
    scale = 2.0 / bank.canvas
    shift = bank.shift[entry]
    centres = torch.arange(win, device=cx.device, dtype=torch.float32)[None, :] + 0.5
    u = centres - cx[:, None]  # (N, win) x offsets of the window columns from the leaf centre
    v = centres - cy[:, None]  # (N, win) y offsets of the window rows
    row_pen = (~inside[0]).float() * _OUTSIDE
    col_pen = (~inside[1]).float() * _OUTSIDE
    grid = torch.empty((cx.shape[0], win, win, 2), device=cx.device)
    torch.add(
        ((-s * v) * scale + row_pen)[:, :, None],
        ((c * u + shift[:, 0:1]) * scale + col_pen)[:, None, :],
        out=grid[..., 0],
    )
    torch.add(
        ((c * v + shift[:, 1:2]) * scale + row_pen)[:, :, None],
        ((s * u) * scale + col_pen)[:, None, :],
        out=grid[..., 1],
    )
    return grid


def composite_pooled(
    stack: SignStack,
    bank: LeafBank,
    sign: torch.Tensor,
    entry: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    angle: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite and average-pool by ``stack.factor``, touching only each leaf's window.

    Trials are processed in groups of one leaf size, so that each group's window fits its
    own leaves (see :func:`composite_pooled_window`).

    Returns:
        ``(low, occluded_frac)``: float32 (N, 3, H/f, W/f) in [0, 1] and float32 (N,).
    """
    size_idx = entry % bank.n_sizes
    groups = torch.unique(size_idx)
    if len(groups) == 1:
        return composite_pooled_window(stack, bank, sign, entry, x, y, angle)
    hl, wl = stack.low_size
    low = torch.empty((sign.shape[0], 3, hl, wl), device=stack.low.device)
    occ = torch.empty(sign.shape[0], device=stack.low.device)
    for g in groups:
        sel = torch.nonzero(size_idx == g).flatten()
        low[sel], occ[sel] = composite_pooled_window(
            stack, bank, sign[sel], entry[sel], x[sel], y[sel], angle[sel]
        )
    return low, occ


def composite_pooled_window(
    stack: SignStack,
    bank: LeafBank,
    sign: torch.Tensor,
    entry: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    angle: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite and average-pool by ``stack.factor`` in one go, touching only the leaf's window.

    Equal (up to float rounding) to ``avg_pool2d(composite(...)[0], factor)``: pooling is
    linear, so the pooled composite is the pooled clean sign plus the pooled change inside a
    window around the leaf, aligned to the pooling blocks. Only that window is warped, which
    makes small leaves cheap.

    Args:
        stack: the run's signs; ``sign`` int64 (N,) indexes it.
        bank, entry, x, y, angle: as in :func:`composite`.

    Returns:
        ``(low, occluded_frac)``: float32 (N, 3, H/f, W/f) in [0, 1] and float32 (N,).
    """
    f = stack.factor
    hl, wl = stack.low_size
    h, w = hl * f, wl * f
    dev = stack.low.device
    n = sign.shape[0]
    radius = float(bank.extent[entry].max()) + 1.0
    k = int(math.ceil((2.0 * radius + f) / f))  # window side in blocks
    win = k * f
    cx, cy = x.float() * w, y.float() * h
    oy_b = torch.floor((cy - radius) / f).long()  # window origin in blocks
    ox_b = torch.floor((cx - radius) / f).long()
    ox, oy = ox_b * f, oy_b * f
    ar = torch.arange(win, device=dev)
    rows, cols = oy[:, None] + ar, ox[:, None] + ar  # (N, win)
    inside = ((rows >= 0) & (rows < h)), ((cols >= 0) & (cols < w))
    kk = torch.arange(k, device=dev)
    lr = (oy_b[:, None] + kk).clamp(0, hl - 1)  # (N, k) block rows, clamped into the image
    lc = (ox_b[:, None] + kk).clamp(0, wl - 1)
    rows_idx = ((sign[:, None, None] * hl + lr[:, :, None]) * wl + lc[:, None, :]).reshape(-1)
    # (N*k*k, 3*f*f) → (N, 3, win, win): block (a, b), channel c, pixel (dy, dx).
    sign_win = (
        stack.blocks.index_select(0, rows_idx)
        .view(n, k, k, 3, f, f)
        .permute(0, 3, 1, 4, 2, 5)
        .reshape(n, 3, win, win)
        .float()
        .div_(255.0)
    )
    mask_win = (
        stack.mask_blocks.index_select(0, rows_idx)
        .view(n, k, k, f, f)
        .permute(0, 1, 3, 2, 4)
        .reshape(n, win, win)
    )
    grid = _window_grid(bank, entry, angle, cx - ox.float(), cy - oy.float(), win, inside)
    layer = F.grid_sample(
        bank.images[entry], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    alpha = layer[:, 3:4]
    delta = torch.addcmul(layer[:, :3], sign_win, alpha, value=-1.0)
    delta_low = F.avg_pool2d(delta, f).permute(0, 2, 3, 1)  # (N, win/f, win/f, 3)
    out = stack.low[sign]  # (N, h/f, w/f, 3), a copy
    # Window blocks outside the image carry zeros, so clamping their indices adds nothing.
    out.index_put_(
        (torch.arange(n, device=dev)[:, None, None], lr[:, :, None], lc[:, None, :]),
        delta_low,
        accumulate=True,
    )
    occluded = (alpha[:, 0] * mask_win).sum(dim=(1, 2)) / stack.area[sign]
    return out.permute(0, 3, 1, 2).clamp_(0.0, 1.0), occluded


def paste_leaf(
    sign: np.ndarray, leaf: np.ndarray, placement: Placement, sign_mask: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Paste one leaf onto one sign (convenience wrapper over the batched compositor).

    Args:
        sign: uint8 (H, W, 3) RGB sign image.
        leaf: uint8 (h, w, 4) RGBA leaf.
        placement: where and how large.
        sign_mask: optional bool (H, W); defaults to the whole image.

    Returns:
        ``(image, occluded_frac)``: uint8 (H, W, 3) composite and the covered mask fraction.

    Example:
        >>> img, frac = paste_leaf(sign, leaf, Placement(x=0.5, y=0.5, size=0.4, angle=30))
    """
    h, w = sign.shape[:2]
    mask = np.ones((h, w), dtype=bool) if sign_mask is None else sign_mask
    bank = build_leaf_bank([leaf], [placement.size], w)
    t = torch.from_numpy(np.ascontiguousarray(sign.transpose(2, 0, 1)))[None]
    out, occ, _ = composite(
        t,
        torch.from_numpy(mask)[None],
        bank,
        torch.zeros(1, dtype=torch.long),
        torch.tensor([placement.x]),
        torch.tensor([placement.y]),
        torch.tensor([placement.angle]),
    )
    img = (out[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return img, float(occ[0])


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [0, 1] → uint8 (N, H, W, 3) numpy, rounded."""
    return images.mul(255.0).round_().clamp_(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
