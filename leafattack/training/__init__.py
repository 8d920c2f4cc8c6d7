"""Training classifiers on sign sets with seeded variations."""

from __future__ import annotations

from leafattack.training.train import (
    VALIDATION_SEED_OFFSET,
    EVALUATION_SEED_OFFSET,
    TrainConfig,
    TrainResult,
    variation_config,
    resize_square,
    LeafPaster,
    leaf_paster,
    EvalResult,
    evaluate,
)

__all__ = [
    "EVALUATION_SEED_OFFSET",
    "EvalResult",
    "LeafPaster",
    "TrainConfig",
    "TrainResult",
    "VALIDATION_SEED_OFFSET",
    "evaluate",
    "leaf_paster",
    "resize_square",
    "variation_config",
]
