"""Classifiers: architectures, the Classifier wrapper, and loading models from specs."""

from __future__ import annotations

from leafattack.models.architectures import (
    LisaCNN,
    MultiScaleCNN,
    Architecture,
    ARCHITECTURES,
    TORCHVISION_INPUT_SIZE,
    torchvision_architectures,
    build_model,
    default_input_size,
)
from leafattack.models.classifier import (
    RESIZE_MODES,
    Preprocess,
    to_float,
    resize_batch,
    Classifier,
    module_fingerprint,
    resolve_device,
    match_classes,
)
from leafattack.models.loading import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    DEFAULT_MODEL_PATH,
    save_checkpoint,
    load_checkpoint,
    load_torchscript,
    load_factory,
    load_model,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Classifier",
    "DEFAULT_MODEL_PATH",
    "LisaCNN",
    "MultiScaleCNN",
    "Preprocess",
    "RESIZE_MODES",
    "TORCHVISION_INPUT_SIZE",
    "build_model",
    "default_input_size",
    "load_checkpoint",
    "load_factory",
    "load_model",
    "load_torchscript",
    "match_classes",
    "module_fingerprint",
    "resize_batch",
    "resolve_device",
    "save_checkpoint",
    "to_float",
    "torchvision_architectures",
]
