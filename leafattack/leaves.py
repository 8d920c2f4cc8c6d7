"""Fall leaves: a procedural leaf library, recolouring, and the leaf folder format.

A leaf is an RGBA cut-out (:class:`Leaf`) in a canonical orientation: the petiole
(stalk) at the bottom, the tip up. Leaves come from three places:

* :func:`generate_leaf` draws one from a species' shape generator in :data:`SPECIES`
  and paints it in a fall colour of :data:`FALL_COLOURS` (veins, margin gradient,
  blotches, spots, fine texture);
* :func:`load_leaves` reads a leaf folder (``manifest.csv`` + RGBA PNGs), such as the
  built-in library in ``leaves/`` (:func:`builtin_leaves_dir`, written by
  :func:`write_leaf_library`) or the output of :func:`leafattack.segment.segment_files`;
* :func:`recolour` turns any leaf into another fall colour while keeping its shape,
  alpha and luminance detail, so that colour is a grid axis separate from species.

Leaf folder layout::

    FOLDER/
      manifest.csv     columns file,species,colour,source (one row per leaf)
      <leaf_id>.png    RGBA, alpha = the leaf's mask; leaf_id is the file's stem

Example:
    >>> rng = np.random.default_rng(0)
    >>> leaf = generate_leaf("maple", "red", rng, size=128)
    >>> leaf.rgba.dtype, leaf.rgba.shape[2], leaf.leaf_id
    (dtype('uint8'), 4, 'maple_red')
    >>> recolour(leaf, "orange").leaf_id
    'maple_red@orange'
"""

from __future__ import annotations

import csv
import logging
import math
import os
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import ArrayLike

from leafattack.errors import LeafattackError
from leafattack.imageio import read_rgba, write_png

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS: tuple[str, ...] = ("file", "species", "colour", "source")
"""Columns of a leaf folder's ``manifest.csv``, in order."""

NATURAL = "natural"
"""The colour name of leaves segmented from photographs (their own colours)."""

RGB = tuple[int, int, int]


# ---------------------------------------------------------------------------
# Colours
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Palette:
    """The colours a leaf of one fall colour is painted with (RGB, 0..255 each).

    Attributes:
        base: the blade's main colour (also the value in :data:`FALL_COLOURS`).
        margin: towards the edge of the blade (fall colour progresses from the margin).
        near_vein: in the band along the veins (keeps chlorophyll longest).
        vein: the veins and the petiole themselves.
        spot: small dark spots (fungal "tar spots").
    """

    base: RGB
    margin: RGB
    near_vein: RGB
    vein: RGB
    spot: RGB

    def __post_init__(self) -> None:
        for name in ("base", "margin", "near_vein", "vein", "spot"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in value):
                raise ValueError(f"Palette.{name} = {value!r}, expected three ints in 0..255")


PALETTES: dict[str, Palette] = {
    #                 base            margin          near_vein       vein             spot
    "green": Palette((72, 118, 44), (104, 128, 40), (88, 136, 56), (158, 182, 104), (52, 76, 30)),
    "yellow": Palette(
        (222, 186, 48), (212, 146, 36), (188, 184, 64), (238, 218, 128), (140, 96, 34)
    ),
    "orange": Palette(
        (226, 118, 32), (192, 62, 28), (230, 164, 44), (240, 192, 104), (116, 58, 26)
    ),
    "red": Palette((178, 36, 32), (118, 20, 28), (206, 92, 38), (216, 124, 84), (84, 20, 20)),
    "brown": Palette((128, 82, 42), (86, 52, 28), (152, 108, 52), (178, 138, 88), (58, 34, 20)),
}
"""The painting palette of each fall colour (a parameter table; see :class:`Palette`)."""

FALL_COLOURS: dict[str, RGB] = {name: pal.base for name, pal in PALETTES.items()}
"""Fall colour name -> representative RGB (uint8 values) of a leaf of that colour."""

LIBRARY_COLOURS: tuple[str, ...] = ("green", "yellow", "red")
"""Colours the built-in library ships; orange and brown are reached through :func:`recolour`."""


