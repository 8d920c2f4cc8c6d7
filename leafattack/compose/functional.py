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

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from leafattack.compose.appearance import Appearance, cast_shadow, match_layers
from leafattack.compose.bank import (
    DISTANCE_PAD,
    DISTANCE_SCALE,
    LeafBank,
    Placement,
    SignStack,
    build_leaf_bank,
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
    appearance: Appearance | None = None,
    noise: torch.Tensor | None = None,
    *,
    recolour: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
    | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste one leaf onto each sign of a batch.

    Args:
        signs: float32 (N, 3, H, W) in [0, 1], or uint8 in 0..255.
        sign_masks: bool (N, H, W), True on the sign face.
        bank: the leaf bank; ``entry`` int64 (N,) picks ``variant * n_sizes + size_index``.
        x, y: float32 (N,) leaf centres as fractions; angle: float32 (N,) degrees CCW.
        appearance: optional photo conditions, one entry per trial: the leaf layer goes
            through :func:`~leafattack.compose.appearance.match_layers` (and casts its
            shadow) before it is composited.
        noise: optional float32 (N, 3, Hn, Wn) standard-normal fields for the matched
            sensor noise (see ``match_layers``).
        recolour: optional hook ``(layer, under, rows, slot) -> rgb`` replacing the warped
            leaf's premultiplied colour while keeping its alpha (the neutral-occluder
            controls of :mod:`leafattack.compose.controls`); ``layer`` float32 (N, 4, H, W),
            ``under`` the signs, ``rows`` ``arange(N)``, ``slot`` 0. It applies before
            appearance matching (a cut-out on a photo is as blurred as a leaf would be).

    Returns:
        ``(images, occluded_frac, alpha)``: float32 (N, 3, H, W) composites in [0, 1],
        float32 (N,) alpha-weighted fraction of each sign mask covered by the leaf, and the
        leaf's float32 (N, H, W) alpha in the sign frame (as placed, before matching).
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
    if recolour is not None:
        rgb = recolour(layer, signs, torch.arange(n, device=signs.device), 0)
        layer = torch.cat([rgb, layer[:, 3:]], dim=1)
    if appearance is not None:
        signs = cast_shadow(signs.float(), layer, appearance)
        layer = match_layers(layer, appearance, noise=noise)
    images = signs * (1.0 - layer[:, 3:4]) + layer[:, :3]
    images = images.clamp_(0.0, 1.0)
    m = sign_masks.float()
    area = m.sum(dim=(1, 2)).clamp_min(1.0)
    occluded = (alpha * m).sum(dim=(1, 2)) / area
    return images, occluded, alpha


@functools.lru_cache(maxsize=64)
def _block_base(ky: int, kx: int, f: int, device: str) -> torch.Tensor:
    """Homogeneous pixel centres ``(u, v, 1)`` of a window of ky x kx blocks of f x f
    pixels, in the blocks' own layout: float32 (ky*kx*f*f, 3), row ``(a*kx + b)*f*f +
    dy*f + dx`` for window pixel (row ``a*f + dy``, column ``b*f + dx``), whose centre is
    ``(b*f + dx + 0.5, a*f + dy + 0.5)`` in window pixels. Cached: a run has few shapes."""
    rows = torch.arange(ky * f, dtype=torch.float32) + 0.5
    cols = torch.arange(kx * f, dtype=torch.float32) + 0.5
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    base = torch.stack([u, v, torch.ones_like(u)], -1)  # (ky*f, kx*f, 3)
    base = base.view(ky, f, kx, f, 3).permute(0, 2, 1, 3, 4).reshape(-1, 3)
    return base.contiguous().to(device)


@functools.lru_cache(maxsize=64)
def _block_centres(ky: int, kx: int, f: int, device: str) -> torch.Tensor:
    """Homogeneous centres ``(u, v, 1)`` of a window's ky x kx blocks of f x f pixels, in
    window pixels, row-major: float32 (ky*kx, 3). Cached: a run has few shapes."""
    scale = torch.tensor([float(f), float(f), 1.0])
    return (_block_base(ky, kx, 1, "cpu") * scale).to(device)


