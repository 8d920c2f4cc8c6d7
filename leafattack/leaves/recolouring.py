"""Recolouring a leaf into another fall colour."""

from __future__ import annotations

import cv2
import numpy as np

from leafattack.errors import LeafattackError
from leafattack.leaves.colours import FALL_COLOURS, PALETTES
from leafattack.leaves.leaf import Leaf


def check_colour(colour: str) -> None:
    if colour not in FALL_COLOURS:
        raise LeafattackError(
            f"unknown fall colour {colour!r} (expected one of {', '.join(FALL_COLOURS)})"
        )


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab))


def recolour(leaf: Leaf, colour: str, *, keep_variation: float = 0.6) -> Leaf:
    """Repaint a leaf in another fall colour, keeping its alpha and luminance detail.

    In CIELAB, the alpha-weighted mean lightness and chroma (a*, b*) of the leaf are
    moved to those of the target palette; deviations from the mean are kept in
    lightness (veins, texture, spots) and scaled by ``keep_variation`` in a*/b*
    (colour gradients survive in a subdued form).

    Args:
        leaf: any leaf, generated or segmented.
        colour: a :data:`FALL_COLOURS` key.
        keep_variation: 0..1, share of the chroma deviations that is kept.

    Returns:
        A new :class:`Leaf` with the same alpha channel, ``colour=colour``, and id
        ``"<base id>@<colour>"``.

    Shape:
        ``leaf.rgba`` uint8 (H, W, 4) -> uint8 (H, W, 4), alpha unchanged.
    """
    check_colour(colour)
    if not 0.0 <= keep_variation <= 1.0:
        raise ValueError(f"keep_variation = {keep_variation!r}, expected a value in [0, 1]")
    rgba = leaf.rgba
    weight = rgba[..., 3].astype(np.float64) / 255.0
    lab = _to_lab(rgba[..., :3]).astype(np.float64)
    total = max(float(weight.sum()), 1e-9)
    mean = (lab * weight[..., None]).sum(axis=(0, 1)) / total
    pal = PALETTES[colour]
    target = _to_lab(np.array([[pal.base]], np.uint8))[0, 0].astype(np.float64)
    out = np.empty_like(lab)
    out[..., 0] = target[0] + (lab[..., 0] - mean[0])
    out[..., 1:] = target[1:] + keep_variation * (lab[..., 1:] - mean[1:])
    out[..., 0] = np.clip(out[..., 0], 0.0, 100.0)
    rgb = cv2.cvtColor(out.astype(np.float32), cv2.COLOR_Lab2RGB)
    rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    new = np.concatenate([rgb8, rgba[..., 3:4]], axis=2)
    return Leaf(new, f"{leaf.base_id}@{colour}", leaf.species, colour, leaf.source)
