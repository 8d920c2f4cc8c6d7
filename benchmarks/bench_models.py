"""Model factories for benchmarks (speed only: untrained weights, fixed by a seed).

``benchmarks.bench_models:resnet18_64`` - torchvision's ResNet-18 at 64 px input with the
16 LISA classes, as a ``pkg.mod:factory`` model spec (run from the repository root).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18

from leafattack.data import LISA_CLASSES


def resnet18_64() -> tuple[nn.Module, dict[str, Any]]:
    torch.manual_seed(0)
    model = resnet18(num_classes=len(LISA_CLASSES))
    return model, {
        "class_names": list(LISA_CLASSES),
        "input_size": 64,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize": "area",
        "arch": "resnet18",
    }
