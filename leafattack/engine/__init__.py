"""The engine: prepare a run once, then evaluate batches of trials (locally or on Ray)."""

from __future__ import annotations

from leafattack.engine.evaluate import (
    BatchEvaluator,
    batch_bounds,
    classify,
    clean_predictions,
    composite_trials,
    decode_trial_ids,
    evaluate_range,
    local_batches,
    placement_tensors,
    recompose,
)
from leafattack.engine.execute import (
    TRIALS_FILE,
    execute_trials,
    remote_batches,
)
from leafattack.engine.preparation import (
    LeafVariant,
    Prepared,
    attack_mask,
    build_plan,
    load_leaf_variants,
    open_run,
    pooled_stack,
    prepare,
    resize_signs,
    select_signs,
)
from leafattack.engine.scenes import (
    MAX_LEAVES_PER_SCENE,
    SCENE_COLUMNS,
    SceneTable,
    read_scenes,
    render_scene_table,
    safe_scene_name,
    variant_images,
)

__all__ = [
    "BatchEvaluator",
    "LeafVariant",
    "MAX_LEAVES_PER_SCENE",
    "Prepared",
    "SCENE_COLUMNS",
    "SceneTable",
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
    "prepare",
    "read_scenes",
    "recompose",
    "remote_batches",
    "render_scene_table",
    "resize_signs",
    "safe_scene_name",
    "select_signs",
    "variant_images",
]
