"""The search space of an adaptive attack: K leaf slots per scene, each a point of a unit cube.

Every slot has five coordinates in [0, 1]: ``x``, ``y`` (mapped linearly onto the bounding
box of the sign face), ``size`` (onto ``size_range`` LO..HI), ``angle`` (onto [0, 360)
degrees) and ``variant`` (the categorical leaf variant, ``floor(u * V)`` among the V
selected species x colours). A candidate scene is a float64 vector of ``5 * K`` such
coordinates, slot-major (``[x0, y0, size0, angle0, variant0, x1, ...]``), so every method
works on one plain box-bounded array and no categorical parametrisation is needed.

:class:`Scenes` holds decoded candidates in the arrays a
:class:`~leafattack.compose.scenes.SceneBatch` takes, for one or many signs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leafattack.errors import LeafattackError

MAX_LEAVES: int = 5
"""Most leaves per searched scene."""

SLOT_DIMS: tuple[str, ...] = ("x", "y", "size", "angle", "variant")
"""The unit-cube coordinates of one slot, in encoding order."""


@dataclass(frozen=True, slots=True)
class Scenes:
    """N candidate scenes of K slots, as the arrays of a SceneBatch (without the sign).

    Attributes:
        variant: int64 (N, K) leaf variant index (0 where absent).
        size: float64 (N, K) longest side / sign width, in (0, 2] (1.0 where absent).
        angle: float64 (N, K) degrees counter-clockwise in [0, 360).
        x, y: float64 (N, K) leaf centre as fractions of the sign width and height.
        present: bool (N, K) which slots hold a leaf.
    """

    variant: np.ndarray
    size: np.ndarray
    angle: np.ndarray
    x: np.ndarray
    y: np.ndarray
    present: np.ndarray

    def __post_init__(self) -> None:
        shape = self.present.shape
        for name in ("variant", "size", "angle", "x", "y"):
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"Scenes.{name} has shape {getattr(self, name).shape}, expected {shape}"
                )

    @property
    def n(self) -> int:
        return int(self.present.shape[0])

    def take(self, idx: np.ndarray | slice) -> Scenes:
        """The scenes at ``idx`` (an index array or slice)."""
        return Scenes(*(getattr(self, f)[idx] for f in Scenes.__slots__))

    @staticmethod
    def concat(parts: list[Scenes], slots: int) -> Scenes:
        """Scenes of several parts stacked along N (an empty list gives N = 0)."""
        if not parts:
            return Scenes(
                np.zeros((0, slots), np.int64), np.ones((0, slots)), np.zeros((0, slots)),
                np.zeros((0, slots)), np.zeros((0, slots)), np.zeros((0, slots), bool),
            )
        return Scenes(*(np.concatenate([getattr(p, f) for p in parts]) for f in Scenes.__slots__))


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """The space searched on one sign.

    Attributes:
        slots: K, leaves per scene (1 to :data:`MAX_LEAVES`).
        n_variants: V, leaf variants to choose from (>= 1).
        size_range: (LO, HI) with 0 < LO <= HI <= 2, longest side / sign width.
        face_box: (x0, y0, x1, y1) bounding box of the sign face, fractions of the image.

    Example:
        >>> sp = SearchSpace(1, 3, (0.2, 0.5), (0.0, 0.0, 1.0, 1.0))
        >>> s = sp.decode(np.full((1, 5), 0.5))
        >>> float(s.x[0, 0]), float(s.size[0, 0]), int(s.variant[0, 0])
        (0.5, 0.35, 1)
    """

    slots: int
    n_variants: int
    size_range: tuple[float, float]
    face_box: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        check_leaves_per_scene(self.slots)
        if self.n_variants < 1:
            raise LeafattackError("no leaf variants selected (expected at least one)")
        check_size_range(self.size_range)

    @property
    def dims(self) -> int:
        """Length of an encoded candidate, ``5 * K``."""
        return len(SLOT_DIMS) * self.slots

    def decode(self, z: np.ndarray, present: np.ndarray | None = None) -> Scenes:
        """Unit-cube vectors -> scenes.

        Args:
            z: float (N, 5K), values clipped into [0, 1].
            present: bool (N, K); default all slots present.

        Returns:
            The scenes, float64 parameters.
        """
        z = np.clip(np.asarray(z, dtype=np.float64), 0.0, 1.0)
        n = z.shape[0]
        u = z.reshape(n, self.slots, len(SLOT_DIMS))
        x0, y0, x1, y1 = self.face_box
        lo, hi = self.size_range
        variant = np.minimum((u[..., 4] * self.n_variants).astype(np.int64), self.n_variants - 1)
        return Scenes(
            variant=variant,
            size=lo + u[..., 2] * (hi - lo),
            angle=u[..., 3] * 360.0 % 360.0,
            x=x0 + u[..., 0] * (x1 - x0),
            y=y0 + u[..., 1] * (y1 - y0),
            present=np.ones((n, self.slots), bool) if present is None else present,
        )


def check_size_range(size_range: tuple[float, float]) -> None:
    """Raise LeafattackError unless ``0 < LO <= HI <= 2`` (finite)."""
    lo, hi = size_range
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi <= 2):
        raise LeafattackError(
            f"size_range {lo:g}:{hi:g}: expected LO:HI with 0 < LO <= HI <= 2 "
            "(longest side as a fraction of the sign width)"
        )


def check_leaves_per_scene(k: int) -> None:
    """Raise LeafattackError unless ``1 <= k <= MAX_LEAVES``."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_LEAVES:
        raise LeafattackError(
            f"leaves_per_scene={k}: expected 1 to {MAX_LEAVES} leaves per searched scene"
        )


def parse_size_range(text: str) -> tuple[float, float]:
    """``"0.2:0.5"`` -> (0.2, 0.5), checked by :func:`check_size_range`."""
    parts = str(text).split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise LeafattackError(f"size_range {text!r}: expected LO:HI, e.g. 0.2:0.5") from None
    check_size_range((lo, hi))
    return lo, hi
