"""Scenes: one sign and up to K leaves, rendered for a whole batch at once.

A :class:`SceneBatch` says which sign each scene uses and, per leaf *slot*, which leaf
variant goes where, how large and at what angle; scenes with fewer leaves mark the unused
slots absent. :func:`render_scenes` pastes the leaves slot by slot (later slots over
earlier ones, "over" blending with premultiplied alpha), one batched ``grid_sample`` per
slot, and reports how much of each sign mask all the leaves together cover.

Geometry is that of :mod:`leafattack.compose.functional`: ``x``, ``y`` are the centre of
the leaf's bounding box as fractions of the sign width and height (0 = left/top edge, 1 =
right/bottom edge; values outside [0, 1] hang the leaf over the edge, where it is cut
off), ``size`` is the leaf's longest side as a fraction of the sign width, and ``angle``
rotates the leaf counter-clockwise on screen, in degrees.

Continuous sizes (:class:`VariantBank`): any ``size`` in (0, 2] renders at exactly
``size * W`` pixels, not rounded to whole pixels and not limited to a list of banked sizes.
Each leaf variant is stored as a small pyramid ("mipmaps") of area-downscaled copies whose
longest sides are spaced ``levels_per_octave`` per factor of two, anchored so that sizes
``2 * 2**(-j / levels_per_octave)`` (2, 1.41, 1, 0.71, 0.5, ... with the default 2) are
levels exactly, plus the full-resolution leaf. A leaf of any size is drawn from the
smallest level at least as large as it; the remaining reduction, at most
``2**(1 / levels_per_octave)`` (1.41 with the default), goes into the affine warp, whose
bilinear sampling from a slightly larger, area-filtered image keeps the alpha edge
anti-aliased. Leaves larger than the full-resolution image are enlarged bilinearly by the
warp. All levels of all variants are packed into one texture atlas, so a slot needs no
per-scene gather of leaf images: the grid of each scene is clamped to its own tile, whose
two-pixel transparent border keeps neighbouring tiles out.

Accuracy (``tests/test_scenes.py``: shipped leaves on built-in 128-pixel signs, one to four
leaves of sizes between levels, many hanging over the edge, against an independent OpenCV
reference that area-resizes each leaf to the exact size and then warps it with
``cv2.warpAffine``): per image, mean absolute error at most 0.0054 and 99th percentile at
most 0.042 (values in [0, 1]), the differences lying on the leaves' anti-aliased rims and
fine texture; coverage within 2e-4. A size that is a level reproduces the reference to
1.5e-4 (``warpAffine``'s fixed-point weights). Against a supersampled rendering (8x
bilinear warp of the full-resolution leaf, then area-reduced), this renderer is closer than
both that reference and :func:`~leafattack.compose.functional.composite`: the two-stage
resize-then-warp blurs a little more than one warp from a slightly larger level. With one
leaf at a leaf-bank size it matches ``composite`` to a mean absolute error of 2e-4 (up to
half a pixel at the rim, because ``composite`` rounds the leaf's sides to whole pixels).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from leafattack.compose.appearance import Appearance, cast_shadow, match_layers
from leafattack.compose.bank import support_radius
from leafattack.errors import LeafattackError

MAX_SLOTS: int = 16
"""Most leaf slots a :class:`SceneBatch` may have."""

MAX_SIZE: float = 2.0
"""Largest leaf size (longest side as a fraction of the sign width)."""

TILE_BORDER: int = 2
"""Transparent pixels around every tile of a :class:`VariantBank` atlas."""

_Tile = tuple[np.ndarray, tuple[float, float], float]
"""One level while building: float32 (h, w, 4) image, leaf centre in the tile, longest side."""


@dataclass(frozen=True, slots=True)
class SceneBatch:
    """N scenes of one sign and up to K leaves each, as a struct of arrays.

    Slot ``k`` of scene ``n`` is one leaf: ``variant[n, k]`` indexes the
    :class:`VariantBank`, and it goes ``size[n, k]`` wide at ``(x[n, k], y[n, k])``,
    rotated ``angle[n, k]`` degrees counter-clockwise. Slots where ``present`` is False are
    ignored (their values must still be finite); a scene with no present slot renders as its
    clean sign. Leaves stack in slot order, later slots over earlier ones.

    Attributes:
        sign: int64 (N,) index of each scene's sign, >= 0.
        variant: int64 (N, K) leaf variant per slot, >= 0 where present.
        size: float32 (N, K) longest side as a fraction of the sign width, in (0, 2] where
            present.
        angle: float32 (N, K) degrees counter-clockwise, finite.
        x, y: float32 (N, K) leaf-centre fractions of the sign width and height, finite.
        present: bool (N, K) which slots hold a leaf.

    Example:
        >>> b = SceneBatch(
        ...     sign=torch.tensor([0]), variant=torch.tensor([[0, 2]]),
        ...     size=torch.tensor([[0.3, 0.5]]), angle=torch.tensor([[0.0, 45.0]]),
        ...     x=torch.tensor([[0.4, 0.6]]), y=torch.tensor([[0.5, 0.5]]),
        ...     present=torch.tensor([[True, True]]))
        >>> (b.n_scenes, b.slots)
        (1, 2)
    """

    sign: torch.Tensor
    variant: torch.Tensor
    size: torch.Tensor
    angle: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    present: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.sign, torch.Tensor) or self.sign.dtype != torch.int64:
            raise ValueError(f"SceneBatch.sign is {_describe(self.sign)}, expected int64 (N,)")
        if self.sign.ndim != 1:
            raise ValueError(f"SceneBatch.sign has shape {tuple(self.sign.shape)}, expected (N,)")
        n = int(self.sign.shape[0])
        fields: tuple[tuple[str, torch.Tensor, torch.dtype], ...] = (
            ("variant", self.variant, torch.int64),
            ("size", self.size, torch.float32),
            ("angle", self.angle, torch.float32),
            ("x", self.x, torch.float32),
            ("y", self.y, torch.float32),
            ("present", self.present, torch.bool),
        )
        for name, t, dtype in fields:
            if not isinstance(t, torch.Tensor) or t.dtype != dtype:
                raise ValueError(
                    f"SceneBatch.{name} is {_describe(t)}, expected {_dtype_name(dtype)} (N, K)"
                )
            if t.ndim != 2 or int(t.shape[0]) != n:
                raise ValueError(
                    f"SceneBatch.{name} has shape {tuple(t.shape)}, expected (N, K) with "
                    f"N={n} (the length of sign)"
                )
            if t.device != self.sign.device:
                raise ValueError(
                    f"SceneBatch.{name} is on {t.device}, expected {self.sign.device} "
                    "(the device of sign)"
                )
        k = int(self.variant.shape[1])
        if not 1 <= k <= MAX_SLOTS:
            raise ValueError(f"SceneBatch has K={k} leaf slots, expected 1 to {MAX_SLOTS}")
        for name, t, _ in fields[1:]:
            if int(t.shape[1]) != k:
                raise ValueError(
                    f"SceneBatch.{name} has shape {tuple(t.shape)}, expected (N, K) with "
                    f"K={k} (the slots of variant)"
                )
        if n and bool((self.sign < 0).any()):
            raise ValueError(f"SceneBatch.sign has {int(self.sign.min())}, expected indices >= 0")
        for name, t, _ in fields[1:5]:
            if n and not bool(torch.isfinite(t).all()):
                raise ValueError(f"SceneBatch.{name} has non-finite values, expected finite")
        on = self.present
        if n and bool((on & (self.variant < 0)).any()):
            raise ValueError("SceneBatch.variant has negative indices in present slots")
        bad = on & ~((self.size > 0) & (self.size <= MAX_SIZE))
        if n and bool(bad.any()):
            value = float(self.size[bad][0])
            raise ValueError(
                f"SceneBatch.size has {value} in a present slot, expected a fraction in "
                f"(0, {MAX_SIZE:g}]"
            )

    @property
    def n_scenes(self) -> int:
        """N, the number of scenes."""
        return int(self.sign.shape[0])

    @property
    def slots(self) -> int:
        """K, the number of leaf slots per scene."""
        return int(self.variant.shape[1])

    @property
    def device(self) -> torch.device:
        return self.sign.device

    def to(self, device: torch.device | str) -> SceneBatch:
        """The same scenes with every tensor on ``device``."""
        return SceneBatch(
            self.sign.to(device),
            self.variant.to(device),
            self.size.to(device),
            self.angle.to(device),
            self.x.to(device),
            self.y.to(device),
            self.present.to(device),
        )


@dataclass(frozen=True, slots=True)
class VariantBank:
    """Every leaf variant at a pyramid of sizes ("levels"), packed in one texture atlas.

    Level ``j`` of variant ``v`` is the leaf area-resized so that its longest side is
    ``level_px[v, j]`` pixels; level 0 is the full-resolution leaf, and the others follow in
    decreasing size. Variants with fewer levels repeat their smallest one up to J.

    Attributes:
        atlas: float32 (1, 4, Ha, Wa): premultiplied RGB and alpha in [0, 1] of all tiles,
            transparent between them.
        level_px: float32 (V, J) longest side in pixels of each level, decreasing along J.
        tile_box: float32 (V, J, 4) ``(x0, y0, x1, y1)`` atlas pixel edges of each level's
            tile; the outer :data:`TILE_BORDER` pixels of a tile are transparent.
        tile_centre: float32 (V, J, 2) atlas coordinates (pixel edges) of the centre of the
            leaf's bounding box in each tile.
        width: the sign width in pixels that the levels were anchored at (sizes
            ``2 * 2**(-j / levels_per_octave)`` are levels exactly on signs this wide).
        levels_per_octave: levels per factor of two in size.
        reach: float32 (V,) or None: each leaf's support radius about its bounding-box
            centre (the farthest corner of a pixel with alpha > 0), as a fraction of its
            longest side (at most sqrt(2)/2; None: assume that bound).
    """

    atlas: torch.Tensor
    level_px: torch.Tensor
    tile_box: torch.Tensor
    tile_centre: torch.Tensor
    width: int
    levels_per_octave: int
    reach: torch.Tensor | None = None

    def __post_init__(self) -> None:
        atlas = self.atlas
        if atlas.dtype != torch.float32 or atlas.ndim != 4 or tuple(atlas.shape[:2]) != (1, 4):
            raise ValueError(
                f"VariantBank.atlas is {_describe(self.atlas)}, expected float32 (1, 4, Ha, Wa)"
            )
        if self.level_px.dtype != torch.float32 or self.level_px.ndim != 2:
            raise ValueError(
                f"VariantBank.level_px is {_describe(self.level_px)}, expected float32 (V, J)"
            )
        v, j = self.level_px.shape
        if v < 1 or j < 1:
            raise ValueError(f"VariantBank.level_px has shape {(v, j)}, expected V, J >= 1")
        for name, t, last in (("tile_box", self.tile_box, 4), ("tile_centre", self.tile_centre, 2)):
            if t.dtype != torch.float32 or tuple(t.shape) != (v, j, last):
                raise ValueError(
                    f"VariantBank.{name} is {_describe(t)}, expected float32 {(v, j, last)}"
                )
        if self.width < 1 or self.levels_per_octave < 1:
            raise ValueError(
                f"VariantBank width={self.width}, levels_per_octave={self.levels_per_octave}: "
                "expected positive integers"
            )

    @property
    def n_variants(self) -> int:
        """V, the number of leaf variants."""
        return int(self.level_px.shape[0])

    @property
    def device(self) -> torch.device:
        return self.atlas.device

    def to(self, device: torch.device | str) -> VariantBank:
        """The same bank with every tensor on ``device``."""
        return VariantBank(
            self.atlas.to(device),
            self.level_px.to(device),
            self.tile_box.to(device),
            self.tile_centre.to(device),
            self.width,
            self.levels_per_octave,
            None if self.reach is None else self.reach.to(device),
        )


def build_variant_bank(
    leaves: Sequence[np.ndarray],
    width: int,
    levels_per_octave: int = 2,
    device: torch.device | str = "cpu",
) -> VariantBank:
    """Build the level pyramids of ``leaves`` for signs about ``width`` pixels wide.

    Levels: the full-resolution leaf, then every longest side ``2 * width *
    2**(-j / levels_per_octave)`` (j = 0, 1, ...) smaller than it, down to the first one
    under one pixel. Each level is the premultiplied leaf resized with ``INTER_AREA`` at the
    exact scale (not rounded to whole pixels), so a leaf drawn at a level's size matches an
    area-resized reference.

    Args:
        leaves: uint8 (h, w, 4) RGBA leaves (tight crops), one per variant.
        width: sign width in pixels the levels are anchored at (>= 1).
        levels_per_octave: levels per halving of the size (>= 1); the warp reduces by at most
            ``2**(1 / levels_per_octave)``. Memory grows about as ``1 / (1 - 4**(-1/q))``
            times the full-resolution leaf.
        device: where the atlas lives.

    Returns:
        The bank; variant ``v`` is ``leaves[v]``.

    Example:
        >>> bank = build_variant_bank([leaf.rgba for leaf in load_leaves(folder)], 128)
    """
    if not leaves:
        raise LeafattackError("no leaves selected (expected at least one leaf)")
    if isinstance(width, bool) or int(width) != width or width < 1:
        raise ValueError(f"width={width!r}: expected a positive whole number of pixels")
    if (
        isinstance(levels_per_octave, bool)
        or int(levels_per_octave) != levels_per_octave
        or (not 1 <= levels_per_octave <= 8)
    ):
        raise ValueError(f"levels_per_octave={levels_per_octave!r}: expected an integer in 1..8")
    q = int(levels_per_octave)
    tiles: list[list[_Tile]] = []
    reach: list[float] = []
    for i, rgba in enumerate(leaves):
        if (
            not isinstance(rgba, np.ndarray)
            or rgba.dtype != np.uint8
            or rgba.ndim != 3
            or (rgba.shape[2] != 4)
        ):
            raise LeafattackError(
                f"leaf {i} is {_describe(rgba)}, expected a uint8 (h, w, 4) RGBA array"
            )
        longest = float(max(rgba.shape[:2]))
        sides = [longest]
        j = 0
        while True:
            side = 2.0 * width * 2.0 ** (-j / q)
            j += 1
            if side >= longest * (1.0 - 1e-6):
                continue
            sides.append(side)
            if side < 1.0:
                break
        tiles.append([(*_level_tile(rgba, side / longest), side) for side in sides])
        reach.append(support_radius(rgba[..., 3]) / longest)
    bank = _pack_atlas(tiles, int(width), q, device)
    return dataclasses.replace(bank, reach=torch.tensor(reach, dtype=torch.float32, device=device))


def render_scenes(
    signs: torch.Tensor,
    masks: torch.Tensor,
    bank: VariantBank,
    batch: SceneBatch,
    appearance: Appearance | None = None,
    noise: torch.Tensor | None = None,
    *,
    recolour: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
    | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render every scene of ``batch`` (:func:`render_scenes_covered` without the union
    coverage map).

    Returns:
        ``(images, occluded)``: float32 (N, 3, H, W) composites in [0, 1], and float32 (N,)
        the alpha-weighted share of each sign mask covered by the union of the scene's
        leaves.
    """
    images, occluded, _ = render_scenes_covered(
        signs, masks, bank, batch, appearance, noise, recolour=recolour
    )
    return images, occluded


