"""Built-in signs: the 16 LISA classes drawn as US (MUTCD-style) traffic signs.

Every sign is drawn with OpenCV on a canvas supersampled up to 4x, with anti-aliased
polygons and text, and then reduced with ``INTER_AREA``, so edges are smooth at any
size. The sign face fills about 90 % of the square image and is centred; the area
outside the face is the neutral grey :data:`SIGN_BACKGROUND`.

Geometry is written in *unit coordinates*: ``(x, y)`` fractions of the image width and
height, ``(0, 0)`` the top-left corner of the image and ``(1, 1)`` its bottom-right one.

Example:
    >>> rgb, mask = render_sign("stop", size=64)
    >>> rgb.shape, rgb.dtype, mask.shape, mask.dtype
    ((64, 64, 3), dtype('uint8'), (64, 64), dtype('bool'))

Running ``python -m leafattack.data.builtin`` rewrites the committed
``leafattack/assets/signs/`` folder and the repository's contact sheet ``docs/signs.png``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from leafattack.data.signset import LISA_CLASSES, SignSet
from leafattack.errors import LeafattackError
from leafattack.imageio import write_png

logger = logging.getLogger(__name__)

__all__ = [
    "LISA_CLASSES",
    "SIGN_BACKGROUND",
    "MIN_SIZE",
    "render_sign",
    "render_sign_set",
    "write_builtin_signs",
    "builtin_signs_dir",
    "contact_sheet",
    "write_contact_sheet",
]

SIGN_BACKGROUND: tuple[int, int, int] = (128, 128, 128)
"""RGB of the area outside the sign face in a canonical render."""

MIN_SIZE: int = 16
"""Smallest image side :func:`render_sign` accepts, in pixels."""

Colour = tuple[int, int, int]
Point = tuple[float, float]

# Sign colours (RGB), close to how retroreflective sheeting looks in daylight photos.
RED: Colour = (196, 28, 44)
WHITE: Colour = (246, 246, 244)
BLACK: Colour = (24, 24, 24)
YELLOW: Colour = (250, 204, 18)
YELLOW_GREEN: Colour = (196, 228, 32)
LIGHT_RED: Colour = (226, 40, 36)
LIGHT_AMBER: Colour = (250, 166, 0)
LIGHT_GREEN: Colour = (24, 176, 96)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SHIFT = 4  # fixed-point bits for sub-pixel polygon coordinates
_MAX_CANVAS = 1024  # supersampled canvas side above which the supersampling factor shrinks

# Borders of the sign faces, in unit coordinates: margin from the edge, then band width.
_MARGIN = 0.013
_BORDER = 0.021


# --------------------------------------------------------------------------- geometry


def _inward_normals(p: np.ndarray) -> np.ndarray:
    """Unit normals of the edges ``p[i] -> p[i+1]`` of a convex polygon, pointing inwards."""
    edge = np.roll(p, -1, axis=0) - p
    edge /= np.linalg.norm(edge, axis=1, keepdims=True)
    normal = np.stack([edge[:, 1], -edge[:, 0]], axis=1)
    to_centre = p.mean(axis=0) - (p + np.roll(p, -1, axis=0)) / 2
    flip = np.sum(normal * to_centre, axis=1) < 0
    normal[flip] *= -1.0
    return normal


def _inset(poly: Sequence[Point] | np.ndarray, d: float) -> np.ndarray:
    """Move every edge of a convex polygon ``d`` inwards (outwards for ``d < 0``).

    Shape: (K, 2) float64 in, (K, 2) float64 out, the same vertex order.
    """
    p = np.asarray(poly, dtype=np.float64)
    normal = _inward_normals(p)
    out = np.empty_like(p)
    for i in range(len(p)):
        # Vertex i joins edge i-1 and edge i: intersect the two moved lines.
        n1, n2 = normal[i - 1], normal[i]
        out[i] = np.linalg.solve(np.array([n1, n2]), np.array([n1 @ p[i] + d, n2 @ p[i] + d]))
    return out


def _rounded(poly: Sequence[Point] | np.ndarray, radius: float, steps: int = 10) -> np.ndarray:
    """Round the corners of a convex polygon with circular arcs of ``radius`` (unit coords).

    Shape: (K, 2) in, (K * (steps + 1), 2) float64 out.
    """
    p = np.asarray(poly, dtype=np.float64)
    if radius <= 0:
        return p
    core = _inset(p, radius)
    outward = -_inward_normals(core)
    angles = np.arctan2(outward[:, 1], outward[:, 0])
    pts = []
    for i in range(len(core)):
        a0, a1 = angles[i - 1], angles[i]
        delta = (a1 - a0 + math.pi) % (2 * math.pi) - math.pi
        t = a0 + delta * np.linspace(0.0, 1.0, steps + 1)
        pts.append(core[i] + radius * np.stack([np.cos(t), np.sin(t)], axis=1))
    return np.concatenate(pts)


def _regular(n: int, centre: Point, apothem: float, flat_top: bool = True) -> np.ndarray:
    """Vertices of a regular ``n``-gon with the given apothem (unit coords), shape (n, 2)."""
    radius = apothem / math.cos(math.pi / n)
    start = math.pi / n if flat_top else 0.0
    t = start + 2 * math.pi * np.arange(n) / n - math.pi / 2
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], axis=1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=np.float64)


def _bezier(p0: Point, p1: Point, p2: Point, p3: Point, steps: int = 24) -> np.ndarray:
    """Points of a cubic Bezier curve, shape (steps + 1, 2)."""
    t = np.linspace(0.0, 1.0, steps + 1)[:, None]
    a, b, c, d = (np.asarray(q, dtype=np.float64) for q in (p0, p1, p2, p3))
    return ((1 - t) ** 3) * a + 3 * ((1 - t) ** 2) * t * b + 3 * (1 - t) * t * t * c + t**3 * d


def _dedupe(path: np.ndarray) -> np.ndarray:
    keep = np.ones(len(path), dtype=bool)
    keep[1:] = np.linalg.norm(np.diff(path, axis=0), axis=1) > 1e-9
    return path[keep]


def _stroke_outline(path: Sequence[Point] | np.ndarray, width: float) -> np.ndarray:
    """Outline of a polyline drawn ``width`` wide with flat ends and mitred joins.

    Shape: (K, 2) centre line in, (2K, 2) closed outline out (unit coords).
    """
    p = _dedupe(np.asarray(path, dtype=np.float64))
    seg = np.diff(p, axis=0)
    seg /= np.linalg.norm(seg, axis=1, keepdims=True)
    seg_normal = np.stack([-seg[:, 1], seg[:, 0]], axis=1)
    normal = np.empty_like(p)
    normal[0], normal[-1] = seg_normal[0], seg_normal[-1]
    if len(p) > 2:
        mid = seg_normal[:-1] + seg_normal[1:]
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        cos_half = np.sum(mid * seg_normal[1:], axis=1, keepdims=True)
        normal[1:-1] = mid / np.maximum(cos_half, 0.2)
    half = 0.5 * width * normal
    return np.concatenate([p + half, (p - half)[::-1]])


def _trim_end(path: np.ndarray, length: float) -> np.ndarray:
    """Shorten a polyline by ``length`` (unit coords) at its end."""
    p = _dedupe(np.asarray(path, dtype=np.float64))
    seg_len = np.linalg.norm(np.diff(p, axis=0), axis=1)
    remaining = float(seg_len.sum()) - length
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])
    j = int(np.searchsorted(cum, remaining, side="right")) - 1
    j = min(max(j, 0), len(seg_len) - 1)
    frac = (remaining - cum[j]) / seg_len[j]
    end = p[j] + frac * (p[j + 1] - p[j])
    return np.concatenate([p[: j + 1], end[None]])


def _glyph(ch: str, scale: float, thickness: int, ascent: int, descent: int) -> np.ndarray:
    """One character's ink, uint8 (ascent + descent, ink width), baseline at row ``ascent``."""
    (w, _), _ = cv2.getTextSize(ch, _FONT, scale, thickness)
    pad = 2 * thickness
    buf = np.zeros((ascent + descent, w + 2 * pad), dtype=np.uint8)
    cv2.putText(buf, ch, (pad, ascent), _FONT, scale, 255, thickness, cv2.LINE_AA)
    cols = np.flatnonzero(buf.any(axis=0))
    return buf[:, cols[0] : cols[-1] + 1]


