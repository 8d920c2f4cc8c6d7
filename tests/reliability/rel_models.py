"""Hostile test models, importable as model specs ``rel_models:NAME``."""

from __future__ import annotations

from typing import Any

import torch
from fixture_models import template
from torch import nn


class NaNOnLeaves(nn.Module):
    """The template model, but NaN for every image that is not one of its templates: clean
    signs are classified (correctly), every attacked composite gives NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, _ = template()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        clean = (x[:, None] - self.inner.templates[None]).abs().amax(dim=(2, 3, 4)).amin(1) < 1e-4
        return torch.where(clean[:, None], logits, torch.full_like(logits, float("nan")))


def nan_on_leaves() -> tuple[nn.Module, dict[str, Any]]:
    _, meta = template()
    return NaNOnLeaves(), meta


class InfModel(nn.Module):
    """Logit +inf for the first class (softmax would turn it into NaN)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, _ = template()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x).clone()
        logits[:, 0] = float("inf")
        return logits


def inf_model() -> tuple[nn.Module, dict[str, Any]]:
    _, meta = template()
    return InfModel(), meta


def needs_arguments(size: int) -> tuple[nn.Module, dict[str, Any]]:
    """Not a factory: it takes an argument."""
    return template()


def bad_metadata() -> tuple[nn.Module, dict[str, Any]]:
    module, meta = template()
    return module, {**meta, "class_names": 16}


def text_mean() -> tuple[nn.Module, dict[str, Any]]:
    module, meta = template()
    return module, {**meta, "mean": "abc"}
