"""Training classifiers on sign sets with seeded variations."""

from __future__ import annotations

from leafattack.training.trainer import (
    EVALUATION_SEED_OFFSET,
    TRAINING_LEAF_SIZES,
    VALIDATION_SEED_OFFSET,
    AdversarialPaster,
    EvalResult,
    LeafPaster,
    LossFn,
    TrainConfig,
    TrainResult,
    adversarial_paster,
    evaluate,
    leaf_paster,
    resize_square,
    train,
    variation_config,
)

__all__ = [
    "AdversarialPaster",
    "EVALUATION_SEED_OFFSET",
    "LossFn",
    "TRAINING_LEAF_SIZES",
    "EvalResult",
    "LeafPaster",
    "TrainConfig",
    "TrainResult",
    "VALIDATION_SEED_OFFSET",
    "adversarial_paster",
    "evaluate",
    "leaf_paster",
    "resize_square",
    "train",
    "variation_config",
]