def _text_ink(text: str, height_px: float) -> np.ndarray:
    """Bold ink of ``text`` cropped to its bounding box, uint8 0..255, rendered taller
    than ``height_px`` so that it is only ever reduced.

    Characters are laid out one by one with even spacing. The font's slashed zero is
    replaced by a letter O narrowed to the width of an 8, as on US signs.
    """
    (_, h1), _ = cv2.getTextSize("H", _FONT, 1.0, 1)
    scale = 1.5 * height_px / max(h1, 1)
    thickness = max(2, round(0.21 * height_px))
    cap = round(h1 * scale)
    ascent, descent = cap + 4 * thickness, cap // 2 + 2 * thickness
    gap = np.zeros((ascent + descent, max(1, round(0.1 * cap))), dtype=np.uint8)
    space = np.zeros((ascent + descent, max(1, round(0.3 * cap))), dtype=np.uint8)
    parts: list[np.ndarray] = []
    for ch in text:
        if ch == " ":
            parts.append(space)
            continue
        glyph = _glyph("O" if ch == "0" else ch, scale, thickness, ascent, descent)
        if ch == "0":
            width = _glyph("8", scale, thickness, ascent, descent).shape[1]
            glyph = cv2.resize(glyph, (width, glyph.shape[0]), interpolation=cv2.INTER_AREA)
        if parts:
            parts.append(gap)
        parts.append(glyph)
    buf = np.concatenate(parts, axis=1)
    rows = np.flatnonzero(buf.any(axis=1))
    return buf[rows[0] : rows[-1] + 1]