# ---------------------------------------------------------------------------
# The Leaf type
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leaf:
    """One leaf cut-out.

    Attributes:
        rgba: uint8 array (H, W, 4), RGB plus alpha (0 = transparent, 255 = opaque),
            cropped tight around the leaf; canonical orientation with the petiole at
            the bottom and the tip up. Stored read-only.
        leaf_id: unique name in its library, e.g. ``"maple_red_0"``; a recoloured leaf
            is ``"<base id>@<colour>"``.
        species: e.g. ``"maple"`` (a :data:`SPECIES` key for generated leaves, any
            name for photographed ones).
        colour: a :data:`FALL_COLOURS` name, or ``"natural"`` for segmented photos.
        source: ``"generated"`` or the path of the photo the leaf was cut from.
    """

    rgba: np.ndarray
    leaf_id: str
    species: str
    colour: str
    source: str = "generated"

    def __post_init__(self) -> None:
        arr = self.rgba
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"Leaf.rgba is a {type(arr).__name__}, expected a numpy array")
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 4:
            raise ValueError(
                f"Leaf.rgba has dtype {arr.dtype} and shape {arr.shape}, expected uint8 (H, W, 4)"
            )
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"Leaf.rgba has shape {arr.shape}, expected at least 1x1 pixels")
        if not arr[..., 3].any():
            raise ValueError(
                f"Leaf {self.leaf_id!r} has an empty alpha channel, expected some opaque pixels"
            )
        for name in ("leaf_id", "species", "colour"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Leaf.{name} = {value!r}, expected a non-empty string")
        if self.colour not in FALL_COLOURS and self.colour != NATURAL:
            raise ValueError(
                f"Leaf.colour = {self.colour!r}, expected one of "
                f"{', '.join([*FALL_COLOURS, NATURAL])}"
            )
        view = arr.view()
        view.flags.writeable = False
        object.__setattr__(self, "rgba", view)

    @property
    def alpha(self) -> np.ndarray:
        """float32 (H, W) alpha in [0, 1]."""
        return self.rgba[..., 3].astype(np.float32) / 255.0

    @property
    def base_id(self) -> str:
        """The id without any ``@colour`` suffix added by :func:`recolour`."""
        return self.leaf_id.split("@", 1)[0]


# ---------------------------------------------------------------------------
# Geometry: outlines in leaf units (blade length ~1, x right, y up, petiole joins at (0, 0))
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Vein:
    points: np.ndarray  # float64 (M, 2) polyline in leaf units
    width_start: float  # leaf units
    width_end: float


@dataclass(frozen=True, slots=True)
class _Shape:
    outline: np.ndarray  # float64 (N, 2) closed blade polygon, counter-clockwise
    veins: tuple[_Vein, ...]
    petiole: np.ndarray  # float64 (K, 2) polyline from the blade downwards
    petiole_width: float
    extra: tuple[np.ndarray, ...] = ()  # more blade polygons (lobes), filled as a union
    smooth: float = 0.0  # blur radius (leaf units) that rounds the union's sinuses


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _bezier(p0: ArrayLike, p1: ArrayLike, p2: ArrayLike, n: int = 24) -> np.ndarray:
    """Quadratic Bezier curve through p0 and p2 with control point p1, as (n, 2) points."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return np.asarray((1 - t) ** 2 * a + 2 * (1 - t) * t * b + t**2 * c)


def _random_wave(
    rng: np.random.Generator, amplitude: float, wavelengths: Sequence[float]
) -> Callable[[np.ndarray], np.ndarray]:
    """A smooth random function of one variable: a sum of sines with random phases."""
    phases = rng.uniform(0.0, 2.0 * math.pi, len(wavelengths))
    weights = rng.uniform(0.5, 1.0, len(wavelengths))
    weights = weights / weights.sum()

    def wave(x: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x, dtype=np.float64)
        for lam, ph, w in zip(wavelengths, phases, weights, strict=True):
            out += w * np.sin(2.0 * math.pi * x / lam + ph)
        return amplitude * out

    return wave


def _resample(points: np.ndarray, tip: np.ndarray, step: float) -> tuple[np.ndarray, int]:
    """Resample a closed polygon at even arc-length steps; keep point 0 (the base) first.

    Returns the new (N, 2) points and the index of the point nearest to ``tip``.
    """
    closed = np.concatenate([points, points[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    keep = np.concatenate([[True], seg > 1e-12])
    closed = closed[np.concatenate([keep[:-1], [True]])] if not keep.all() else closed
    seg = np.hypot(*np.diff(closed, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(16, int(round(s[-1] / step)))
    s_new = np.linspace(0.0, s[-1], n, endpoint=False)
    out = np.stack([np.interp(s_new, s, closed[:, 0]), np.interp(s_new, s, closed[:, 1])], axis=1)
    tip_idx = int(np.argmin(np.hypot(out[:, 0] - tip[0], out[:, 1] - tip[1])))
    return out, tip_idx


def _outward_normals(points: np.ndarray) -> np.ndarray:
    """Unit outward normals of a closed counter-clockwise polygon, (N, 2)."""
    tangent = np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)
    norm = np.hypot(tangent[:, 0], tangent[:, 1])[:, None]
    tangent = tangent / np.maximum(norm, 1e-12)
    return np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)


@dataclass(frozen=True, slots=True)
class _Teeth:
    """One order of margin teeth: spacing and height in leaf units, and profile."""

    period: float
    amplitude: float
    sharpness: float = 1.6  # exponent of the serrate profile; higher = longer, steeper teeth
    crenate: bool = False  # rounded teeth (scalloped margin) instead of saw teeth


def _serrate(
    points: np.ndarray,
    tip: np.ndarray,
    teeth: Sequence[_Teeth],
    rng: np.random.Generator,
    *,
    base_taper: float = 0.12,
    tip_taper: float = 0.04,
    step: float = 0.0015,
) -> np.ndarray:
    """Add teeth along the margin of a smooth counter-clockwise outline.

    Each side (base -> tip) gets its own sequence of teeth that point towards the tip:
    the displacement along the outward normal rises slowly with the distance ``u`` from
    the base and falls sharply, like the teeth of a real serrate margin.
    """
    pts, tip_idx = _resample(points, tip, step)
    seg = np.hypot(*np.diff(np.concatenate([pts, pts[:1]]), axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)[:-1]])
    total = float(seg.sum())
    s_tip = float(s[tip_idx])
    right = s <= s_tip
    u = np.where(right, s, total - s)
    side_len = np.where(right, s_tip, total - s_tip)
    pos = u / np.maximum(side_len, 1e-9)
    disp = np.zeros(len(pts))
    for order in teeth:
        for side in (right, ~right):
            jitter = _random_wave(rng, 0.25 * order.period, (0.7, 0.31, 0.17))
            phase = rng.uniform(0.0, 1.0)
            f = np.mod((u[side] + jitter(u[side])) / order.period + phase, 1.0)
            if order.crenate:
                prof = np.sin(math.pi * f) ** 0.6 - 0.5
            else:
                prof = f**order.sharpness - 0.4
            disp[side] += order.amplitude * prof
    taper = _smoothstep(0.0, base_taper, pos) * _smoothstep(0.0, tip_taper, 1.0 - pos)
    return np.asarray(pts + _outward_normals(pts) * (disp * taper)[:, None])


def _midrib_outline(
    t: np.ndarray,
    w_right: np.ndarray,
    w_left: np.ndarray,
    *,
    slant: float,
    bend: float,
    drop: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blade outline from half-widths along a (slightly bent) midrib.

    ``t`` runs 0 (base) .. 1 (tip); margin points are pushed towards the tip by
    ``slant * width`` (so lobes and teeth lean forward) and down by ``drop`` (cordate
    or truncate bases). Returns the counter-clockwise polygon starting at the base,
    and the tip point.
    """
    xm = bend * t**2
    dy = np.zeros_like(t) if drop is None else drop
    right = np.stack([xm + w_right, t + slant * w_right - dy], axis=1)
    left = np.stack([xm - w_left, t + slant * w_left - dy], axis=1)[::-1]
    pts = np.concatenate([right, left[1:-1]])
    return pts, right[-1].copy()


def _midrib_point(t: float, bend: float) -> tuple[float, float]:
    return (bend * t * t, t)


def _pinnate_veins(
    width: Callable[[np.ndarray], np.ndarray],
    ts: Iterable[float],
    *,
    side: float,
    bend: float,
    slant: float,
    forward: float,
    reach: float = 0.88,
    width_start: float = 0.009,
) -> list[_Vein]:
    """Secondary veins leaving the midrib at ``ts`` and curving up to the margin."""
    veins = []
    for t0 in ts:
        t1 = min(t0 + forward, 0.97)
        w1 = float(width(np.array([t1]))[0])
        start = _midrib_point(t0, bend)
        end = (bend * t1 * t1 + side * reach * w1, t1 + slant * reach * w1)
        ctrl = (start[0] + 0.55 * (end[0] - start[0]), start[1] + 0.2 * (end[1] - start[1]))
        veins.append(_Vein(_bezier(start, ctrl, end), width_start, 0.3 * width_start))
    return veins


def _midrib_vein(bend: float, t_end: float = 0.97, width: float = 0.02) -> _Vein:
    t = np.linspace(0.0, t_end, 40)
    return _Vein(np.stack([bend * t**2, t], axis=1), width, 0.25 * width)


def _petiole(rng: np.random.Generator, length: float) -> np.ndarray:
    """A gently curved stalk from inside the blade base down to ``length`` below it."""
    s = np.linspace(0.0, 1.0, 30)
    bend = rng.uniform(-0.12, 0.12) * length
    return np.stack([bend * s**2, 0.03 - (length + 0.03) * s], axis=1)


# ---------------------------------------------------------------------------
# Species
# ---------------------------------------------------------------------------


def _polar_outline(
    radius: Callable[[np.ndarray], np.ndarray], centre_y: float, n: int = 4000
) -> tuple[np.ndarray, np.ndarray]:
    """Outline r(theta) around (0, centre_y); theta from +y, clockwise; start at the base."""
    theta = np.linspace(math.pi, -math.pi, n, endpoint=False)
    r = radius(theta)
    pts = np.stack([r * np.sin(theta), centre_y + r * np.cos(theta)], axis=1)
    tip = np.array([0.0, centre_y + float(radius(np.array([0.0]))[0])])
    return pts, tip


_SOFTMAX_P = 8.0


def _maple(rng: np.random.Generator) -> _Shape:
    """Maple: five palmate lobes with pointed, toothed tips and deep sinuses."""
    upper = math.radians(rng.uniform(48.0, 58.0))
    lower = math.radians(rng.uniform(102.0, 118.0))
    # (angle, length, half-angle) of each main lobe; small random asymmetry.
    lobes = [
        (0.0 + rng.normal(0, 0.03), 1.0, 0.44),
        (upper + rng.normal(0, 0.04), rng.uniform(0.86, 0.96), 0.44),
        (-upper + rng.normal(0, 0.04), rng.uniform(0.86, 0.96), 0.44),
        (lower + rng.normal(0, 0.04), rng.uniform(0.46, 0.58), 0.36),
        (-lower + rng.normal(0, 0.04), rng.uniform(0.46, 0.58), 0.36),
    ]
    sinus = rng.uniform(0.26, 0.34)
    base_r = rng.uniform(0.16, 0.22)
    sub = rng.uniform(0.76, 0.84)  # height of the side points of the three upper lobes
    # (angle, length, half-angle, index of the main lobe it belongs to)
    tents: list[tuple[float, float, float, int]] = []
    for k, (phi, length, width) in enumerate(lobes):
        tents.append((phi, length, width, k))
        if k < 3:
            for sgn in (-1.0, 1.0):
                tents.append((phi + sgn * 0.62 * width, sub * length, 0.42 * width, k))
        else:
            tents.append((phi - math.copysign(0.55 * width, phi), 0.72 * length, 0.4 * width, k))

    def radius(theta: np.ndarray) -> np.ndarray:
        floor = sinus - (sinus - base_r) * _smoothstep(2.35, math.pi, np.abs(theta))
        # a soft maximum (p-norm) of the lobes rounds the bottoms of the sinuses
        acc = floor**_SOFTMAX_P
        for phi, length, width, _k in tents:
            d = np.abs(np.angle(np.exp(1j * (theta - phi))))
            acc += (length * np.clip(1.0 - d / width, 0.0, 1.0) ** 0.6) ** _SOFTMAX_P
        return np.asarray(acc ** (1.0 / _SOFTMAX_P))

    outline, tip = _polar_outline(radius, base_r)
    outline = _serrate(
        outline, tip, [_Teeth(0.055, 0.016, 1.8)], rng, base_taper=0.05, tip_taper=0.01
    )
    centre = np.array([0.0, base_r])

    def towards(phi: float, r: float) -> np.ndarray:
        return np.asarray(centre + r * np.array([math.sin(phi), math.cos(phi)]))

    veins = []
    for k, (phi, length, _width) in enumerate(lobes):
        w0 = 0.02 if k == 0 else (0.017 if k < 3 else 0.012)
        veins.append(
            _Vein(
                _bezier(centre, towards(phi, 0.5 * length), towards(phi, 0.95 * length)), w0, 0.004
            )
        )
    for phi, length, _width, k in tents:
        if phi == lobes[k][0]:
            continue
        start = towards(lobes[k][0], 0.38 * lobes[k][1])
        end = towards(phi, 0.93 * length)
        veins.append(_Vein(_bezier(start, 0.5 * (start + end), end), 0.009, 0.003))
    petiole = _petiole(rng, rng.uniform(0.42, 0.58))
    return _Shape(outline, tuple(veins), petiole, 0.024)


def _ellipse(
    centre: np.ndarray, direction: np.ndarray, a: float, b: float, n: int = 120
) -> np.ndarray:
    """Ellipse polygon with semi-axis ``a`` along unit ``direction`` and ``b`` across it."""
    phi = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    across = np.array([-direction[1], direction[0]])
    pts = centre + np.outer(a * np.cos(phi), direction) + np.outer(b * np.sin(phi), across)
    return np.asarray(pts)


def _oak(rng: np.random.Generator) -> _Shape:
    """White oak: obovate blade with 3-4 rounded lobes per side and deep rounded sinuses."""
    n_lobes = int(rng.integers(3, 5))
    half = rng.uniform(0.3, 0.36)
    bend = rng.uniform(-0.04, 0.04)

    def envelope(tt: float) -> float:
        return half * math.sin(math.pi * min(max(tt, 0.0), 1.0) ** 0.75) ** 0.6 * (0.6 + 0.55 * tt)

    t = np.linspace(0.0, 1.0, 600)
    body_w = np.array([0.32 * envelope(float(x)) for x in t]) * (1.0 - _smoothstep(0.9, 1.0, t))
    body_w = np.maximum(body_w, 0.03 * np.sin(math.pi * t))
    outline, tip = _midrib_outline(t, body_w, body_w, slant=0.0, bend=bend)
    lobes: list[np.ndarray] = []
    veins = [_midrib_vein(bend)]
    spacing = 0.78 / n_lobes
    for side in (1.0, -1.0):
        offset = rng.uniform(0.0, 0.35) * spacing
        for j in range(n_lobes):
            t0 = 0.1 + offset + (j + 0.2) * spacing + rng.normal(0.0, 0.02)
            angle = math.radians(rng.uniform(50.0, 65.0) - 8.0 * j / n_lobes)
            direction = np.array([side * math.sin(angle), math.cos(angle)])
            reach = envelope(t0 + 0.5 * spacing) * rng.uniform(1.05, 1.2) / math.sin(angle)
            start = np.array(_midrib_point(t0, bend))
            lobe_b = 0.36 * spacing * rng.uniform(0.85, 1.0)
            centre = start + direction * 0.5 * reach
            lobes.append(_ellipse(centre, direction, 0.5 * reach + 0.02, lobe_b))
            tip_pt = start + direction * 0.92 * reach
            veins.append(
                _Vein(_bezier(start, start + direction * 0.45 * reach, tip_pt), 0.011, 0.003)
            )
    top = np.array(_midrib_point(0.86, bend))
    lobes.append(_ellipse(top, np.array([0.0, 1.0]), 0.15, rng.uniform(0.09, 0.12)))
    petiole = _petiole(rng, rng.uniform(0.1, 0.16))
    return _Shape(outline, tuple(veins), petiole, 0.026, tuple(lobes), smooth=0.018)


def _poplar(rng: np.random.Generator) -> _Shape:
    """Poplar (cottonwood / aspen): broad deltoid blade, truncate base, coarse crenate teeth."""
    t = np.linspace(0.0, 1.0, 1500)
    half = rng.uniform(0.5, 0.6)
    t0 = rng.uniform(0.16, 0.24)
    bend = rng.uniform(-0.04, 0.04)
    dip = rng.uniform(0.03, 0.08)
    slant = 0.12

    def width(tt: np.ndarray) -> np.ndarray:
        low = np.sqrt(np.clip(1.0 - (1.0 - tt / t0) ** 2, 0.0, 1.0))
        high = np.clip((1.0 - tt) / (1.0 - t0), 0.0, 1.0) ** 1.3
        return np.asarray(half * np.where(tt < t0, low, high))

    w = width(t)
    drop = dip * np.clip(1.0 - t / t0, 0.0, 1.0) * w / half
    outline, tip = _midrib_outline(
        t, w, w * rng.uniform(0.95, 1.05), slant=slant, bend=bend, drop=drop
    )
    outline = _serrate(outline, tip, [_Teeth(0.075, 0.022, 1.0, crenate=True)], rng, base_taper=0.2)
    veins = [_midrib_vein(bend)]
    for side in (1.0, -1.0):
        basal = _bezier((0.0, 0.0), (side * 0.25 * half, 0.05), (side * 0.8 * half, t0 + 0.05))
        veins.append(_Vein(basal, 0.012, 0.004))
        veins += _pinnate_veins(
            width, [0.2, 0.34, 0.48, 0.62], side=side, bend=bend, slant=slant, forward=0.12
        )
    petiole = _petiole(rng, rng.uniform(0.4, 0.55))
    return _Shape(outline, tuple(veins), petiole, 0.022)


def _birch(rng: np.random.Generator) -> _Shape:
    """Birch: ovate blade with an acuminate tip and a doubly serrate margin."""
    t = np.linspace(0.0, 1.0, 1500)
    half = rng.uniform(0.31, 0.37)
    bend = rng.uniform(-0.05, 0.05)
    slant = 0.25
    a = math.log(0.5) / math.log(rng.uniform(0.32, 0.38))  # widest at ~1/3 of the length

    def width(tt: np.ndarray) -> np.ndarray:
        body = np.sin(math.pi * np.clip(tt, 0, 1) ** a) ** 1.15
        return np.asarray(half * body * (1.0 - 0.35 * _smoothstep(0.7, 1.0, tt)))

    w = width(t)
    outline, tip = _midrib_outline(t, w, w, slant=slant, bend=bend)
    n_sec = int(rng.integers(8, 11))
    major = 0.9 / n_sec
    outline = _serrate(
        outline, tip, [_Teeth(major, 0.022, 2.2), _Teeth(major / 4.0, 0.008, 1.6)], rng
    )
    ts = np.linspace(0.07, 0.8, n_sec)
    veins = [_midrib_vein(bend)]
    for side in (1.0, -1.0):
        veins += _pinnate_veins(
            width, ts, side=side, bend=bend, slant=slant, forward=0.14, reach=0.95
        )
    petiole = _petiole(rng, rng.uniform(0.18, 0.26))
    return _Shape(outline, tuple(veins), petiole, 0.02)


def _ginkgo(rng: np.random.Generator) -> _Shape:
    """Ginkgo: a fan wider than tall, with a central notch and fine radiating veins."""
    spread = math.radians(rng.uniform(68.0, 78.0))
    notch = rng.uniform(0.25, 0.45)
    notch_w = rng.uniform(0.08, 0.14)
    wave = _random_wave(rng, 0.025, (0.5, 0.23, 0.11))

    def radius(theta: np.ndarray) -> np.ndarray:
        corner = 1.0 - 0.3 * np.abs(theta / spread) ** 5
        cut = 1.0 - notch * np.clip(1.0 - np.abs(theta) / notch_w, 0.0, 1.0) ** 1.5
        return np.asarray(corner * cut * (1.0 + wave(theta)))

    theta = np.linspace(spread, -spread, 1200)
    r = radius(theta)
    arc = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
    s = np.linspace(0.0, 1.0, 200)[1:-1, None]
    bow = 0.06
    right_c, left_c = arc[0], arc[-1]
    right_side = s * right_c + bow * np.sin(math.pi * s) * np.array([-right_c[1], right_c[0]]) * -1
    left_side = (1 - s) * left_c + bow * np.sin(math.pi * s) * np.array(
        [left_c[1], -left_c[0]]
    ) * -1
    outline = np.concatenate([[[0.0, 0.0]], right_side, arc, left_side])
    veins = []
    n = int(rng.integers(22, 30))
    for k, phi in enumerate(np.linspace(-0.95 * spread, 0.95 * spread, n)):
        r_end = 0.97 * float(radius(np.array([phi]))[0])
        r0 = 0.0 if k % 2 == 0 else 0.35
        pts = np.stack(
            [
                np.linspace(r0, r_end, 20) * math.sin(phi),
                np.linspace(r0, r_end, 20) * math.cos(phi),
            ],
            1,
        )
        veins.append(_Vein(pts, 0.006, 0.004))
    petiole = _petiole(rng, rng.uniform(0.5, 0.7))
    return _Shape(outline, tuple(veins), petiole, 0.024)


def _elm(rng: np.random.Generator) -> _Shape:
    """Elm: elliptic blade with an unequal (oblique) base and a doubly serrate margin."""
    t = np.linspace(0.0, 1.0, 1500)
    half = rng.uniform(0.26, 0.31)
    bend = rng.uniform(-0.04, 0.04)
    slant = 0.22

    def width(tt: np.ndarray) -> np.ndarray:
        return np.asarray(half * np.sin(math.pi * np.clip(tt, 0, 1) ** 0.8) ** 0.9)

    def width_long(tt: np.ndarray) -> np.ndarray:
        # the longer side of the oblique base reaches further down
        return np.asarray(half * np.sin(math.pi * np.clip(tt, 0, 1) ** 0.6) ** 0.9)

    outline, tip = _midrib_outline(t, width_long(t), width(t), slant=slant, bend=bend)
    n_sec = int(rng.integers(12, 16))
    major = 1.0 / n_sec
    outline = _serrate(
        outline, tip, [_Teeth(major, 0.02, 2.0), _Teeth(major / 3.0, 0.006, 1.5)], rng
    )
    ts = np.linspace(0.05, 0.85, n_sec)
    veins = [_midrib_vein(bend)]
    veins += _pinnate_veins(
        width_long, ts, side=1.0, bend=bend, slant=slant, forward=0.08, reach=0.95
    )
    veins += _pinnate_veins(width, ts, side=-1.0, bend=bend, slant=slant, forward=0.08, reach=0.95)
    petiole = _petiole(rng, rng.uniform(0.06, 0.1))
    return _Shape(outline, tuple(veins), petiole, 0.022)


def _beech(rng: np.random.Generator) -> _Shape:
    """Beech: elliptic blade, straight parallel veins each ending in a small tooth."""
    t = np.linspace(0.0, 1.0, 1500)
    half = rng.uniform(0.24, 0.29)
    bend = rng.uniform(-0.03, 0.03)
    slant = 0.18

    def width(tt: np.ndarray) -> np.ndarray:
        body = np.sin(math.pi * np.clip(tt, 0, 1) ** 0.85) ** 0.95
        return np.asarray(half * body * (1.0 - 0.25 * _smoothstep(0.75, 1.0, tt)))

    w = width(t)
    outline, tip = _midrib_outline(t, w, w, slant=slant, bend=bend)
    n_sec = int(rng.integers(10, 14))
    outline = _serrate(outline, tip, [_Teeth(0.9 / n_sec, 0.012, 3.0)], rng)
    ts = np.linspace(0.06, 0.82, n_sec)
    veins = [_midrib_vein(bend)]
    for side in (1.0, -1.0):
        veins += _pinnate_veins(
            width, ts, side=side, bend=bend, slant=slant, forward=0.1, reach=0.95
        )
    petiole = _petiole(rng, rng.uniform(0.08, 0.12))
    return _Shape(outline, tuple(veins), petiole, 0.022)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

_SUPERSAMPLE = 4
_FIX_BITS = 4  # cv2 drawing with sub-pixel coordinates (1/16 px)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a bool (H, W) mask: every False region not connected to the border."""
    padded = np.pad(mask, 1).astype(np.uint8)
    flood = padded.copy()
    ff_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 1)
    return np.asarray((padded.astype(bool) | (flood == 0))[1:-1, 1:-1])


