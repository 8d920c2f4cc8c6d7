"""Model factories for the bring-your-own-model tests (specs ``fixture_byo:NAME``)."""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import nn

from leafattack.data import LISA_CLASSES


def resnet() -> tuple[nn.Module, dict[str, Any]]:
    """A torchvision ResNet-18 for the 16 built-in classes (seeded weights, untrained)
    with ImageNet-style metadata: 48-pixel bilinear input, ImageNet mean and std."""
    torch.manual_seed(0)
    module = torchvision.models.resnet18(num_classes=len(LISA_CLASSES))
    meta = {
        "class_names": list(LISA_CLASSES),
        "input_size": 48,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize": "bilinear",
    }
    return module.eval(), meta


class BatchCentred(nn.Module):
    """Logits of the template model minus their mean over the batch: each image's output
    depends on the other images of its batch."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x)
        return out - out.mean(dim=0, keepdim=True)


def batch_dependent() -> tuple[nn.Module, dict[str, Any]]:
    from fixture_models import template

    module, meta = template()
    return BatchCentred(module), meta
