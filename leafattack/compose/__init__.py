"""Compositing leaves onto signs, batched on tensors."""

from __future__ import annotations

from leafattack.compose.bank import (
    LeafBank,
    Placement,
    SignStack,
    build_leaf_bank,
    build_sign_stack,
    leaf_pixels,
    scale_leaf,
)
from leafattack.compose.functional import (
    composite,
    composite_pooled,
    composite_pooled_window,
    paste_leaf,
    placement_theta,
    to_uint8_hwc,
)

__all__ = [
    "LeafBank",
    "Placement",
    "SignStack",
    "build_leaf_bank",
    "build_sign_stack",
    "composite",
    "composite_pooled",
    "composite_pooled_window",
    "leaf_pixels",
    "paste_leaf",
    "placement_theta",
    "scale_leaf",
    "to_uint8_hwc",
]
