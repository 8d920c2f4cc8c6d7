"""Weight-free test models, importable as model specs ``fixture_models:NAME``.

The template model scores an image by its (negative, scaled) squared distance to each
built-in sign rendered at 32x32, so it classifies the clean signs correctly without any
training, and leaves change its decisions in an explainable way.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leafattack.data import LISA_CLASSES
from leafattack.data.builtin import render_sign_set


class TemplateModel(nn.Module):
    """Nearest template with margin-normalised distances; input float (N, 3, 32, 32) in [0, 1].

    logits_k = -scale * mean((x - T_k)^2) / margin_k, where margin_k is the distance from
    T_k to the closest other template: classes with close neighbours (the speed limits)
    are easier to flip, as in a real classifier.
    """

    def __init__(self, templates: torch.Tensor, scale: float = 4.0) -> None:
        super().__init__()
        self.register_buffer("templates", templates)
        d = (templates[:, None] - templates[None]).pow(2).mean(dim=(2, 3, 4))
        d.fill_diagonal_(float("inf"))
        self.register_buffer("margin", d.min(dim=1).values)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = (x[:, None] - self.templates[None]).pow(2).mean(dim=(2, 3, 4))
        return -self.scale * d / self.margin


def _templates() -> torch.Tensor:
    signs = render_sign_set(128)
    imgs = torch.stack([torch.from_numpy(im).permute(2, 0, 1) for im in signs.images])
    return F.avg_pool2d(imgs.float() / 255.0, 4)


META: dict[str, Any] = {
    "class_names": list(LISA_CLASSES),
    "input_size": 32,
    "mean": [0.0, 0.0, 0.0],
    "std": [1.0, 1.0, 1.0],
    "resize": "area",
    "arch": "template",
}


def template() -> tuple[nn.Module, dict[str, Any]]:
    """Factory for the spec ``fixture_models:template`` (area resize: the pooled fast path)."""
    return TemplateModel(_templates()), dict(META)


def template_bilinear() -> tuple[nn.Module, dict[str, Any]]:
    """The same model with bilinear resizing, which takes the full-resolution path."""
    return TemplateModel(_templates()), {**META, "resize": "bilinear"}


class NaNModel(nn.Module):
    """Outputs NaN for every input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], len(LISA_CLASSES)), float("nan"))


def nan_model() -> tuple[nn.Module, dict[str, Any]]:
    return NaNModel(), dict(META)


class RaisingModel(nn.Module):
    """Raises a RuntimeError on every batch, as a broken user model would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (simulated)")


def raising() -> tuple[nn.Module, dict[str, Any]]:
    return RaisingModel(), dict(META)


class SmallMemoryModel(TemplateModel):
    """The template model on a device that runs out of memory above 8 images a batch."""

    calls: list[int]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x.shape[0]))
        if x.shape[0] > 8:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(x)


SMALL_MEMORY_CALLS: list[int] = []
"""Batch sizes that :func:`small_memory`'s model saw, in order (for the tests)."""


def small_memory() -> tuple[nn.Module, dict[str, Any]]:
    model = SmallMemoryModel(_templates())
    model.calls = SMALL_MEMORY_CALLS
    return model, dict(META)


SLASHED = "stop/halt"
"""A class name with a slash, as GTSRB's "Speed limit (20km/h)" has."""


def template_slashed() -> tuple[nn.Module, dict[str, Any]]:
    """The template model with the class ``stop`` named :data:`SLASHED`."""
    names = [SLASHED if n == "stop" else n for n in LISA_CLASSES]
    return TemplateModel(_templates()), {**META, "class_names": names}


class MeanColourModel(nn.Module):
    """Weight-free: logits are a fixed linear map of the image's mean colour (43 classes)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w", torch.randn((n_classes, 3), generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) @ self.w.T


def gtsrb_mean() -> tuple[nn.Module, dict[str, Any]]:
    """``fixture_models:gtsrb_mean``: the GTSRB class list, bilinear resize."""
    from leafattack.data import GTSRB_CLASSES

    return MeanColourModel(len(GTSRB_CLASSES)), {
        **META,
        "class_names": list(GTSRB_CLASSES),
        "resize": "bilinear",
    }


class ConstantModel(nn.Module):
    """Ignores the image: the same logits for every input (class 0 wins)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros((x.shape[0], len(LISA_CLASSES)), device=x.device)
        logits[:, 0] = 5.0
        return logits


def constant() -> tuple[nn.Module, dict[str, Any]]:
    """``fixture_models:constant``: LISA classes, always ``addedLane``."""
    return ConstantModel(), dict(META)
