"""Classifiers: architectures, the Classifier wrapper, and loading models from specs."""

from __future__ import annotations

from leafattack.models.architectures import (
    ARCHITECTURES,
    TORCHVISION_INPUT_SIZE,
    Architecture,
    LisaCNN,
    MultiScaleCNN,
    build_model,
    default_input_size,
    torchvision_architectures,
)
from leafattack.models.classifier import (
    RESIZE_MODES,
    Classifier,
    Preprocess,
    match_classes,
    module_fingerprint,
    resize_batch,
    resolve_device,
    to_float,
)
from leafattack.models.loading import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    DEFAULT_MODEL_PATH,
    ExportedModule,
    load_checkpoint,
    load_exported,
    load_factory,
    load_model,
    load_torchscript,
    save_checkpoint,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Classifier",
    "DEFAULT_MODEL_PATH",
    "ExportedModule",
    "LisaCNN",
    "MultiScaleCNN",
    "Preprocess",
    "RESIZE_MODES",
    "TORCHVISION_INPUT_SIZE",
    "build_model",
    "default_input_size",
    "load_checkpoint",
    "load_exported",
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
