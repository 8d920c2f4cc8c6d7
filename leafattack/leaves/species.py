"""Fall leaves: a procedural leaf library, recolouring, and the leaf folder format.

A leaf is an RGBA cut-out (:class:`Leaf`) in a canonical orientation: the petiole
(stalk) at the bottom, the tip up. Leaves come from three places:

* :func:`generate_leaf` draws one from a species' shape generator in :data:`SPECIES`
  and paints it in a fall colour of :data:`FALL_COLOURS` (veins, margin gradient,
  blotches, spots, fine texture);
* :func:`load_leaves` reads a leaf folder (``manifest.csv`` + RGBA PNGs), such as the
  built-in library in ``leaves/`` (:func:`builtin_leaves_dir`, written by
  :func:`write_leaf_library`) or the output of :func:`leafattack.leaves.segment.segment_files`;
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

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import ArrayLike

from leafattack.errors import LeafattackError
from leafattack.leaves.colours import PALETTES
from leafattack.leaves.leaf import Leaf, bleed_colours, crop_to_alpha, fill_holes
from leafattack.leaves.recolouring import check_colour

logger = logging.getLogger(__name__)


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


_SUPERSAMPLE = 4


_FIX_BITS = 4  # cv2 drawing with sub-pixel coordinates (1/16 px)


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


def check_species(species: str) -> None:
    if species not in SPECIES:
        raise LeafattackError(
            f"unknown leaf species {species!r} (expected one of {', '.join(SPECIES)})"
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
    check_species(species)
    check_colour(colour)
    if not isinstance(size, int | np.integer) or size < 32:
        raise LeafattackError(f"leaf size {size!r} is too small (expected an integer >= 32)")
    shape_seed, paint_seed = (int(s) for s in rng.integers(0, 2**63 - 1, size=2))
    alpha, veins = SPECIES[species](np.random.default_rng(shape_seed), int(size))
    rgba = _paint(alpha, veins, colour, np.random.default_rng(paint_seed))
    rgba, _ = crop_to_alpha(rgba)
    return Leaf(rgba, leaf_id or f"{species}_{colour}", species, colour, "generated")
