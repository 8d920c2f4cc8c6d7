"""The attack grid: which leaves, colours, sizes, rotations and positions to try.

:class:`GridSpec` only *chooses* parameters; :mod:`leafattack.compose` applies them.

Trial order
-----------
Trials are enumerated lazily, sign by sign. Within a sign the order is
``leaf → colour → size → angle → position`` (position varies fastest, row-major: ``y``
then ``x``). ``trial_id`` is the index in that order over the whole run, counting every
sign of the sign set (also signs that are skipped because the model misclassifies them
when clean), so a trial keeps its id whatever ``--limit-signs`` or the model does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from leafattack.errors import LeafattackError
from leafattack.leaves.colours import NATURAL
from leafattack.leaves.library import ALL_SPECIES

DEFAULT_SPECIES: tuple[str, ...] = ("maple", "oak", "poplar")
DEFAULT_SIZES: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5)
SIZE_UNITS: tuple[str, ...] = ("face", "cm")
"""Units of a grid's sizes: fractions of the sign face width, or centimetres."""
MAX_SIZE_CM: float = 500.0
"""Largest leaf size in centimetres a grid accepts."""
DEFAULT_ANGLES: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)


def parse_float_list(text: str, what: str) -> tuple[float, ...]:
    """Parse ``"0.1,0.2"`` into floats; LeafattackError naming ``what`` otherwise."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise LeafattackError(f"{what} {text!r}: expected a comma-separated list of numbers")
    try:
        values = tuple(float(t) for t in items)
    except ValueError:
        raise LeafattackError(
            f"{what} {text!r}: expected a comma-separated list of numbers"
        ) from None
    return values


def parse_angles(text: str) -> tuple[float, ...]:
    """Parse angles as ``"0,90,180"`` or ``"START:STOP:STEP"`` (stop exclusive), in degrees."""
    if ":" in text:
        parts = text.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            start, stop, step = (float(p) for p in parts)
        except ValueError:
            raise LeafattackError(
                f"angles {text!r}: expected START:STOP:STEP, e.g. 0:360:45"
            ) from None
        if not (math.isfinite(start) and math.isfinite(stop) and math.isfinite(step)):
            raise LeafattackError(f"angles {text!r}: expected finite numbers")
        if step <= 0 or stop <= start:
            raise LeafattackError(
                f"angles {text!r}: expected STOP > START and STEP > 0 (e.g. 0:360:45)"
            )
        count = (stop - start) / step
        if not math.isfinite(count):  # the span or the ratio overflows, e.g. -1e308:1e308:1
            raise LeafattackError(f"angles {text!r}: too many angles, expected at most 100000")
        n = max(1, math.ceil(count - 1e-9))  # START itself always lies before STOP
        if n > 100_000:
            raise LeafattackError(f"angles {text!r}: {n} angles, expected at most 100000")
        return tuple(round(start + i * step, 9) for i in range(n))
    return parse_float_list(text, "angles")


def parse_positions(text: str) -> tuple[int, int]:
    """Parse ``"NxM"`` (N columns across, M rows down) into ``(N, M)``."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise LeafattackError(f"positions {text!r}: expected NxM, e.g. 5x5")
    return int(m.group(1)), int(m.group(2))