def render_scenes_covered(
    signs: torch.Tensor,
    masks: torch.Tensor,
    bank: VariantBank,
    batch: SceneBatch,
    appearance: Appearance | None = None,
    noise: torch.Tensor | None = None,
    *,
    recolour: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
    | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render every scene of ``batch``: its sign with its leaves pasted in slot order.

    One batched warp per slot: all scenes' leaf ``k`` are sampled from the atlas in a single
    ``grid_sample`` and blended "over" the image so far (premultiplied alpha); absent slots
    leave their scenes untouched. Leaves reaching past the image edge are cut off there.

    Args:
        signs: uint8 (S, 3, H, W) in 0..255, or float32 in [0, 1]; ``batch.sign`` indexes S.
        masks: bool (S, H, W), True on the sign face.
        bank: leaf variants; ``batch.variant`` indexes them. Any sign width works; sizes are
            relative to W.
        batch: N scenes with K slots, on the same device as ``signs`` and ``bank``.
        appearance: optional photo conditions of the S signs: every leaf layer goes through
            :func:`~leafattack.compose.appearance.match_layers` with its sign's entry (and
            casts its shadow on the image so far) before it is blended.
        noise: optional float32 (S, 3, Hn, Wn) standard-normal field of each sign, for the
            matched sensor noise (every leaf on a sign shares its sign's field).
        recolour: optional hook ``(layer, under, rows, slot) -> rgb`` replacing each warped
            leaf's premultiplied colour while keeping its alpha (the neutral-occluder
            controls of :mod:`leafattack.compose.controls`): ``layer`` float32 (M, 4, H, W)
            of slot ``slot``, ``under`` the clean signs of those scenes, ``rows`` int64 (M,)
            the scenes' rows in the batch. It applies before appearance matching.

    Returns:
        ``(images, occluded, union)``: float32 (N, 3, H, W) composites in [0, 1], float32
        (N,) the alpha-weighted share of each sign mask covered by the union of the scene's
        leaves, ``sum(mask * (1 - prod_k(1 - alpha_k))) / sum(mask)``, and that union
        ``1 - prod_k(1 - alpha_k)``, float32 (N, H, W) in [0, 1] (leaves as placed, before
        any appearance matching).

    Example:
        >>> images, occluded, union = render_scenes_covered(signs, masks, bank, batch)
    """
    _check_render_inputs(signs, masks, bank, batch)
    n = batch.n_scenes
    _, _, h, w = signs.shape
    base = signs.float().div(255.0) if signs.dtype == torch.uint8 else signs.float()
    images = base.index_select(0, batch.sign)  # (N, 3, H, W), a copy
    clear = torch.ones((n, h, w), dtype=torch.float32, device=images.device)  # prod(1 - alpha)
    for k in range(batch.slots):
        sel = torch.nonzero(batch.present[:, k]).flatten()
        m = int(sel.shape[0])
        if m == 0:
            continue
        full = m == n
        idx = slice(None) if full else sel
        grid = slot_grid(
            bank,
            batch.variant[idx, k],
            batch.size[idx, k] * float(w),
            batch.angle[idx, k],
            batch.x[idx, k] * float(w),
            batch.y[idx, k] * float(h),
            h,
            w,
        )
        layer = F.grid_sample(
            bank.atlas.expand(m, -1, -1, -1),
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )  # (M, 4, H, W)
        del grid
        clear_alpha = layer[:, 3:4]
        if recolour is not None:
            under_clean = base.index_select(0, batch.sign.index_select(0, sel))
            layer = torch.cat([recolour(layer, under_clean, sel, k), layer[:, 3:]], dim=1)
        if appearance is not None:
            sign_k = batch.sign.index_select(0, sel)
            app_k = appearance.take(sign_k)
            under = images if full else images.index_select(0, sel)
            shaded = cast_shadow(under, layer, app_k)
            if full:
                images = shaded
            else:
                images.index_copy_(0, sel, shaded)
            layer = match_layers(
                layer, app_k, noise=None if noise is None else noise.index_select(0, sign_k)
            )
        alpha = layer[:, 3:4]
        if full:
            images.mul_(1.0 - alpha).add_(layer[:, :3])
            clear.mul_(1.0 - clear_alpha[:, 0])
        else:
            images.index_copy_(0, sel, images[sel].mul_(1.0 - alpha).add_(layer[:, :3]))
            clear.index_copy_(0, sel, clear[sel].mul_(1.0 - clear_alpha[:, 0]))
    m_all = masks.index_select(0, batch.sign).float()
    area = m_all.sum(dim=(1, 2)).clamp_min(1.0)
    union = 1.0 - clear
    occluded = (union * m_all).sum(dim=(1, 2)) / area
    return images.clamp_(0.0, 1.0), occluded, union


def slot_grid(
    bank: VariantBank,
    variant: torch.Tensor,
    pixels: torch.Tensor,
    angle: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """``grid_sample`` grids into ``bank.atlas`` for one leaf on each of M sign frames.

    Picks, per leaf, the smallest level whose longest side is at least ``pixels`` (the
    full-resolution level when none is), and maps sign pixel centres through the inverse
    rotation and the remaining scale into that level's tile. Coordinates are clamped into
    the tile's transparent border, so samples off the leaf read zeros and never a
    neighbouring tile.

    Args:
        bank: the atlas and its level tables.
        variant: int64 (M,) variant per leaf.
        pixels: float32 (M,) longest side of each leaf in sign pixels (> 0).
        angle: float32 (M,) degrees counter-clockwise.
        cx, cy: float32 (M,) leaf centres in sign pixels (pixel-edge convention).
        height, width: the sign frame, pixels.

    Returns:
        float32 (M, H, W, 2) grid for ``grid_sample(..., align_corners=False)`` on
        ``bank.atlas`` expanded to M.
    """
    dev = bank.atlas.device
    m = int(variant.shape[0])
    levels = bank.level_px.index_select(0, variant)  # (M, J)
    j = ((levels >= pixels[:, None] * (1.0 - 1e-6)).sum(dim=1) - 1).clamp_min(0)
    flat = variant * bank.level_px.shape[1] + j
    level = levels.gather(1, j[:, None])[:, 0]
    box = bank.tile_box.reshape(-1, 4).index_select(0, flat)  # (M, 4)
    centre = bank.tile_centre.reshape(-1, 2).index_select(0, flat)  # (M, 2)
    ha, wa = int(bank.atlas.shape[2]), int(bank.atlas.shape[3])
    inv = level / pixels  # atlas pixels per sign pixel
    t = torch.deg2rad(angle.float())
    c, s = torch.cos(t) * inv, torch.sin(t) * inv
    sx, sy = 2.0 / wa, 2.0 / ha  # atlas pixels -> normalised coordinates
    cols = torch.arange(width, device=dev, dtype=torch.float32)[None, :] + 0.5 - cx[:, None]
    rows = torch.arange(height, device=dev, dtype=torch.float32)[None, :] + 0.5 - cy[:, None]
    c1, s1 = c[:, None], s[:, None]
    # Inverse of the on-screen counter-clockwise rotation (y down):
    # (u, v) -> (c u - s v, s u + c v), times the level's scale.
    gx_col = (centre[:, 0:1] + c1 * cols) * sx - 1.0  # (M, W)
    gx_row = (-s1 * rows) * sx  # (M, H)
    gy_col = (s1 * cols) * sy  # (M, W)
    gy_row = (centre[:, 1:2] + c1 * rows) * sy - 1.0  # (M, H)
    half = 0.5  # clamp onto the centres of the tile's outermost (transparent) pixels
    lo_x = ((box[:, 0] + half) * sx - 1.0)[:, None, None]
    hi_x = ((box[:, 2] - half) * sx - 1.0)[:, None, None]
    lo_y = ((box[:, 1] + half) * sy - 1.0)[:, None, None]
    hi_y = ((box[:, 3] - half) * sy - 1.0)[:, None, None]
    grid = torch.empty((m, height, width, 2), device=dev, dtype=torch.float32)
    gx, gy = grid[..., 0], grid[..., 1]
    torch.add(gx_row[:, :, None], gx_col[:, None, :], out=gx)
    torch.add(gy_row[:, :, None], gy_col[:, None, :], out=gy)
    torch.maximum(gx, lo_x, out=gx)
    torch.minimum(gx, hi_x, out=gx)
    torch.maximum(gy, lo_y, out=gy)
    torch.minimum(gy, hi_y, out=gy)
    return grid


def _check_render_inputs(
    signs: torch.Tensor, masks: torch.Tensor, bank: VariantBank, batch: SceneBatch
) -> None:
    if signs.ndim != 4 or signs.shape[1] != 3 or signs.dtype not in (torch.uint8, torch.float32):
        raise ValueError(f"signs is {_describe(signs)}, expected uint8 or float32 (S, 3, H, W)")
    s, _, h, w = signs.shape
    if masks.dtype != torch.bool or tuple(masks.shape) != (s, h, w):
        raise ValueError(f"masks is {_describe(masks)}, expected bool {(s, h, w)}")
    for name, dev in (("masks", masks.device), ("bank", bank.device), ("batch", batch.device)):
        if dev != signs.device:
            raise ValueError(f"{name} is on {dev}, expected {signs.device} (the device of signs)")
    if batch.n_scenes and int(batch.sign.max()) >= s:
        raise ValueError(
            f"SceneBatch.sign has index {int(batch.sign.max())}, expected < {s} (the signs given)"
        )
    used = batch.variant[batch.present]
    if used.numel() and int(used.max()) >= bank.n_variants:
        raise ValueError(
            f"SceneBatch.variant has index {int(used.max())}, expected < {bank.n_variants} "
            "(the variants in the bank)"
        )


def _level_tile(rgba: np.ndarray, scale: float) -> tuple[np.ndarray, tuple[float, float]]:
    """One level: the premultiplied leaf resized by ``scale`` with a transparent border.

    Returns ``(image float32 (h', w', 4) in [0, 1], bbox centre (x, y) in tile pixels)``.
    """
    img: np.ndarray = rgba.astype(np.float32) / 255.0
    img[..., :3] *= img[..., 3:4]
    h, w = img.shape[:2]
    if scale < 1.0:
        # Pad right and bottom so that rounding the output size cannot drop the last partial
        # pixel; the exact scale (fx, fy) keeps the leaf's left/top edge at 0.
        extra = int(math.ceil(1.0 / scale)) + 1
        img = np.pad(img, ((0, extra), (0, extra), (0, 0)))
        img = cv2.resize(img, (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        img = np.clip(img, 0.0, 1.0).reshape(img.shape[0], img.shape[1], 4)
        # Trim the padding beyond the leaf's last (partial) pixel.
        keep_h = int(math.ceil(h * scale - 1e-6))
        keep_w = int(math.ceil(w * scale - 1e-6))
        img = img[: max(1, keep_h), : max(1, keep_w)]
    b = TILE_BORDER
    img = np.pad(img, ((b, b), (b, b), (0, 0)))
    return np.ascontiguousarray(img), (b + w * scale / 2.0, b + h * scale / 2.0)


def _pack_atlas(
    tiles: list[list[_Tile]],
    width: int,
    levels_per_octave: int,
    device: torch.device | str,
) -> VariantBank:
    """Shelf-pack every tile (tallest first) into one atlas and build the level tables."""
    v = len(tiles)
    j = max(len(t) for t in tiles)
    flat = [(vi, li, t[0]) for vi, ts in enumerate(tiles) for li, t in enumerate(ts)]
    area = sum(img.shape[0] * img.shape[1] for _, _, img in flat)
    shelf_w = max(max(img.shape[1] for _, _, img in flat), int(math.ceil(math.sqrt(area) * 1.1)))
    order = sorted(flat, key=lambda e: (-e[2].shape[0], e[0], e[1]))
    origin: dict[tuple[int, int], tuple[int, int]] = {}
    x = y = shelf_h = 0
    for vi, li, img in order:
        th, tw = img.shape[:2]
        if x + tw > shelf_w:
            x, y, shelf_h = 0, y + shelf_h, 0
        origin[(vi, li)] = (x, y)
        x += tw
        shelf_h = max(shelf_h, th)
    atlas = np.zeros((4, y + shelf_h, shelf_w), dtype=np.float32)
    level_px = np.zeros((v, j), dtype=np.float32)
    tile_box = np.zeros((v, j, 4), dtype=np.float32)
    tile_centre = np.zeros((v, j, 2), dtype=np.float32)
    for vi, ts in enumerate(tiles):
        for li in range(j):
            img, (cx, cy), side = ts[min(li, len(ts) - 1)]
            ox, oy = origin[(vi, min(li, len(ts) - 1))]
            th, tw = img.shape[:2]
            if li < len(ts):
                atlas[:, oy : oy + th, ox : ox + tw] = img.transpose(2, 0, 1)
            level_px[vi, li] = side
            tile_box[vi, li] = (ox, oy, ox + tw, oy + th)
            tile_centre[vi, li] = (ox + cx, oy + cy)
    return VariantBank(
        torch.from_numpy(atlas)[None].to(device),
        torch.from_numpy(level_px).to(device),
        torch.from_numpy(tile_box).to(device),
        torch.from_numpy(tile_centre).to(device),
        width,
        levels_per_octave,
    )


def _describe(obj: object) -> str:
    if isinstance(obj, torch.Tensor | np.ndarray):
        return f"{obj.dtype} {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
