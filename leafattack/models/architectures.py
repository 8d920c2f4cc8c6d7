"""Architectures: the LISA-CNN, a multi-scale GTSRB CNN, and torchvision classifiers by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from leafattack.errors import LeafattackError


class LisaCNN(nn.Module):
    """LISA-CNN: conv 8×8/64 s2 → conv 6×6/128 s2 → conv 5×5/128 → fc.

    Shape: input (N, 3, 32, 32) float (normalised), output (N, num_classes) logits.
    The first convolution pads by 3 ("same" for stride 2), the others are unpadded,
    giving 16×16 → 6×6 → 2×2 feature maps.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=8, stride=2, padding=3),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, kernel_size=6, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 128, kernel_size=5),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(128 * 2 * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class MultiScaleCNN(nn.Module):
    """A Sermanet–LeCun style multi-scale CNN for 32×32 inputs.

    Three conv/pool stages (32, 64, 128 channels); the classifier sees the outputs of all
    three, each pooled to 4×4, so that coarse and fine features both reach it.

    Shape: input (N, 3, 32, 32) float, output (N, num_classes) logits.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()

        def stage(cin: int, cout: int, k: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, k, padding=k // 2),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.stage1 = stage(3, 32, 5)
        self.stage2 = stage(32, 64, 5)
        self.stage3 = stage(64, 128, 3)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Sequential(
            nn.Dropout(0.3),
            nn.Linear((32 + 64 + 128) * 16, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        feats = [torch.flatten(self.pool(s), 1) for s in (s1, s2, s3)]
        return self.classifier(torch.cat(feats, dim=1))


@dataclass(frozen=True, slots=True)
class Architecture:
    """A registered architecture: a factory plus its native input size."""

    factory: Callable[[int], nn.Module]
    input_size: int


ARCHITECTURES: dict[str, Architecture] = {
    "lisacnn": Architecture(LisaCNN, 32),
    "gtsrbcnn": Architecture(MultiScaleCNN, 32),
}
"""Built-in architectures; torchvision classification models are found by name on top."""


TORCHVISION_INPUT_SIZE = 64


def torchvision_architectures() -> list[str]:
    """Names of the torchvision classification models that :func:`build_model` accepts."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_model(arch: str, num_classes: int) -> nn.Module:
    """Build an untrained model by architecture name.

    Raises:
        LeafattackError: unknown architecture or non-positive class count.
    """
    if num_classes < 2:
        raise LeafattackError(f"num_classes={num_classes}: expected at least 2 classes")
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch].factory(num_classes)
    names = torchvision_architectures()
    if arch in names:
        import torchvision

        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    raise LeafattackError(
        f"unknown architecture {arch!r} (expected {', '.join(ARCHITECTURES)} "
        f"or a torchvision classification model such as resnet18)"
    )


def default_input_size(arch: str) -> int:
    """The input side length an architecture is trained at by default."""
    return ARCHITECTURES[arch].input_size if arch in ARCHITECTURES else TORCHVISION_INPUT_SIZE