def parse_names(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of names."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


@dataclass(frozen=True, slots=True)
class GridSpec:
    """The grid of a run.

    Attributes:
        leaf_ids: leaf ids to use (empty = every leaf of the chosen species).
        species: species to use; empty or ``("all",)`` = every species in the leaf
            library. The default, maple, oak and poplar, is the built-in library's; a
            config that names a leaf folder and no species gets ``("all",)`` (see
            :func:`leafattack.config.config_from_mapping`).
        colours: fall colours to recolour every leaf into; ``natural`` keeps the leaf as shipped.
        sizes: leaf's longest side as a fraction of the sign face width, each in (0, 2]
            (``size_unit="face"``), or in centimetres, each in (0, 500] (``size_unit="cm"``,
            converted per sign through :data:`leafattack.data.sizes.FACE_WIDTH_CM`).
        angles: rotations in degrees counter-clockwise.
        positions: ``(N, M)``: N columns × M rows of leaf centres over the sign's bounding box.
        on_sign_only: keep only lattice centres that lie on the sign mask.
    """

    leaf_ids: tuple[str, ...] = ()
    species: tuple[str, ...] = DEFAULT_SPECIES
    colours: tuple[str, ...] = (NATURAL,)
    sizes: tuple[float, ...] = DEFAULT_SIZES
    angles: tuple[float, ...] = DEFAULT_ANGLES
    positions: tuple[int, int] = (5, 5)
    on_sign_only: bool = False
    size_unit: str = "face"

    def __post_init__(self) -> None:
        if self.size_unit not in SIZE_UNITS:
            raise LeafattackError(
                f"size_unit={self.size_unit!r}: expected one of {', '.join(SIZE_UNITS)}"
            )
        if not self.colours:
            raise LeafattackError("colours: empty list (expected at least one colour or natural)")
        if not self.sizes:
            raise LeafattackError("sizes: empty list (expected at least one size in (0, 2])")
        for s in self.sizes:
            if self.size_unit == "cm" and not (math.isfinite(s) and 0 < s <= MAX_SIZE_CM):
                raise LeafattackError(f"size {s} cm: expected centimetres in (0, {MAX_SIZE_CM:g}]")
            if self.size_unit == "face" and not (math.isfinite(s) and 0 < s <= 2):
                raise LeafattackError(
                    f"size {s}: expected a fraction of the sign face width in (0, 2]"
                )
        if not self.angles:
            raise LeafattackError("angles: empty list (expected at least one angle in degrees)")
        for a in self.angles:
            if not math.isfinite(a):
                raise LeafattackError(f"angle {a}: expected a finite number of degrees")
        if ALL_SPECIES in self.species and len(self.species) > 1:
            raise LeafattackError(
                f"species {list(self.species)}: expected 'all' alone or a list of species"
            )
        n, m = self.positions
        if not (1 <= n <= 1000 and 1 <= m <= 1000):
            raise LeafattackError(f"positions {n}x{m}: expected NxM with 1 <= N, M <= 1000")
        for name, values in (
            ("sizes", self.sizes),
            ("angles", self.angles),
            ("colours", self.colours),
            ("species", self.species),
            ("leaf_ids", self.leaf_ids),
        ):
            if len(set(values)) != len(values):
                raise LeafattackError(f"{name} {list(values)}: contains duplicates")

    def lattice(self) -> np.ndarray:
        """Lattice of leaf centres in the unit square, row-major (y then x).

        Returns:
            float64 (M*N, 2) array of (u, v) in (0, 1): cell centres ``(i + 0.5) / N``.
        """
        n, m = self.positions
        u = (np.arange(n) + 0.5) / n
        v = (np.arange(m) + 0.5) / m
        vv, uu = np.meshgrid(v, u, indexing="ij")
        return np.stack([uu.ravel(), vv.ravel()], axis=1)


def mask_bbox(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of a bool (H, W) mask as fractions of width/height.

    An empty mask gives the whole image.
    """
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    if len(xs) == 0:
        return 0.0, 0.0, 1.0, 1.0
    return xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h


def sign_positions(grid: GridSpec, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leaf centres for one sign: the lattice mapped onto the mask's bounding box.

    Args:
        mask: bool (H, W) sign mask.

    Returns:
        ``(xy, index)``: float64 (P, 2) of (x, y) as fractions of the sign image's width and
        height, and int64 (P,) lattice cell indices (row-major). With ``on_sign_only`` only
        centres whose pixel lies on the mask are kept (P may be 0).
    """
    x0, y0, x1, y1 = mask_bbox(mask)
    lat = grid.lattice()
    xy = np.stack([x0 + lat[:, 0] * (x1 - x0), y0 + lat[:, 1] * (y1 - y0)], axis=1)
    xy = np.round(xy, 6)
    index = np.arange(len(xy), dtype=np.int64)
    if grid.on_sign_only:
        h, w = mask.shape
        px = np.clip((xy[:, 0] * w).astype(int), 0, w - 1)
        py = np.clip((xy[:, 1] * h).astype(int), 0, h - 1)
        keep = mask[py, px]
        xy, index = xy[keep], index[keep]
    return xy, index


@dataclass(frozen=True, slots=True)
class TrialPlan:
    """The enumerated trial space of a run, decoded lazily in vectorised batches.

    Attributes:
        n_variants: number of leaf variants (leaf × colour, leaf-major).
        sizes, angles: the grid's axes.
        positions: per sign, float64 (P_s, 3): leaf centres (x, y) as fractions, and the
            lattice cell index.
        active: per sign, whether it is attacked (correct when clean).
    """

    n_variants: int
    sizes: tuple[float, ...]
    angles: tuple[float, ...]
    positions: tuple[np.ndarray, ...]
    active: np.ndarray
    per_sign: np.ndarray = field(init=False)
    start: np.ndarray = field(init=False)
    active_start: np.ndarray = field(init=False)
    n_positions: np.ndarray = field(init=False)
    position_start: np.ndarray = field(init=False)
    all_positions: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.n_variants < 1:
            raise LeafattackError("the grid selects no leaves (expected at least one leaf)")
        if len(self.active) != len(self.positions):
            raise ValueError("TrialPlan.active must have one entry per sign")
        block = self.n_variants * len(self.sizes) * len(self.angles)
        per_sign = np.array([block * len(p) for p in self.positions], dtype=np.int64)
        object.__setattr__(self, "per_sign", per_sign)
        object.__setattr__(self, "start", np.concatenate([[0], np.cumsum(per_sign)]))
        counts = np.where(np.asarray(self.active, dtype=bool), per_sign, 0)
        object.__setattr__(self, "active_start", np.concatenate([[0], np.cumsum(counts)]))
        # every sign's positions in one array, so decoding gathers them without a loop
        n_pos = np.array([len(p) for p in self.positions], dtype=np.int64)
        object.__setattr__(self, "n_positions", n_pos)
        object.__setattr__(self, "position_start", np.concatenate([[0], np.cumsum(n_pos)]))
        stacked = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in self.positions]
        object.__setattr__(
            self, "all_positions", np.concatenate(stacked) if stacked else np.empty((0, 3))
        )

    @property
    def total(self) -> int:
        """Number of trials in the grid, all signs counted."""
        return int(self.start[-1])

    @property
    def total_active(self) -> int:
        """Number of trials that are run (signs correct when clean)."""
        return int(self.active_start[-1])

    def decode(self, k0: int, k1: int) -> dict[str, np.ndarray]:
        """Decode the active trials ``k0 <= k < k1`` (see :meth:`decode_active`)."""
        return self.decode_active(np.arange(k0, k1, dtype=np.int64))

    def active_index(self, trial_ids: np.ndarray) -> np.ndarray:
        """Map trial ids of attacked signs to active indices (int64, same shape).

        Raises:
            LeafattackError: an id outside the grid or of a sign that was not attacked.
        """
        t = np.asarray(trial_ids, dtype=np.int64)
        if t.size and (t.min() < 0 or t.max() >= self.total):
            raise LeafattackError(f"trial ids must lie in 0..{self.total - 1}")
        sign = np.searchsorted(self.start, t, side="right") - 1
        if not np.asarray(self.active, dtype=bool)[sign].all():
            raise LeafattackError("trial ids refer to signs that were not attacked")
        return self.active_start[sign] + (t - self.start[sign])

    def decode_active(self, k: np.ndarray) -> dict[str, np.ndarray]:
        """Decode active trial indices into per-trial parameters.

        Args:
            k: int64 (N,) indices into the active trials, ``0 <= k < total_active``.

        Returns:
            dict of int64/float64 arrays, each of shape (N,): ``trial_id``, ``sign``,
            ``variant``, ``size_idx``, ``angle_idx``, ``x``, ``y``, ``position``.
        """
        k = np.asarray(k, dtype=np.int64)
        sign = np.searchsorted(self.active_start, k, side="right") - 1
        local = k - self.active_start[sign]
        trial_id = self.start[sign] + local
        n_pos = self.n_positions[sign]
        pos = local % n_pos
        rest = local // n_pos
        angle_idx = rest % len(self.angles)
        rest //= len(self.angles)
        size_idx = rest % len(self.sizes)
        variant = rest // len(self.sizes)
        xyi = self.all_positions[self.position_start[sign] + pos]
        return {
            "trial_id": trial_id,
            "sign": sign,
            "variant": variant,
            "size_idx": size_idx,
            "angle_idx": angle_idx,
            "x": xyi[:, 0],
            "y": xyi[:, 1],
            "position": xyi[:, 2].astype(np.int64),
        }


def angle_range(angles: tuple[float, ...]) -> tuple[float, float]:
    """The interval random scenes draw angles from: the full circle ``[a0, a0 + 360)`` when
    the grid's angles are evenly spaced around it (the default 0, 45, ..., 315), else from
    the smallest to the largest angle.

    Example:
        >>> angle_range((0.0, 90.0, 180.0, 270.0)), angle_range((0.0, 30.0))
        ((0.0, 360.0), (0.0, 30.0))
    """
    a = np.sort(np.asarray(angles, dtype=np.float64))
    if len(a) >= 2:
        step = np.diff(a)
        if np.allclose(step, step[0]) and math.isclose(a[-1] + step[0], a[0] + 360.0):
            return float(a[0]), float(a[0]) + 360.0
    return float(a[0]), float(a[-1])


def sample_litter(
    n_scenes: int,
    leaves: int,
    n_variants: int,
    sizes: tuple[float, float],
    angles: tuple[float, float],
    face: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Choose ``n_scenes`` random scenes of ``leaves`` leaves each on one sign ("leaf litter").

    Leaf centres are uniform over the sign face (a random face pixel, then a uniform point
    inside it), sizes uniform in ``sizes`` (low, high), angles uniform in ``angles``
    (low, high) and variants uniform among ``n_variants``. This only chooses parameters;
    :func:`leafattack.compose.scenes.render_scenes` applies them.

    Args:
        face: bool (H, W) sign face; an empty face means the whole image.
        rng: the only source of randomness.

    Returns:
        ``variant`` int64, ``size``, ``angle``, ``x``, ``y`` float64, each (n_scenes, leaves);
        x, y are fractions of the image width and height.

    Example:
        >>> p = sample_litter(2, 3, 4, (0.2, 0.4), (0, 360), np.ones((8, 8), bool),
        ...                   np.random.default_rng(0))
        >>> p["x"].shape, bool(((p["size"] >= 0.2) & (p["size"] <= 0.4)).all())
        ((2, 3), True)
    """
    h, w = face.shape
    rows, cols = np.nonzero(face) if face.any() else np.nonzero(np.ones_like(face, bool))
    shape = (n_scenes, leaves)
    pick = rng.integers(0, len(rows), size=shape)
    jitter = rng.random((2, *shape))
    return {
        "variant": rng.integers(0, n_variants, size=shape).astype(np.int64),
        "size": rng.uniform(sizes[0], sizes[1], size=shape),
        "angle": rng.uniform(angles[0], angles[1], size=shape),
        "x": (cols[pick] + jitter[0]) / w,
        "y": (rows[pick] + jitter[1]) / h,
    }


@dataclass(frozen=True, slots=True)
class ScenePlan:
    """Random scenes of K leaves, ``per_sign`` per sign: trial ``s * per_sign + j`` is
    scene j of sign s (inactive signs keep their ids but are skipped).

    Attributes:
        scenes: per sign, the :func:`sample_litter` parameters of its scenes.
        active: per sign, whether it is attacked.
    """

    scenes: tuple[dict[str, np.ndarray], ...]
    per_sign: int
    active: np.ndarray
    active_signs: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if len(self.active) != len(self.scenes):
            raise ValueError("ScenePlan.active must have one entry per sign")
        idx = np.flatnonzero(np.asarray(self.active, dtype=bool)).astype(np.int64)
        object.__setattr__(self, "active_signs", idx)

    @property
    def leaves(self) -> int:
        """Leaves per scene (K)."""
        return int(self.scenes[0]["x"].shape[1]) if self.scenes else 1

    @property
    def total(self) -> int:
        return len(self.scenes) * self.per_sign

    @property
    def total_active(self) -> int:
        return len(self.active_signs) * self.per_sign

    def active_index(self, trial_ids: np.ndarray) -> np.ndarray:
        """Map trial ids of attacked signs to active indices (int64, same shape)."""
        t = np.asarray(trial_ids, dtype=np.int64)
        if t.size and (t.min() < 0 or t.max() >= self.total):
            raise LeafattackError(f"trial ids must lie in 0..{self.total - 1}")
        sign = t // self.per_sign
        pos = np.searchsorted(self.active_signs, sign)
        ok = (pos < len(self.active_signs)) & (
            self.active_signs[np.minimum(pos, len(self.active_signs) - 1)] == sign
        )
        if not ok.all():
            raise LeafattackError("trial ids refer to signs that were not attacked")
        return pos * self.per_sign + t % self.per_sign

    def decode(self, k0: int, k1: int) -> dict[str, np.ndarray]:
        """Decode the active scenes ``k0 <= k < k1`` (see :meth:`decode_active`)."""
        return self.decode_active(np.arange(k0, k1, dtype=np.int64))

    def decode_active(self, k: np.ndarray) -> dict[str, np.ndarray]:
        """Active scene indices -> ``trial_id`` and ``sign`` (N,), and ``variant``, ``size``,
        ``angle``, ``x``, ``y`` (N, K)."""
        k = np.asarray(k, dtype=np.int64)
        sign = self.active_signs[k // self.per_sign]
        j = k % self.per_sign
        out: dict[str, np.ndarray] = {"trial_id": sign * self.per_sign + j, "sign": sign}
        for name in ("variant", "size", "angle", "x", "y"):
            first = self.scenes[0][name]
            values = np.empty((len(k), first.shape[1]), dtype=first.dtype)
            for s in np.unique(sign):  # signs of one batch: usually one or two
                sel = sign == s
                values[sel] = self.scenes[s][name][j[sel]]
            out[name] = values
        return out


Plan = TrialPlan | ScenePlan
"""The trial space of a run: the grid (one leaf per trial) or random multi-leaf scenes."""