def _petiole_polygon(line: np.ndarray, width: float) -> np.ndarray:
    """Outline of a stalk of ``width`` along ``line``, slightly thickened at its foot."""
    s = np.linspace(0.0, 1.0, len(line))
    half = 0.5 * width * (1.0 - 0.25 * s + 0.45 * _smoothstep(0.88, 1.0, s))
    tangent = np.gradient(line, axis=0)
    tangent /= np.maximum(np.hypot(tangent[:, 0], tangent[:, 1]), 1e-12)[:, None]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    return np.concatenate([line + normal * half[:, None], (line - normal * half[:, None])[::-1]])


def _render(shape: _Shape, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise a shape into a ``size`` x ``size`` canvas (leaf fitted with a small margin).

    Returns:
        alpha: float32 (size, size) in [0, 1], anti-aliased (supersampled 4x, area-averaged).
        veins: float32 (size, size) in [0, 1]; 1 on the midrib, veins and petiole.
    """
    stalk = _petiole_polygon(shape.petiole, shape.petiole_width)
    everything = np.concatenate([shape.outline, *shape.extra, stalk])
    lo, hi = everything.min(axis=0), everything.max(axis=0)
    centre = 0.5 * (lo + hi)
    big = size * _SUPERSAMPLE
    scale = 0.94 * big / float(max(hi - lo))  # canvas pixels per leaf unit

    def to_px(p: np.ndarray) -> np.ndarray:
        x = (p[:, 0] - centre[0]) * scale + big / 2.0
        y = big / 2.0 - (p[:, 1] - centre[1]) * scale
        return np.round(np.stack([x, y], axis=1) * (1 << _FIX_BITS)).astype(np.int32)

    blade = np.zeros((big, big), np.uint8)
    cv2.fillPoly(blade, [to_px(shape.outline)], 255, cv2.LINE_8, _FIX_BITS)
    for poly in shape.extra:
        cv2.fillPoly(blade, [to_px(poly)], 255, cv2.LINE_8, _FIX_BITS)
    if shape.smooth > 0:
        soft = cv2.GaussianBlur(blade, (0, 0), shape.smooth * scale)
        blade = np.where(soft >= 128, 255, 0).astype(np.uint8)
    blade = fill_holes(blade > 0).astype(np.uint8) * 255
    stalk_img = np.zeros_like(blade)
    cv2.fillPoly(stalk_img, [to_px(stalk)], 255, cv2.LINE_8, _FIX_BITS)
    vein_img = np.zeros_like(blade)
    for vein in shape.veins:
        px = to_px(vein.points)
        widths = np.linspace(vein.width_start, vein.width_end, len(px) - 1) * scale
        for j in range(len(px) - 1):
            thick = max(1, int(round(widths[j])))
            p0 = (int(px[j, 0]), int(px[j, 1]))
            p1 = (int(px[j + 1, 0]), int(px[j + 1, 1]))
            cv2.line(vein_img, p0, p1, 255, thick, cv2.LINE_AA, _FIX_BITS)
    full = np.maximum(blade, stalk_img)

    def down(img: np.ndarray) -> np.ndarray:
        small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        return np.asarray(small.astype(np.float32) / 255.0)

    alpha = down(full)
    veins = np.maximum(down(vein_img) * down(blade), down(stalk_img))
    return alpha, np.clip(veins, 0.0, 1.0).astype(np.float32)


ShapeFn = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _registered(builder: Callable[[np.random.Generator], _Shape]) -> ShapeFn:
    def shape_fn(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        return _render(builder(rng), size)

    shape_fn.__name__ = builder.__name__.lstrip("_")
    shape_fn.__doc__ = (
        f"{builder.__doc__}\n\nReturns (alpha, veins): float32 (size, size) in [0, 1] each, "
        "petiole at the bottom, tip up."
    )
    return shape_fn


SPECIES: dict[str, ShapeFn] = {
    "maple": _registered(_maple),
    "oak": _registered(_oak),
    "poplar": _registered(_poplar),
    "birch": _registered(_birch),
    "ginkgo": _registered(_ginkgo),
    "elm": _registered(_elm),
    "beech": _registered(_beech),
}
"""Species name -> shape generator ``f(rng, size) -> (alpha, veins)``.

Both arrays are float32 (size, size) with values in [0, 1]: ``alpha`` is the
anti-aliased silhouette (blade + petiole, petiole at the bottom, tip up), ``veins``
is 1 on the midrib, the secondary veins and the petiole.
"""

LIBRARY_SPECIES: tuple[str, ...] = ("maple", "oak", "poplar", "birch", "ginkgo")
"""Species the built-in library ships (the paper's maple, oak and poplar, plus birch and ginkgo)."""


# ---------------------------------------------------------------------------
# Painting
# ---------------------------------------------------------------------------


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise, float32, rescaled to zero mean and unit std."""
    h, w = shape
    factor = max(1, int(sigma // 4))  # smooth at a lower resolution when sigma is large
    white = rng.standard_normal((max(2, h // factor + 2), max(2, w // factor + 2)))
    small = np.asarray(
        cv2.GaussianBlur(
            white.astype(np.float32),
            (0, 0),
            max(sigma / factor, 0.5),
            borderType=cv2.BORDER_REFLECT,
        )
    )
    field = np.asarray(
        cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) if factor > 1 else small[:h, :w]
    )
    field = field - field.mean()
    return np.asarray(field / max(float(field.std()), 1e-6), dtype=np.float32)


def _lerp(a: np.ndarray, b: np.ndarray | Sequence[float], t: np.ndarray) -> np.ndarray:
    return np.asarray(a + (np.asarray(b, dtype=np.float32) - a) * t[..., None])


def bleed_colours(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Copy each pixel's nearest in-mask colour to the pixels outside the mask.

    Keeps edges clean when a non-premultiplied RGBA leaf is resized or rotated.

    Shape:
        rgb: uint8 (H, W, 3); mask: bool (H, W) with at least one True. Returns uint8 (H, W, 3).
    """
    if mask.all() or not mask.any():
        return rgb.copy()
    _, labels = cv2.distanceTransformWithLabels(
        (~mask).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    ys, xs = np.nonzero(mask)
    # labels of zero pixels (inside the mask) are numbered in row-major scan order
    lut = np.zeros((int(labels.max()) + 1, 3), np.uint8)
    lut[labels[ys, xs]] = rgb[ys, xs]
    out = lut[labels]
    out[mask] = rgb[mask]
    return np.asarray(out)


def _paint(
    alpha: np.ndarray, veins: np.ndarray, colour: str, rng: np.random.Generator
) -> np.ndarray:
    """Paint a silhouette in a fall colour. Returns uint8 (H, W, 4)."""
    pal = PALETTES[colour]
    h, w = alpha.shape
    inside = alpha > 0.5
    dist = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)
    d = dist / max(float(dist.max()), 1.0)
    margin_w = np.clip(1.0 - d / 0.5, 0.0, 1.0) ** 1.6
    near_raw = np.asarray(cv2.GaussianBlur(veins, (0, 0), max(1.0, w / 40.0)))
    near = near_raw / max(float(near_raw.max()), 1e-6)
    blotch = _noise(rng, (h, w), w / 10.0)
    patches = _noise(rng, (h, w), w / 22.0)
    spots_field = _noise(rng, (h, w), max(1.0, w / 90.0))
    fine = _noise(rng, (h, w), 0.7)
    web = _noise(rng, (h, w), max(1.0, w / 60.0))
    light = _noise(rng, (h, w), w / 5.0)

    f = np.float32
    col = np.empty((h, w, 3), np.float32)
    col[:] = np.array(pal.base, f) / 255.0
    col = _lerp(
        col, np.array(pal.near_vein, f) / 255.0, np.clip(0.9 * near * (0.75 + 0.25 * patches), 0, 1)
    )
    col = _lerp(
        col, np.array(pal.margin, f) / 255.0, np.clip(margin_w * (0.8 + 0.4 * blotch), 0, 1)
    )
    col = _lerp(col, np.array(pal.margin, f) / 255.0, np.clip(0.6 * (patches - 0.9), 0, 0.6))
    col = _lerp(col, np.array(pal.near_vein, f) / 255.0, np.clip(0.5 * (-patches - 1.1), 0, 0.5))
    # fine tertiary vein network: thin lines along zero crossings of band-passed noise
    col = _lerp(col, np.array(pal.vein, f) / 255.0, 0.18 * np.exp(-((web / 0.12) ** 2)))
    col = _lerp(col, np.array(pal.spot, f) / 255.0, np.clip(2.0 * (spots_field - 2.4), 0, 0.9))
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    shade = 1.0 + 0.04 * fine + 0.05 * light - 0.08 * (xx + yy)
    col = col * shade[..., None]
    col = _lerp(col, np.array(pal.vein, f) / 255.0, np.clip(0.85 * veins, 0, 1))
    rgb = np.clip(np.round(col * 255.0), 0, 255).astype(np.uint8)
    a8 = np.clip(np.round(alpha * 255.0), 0, 255).astype(np.uint8)
    rgb = bleed_colours(rgb, a8 > 0)
    return np.concatenate([rgb, a8[..., None]], axis=2)


def crop_to_alpha(rgba: np.ndarray, pad: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Crop an RGBA image to the bounding box of its non-zero alpha (plus ``pad`` pixels).

    Returns:
        The cropped uint8 (h, w, 4) copy and the box ``(top, left, bottom, right)``
        (exclusive bottom/right) in the input's pixel coordinates.
    """
    ys, xs = np.nonzero(rgba[..., 3])
    if len(ys) == 0:
        raise ValueError("crop_to_alpha: alpha is empty, expected some opaque pixels")
    top, left = max(0, int(ys.min()) - pad), max(0, int(xs.min()) - pad)
    bottom = min(rgba.shape[0], int(ys.max()) + 1 + pad)
    right = min(rgba.shape[1], int(xs.max()) + 1 + pad)
    return rgba[top:bottom, left:right].copy(), (top, left, bottom, right)


def _check_species(species: str) -> None:
    if species not in SPECIES:
        raise LeafattackError(
            f"unknown leaf species {species!r} (expected one of {', '.join(SPECIES)})"
        )


def _check_colour(colour: str) -> None:
    if colour not in FALL_COLOURS:
        raise LeafattackError(
            f"unknown fall colour {colour!r} (expected one of {', '.join(FALL_COLOURS)})"
        )


def generate_leaf(
    species: str,
    colour: str,
    rng: np.random.Generator,
    size: int = 256,
    leaf_id: str | None = None,
) -> Leaf:
    """Draw a procedural leaf of ``species`` painted in fall ``colour``.

    The generator first draws two seeds from ``rng``: one for the silhouette, one for
    the paint. So two calls with equally seeded generators give the same silhouette
    and texture for every colour, and colour can be varied on its own.

    Args:
        species: a :data:`SPECIES` key.
        colour: a :data:`FALL_COLOURS` key.
        rng: the only source of randomness.
        size: side of the square render canvas in pixels (the leaf's longest side is
            about 0.94 * size); at least 32.
        leaf_id: defaults to ``"<species>_<colour>"``.

    Returns:
        A :class:`Leaf` whose ``rgba`` is uint8 (h, w, 4), h and w <= size, cropped to
        the leaf, petiole at the bottom.
    """
    _check_species(species)
    _check_colour(colour)
    if not isinstance(size, int | np.integer) or size < 32:
        raise LeafattackError(f"leaf size {size!r} is too small (expected an integer >= 32)")
    shape_seed, paint_seed = (int(s) for s in rng.integers(0, 2**63 - 1, size=2))
    alpha, veins = SPECIES[species](np.random.default_rng(shape_seed), int(size))
    rgba = _paint(alpha, veins, colour, np.random.default_rng(paint_seed))
    rgba, _ = crop_to_alpha(rgba)
    return Leaf(rgba, leaf_id or f"{species}_{colour}", species, colour, "generated")


# ---------------------------------------------------------------------------
# Recolouring
# ---------------------------------------------------------------------------


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab))


def recolour(leaf: Leaf, colour: str, *, keep_variation: float = 0.6) -> Leaf:
    """Repaint a leaf in another fall colour, keeping its alpha and luminance detail.

    In CIELAB, the alpha-weighted mean lightness and chroma (a*, b*) of the leaf are
    moved to those of the target palette; deviations from the mean are kept in
    lightness (veins, texture, spots) and scaled by ``keep_variation`` in a*/b*
    (colour gradients survive in a subdued form).

    Args:
        leaf: any leaf, generated or segmented.
        colour: a :data:`FALL_COLOURS` key.
        keep_variation: 0..1, share of the chroma deviations that is kept.

    Returns:
        A new :class:`Leaf` with the same alpha channel, ``colour=colour``, and id
        ``"<base id>@<colour>"``.

    Shape:
        ``leaf.rgba`` uint8 (H, W, 4) -> uint8 (H, W, 4), alpha unchanged.
    """
    _check_colour(colour)
    if not 0.0 <= keep_variation <= 1.0:
        raise ValueError(f"keep_variation = {keep_variation!r}, expected a value in [0, 1]")
    rgba = leaf.rgba
    weight = rgba[..., 3].astype(np.float64) / 255.0
    lab = _to_lab(rgba[..., :3]).astype(np.float64)
    total = max(float(weight.sum()), 1e-9)
    mean = (lab * weight[..., None]).sum(axis=(0, 1)) / total
    pal = PALETTES[colour]
    target = _to_lab(np.array([[pal.base]], np.uint8))[0, 0].astype(np.float64)
    out = np.empty_like(lab)
    out[..., 0] = target[0] + (lab[..., 0] - mean[0])
    out[..., 1:] = target[1:] + keep_variation * (lab[..., 1:] - mean[1:])
    out[..., 0] = np.clip(out[..., 0], 0.0, 100.0)
    rgb = cv2.cvtColor(out.astype(np.float32), cv2.COLOR_Lab2RGB)
    rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    new = np.concatenate([rgb8, rgba[..., 3:4]], axis=2)
    return Leaf(new, f"{leaf.base_id}@{colour}", leaf.species, colour, leaf.source)


# ---------------------------------------------------------------------------
# Leaf folders
# ---------------------------------------------------------------------------


def builtin_leaves_dir() -> Path:
    """The folder of the leaf library shipped with leafattack (``<repo>/leaves``)."""
    return Path(__file__).resolve().parent.parent / "leaves"


def _read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a manifest.csv (columns checked); raises LeafattackError naming the file."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in MANIFEST_COLUMNS if c not in header]
            if missing:
                raise LeafattackError(
                    f"{path}: missing column(s) {', '.join(missing)} "
                    f"(expected a header {','.join(MANIFEST_COLUMNS)})"
                )
            rows = [{k: (v or "") for k, v in row.items() if k is not None} for row in reader]
    except UnicodeDecodeError:
        raise LeafattackError(f"{path}: not a UTF-8 text CSV (expected a manifest.csv)") from None
    except csv.Error as exc:
        raise LeafattackError(f"{path}: malformed CSV ({exc})") from None
    return rows


def _write_manifest(path: Path, rows: Sequence[Sequence[str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    os.replace(tmp, path)


def append_to_manifest(folder: str | Path, entries: Sequence[tuple[str, str, str, str]]) -> None:
    """Add rows ``(file, species, colour, source)`` to ``folder/manifest.csv``.

    Creates the manifest when missing. A row whose ``file`` is already listed replaces
    the old row in place, so re-running a writer leaves the manifest byte-identical.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST_NAME
    rows: dict[str, list[str]] = {}
    if path.exists():
        for row in _read_manifest(path):
            rows[row["file"]] = [row[c] for c in MANIFEST_COLUMNS]
    for entry in entries:
        if len(entry) != 4 or not all(isinstance(v, str) for v in entry):
            raise ValueError(
                f"manifest entry {entry!r}, expected (file, species, colour, source) strings"
            )
        if not entry[0].strip() or any("\n" in v or "\r" in v for v in entry):
            raise ValueError(
                f"manifest entry {entry!r}, expected a non-empty file and one-line values"
            )
        rows[entry[0]] = list(entry)
    _write_manifest(path, list(rows.values()))


def _inside(folder: Path, rel: str, manifest: Path, line: int) -> Path:
    """Resolve a manifest ``file`` entry, refusing paths that leave the folder."""
    if "\0" in rel:  # os calls raise ValueError on it
        raise LeafattackError(f"{manifest}, line {line}: file {rel!r} contains a NUL character")
    p = Path(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")) or ".." in p.parts or ".." in rel.split("\\"):
        raise LeafattackError(
            f"{manifest}, line {line}: file {rel!r} escapes the leaf folder "
            f"(expected a relative path inside {folder})"
        )
    full = folder / p
    if not full.resolve().is_relative_to(folder.resolve()):
        raise LeafattackError(
            f"{manifest}, line {line}: file {rel!r} links outside the leaf folder "
            f"(expected a file inside {folder})"
        )
    return full


def load_leaves(folder: str | Path) -> tuple[Leaf, ...]:
    """Read a leaf folder: ``manifest.csv`` (file,species,colour,source) + RGBA PNGs.

    Leaves come back in manifest order; ``leaf_id`` is the file's stem.

    Raises:
        LeafattackError: with a one-line message naming the folder, the manifest (and
            line) or the image: folder or manifest missing, missing columns, no rows,
            empty fields, an unknown colour, duplicate ids, a path escaping the folder
            (absolute, ``..``, or a symlink to outside), an unreadable image, an image
            without alpha or with an empty alpha.
    """
    folder = Path(folder)
    if not folder.exists():
        raise LeafattackError(
            f"{folder}: leaf folder not found "
            f"(expected a folder with {MANIFEST_NAME} and RGBA PNGs)"
        )
    if not folder.is_dir():
        raise LeafattackError(f"{folder}: not a folder (expected a folder with {MANIFEST_NAME})")
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        raise LeafattackError(
            f"{manifest}: leaf manifest not found (expected a CSV with columns "
            f"{','.join(MANIFEST_COLUMNS)})"
        )
    rows = _read_manifest(manifest)
    if not rows:
        raise LeafattackError(f"{manifest}: no rows (expected at least one leaf)")
    leaves: list[Leaf] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        rel, species, colour = row["file"].strip(), row["species"].strip(), row["colour"].strip()
        for name, value in (("file", rel), ("species", species), ("colour", colour)):
            if not value:
                raise LeafattackError(f"{manifest}, line {line}: empty {name!r} (expected a value)")
        if colour not in FALL_COLOURS and colour != NATURAL:
            raise LeafattackError(
                f"{manifest}, line {line}: unknown colour {colour!r} "
                f"(expected one of {', '.join([*FALL_COLOURS, NATURAL])})"
            )
        path = _inside(folder, rel, manifest, line)
        leaf_id = path.stem
        if leaf_id in seen:
            raise LeafattackError(
                f"{manifest}, line {line}: leaf id {leaf_id!r} repeats line {seen[leaf_id]} "
                "(expected unique file stems)"
            )
        seen[leaf_id] = line
        rgba = read_rgba(path)
        if not rgba[..., 3].any():
            raise LeafattackError(f"{path}: alpha channel is empty (expected an opaque leaf)")
        leaves.append(Leaf(rgba, leaf_id, species, colour, row["source"].strip() or "unknown"))
    logger.debug("loaded %d leaves from %s", len(leaves), folder)
    return tuple(leaves)


def select_leaves(
    leaves: Sequence[Leaf],
    *,
    ids: Sequence[str] | None = None,
    species: Sequence[str] | None = None,
    colours: Sequence[str] | None = None,
) -> tuple[Leaf, ...]:
    """Keep the leaves matching all given filters (``None`` = no filter), in input order.

    Raises:
        LeafattackError: a requested id, species or colour is not in ``leaves`` (the
            message lists the available ones), or no leaf matches all filters.
    """
    filters: list[tuple[str, Sequence[str] | None, Callable[[Leaf], str]]] = [
        ("leaf id", ids, lambda lf: lf.leaf_id),
        ("species", species, lambda lf: lf.species),
        ("colour", colours, lambda lf: lf.colour),
    ]
    out = tuple(leaves)
    for what, wanted, key in filters:
        if wanted is None:
            continue
        if isinstance(wanted, str):
            wanted = [wanted]
        available = list(dict.fromkeys(key(lf) for lf in leaves))
        unknown = [w for w in wanted if w not in available]
        if unknown:
            raise LeafattackError(
                f"unknown {what} {', '.join(map(repr, unknown))} "
                f"(available: {', '.join(available) or 'none'})"
            )
        keep = set(wanted)
        out = tuple(lf for lf in out if key(lf) in keep)
    if not out:
        raise LeafattackError(
            f"no leaf matches ids={list(ids or [])}, species={list(species or [])}, "
            f"colours={list(colours or [])} (expected at least one)"
        )
    return out


def write_leaf_library(
    out_dir: str | Path,
    seed: int = 0,
    species: Sequence[str] | None = None,
    colours: Sequence[str] = LIBRARY_COLOURS,
    size: int = 256,
) -> Path:
    """Generate a leaf library: ``<species>_<colour>_0.png`` per pair, plus ``manifest.csv``.

    The output is deterministic (byte-identical on rerun with the same arguments). All
    colours of one species share the silhouette and texture (the generator of each
    species is seeded from ``(seed, crc32(species))``), so colour varies on its own.

    Args:
        out_dir: created when missing; other rows of an existing manifest are kept.
        seed: the library seed.
        species: defaults to :data:`LIBRARY_SPECIES`.
        colours: fall colours to paint each species in.
        size: render canvas side in pixels.

    Returns:
        The path of ``manifest.csv``.
    """
    names = list(LIBRARY_SPECIES if species is None else species)
    for sp in names:
        _check_species(sp)
    for c in colours:
        _check_colour(c)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for sp in names:
        for c in colours:
            rng = np.random.default_rng([seed, zlib.crc32(sp.encode("utf-8"))])
            leaf = generate_leaf(sp, c, rng, size=size, leaf_id=f"{sp}_{c}_0")
            file = f"{leaf.leaf_id}.png"
            write_png(out / file, leaf.rgba)
            entries.append((file, sp, c, "generated"))
    append_to_manifest(out, entries)
    logger.info("wrote %d leaves to %s", len(entries), out)
    return out / MANIFEST_NAME


# ---------------------------------------------------------------------------
# Contact sheets
# ---------------------------------------------------------------------------


def composite(rgba: np.ndarray, background: np.ndarray | Sequence[int]) -> np.ndarray:
    """Alpha-composite a uint8 (H, W, 4) image over a colour or a uint8 (H, W, 3) image."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    bg = np.broadcast_to(np.asarray(background, np.float32), rgba[..., :3].shape)
    out = rgba[..., :3].astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def fit_into(image: np.ndarray, side: int) -> np.ndarray:
    """Scale an image (any channels, uint8) so that its longer side is ``side`` pixels."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    new = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, new, interpolation=interp))


def contact_sheet(
    leaves: Sequence[Leaf],
    columns: int = 5,
    cell: int = 180,
    background: RGB = (236, 236, 230),
) -> np.ndarray:
    """A labelled grid of leaves for looking at them.

    Returns:
        uint8 (rows * (cell + 18), columns * cell, 3) RGB image.
    """
    if not leaves:
        raise ValueError("contact_sheet: no leaves, expected at least one")
    label_h = 18
    rows = math.ceil(len(leaves) / columns)
    sheet = np.empty((rows * (cell + label_h), columns * cell, 3), np.uint8)
    sheet[:] = background
    for i, leaf in enumerate(leaves):
        r, c = divmod(i, columns)
        thumb = composite(fit_into(np.asarray(leaf.rgba), cell - 12), background)
        th, tw = thumb.shape[:2]
        y0 = r * (cell + label_h) + (cell - th) // 2
        x0 = c * cell + (cell - tw) // 2
        sheet[y0 : y0 + th, x0 : x0 + tw] = thumb
        cv2.putText(
            sheet,
            leaf.leaf_id[:28],
            (c * cell + 4, r * (cell + label_h) + cell + 12),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.38,
            (40, 40, 40),
            1,
            cv2.LINE_AA,
        )
    return sheet
