"""Adaptive search (the choosing half): the space, the methods (ask/tell, per sign), the
loss and the curve. Named ``adaptive`` so that ``leafattack.search`` stays the API function.

Pure choosing of parameters; :mod:`leafattack.engine.search` renders, classifies and logs.
"""

from __future__ import annotations

from leafattack.adaptive.curve import CURVE_COLUMNS, curve_budgets, fooled_curve
from leafattack.adaptive.loss import margin_loss
from leafattack.adaptive.methods import METHODS, Optimiser, SignContext, method_seed
from leafattack.adaptive.space import (
    MAX_LEAVES,
    Scenes,
    SearchSpace,
    check_leaves_per_scene,
    check_size_range,
    parse_size_range,
)

__all__ = [
    "CURVE_COLUMNS",
    "MAX_LEAVES",
    "METHODS",
    "Optimiser",
    "Scenes",
    "SearchSpace",
    "SignContext",
    "check_leaves_per_scene",
    "check_size_range",
    "curve_budgets",
    "fooled_curve",
    "margin_loss",
    "method_seed",
    "parse_size_range",
]
