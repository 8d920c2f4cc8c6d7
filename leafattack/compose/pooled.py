"""Scenes rendered straight at the model's resolution (the search's fast path).

:func:`render_pooled` equals ``avg_pool2d(render_scenes(...)[0], f)`` (up to float
rounding): pooling is linear, so the pooled composite is the pooled clean sign plus, for
each leaf slot k, the pooled change that leaf makes inside a window around it, aligned to
the pooling blocks. The change of slot k is ``L_k - a_k * I_{k-1}``, where ``I_{k-1}`` (the
sign with the earlier leaves) is re-composited inside slot k's window only. Leaves are
warped from the continuous-size :class:`~leafattack.compose.scenes.VariantBank` atlas by
:func:`~leafattack.compose.scenes.slot_grid`, so small leaves are cheap and no full-size
image is ever made. This is the multi-leaf, continuous-size sibling of
:func:`~leafattack.compose.functional.composite_pooled`.

Coverage is the union's, ``sum_k sum(mask * a_k * prod_{j<k}(1 - a_j)) / sum(mask)``, which
telescopes to the ``1 - prod_k(1 - a_k)`` of :func:`render_scenes`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from leafattack.compose.bank import SignStack
from leafattack.compose.scenes import SceneBatch, VariantBank, slot_grid

_HALF_DIAGONAL = math.sqrt(2.0) / 2.0
"""A leaf whose longest side is L lies, at any rotation, within L * sqrt(2) / 2 of its centre."""


def render_pooled(
    stack: SignStack, bank: VariantBank, batch: SceneBatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render scenes and average-pool them by ``stack.factor`` in one go.

    Args:
        stack: the signs in pooling blocks (``batch.sign`` indexes them).
        bank: leaf variants (``batch.variant`` indexes them), built for the sign width.
        batch: N scenes with K slots (absent slots add nothing).

    Returns:
        ``(low, occluded)``: float32 (N, 3, H/f, W/f) in [0, 1], and float32 (N,) the
        alpha-weighted share of each sign mask the union of the leaves covers.

    Example:
        >>> low, occ = render_pooled(stack, bank, batch)
    """
    f = stack.factor
    hl, wl = stack.low_size
    w = wl * f
    n = batch.n_scenes
    dev = stack.low.device
    low = stack.low.index_select(0, batch.sign)  # (N, H/f, W/f, 3), a copy
    occ = torch.zeros(n, device=dev)
    pixels = batch.size * float(w)  # (N, K)
    if bank.reach is None:
        radius = pixels * _HALF_DIAGONAL + 1.0
    else:
        # The leaf's own support (tighter than its box's half-diagonal), plus the area-resized
        # level's spill (under a level pixel's diagonal) and bilinear sampling's reach (under
        # one more): 2.5 level pixels, which are at most one sign pixel, except when the
        # full-resolution leaf is drawn larger than it is.
        up = (pixels / bank.level_px[:, 0][batch.variant]).clamp_min(1.0)
        radius = pixels * bank.reach[batch.variant] + 2.5 * up
    # Window sides in blocks, rounded up to even counts (fewer groups) and at most the image.
    need = torch.ceil((2.0 * radius + f) / f).long()
    blocks = torch.minimum((need + 1) // 2 * 2, torch.tensor(min(hl, wl), device=dev))
    for slot in range(batch.slots):
        on = batch.present[:, slot]
        for k in torch.unique(blocks[on, slot]).tolist():
            sel = torch.nonzero(on & (blocks[:, slot] == k)).flatten()
            delta, cover, lr, lc = _window(stack, bank, batch, sel, slot, radius[sel, slot], k)
            low.index_put_(
                (sel[:, None, None], lr[:, :, None], lc[:, None, :]), delta, accumulate=True
            )
            occ.index_add_(0, sel, cover)
    occ /= stack.area.index_select(0, batch.sign)
    return low.permute(0, 3, 1, 2).clamp_(0.0, 1.0), occ


def _window(
    stack: SignStack,
    bank: VariantBank,
    batch: SceneBatch,
    sel: torch.Tensor,
    slot: int,
    radius: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pooled change of ``slot`` for scenes ``sel``, whose leaf fits k x k blocks.

    Returns:
        (delta float32 (M, k, k, 3), coverage float32 (M,) in mask pixels, block rows and
        columns int64 (M, k) of the window, which lies inside the image).
    """
    f = stack.factor
    hl, wl = stack.low_size
    h, w = hl * f, wl * f
    dev = stack.low.device
    m = int(sel.shape[0])
    win = k * f
    sign = batch.sign[sel]
    cx, cy = batch.x[sel, slot] * float(w), batch.y[sel, slot] * float(h)
    # The window starts at the block holding the leaf's top-left extent, shifted to lie
    # inside the image: it still holds every on-image pixel the leaf can touch.
    oy_b = torch.floor((cy - radius) / f).long().clamp(0, hl - k)
    ox_b = torch.floor((cx - radius) / f).long().clamp(0, wl - k)
    ox, oy = (ox_b * f).float(), (oy_b * f).float()
    kk = torch.arange(k, device=dev)
    lr = oy_b[:, None] + kk
    lc = ox_b[:, None] + kk
    rows_idx = ((sign[:, None, None] * hl + lr[:, :, None]) * wl + lc[:, None, :]).reshape(-1)
    atlas = bank.atlas.expand(m, -1, -1, -1)

    def grid_of(j: int) -> torch.Tensor:
        return slot_grid(
            bank, batch.variant[sel, j], batch.size[sel, j] * float(w), batch.angle[sel, j],
            batch.x[sel, j] * float(w) - ox, batch.y[sel, j] * float(h) - oy, win, win,
        )

    if slot == 0:
        # Nothing beneath but the sign: work in the sign stack's own block layout, as the
        # grid's compositor does (no reordered copy of the window, block sums by a batched
        # product); only the sampling grid is reordered into blocks.
        ff = f * f
        sign_blk = stack.blocks.index_select(0, rows_idx).view(m * k * k, 3, ff).float()
        mask_blk = stack.mask_blocks.index_select(0, rows_idx).view(m, k * k, ff).float()
        grid = grid_of(0).view(m, k, f, k, f, 2).permute(0, 1, 3, 2, 4, 5)
        top = F.grid_sample(atlas, grid.reshape(m, k * k, ff, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)
        top.mul_(batch.present[sel, 0].float()[:, None, None, None])
        alpha = top[:, 3]  # (m, k*k, f*f)
        under = torch.bmm(sign_blk, alpha.reshape(m * k * k, ff, 1)).view(m, k * k, 3)
        delta = torch.add(top[:, :3].sum(dim=3).transpose(1, 2), under, alpha=-1.0 / 255.0)
        cover = (alpha * mask_blk).sum(dim=(1, 2))
        return delta.div_(ff).reshape(m, k, k, 3), cover, lr, lc
    image = (
        stack.blocks.index_select(0, rows_idx)
        .view(m, k, k, 3, f, f)
        .permute(0, 3, 1, 4, 2, 5)
        .reshape(m, 3, win, win)
        .float()
        .div_(255.0)
    )
    mask = (
        stack.mask_blocks.index_select(0, rows_idx)
        .view(m, k, k, f, f)
        .permute(0, 1, 3, 2, 4)
        .reshape(m, win, win)
        .float()
    )

    def layer(j: int) -> torch.Tensor:
        out = F.grid_sample(atlas, grid_of(j), mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return out.mul_(batch.present[sel, j].float()[:, None, None, None])

    clear = torch.ones((m, win, win), device=dev)  # prod_{j<slot} (1 - a_j)
    for j in range(slot):
        lj = layer(j)
        image.mul_(1.0 - lj[:, 3:4]).add_(lj[:, :3])
        clear.mul_(1.0 - lj[:, 3])
    top = layer(slot)
    alpha = top[:, 3:4]
    delta = torch.addcmul(top[:, :3], image, alpha, value=-1.0)
    cover = (alpha[:, 0] * clear * mask).sum(dim=(1, 2))
    return F.avg_pool2d(delta, f).permute(0, 2, 3, 1), cover, lr, lc
