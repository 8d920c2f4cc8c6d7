"""A weight-free model for the controls tests, importable as ``fixture_controls:mean_colour``.

It sees only the mean colour of the image: the logits are minus the squared distances of
that mean (RGB) to the mean colours of the 16 built-in signs. On signs whose masks cover the
image it is a function of the mean colour under the mask alone, so a leaf and any occluder
with the same alpha-weighted colour sum must give the same outcome.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from leafattack.data import LISA_CLASSES
from leafattack.data.builtin import render_sign_set


class MeanColourModel(nn.Module):
    """logits_k = -scale * ||mean_rgb(x) - mu_k||^2; input float (N, 3, H, W) in [0, 1]."""

    def __init__(self, centres: torch.Tensor, scale: float = 400.0) -> None:
        super().__init__()
        self.register_buffer("centres", centres)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.double().mean(dim=(2, 3))  # (N, 3)
        d = (m[:, None, :] - self.centres[None].double()).pow(2).sum(-1)
        return (-self.scale * d).float()


def mean_colour() -> tuple[nn.Module, dict[str, Any]]:
    """The model at 128 px with no resize (the full-resolution compositing path)."""
    signs = render_sign_set(128)
    centres = torch.stack(
        [torch.from_numpy(im).double().div(255.0).mean(dim=(0, 1)) for im in signs.images]
    )
    meta = {
        "class_names": list(LISA_CLASSES),
        "input_size": 128,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "resize": "bilinear",
        "arch": "mean_colour",
    }
    return MeanColourModel(centres), meta
