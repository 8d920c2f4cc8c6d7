"""Neutral-occluder controls: the leaf's colour replaced, its alpha and placement kept.

A control answers "would any occluder of that shape and size do the same?". Each control
kind is a plain function with one signature, registered by name in :data:`CONTROLS`::

    f(layer, under, keys) -> rgb

It receives one leaf layer per scene as the renderer warped it into the sign frame and
returns the premultiplied colour to paste instead of the leaf's; the renderer keeps the
layer's alpha, so the occluder has exactly the leaf's mask and anti-aliased rim.

Shape:
    layer: float32 (M, 4, H, W): premultiplied RGB and alpha in [0, 1].
    under: float32 (M, 3, H, W): the clean sign beneath the leaf, in [0, 1].
    keys: int64 (M,): one seed per leaf (from :func:`leaf_keys`), in [0, 2**32).
    returns: float32 (M, 3, H, W) premultiplied RGB, each channel in [0, alpha].

Randomness (``noise``, ``shuffled``) comes only from the keys, through a counter-based
integer hash of (key, pixel): a leaf's control does not depend on the batch it is rendered
in, on the device, or on the order of the batches, so a resumed run writes the same bytes.

Example:
    >>> rgb = CONTROLS["grey"](layer, under, keys)
    >>> hook = control_hook("noise", seed=0, trial_ids=ids)   # for the renderers
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import torch

Control = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(layer (M, 4, H, W), under (M, 3, H, W), keys (M,)) -> premultiplied rgb (M, 3, H, W)``."""

LayerHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
"""What the renderers call per slot: ``(layer, under, rows, slot) -> rgb``, where ``rows``
int64 (M,) are the batch rows (scenes) of the M leaves and ``slot`` their slot."""

GREY: Final[float] = 128.0 / 255.0
"""Mid grey, as a uint8 leaf painted (128, 128, 128) renders."""

SHUFFLE_ALPHA: Final[float] = 0.9999
"""``shuffled`` permutes the leaf's opaque interior (alpha at least this); the anti-aliased
rim below keeps its own colour. Within the interior every pixel has the same alpha (up to
float rounding), so the permutation keeps the leaf's colour sum: a model that sees only mean
colours cannot tell ``shuffled`` from the leaf."""

_MASK32: Final[int] = 0xFFFFFFFF


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two rounds of xorshift-multiply), elementwise.

    Products stay below 2**59, so int64 arithmetic never overflows on any device.

    Shape:
        x: int64, any shape, values in [0, 2**32). Returns int64 of the same shape, same range.
    """
    x = x & _MASK32
    x = (((x >> 16) ^ x) * 0x045D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x045D9F3B) & _MASK32
    return (x >> 16) ^ x


def leaf_keys(seed: int, trial_ids: torch.Tensor, slot: int) -> torch.Tensor:
    """One key per leaf, from the run's seed, the trial (scene) id and the leaf's slot.

    Shape:
        trial_ids: int64 (M,) non-negative (below 2**63). Returns int64 (M,) in [0, 2**32).
    """
    t = trial_ids.to(torch.int64)
    h = mix32(torch.full_like(t, int(seed) & _MASK32) ^ 0x6C656166)
    h = mix32(h ^ (t & _MASK32))
    h = mix32(h ^ ((t >> 32) & _MASK32))
    return mix32(h ^ (int(slot) * 0x9E3779B1 & _MASK32))


def pixel_uniform(keys: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """Uniform numbers in [0, 1) per leaf, channel and pixel, a function of the key only.

    Shape:
        keys: int64 (M,). Returns float32 (M, channels, H, W), multiples of 2**-24.
    """
    n = channels * height * width
    idx = torch.arange(n, device=keys.device, dtype=torch.int64)
    h = mix32(mix32(keys[:, None] ^ idx[None, :]) ^ (keys[:, None] >> 7))
    u = (h >> 8).to(torch.float32) * (1.0 / (1 << 24))
    return u.view(-1, channels, height, width)


def grey(layer: torch.Tensor, under: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Mid grey (:data:`GREY`) under the leaf's alpha."""
    return layer[:, 3:4].expand(-1, 3, -1, -1) * GREY


