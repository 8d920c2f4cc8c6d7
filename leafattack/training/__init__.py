"""Training classifiers on sign sets with seeded variations."""

from __future__ import annotations

from leafattack.training.trainer import (
    EVALUATION_SEED_OFFSET,
    VALIDATION_SEED_OFFSET,
    EvalResult,
    LeafPaster,
    TrainConfig,
    TrainResult,
    evaluate,
    leaf_paster,
    resize_square,
    train,
    variation_config,
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
    "train",
    "variation_config",
]