def _window_theta(
    bank: LeafBank,
    shift: torch.Tensor,
    angle: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
) -> torch.Tensor:
    """float32 (N, 3, 2) maps ``(u, v, 1) @ theta`` from window pixel centres to
    ``grid_sample`` coordinates of the leaf canvas: the mapping of
    :func:`placement_theta`, for a leaf centred at window pixel ``(cx, cy)`` (edge
    convention); ``shift`` float32 (N, 2) the bank's bbox-centre offsets."""
    t = torch.deg2rad(angle.float())
    c, s = torch.cos(t), torch.sin(t)
    sc = 2.0 / bank.canvas
    # canvas x = c*(u - cx) - s*(v - cy) + shift_x, canvas y = s*(u - cx) + c*(v - cy) + shift_y
    bx = shift[:, 0] - c * cx + s * cy
    by = shift[:, 1] - s * cx - c * cy
    return torch.stack(
        [torch.stack([c, s], -1), torch.stack([-s, c], -1), torch.stack([bx, by], -1)], -2
    ).mul_(sc)


WINDOW_PIXELS_PER_CALL = 2**18
"""Window pixels (trials x window area) that one :func:`composite_pooled_window` call
works on at most. Far above that, its intermediate tensors (tens of MB) are fresh
memory every call and it runs 3-4x slower per trial (2 CPU cores, 2026-12-02)."""


