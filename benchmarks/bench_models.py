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


class _MeanColour(nn.Module):
    """Logits from the mean colour of the image: almost no compute (bookkeeping benchmarks)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(3, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


def tiny_16() -> tuple[nn.Module, dict[str, Any]]:
    """A mean-colour linear model at 16 px input: for peak-RSS runs of 10^7 trials, where
    memory (bookkeeping), not the model, is measured."""
    torch.manual_seed(0)
    return _MeanColour(len(LISA_CLASSES)), {
        "class_names": list(LISA_CLASSES),
        "input_size": 16,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "resize": "area",
        "arch": "mean_colour",
    }