def black(layer: torch.Tensor, under: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Black: the leaf's alpha darkens the sign, nothing is added."""
    return torch.zeros_like(layer[:, :3])


def mean(layer: torch.Tensor, under: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """The sign's own mean colour under the leaf (alpha-weighted), flat over the mask.

    An occluder that hides the sign's detail without adding any colour of its own.
    """
    alpha = layer[:, 3:4]
    total = alpha.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    colour = (under * alpha).sum(dim=(2, 3), keepdim=True) / total  # (M, 3, 1, 1)
    return alpha * colour


def noise(layer: torch.Tensor, under: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Seeded uniform noise in [0, 1), per pixel and channel, under the leaf's alpha."""
    m, _, h, w = layer.shape
    return layer[:, 3:4] * pixel_uniform(keys, 3, h, w)


def shuffled(layer: torch.Tensor, under: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """The leaf's own colours permuted among its opaque pixels (alpha >= :data:`SHUFFLE_ALPHA`).

    Keeps the colour histogram of the leaf as rendered and removes veins and texture. The
    colours (unpremultiplied) move; each pixel keeps its own alpha, and the anti-aliased rim
    keeps its colour. One seeded permutation per leaf, all leaves at once.
    """
    m, _, h, w = layer.shape
    n = h * w
    alpha = layer[:, 3].reshape(m, n)
    inside = alpha >= SHUFFLE_ALPHA
    colour = layer[:, :3].reshape(m, 3, n) / alpha.clamp_min(1e-12)[:, None, :]
    pos = torch.arange(n, device=layer.device, dtype=torch.float32)[None, :] / n
    rand = pixel_uniform(keys, 1, h, w).reshape(m, n)
    # Outside the mask both orders list the pixels in their own order, so they stay put;
    # inside, source pixels come in random order and destinations in raster order.
    src = torch.sort(torch.where(inside, rand, 2.0 + pos), dim=1, stable=True).indices
    dst = torch.sort(torch.where(inside, pos, 2.0 + pos), dim=1, stable=True).indices
    moved = torch.empty_like(colour)
    picked = colour.gather(2, src[:, None, :].expand(-1, 3, -1))
    moved.scatter_(2, dst[:, None, :].expand(-1, 3, -1), picked)
    out = torch.where(inside[:, None, :], moved * alpha[:, None, :], layer[:, :3].reshape(m, 3, n))
    return out.reshape(m, 3, h, w).clamp_(0.0, 1.0)


CONTROLS: dict[str, Control] = {
    "grey": grey,
    "mean": mean,
    "black": black,
    "shuffled": shuffled,
    "noise": noise,
}
"""The control kinds by name (``leafattack controls --kinds``)."""


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """Parse ``"grey,mean"`` (or None / ``all`` for every kind) into known control names.

    Raises:
        ValueError: an unknown or repeated name, or an empty list.
    """
    if text is None or text.strip() == "all":
        return tuple(CONTROLS)
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise ValueError(f"control kinds {text!r}: expected a comma-separated list or all")
    for name in names:
        if name not in CONTROLS:
            raise ValueError(
                f"unknown control kind {name!r} (expected one of {', '.join(CONTROLS)} or all)"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"control kinds {text!r}: repeated name")
    return names


def control_hook(kind: str, seed: int, trial_ids: torch.Tensor) -> LayerHook:
    """The renderer hook of one control for a batch whose row ``i`` is trial ``trial_ids[i]``.

    Shape:
        trial_ids: int64 (N,), on the renderer's device.
    """
    fn = CONTROLS[kind]

    def hook(
        layer: torch.Tensor, under: torch.Tensor, rows: torch.Tensor, slot: int
    ) -> torch.Tensor:
        keys = leaf_keys(seed, trial_ids.index_select(0, rows), slot)
        return fn(layer, under, keys)

    return hook