# --------------------------------------------------------------------------- canvas


class _Canvas:
    """A supersampled uint8 RGB canvas plus the coverage of the sign face.

    OpenCV's anti-aliased drawing blends each shape's edge into what lies below it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.n = size * max(1, min(4, _MAX_CANVAS // size))
        self.rgb = np.empty((self.n, self.n, 3), dtype=np.uint8)
        self.rgb[:] = SIGN_BACKGROUND
        self.face = np.zeros((self.n, self.n), dtype=np.uint8)

    def _fixed(self, pts: Sequence[Point] | np.ndarray) -> np.ndarray:
        # Unit coordinate u covers pixel edges 0..n; OpenCV addresses pixel centres.
        px = np.asarray(pts, dtype=np.float64).reshape(-1, 2) * self.n - 0.5
        return np.round(px * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)

    def polygon(
        self, pts: Sequence[Point] | np.ndarray, colour: Colour, face: bool = False
    ) -> None:
        """Fill a polygon; ``face=True`` also adds it to the sign-face mask."""
        fixed = [self._fixed(pts)]
        cv2.fillPoly(self.rgb, fixed, colour, cv2.LINE_AA, _SHIFT)
        if face:
            cv2.fillPoly(self.face, fixed, 255, cv2.LINE_AA, _SHIFT)

    def stroke(self, path: Sequence[Point] | np.ndarray, width: float, colour: Colour) -> None:
        """A polyline ``width`` wide with flat ends and mitred joins."""
        self.polygon(_stroke_outline(path, width), colour)

    def limb(self, path: Sequence[Point], width: float, colour: Colour) -> None:
        """A polyline ``width`` wide with round ends and joins (arms and legs)."""
        thickness = max(1, round(width * self.n))
        cv2.polylines(self.rgb, [self._fixed(path)], False, colour, thickness, cv2.LINE_AA, _SHIFT)

    def ellipse(self, centre: Point, axes: tuple[float, float], colour: Colour) -> None:
        c = self._fixed([centre]).reshape(2)
        ax = (round(axes[0] * self.n * (1 << _SHIFT)), round(axes[1] * self.n * (1 << _SHIFT)))
        cv2.ellipse(
            self.rgb, (int(c[0]), int(c[1])), ax, 0.0, 0.0, 360.0, colour, -1, cv2.LINE_AA, _SHIFT
        )

    def circle(self, centre: Point, radius: float, colour: Colour) -> None:
        self.ellipse(centre, (radius, radius), colour)

    def arrow(
        self,
        path: Sequence[Point] | np.ndarray,
        width: float,
        head_length: float,
        head_width: float,
        colour: Colour,
    ) -> None:
        """A shaft along ``path`` ending in a triangular head whose tip is the last point."""
        p = _dedupe(np.asarray(path, dtype=np.float64))
        tip = p[-1]
        shaft = _trim_end(p, head_length * 0.8)
        direction = p[-1] - p[-2]
        direction /= np.linalg.norm(direction)
        side = np.array([-direction[1], direction[0]])
        base = tip - direction * head_length
        self.stroke(shaft, width, colour)
        self.polygon([tip, base + side * head_width / 2, base - side * head_width / 2], colour)

    def text(
        self, text: str, centre: Point, height: float, max_width: float, colour: Colour
    ) -> None:
        """Bold text whose ink is ``height`` tall, centred, squeezed to ``max_width`` if wider."""
        ink = _text_ink(text, height * self.n)
        out_h = max(1, round(height * self.n))
        out_w = max(1, round(min(ink.shape[1] * out_h / ink.shape[0], max_width * self.n)))
        glyphs = cv2.resize(ink, (out_w, out_h), interpolation=cv2.INTER_AREA)
        x0 = round(centre[0] * self.n - out_w / 2)
        y0 = round(centre[1] * self.n - out_h / 2)
        if x0 < 0 or y0 < 0 or x0 + out_w > self.n or y0 + out_h > self.n:
            raise ValueError(f"text {text!r} does not fit on the canvas")
        roi = self.rgb[y0 : y0 + out_h, x0 : x0 + out_w]
        alpha = glyphs.astype(np.float32)[..., None] * np.float32(1.0 / 255.0)
        blended = roi + (np.asarray(colour, dtype=np.float32) - roi) * alpha
        roi[:] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        size = (self.size, self.size)
        rgb = cv2.resize(self.rgb, size, interpolation=cv2.INTER_AREA)
        face = cv2.resize(self.face.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(rgb), face >= 127.5


# --------------------------------------------------------------------------- sign faces

_DIAMOND = np.array([(0.5, 0.05), (0.95, 0.5), (0.5, 0.95), (0.05, 0.5)])
_TALL_RECT = _rect(0.14, 0.05, 0.86, 0.95)
_SCHOOL_RECT = _rect(0.18, 0.05, 0.82, 0.95)
_PENTAGON = np.array([(0.5, 0.05), (0.95, 0.48), (0.95, 0.95), (0.05, 0.95), (0.05, 0.48)])


def _bordered(
    c: _Canvas,
    shape: np.ndarray,
    radius: float,
    fill: Colour,
    border: Colour,
    margin: float = _MARGIN,
    band: float = _BORDER,
) -> None:
    """A face of ``fill`` colour with a ``border`` band inset by ``margin``."""
    c.polygon(_rounded(shape, radius), fill, face=True)
    c.polygon(_rounded(_inset(shape, margin), max(radius - margin, 0.0)), border)
    inner = margin + band
    c.polygon(_rounded(_inset(shape, inner), max(radius - inner, 0.0)), fill)


def _warning(c: _Canvas) -> None:
    _bordered(c, _DIAMOND, 0.04, YELLOW, BLACK)


def _white_rect(c: _Canvas, rect: np.ndarray = _TALL_RECT) -> None:
    _bordered(c, rect, 0.035, WHITE, BLACK)


def _speed_limit(number: str) -> Callable[[_Canvas], None]:
    def draw(c: _Canvas) -> None:
        _white_rect(c)
        c.text("SPEED", (0.5, 0.2), 0.105, 0.58, BLACK)
        c.text("LIMIT", (0.5, 0.35), 0.105, 0.58, BLACK)
        c.text(number, (0.5, 0.655), 0.34, 0.6, BLACK)

    return draw


def _walker(
    c: _Canvas, x: float, top: float, h: float, colour: Colour, dress: bool = False
) -> None:
    """A person ``h`` tall walking to the left, head top at ``top``, torso at ``x``."""

    def at(dx: float, dy: float) -> Point:
        return (x + dx * h, top + dy * h)

    limb = 0.11 * h
    c.circle(at(0.04, 0.095), 0.095 * h, colour)
    # Back arm and leg first, then torso, then the front ones.
    c.limb([at(0.03, 0.28), at(0.12, 0.4), at(0.21, 0.48)], limb, colour)
    c.limb([at(0.02, 0.56), at(0.1, 0.75), at(0.22, 0.94)], limb, colour)
    c.limb([at(0.025, 0.265), at(0.0, 0.56)], 0.16 * h, colour)
    if dress:
        c.polygon([at(-0.05, 0.24), at(0.1, 0.24), at(0.19, 0.68), at(-0.19, 0.68)], colour)
    c.limb([at(0.0, 0.28), at(-0.1, 0.41), at(-0.2, 0.5)], limb, colour)
    c.limb([at(-0.01, 0.56), at(-0.09, 0.75), at(-0.22, 0.93)], limb, colour)


def _draw_added_lane(c: _Canvas) -> None:
    _warning(c)
    c.arrow([(0.385, 0.78), (0.385, 0.25)], 0.07, 0.12, 0.17, BLACK)
    right = np.concatenate(
        [_bezier((0.7, 0.7), (0.7, 0.6), (0.615, 0.58), (0.615, 0.48)), [(0.615, 0.27)]]
    )
    c.arrow(right, 0.07, 0.12, 0.17, BLACK)


def _draw_keep_right(c: _Canvas) -> None:
    _white_rect(c)
    c.ellipse((0.37, 0.67), (0.085, 0.125), BLACK)
    path = np.concatenate(
        [
            [(0.37, 0.14)],
            _bezier((0.37, 0.24), (0.37, 0.4), (0.63, 0.36), (0.63, 0.54)),
            [(0.63, 0.86)],
        ]
    )
    c.arrow(path, 0.075, 0.13, 0.21, BLACK)


def _draw_lane_ends(c: _Canvas) -> None:
    _warning(c)
    c.stroke([(0.38, 0.76), (0.38, 0.24)], 0.068, BLACK)
    bend = _bezier((0.64, 0.6), (0.64, 0.5), (0.52, 0.5), (0.52, 0.4))
    c.stroke(np.concatenate([[(0.64, 0.76)], bend, [(0.52, 0.24)]]), 0.068, BLACK)


def _draw_merge(c: _Canvas) -> None:
    _warning(c)
    branch = _bezier((0.64, 0.74), (0.64, 0.6), (0.47, 0.56), (0.45, 0.42))
    c.stroke(branch, 0.07, BLACK)
    c.arrow([(0.43, 0.79), (0.43, 0.21)], 0.075, 0.13, 0.2, BLACK)


def _draw_pedestrian(c: _Canvas) -> None:
    _warning(c)
    _walker(c, 0.5, 0.19, 0.6, BLACK)


def _draw_school(c: _Canvas) -> None:
    _bordered(c, _PENTAGON, 0.03, YELLOW_GREEN, BLACK)
    _walker(c, 0.37, 0.36, 0.5, BLACK, dress=True)
    _walker(c, 0.64, 0.44, 0.42, BLACK)


def _draw_school_speed_limit(c: _Canvas) -> None:
    _white_rect(c, _SCHOOL_RECT)
    inner = _MARGIN + _BORDER
    c.polygon(_rounded(_rect(0.18 + inner, 0.05 + inner, 0.82 - inner, 0.27), 0.0), YELLOW_GREEN)
    c.polygon(_rect(0.18 + inner, 0.27, 0.82 - inner, 0.27 + _BORDER), BLACK)
    c.text("SCHOOL", (0.5, 0.165), 0.095, 0.5, BLACK)
    c.text("SPEED", (0.5, 0.37), 0.09, 0.5, BLACK)
    c.text("LIMIT", (0.5, 0.49), 0.09, 0.5, BLACK)
    c.text("25", (0.5, 0.73), 0.3, 0.52, BLACK)


def _draw_signal_ahead(c: _Canvas) -> None:
    _warning(c)
    c.polygon(_rounded(_rect(0.41, 0.2, 0.59, 0.8), 0.03), BLACK)
    for y, colour in ((0.305, LIGHT_RED), (0.5, LIGHT_AMBER), (0.695, LIGHT_GREEN)):
        c.circle((0.5, y), 0.062, colour)


def _draw_stop(c: _Canvas) -> None:
    octagon = _regular(8, (0.5, 0.5), 0.45)
    _bordered(c, octagon, 0.02, RED, WHITE, margin=0.012, band=0.03)
    c.text("STOP", (0.5, 0.5), 0.25, 0.68, WHITE)


def _draw_stop_ahead(c: _Canvas) -> None:
    _warning(c)
    octagon = _regular(8, (0.5, 0.35), 0.125)
    c.polygon(octagon, RED)
    c.polygon(_inset(octagon, 0.008), WHITE)
    c.polygon(_inset(octagon, 0.02), RED)
    c.arrow([(0.5, 0.79), (0.5, 0.52)], 0.075, 0.11, 0.19, BLACK)


def _draw_turn_right(c: _Canvas) -> None:
    _warning(c)
    c.arrow([(0.42, 0.76), (0.42, 0.42), (0.75, 0.42)], 0.085, 0.15, 0.24, BLACK)


def _draw_yield(c: _Canvas) -> None:
    height = 0.9 * math.sqrt(3) / 2
    radius = 0.025
    # Rounding the bottom tip (60 degrees) takes ``radius`` off its height: recentre.
    top = 0.5 - height / 2 + radius / 2
    triangle = np.array([(0.05, top), (0.95, top), (0.5, top + height)])
    c.polygon(_rounded(triangle, radius), RED, face=True)
    c.polygon(_rounded(_inset(triangle, 0.085), 0.01), WHITE)
    c.text("YIELD", (0.5, top + 0.17), 0.075, 0.34, RED)


_DRAWERS: dict[str, Callable[[_Canvas], None]] = {
    "addedLane": _draw_added_lane,
    "keepRight": _draw_keep_right,
    "laneEnds": _draw_lane_ends,
    "merge": _draw_merge,
    "pedestrianCrossing": _draw_pedestrian,
    "school": _draw_school,
    "schoolSpeedLimit25": _draw_school_speed_limit,
    "signalAhead": _draw_signal_ahead,
    "speedLimit25": _speed_limit("25"),
    "speedLimit30": _speed_limit("30"),
    "speedLimit35": _speed_limit("35"),
    "speedLimit45": _speed_limit("45"),
    "stop": _draw_stop,
    "stopAhead": _draw_stop_ahead,
    "turnRight": _draw_turn_right,
    "yield": _draw_yield,
}


# --------------------------------------------------------------------------- public API


def render_sign(name: str, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Render one built-in sign.

    Args:
        name: one of :data:`LISA_CLASSES`.
        size: side of the square image in pixels, at least :data:`MIN_SIZE`.

    Returns:
        ``(rgb, mask)``: rgb uint8 (size, size, 3), values 0..255, the sign face centred
        on :data:`SIGN_BACKGROUND`; mask bool (size, size), True on the face (border
        included). The face spans about 90 % of the image.

    Raises:
        LeafattackError: unknown ``name`` or ``size`` below :data:`MIN_SIZE`.
    """
    draw = _DRAWERS.get(name)
    if draw is None:
        raise LeafattackError(
            f"unknown built-in sign {name!r} (expected one of: {', '.join(LISA_CLASSES)})"
        )
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < MIN_SIZE:
        raise LeafattackError(
            f"sign size {size!r} is invalid (expected an integer of at least {MIN_SIZE} pixels)"
        )
    canvas = _Canvas(int(size))
    draw(canvas)
    return canvas.finish()