def _trials_per_call(radius: float, stack: SignStack) -> int:
    """Trials per compositor call for a leaf of ``radius`` (see WINDOW_PIXELS_PER_CALL)."""
    f = stack.factor
    k = int(math.ceil((2.0 * radius + f) / f))
    hl, wl = stack.low_size
    pixels = min(k, hl) * min(k, wl) * f * f
    return max(8, WINDOW_PIXELS_PER_CALL // pixels)


def composite_pooled(
    stack: SignStack,
    bank: LeafBank,
    sign: torch.Tensor,
    entry: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    angle: torch.Tensor,
    *,
    host_entry: np.ndarray | None = None,
    host_extent: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite and average-pool by ``stack.factor``, touching only each leaf's window.

    Trials are processed in groups of one bank entry (leaf variant and size), so that each
    group's window fits its own leaf and every trial of a group samples the same leaf image
    (which is then not copied per trial; see :func:`composite_pooled_window`). A grid batch
    holds few entries, and the trials of one entry are consecutive in trial order: each run
    of equal entries is then a slice of the batch (no gathering, no scattering back), cut
    into calls of at most :data:`WINDOW_PIXELS_PER_CALL` window pixels; a batch whose
    entries alternate is grouped by entry instead.

    Returns:
        ``(low, occluded_frac)``: float32 (N, 3, H/f, W/f) in [0, 1] and float32 (N,).
    """
    if host_entry is None or host_extent is None:  # groups found on the device (a sync)
        host_entry = entry.cpu().numpy()
        host_extent = bank.extent.cpu().numpy()
    n = sign.shape[0]
    cuts = (np.flatnonzero(np.diff(host_entry)) + 1).tolist()
    groups = np.unique(host_entry)
    hl, wl = stack.low_size
    if len(cuts) + 1 <= 2 * len(groups):  # runs of equal entries: slices
        low_hwc = torch.empty((n, hl, wl, 3), device=stack.low.device)  # filled call by call
        occ = torch.empty(n, device=stack.low.device)
        for a, b in zip([0, *cuts], [*cuts, n], strict=True):
            radius = float(host_extent[host_entry[a]]) + 1.0
            step = _trials_per_call(radius, stack)
            for c in range(a, b, step):
                d = min(b, c + step)
                composite_pooled_window(
                    stack, bank, sign[c:d], entry[c:d], x[c:d], y[c:d], angle[c:d],
                    one_entry=True, radius=radius, out=(low_hwc[c:d], occ[c:d]),
                )
        return low_hwc.permute(0, 3, 1, 2), occ
    low = torch.empty((n, 3, hl, wl), device=stack.low.device)
    occ = torch.empty(n, device=stack.low.device)
    for g in groups:
        sel = torch.from_numpy(np.flatnonzero(host_entry == g)).to(stack.low.device)
        low[sel], occ[sel] = composite_pooled_window(
            stack, bank, sign[sel], entry[sel], x[sel], y[sel], angle[sel], one_entry=True,
            radius=float(host_extent[g]) + 1.0,
        )
    return low, occ


def reachable_blocks(
    bank: LeafBank, entry: torch.Tensor, theta: torch.Tensor, ky: int, kx: int, f: int
) -> torch.Tensor | None:
    """Which blocks of each trial's window the leaf can reach: a block left out is one where
    every bilinear sample of the leaf is exactly zero.

    A sample is non-zero only within sqrt(2) of a canvas pixel centre where the leaf is
    not transparent, and a block's pixels lie within sqrt(2) * (f - 1) / 2 of its centre;
    the warp is a rotation and a shift (distances are kept), and the distance map is read
    at the pixel nearest the block centre's image (at most sqrt(2) / 2 away). So a block
    whose centre maps to a distance of at least sqrt(2) * (f + 2) / 2 (plus a quarter pixel
    for rounding) is left out.

    Args:
        entry: int64 (N,) bank entries, or (1,) one entry for all trials.
        theta: float32 (N, 3, 2) from window pixel ``(u, v, 1)`` to ``grid_sample``
            coordinates (see :func:`_window_theta`).
        ky, kx: window side in blocks of ``f`` pixels.

    Returns:
        bool (N, ky*kx), blocks in window order (row-major), or None when the pooling
        factor is too large for :attr:`LeafBank.distance` to tell (every block counts).
    """
    reach = math.sqrt(2.0) * (f + 2) / 2.0 + 0.25  # pixels; the map's cap (255) lies beyond
    if reach >= DISTANCE_PAD:
        return None
    n = theta.shape[0]
    c = bank.canvas
    side = c + 2 * DISTANCE_PAD
    centres = _block_centres(ky, kx, f, str(theta.device))
    g = (centres @ theta.permute(1, 0, 2).reshape(3, 2 * n)).view(-1, n, 2)
    # canvas pixel holding the point (edge convention: pixel i spans [i, i + 1)), padded
    pix = torch.floor((g + 1.0) * (c / 2.0)).long() + DISTANCE_PAD
    inside = ((pix >= 0) & (pix < side)).all(-1)  # (ky*kx, N)
    pix.clamp_(0, side - 1)
    flat = pix[..., 1] * side + pix[..., 0]
    maps = bank.distance.view(bank.distance.shape[0], -1)
    near = maps[entry].gather(1, flat.t()) if entry.shape[0] == n else maps[entry[0]][flat.t()]
    return inside.t() & (near < reach * DISTANCE_SCALE)


def _reachable_first(reach: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Each row's reachable blocks (in order), then its unreachable ones, cut to the
    largest reachable count ``nb`` (at least 1): int64 (N, nb) block indices, all
    distinct within a row, and ``nb``. (A stable argsort of ``~reach`` does the same,
    about 3x slower on a CPU.)"""
    n, p = reach.shape
    r = reach.to(torch.int64)
    count = r.sum(1, keepdim=True)
    rank = torch.where(reach, r.cumsum(1) - 1, count + (1 - r).cumsum(1) - 1)
    nb = max(1, int(count.max()))
    order = torch.empty_like(rank).scatter_(
        1, rank, torch.arange(p, device=reach.device).expand(n, p)
    )
    return order[:, :nb], nb


def composite_pooled_window(
    stack: SignStack,
    bank: LeafBank,
    sign: torch.Tensor,
    entry: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    angle: torch.Tensor,
    *,
    one_entry: bool = False,
    radius: float | None = None,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite and average-pool by ``stack.factor`` in one go, touching only the leaf's window.

    Equal (up to float rounding) to ``avg_pool2d(composite(...)[0], factor)``: pooling is
    linear, so the pooled composite is the pooled clean sign plus the pooled change inside a
    window around the leaf, aligned to the pooling blocks. Only that window is warped, which
    makes small leaves cheap; on a CPU, only the window's blocks the rotated leaf can reach
    (:func:`reachable_blocks`, about half of them for the shipped leaves) are sampled. On a
    GPU every block of the window is sampled: counting the reachable ones would cost a
    host sync per call.

    Args:
        stack: the run's signs; ``sign`` int64 (N,) indexes it.
        bank, entry, x, y, angle: as in :func:`composite`.
        one_entry: every ``entry`` is the same (its leaf image is then shared, not copied).
        radius: the largest leaf extent of the entries plus one pixel, when the caller
            knows it (no device-to-host sync); else read from ``bank.extent``.
        out: optional ``(low, occluded)`` buffers, float32 (N, H/f, W/f, 3) (contiguous,
            channels last) and (N,), written instead of new tensors.

    Returns:
        ``(low, occluded_frac)``: float32 (N, 3, H/f, W/f) in [0, 1] (a channels-last view)
        and float32 (N,).
    """
    f = stack.factor
    hl, wl = stack.low_size
    h, w = hl * f, wl * f
    dev = stack.low.device
    n = sign.shape[0]
    first = entry[:1]
    if radius is None:
        radius = float((bank.extent[first] if one_entry else bank.extent[entry]).max()) + 1.0
    k = int(math.ceil((2.0 * radius + f) / f))  # window side in blocks
    ky, kx = min(k, hl), min(k, wl)  # a leaf larger than the image: the whole image
    cx, cy = x.float() * w, y.float() * h
    # The window starts at the block holding the leaf's top-left extent, moved to lie inside
    # the image: it still holds every on-image pixel the leaf can touch.
    oy_b = torch.floor((cy - radius) / f).long().clamp_(0, hl - ky)
    ox_b = torch.floor((cx - radius) / f).long().clamp_(0, wl - kx)
    shift = bank.shift[first].expand(n, 2) if one_entry else bank.shift[entry]
    theta = _window_theta(bank, shift, angle, cx - (ox_b * f).float(), cy - (oy_b * f).float())
    reach = None if dev.type != "cpu" else reachable_blocks(
        bank, first if one_entry else entry, theta, ky, kx, f
    )
    if reach is None:  # every block of the window, in window order
        nb = ky * kx
        a_blk = torch.arange(ky, device=dev).repeat_interleave(kx).expand(n, nb)
        b_blk = torch.arange(kx, device=dev).repeat(ky).expand(n, nb)
    else:
        # The reachable blocks first (each trial's in window order), then unreachable ones
        # to fill every trial up to the largest count: those sample exactly zero.
        pick, nb = _reachable_first(reach)
        a_blk, b_blk = pick // kx, pick % kx
    cell = (oy_b[:, None] + a_blk) * wl + (ox_b[:, None] + b_blk)  # (N, nb) blocks of the sign
    rows_idx = (sign[:, None] * (hl * wl) + cell).reshape(-1)
    # Everything is computed in the blocks' own layout, (N, nb, [C,] f*f): block j of the
    # trial's list, then pixel (dy, dx) inside it. The sign's blocks are then gathered with
    # no reordering copy, and pooling is a sum over the last axis.
    sign_blk = stack.blocks.index_select(0, rows_idx).view(n, nb, 3, f * f)  # 0..255
    mask_blk = stack.mask_blocks.index_select(0, rows_idx).view(n, nb, f * f)
    # The affine map of window pixel (b*f + dx + 0.5, a*f + dy + 0.5) is the map of the pixel
    # inside its block, (dx + 0.5, dy + 0.5, 1) @ theta, plus (b*f, a*f) @ theta[:2]. One
    # batched product does both: (b*f, a*f, 1) @ [theta[:2] for every pixel; pixel terms].
    inner = _block_base(1, 1, f, str(dev))
    g_in = (inner @ theta.permute(1, 0, 2).reshape(3, 2 * n)).view(f * f, n, 2)
    per_pixel = torch.cat(
        [theta[:, :2].repeat(1, 1, f * f), g_in.permute(1, 0, 2).reshape(n, 1, 2 * f * f)], 1
    )  # (N, 3, f*f*2)
    corner = torch.stack([b_blk * f, a_blk * f, torch.ones_like(a_blk)], -1).float()
    grid = torch.bmm(corner, per_pixel).view(n, nb, f * f, 2)
    leaf = bank.images[first].expand(n, -1, -1, -1) if one_entry else bank.images[entry]
    layer = F.grid_sample(leaf, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = layer[:, 3]  # (N, nb, f*f)
    # Pooled change per block: (sum of the leaf's premultiplied colour - sum of sign * alpha
    # / 255) / f^2, both sums over the block's f*f pixels.
    # A batched matrix-vector product per block is about 4x faster than a broadcast product
    # over the permuted colour view, then a sum.
    rows = n * nb
    leaf_sum = layer[:, :3].sum(dim=3).transpose(1, 2)  # (N, nb, 3)
    under_sum = torch.bmm(sign_blk.float().view(rows, 3, f * f), alpha.reshape(rows, f * f, 1))
    delta_low = torch.add(leaf_sum, under_sum.view(n, nb, 3), alpha=-1.0 / 255.0)
    delta_low = delta_low.div_(f * f)
    if out is None:
        low = stack.low.index_select(0, sign)  # (N, h/f, w/f, 3), a copy
        occ = torch.empty(n, device=dev)
    else:
        low, occ = out
        torch.index_select(stack.low, 0, sign, out=low)
    # The blocks of a trial's list are distinct pixels of ``low``.
    flat = (torch.arange(n, device=dev)[:, None] * (hl * wl) + cell).reshape(-1)
    low.view(-1, 3).index_add_(0, flat, delta_low.reshape(-1, 3))
    covered = (alpha * mask_blk.float()).sum(dim=(1, 2))
    torch.div(covered, stack.area[sign], out=occ)
    return low.clamp_(0.0, 1.0).permute(0, 3, 1, 2), occ


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
