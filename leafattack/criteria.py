"""Success criteria: batched predicates over model outputs.

A criterion is called with class probabilities (N, K) and the true labels (N,) and
returns a bool (N,) tensor, True where the trial counts as a successful attack.
Criteria combine with ``&`` (both must hold) and ``|``.

Example:
    >>> crit = Untargeted() & MinConfidence(0.5)
    >>> success = crit(probs, labels)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


class Criterion:
    """Base class: a batched predicate ``(probs (N, K) float, labels (N,) int64) -> bool (N,)``."""

    def __call__(self, probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __and__(self, other: Criterion) -> Criterion:
        return _Both(self, other)

    def __or__(self, other: Criterion) -> Criterion:
        return _Either(self, other)


@dataclass(frozen=True, slots=True)
class _Both(Criterion):
    a: Criterion
    b: Criterion

    def __call__(self, probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.a(probs, labels) & self.b(probs, labels)

    def __repr__(self) -> str:
        return f"({self.a!r} & {self.b!r})"


@dataclass(frozen=True, slots=True)
class _Either(Criterion):
    a: Criterion
    b: Criterion

    def __call__(self, probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.a(probs, labels) | self.b(probs, labels)

    def __repr__(self) -> str:
        return f"({self.a!r} | {self.b!r})"


@dataclass(frozen=True, slots=True)
class Untargeted(Criterion):
    """Success when the top-1 prediction differs from the true label."""

    def __call__(self, probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return probs.argmax(dim=1) != labels


@dataclass(frozen=True, slots=True)
class Targeted(Criterion):
    """Success when the top-1 prediction is the ``target`` class index."""

    target: int

    def __post_init__(self) -> None:
        if self.target < 0:
            raise ValueError(f"Targeted target={self.target}: expected a class index >= 0")

    def __call__(self, probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.target >= probs.shape[1]:
            raise ValueError(
                f"Targeted target={self.target}: model has only {probs.shape[1]} classes"
            )
        return probs.argmax(dim=1) == self.target


@dataclass(frozen=True, slots=True)
class MinConfidence(Criterion):
    """Success when the top-1 probability is at least ``p`` (combine with another criterion)."""

    p: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.p) and 0.0 <= self.p <= 1.0):
            raise ValueError(f"MinConfidence p={self.p}: expected a probability in [0, 1]")

    def __call__(self, probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return probs.max(dim=1).values >= self.p


CRITERIA: dict[str, Callable[..., Criterion]] = {
    "untargeted": Untargeted,
    "targeted": Targeted,
    "min_confidence": MinConfidence,
}
"""Registry: criterion name → constructor."""


def build_criterion(target: int | None = None, min_confidence: float | None = None) -> Criterion:
    """The run's criterion: targeted if a target is given, else untargeted; AND a confidence floor.

    A targeted attack also requires the prediction to differ from the true label (a sign of
    the target class cannot be "attacked" into its own class).
    """
    crit: Criterion = Untargeted() if target is None else Untargeted() & Targeted(target)
    if min_confidence is not None:
        crit = crit & MinConfidence(min_confidence)
    return crit
