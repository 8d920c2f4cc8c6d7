"""Compositing leaves onto signs, batched on tensors."""

from __future__ import annotations

from leafattack.compose.bank import (
    Placement,
    leaf_pixels,
    scale_leaf,
    LeafBank,
    build_leaf_bank,
    SignStack,
    build_sign_stack,
)
from leafattack.compose.functional import (
    placement_theta,
    composite,
    composite_pooled,
    composite_pooled_window,
    paste_leaf,
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