def render_sign_set(size: int = 128) -> SignSet:
    """All 16 built-in signs as a :class:`~leafattack.data.SignSet`.

    Returns:
        SignSet with images uint8 (size, size, 3), bool masks, labels int64 0..15 in
        :data:`LISA_CLASSES` order, files ``'<name>.png'`` and source ``'builtin'``.
    """
    renders = [render_sign(name, size) for name in LISA_CLASSES]
    return SignSet(
        images=tuple(rgb for rgb, _ in renders),
        labels=np.arange(len(LISA_CLASSES), dtype=np.int64),
        class_names=LISA_CLASSES,
        files=tuple(f"{name}.png" for name in LISA_CLASSES),
        masks=tuple(mask for _, mask in renders),
        source="builtin",
    )


def write_builtin_signs(out_dir: str | Path, size: int = 128) -> Path:
    """Write the built-in signs and their manifest into ``out_dir``.

    Writes ``<name>.png`` (RGB), ``<name>_mask.png`` (grayscale, 0 or 255) and
    ``manifest.csv`` with columns ``file,mask,label,name`` (one row per class, in class
    order). The bytes are the same on every call.

    Returns:
        The path of ``manifest.csv``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    signs = render_sign_set(size)
    rows = []
    for label, name in enumerate(LISA_CLASSES):
        mask = signs.mask(label)
        write_png(out / f"{name}.png", signs.images[label])
        write_png(out / f"{name}_mask.png", mask.astype(np.uint8) * np.uint8(255))
        rows.append((f"{name}.png", f"{name}_mask.png", label, name))
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("file", "mask", "label", "name"))
        writer.writerows(rows)
    logger.info("wrote %d built-in signs (%d px) to %s", len(rows), size, out)
    return manifest


def builtin_signs_dir() -> Path:
    """The repository's committed ``signs/`` folder."""
    return Path(__file__).resolve().parent.parent / "assets" / "signs"


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str], ncols: int) -> np.ndarray:
    """Tile images in a grid on white, each with its label written below it.

    Args:
        images: uint8 arrays (H, W, 3); smaller ones are centred in cells of the largest size.
        labels: one caption per image.
        ncols: number of columns, at least 1.

    Returns:
        uint8 (rows * (cell_h + label_h + pad) + pad, ncols * (cell_w + pad) + pad, 3),
        with ``rows = ceil(len(images) / ncols)``, ``pad = max(4, cell_w // 16)`` and
        ``label_h = max(12, cell_w // 6)``.

    Raises:
        LeafattackError: no images, a caption count that differs, ``ncols < 1`` or an
        image that is not uint8 (H, W, 3).
    """
    if len(images) == 0 or len(labels) != len(images) or ncols < 1:
        raise LeafattackError(
            f"contact sheet got {len(images)} images, {len(labels)} labels and ncols={ncols} "
            "(expected at least one image, one label per image and ncols >= 1)"
        )
    for img in images:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise LeafattackError(
                f"contact sheet image has dtype {img.dtype} and shape {img.shape} "
                "(expected uint8 (H, W, 3))"
            )
    cell_h = max(img.shape[0] for img in images)
    cell_w = max(img.shape[1] for img in images)
    pad = max(4, cell_w // 16)
    label_h = max(12, cell_w // 6)
    rows = -(-len(images) // ncols)
    sheet = np.full(
        (rows * (cell_h + label_h + pad) + pad, ncols * (cell_w + pad) + pad, 3), 255, np.uint8
    )
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        r, col = divmod(i, ncols)
        y = pad + r * (cell_h + label_h + pad)
        x = pad + col * (cell_w + pad)
        h, w = img.shape[:2]
        oy, ox = (cell_h - h) // 2, (cell_w - w) // 2
        sheet[y + oy : y + oy + h, x + ox : x + ox + w] = img
        scale = 1.0
        (tw, th), _ = cv2.getTextSize(label, _FONT, scale, 1)
        scale = min(0.6 * label_h / max(th, 1), 0.95 * cell_w / max(tw, 1))
        (tw, th), _ = cv2.getTextSize(label, _FONT, scale, 1)
        org = (x + (cell_w - tw) // 2, y + cell_h + (label_h + th) // 2)
        cv2.putText(sheet, label, org, _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def write_contact_sheet(path: str | Path, size: int = 128, ncols: int = 4) -> Path:
    """Write a PNG grid of all built-in signs with their names (for the README)."""
    signs = render_sign_set(size)
    sheet = contact_sheet(signs.images, signs.class_names, ncols)
    out = Path(path)
    write_png(out, sheet)
    return out


def main() -> None:
    """Regenerate the committed ``leafattack/assets/signs/`` folder and, in a repository
    checkout, ``docs/signs.png`` (128 px)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = builtin_signs_dir()
    write_builtin_signs(root)
    docs = Path(__file__).resolve().parents[2] / "docs"
    if docs.is_dir():
        write_contact_sheet(docs / "signs.png")


if __name__ == "__main__":
    main()
