"""The engine: prepare a run once, then evaluate batches of trials (locally or on Ray)."""

from __future__ import annotations

from leafattack.engine.prepare import (
    LeafVariant,
    Prepared,
    select_signs,
    attack_mask,
    load_leaf_variants,
    resize_signs,
    pooled_stack,
    build_plan,
    open_run,
)
from leafattack.engine.evaluate import (
    classify,
    placement_tensors,
    composite_trials,
    BatchEvaluator,
    recompose,
    decode_trial_ids,
    batch_bounds,
    evaluate_range,
    local_batches,
    clean_predictions,
)
from leafattack.engine.execute import (
    TRIALS_FILE,
    remote_batches,
    execute_trials,
)

__all__ = [
    "BatchEvaluator",
    "LeafVariant",
    "Prepared",
    "TRIALS_FILE",
    "attack_mask",
    "batch_bounds",
    "build_plan",
    "classify",
    "clean_predictions",
    "composite_trials",
    "decode_trial_ids",
    "evaluate_range",
    "execute_trials",
    "load_leaf_variants",
    "local_batches",
    "open_run",
    "placement_tensors",
    "pooled_stack",
    "recompose",
    "remote_batches",
    "resize_signs",
    "select_signs",
]
