"""Seeded, realistic variants of sign images, for training and testing classifiers.

A variant looks like a sign photographed from a car: the sign is scaled, shifted,
rotated a little and seen in perspective (one homography), composited over a cluttered
background, re-lit (brightness, colour cast, contrast, gamma, sometimes a shadow),
blurred, JPEG-compressed and given sensor noise.

Choosing the random parameters (:func:`sample_params`) is separate from applying them
(:func:`apply_variant`); :class:`VariantParams` holds every value that was used, so any
variant can be reproduced from its parameters alone.

Example:
    >>> from leafattack.data.builtin import render_sign
    >>> rgb, mask = render_sign("stop")
    >>> rng = np.random.default_rng(0)
    >>> random_variant(rgb, mask, rng).shape
    (32, 32, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from leafattack.errors import LeafattackError

FloatRange = tuple[float, float]


def _range(name: str, value: object, lo: float, hi: float) -> FloatRange:
    """Check a ``(low, high)`` pair with ``lo <= low <= high <= hi``; return it as floats."""
    try:
        a, b = (float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(
            f"VariationConfig.{name} = {value!r} is invalid (expected a pair (low, high))"
        ) from None
    if not lo <= a <= b <= hi:
        raise ValueError(
            f"VariationConfig.{name} = {value!r} is invalid (expected {lo} <= low <= high <= {hi})"
        )
    return (a, b)


def _scalar(name: str, value: object, lo: float, hi: float) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(
            f"VariationConfig.{name} = {value!r} is invalid (expected a number)"
        ) from None
    if not lo <= v <= hi:
        raise ValueError(
            f"VariationConfig.{name} = {value!r} is out of range (expected {lo} <= value <= {hi})"
        )
    return v


@dataclass(frozen=True, slots=True)
class VariationConfig:
    """Ranges of the random variations; every ``(low, high)`` pair is sampled uniformly.

    Attributes:
        out_size: side of the square output image in pixels (8..1024).
        scale: longest side of the sign face (its mask's bounding box) as a fraction of
            the output side; sampled log-uniformly.
        aspect: horizontal squash of the sign, as seen from the side of the road.
        max_shift: largest shift of the sign centre, fraction of the output side.
        max_rotation: largest in-plane rotation in degrees (either direction).
        perspective: largest displacement of each corner of the sign's bounding box,
            fraction of the output side.
        fade: how much the sign's colours are washed out towards grey (0 = new sign).
        brightness: multiplicative illumination, 1 = as rendered.
        colour_cast: largest deviation of the per-channel gains from 1 (white balance).
        contrast: contrast factor around the mean grey level.
        gamma: tone curve exponent applied to values in 0..1.
        shadow_prob: probability of a soft-edged shadow across part of the image.
        blur_sigma: Gaussian blur sigma in output pixels (defocus, motion, optics).
        jpeg_quality: JPEG quality range (integers, 1..100).
        noise_sigma: standard deviation of Gaussian sensor noise, in 0..255 units.
        background_prob: probability of replacing everything outside the sign mask with a
            cluttered background from :func:`make_background`; otherwise the source's own
            surroundings are kept (reflected at the borders).
        pole_prob: probability of a metal post below the sign (with a generated background).
    """

    out_size: int = 32
    scale: FloatRange = (0.6, 1.0)
    aspect: FloatRange = (0.75, 1.05)
    max_shift: float = 0.08
    max_rotation: float = 12.0
    perspective: float = 0.06
    fade: FloatRange = (0.0, 0.25)
    brightness: FloatRange = (0.5, 1.35)
    colour_cast: float = 0.12
    contrast: FloatRange = (0.65, 1.15)
    gamma: FloatRange = (0.65, 1.4)
    shadow_prob: float = 0.25
    blur_sigma: FloatRange = (0.0, 0.8)
    jpeg_quality: tuple[int, int] = (40, 95)
    noise_sigma: FloatRange = (0.0, 6.0)
    background_prob: float = 1.0
    pole_prob: float = 0.6

    def __post_init__(self) -> None:
        size = self.out_size
        if (
            isinstance(size, bool)
            or not isinstance(size, int | np.integer)
            or not (8 <= size <= 1024)
        ):
            raise ValueError(
                f"VariationConfig.out_size = {size!r} is invalid (expected an integer 8..1024)"
            )
        object.__setattr__(self, "out_size", int(size))
        ranges = {
            "scale": (0.05, 4.0),
            "aspect": (0.2, 5.0),
            "fade": (0.0, 1.0),
            "brightness": (0.01, 10.0),
            "contrast": (0.01, 10.0),
            "gamma": (0.05, 20.0),
            "blur_sigma": (0.0, 50.0),
            "noise_sigma": (0.0, 255.0),
        }
        for name, (lo, hi) in ranges.items():
            object.__setattr__(self, name, _range(name, getattr(self, name), lo, hi))
        q = _range("jpeg_quality", self.jpeg_quality, 1, 100)
        if q != (round(q[0]), round(q[1])):
            raise ValueError(
                f"VariationConfig.jpeg_quality = {self.jpeg_quality!r} is invalid "
                "(expected a pair of integers 1..100)"
            )
        object.__setattr__(self, "jpeg_quality", (round(q[0]), round(q[1])))
        scalars = {
            "max_shift": (0.0, 0.5),
            "max_rotation": (0.0, 180.0),
            "perspective": (0.0, 0.3),
            "colour_cast": (0.0, 0.9),
            "shadow_prob": (0.0, 1.0),
            "background_prob": (0.0, 1.0),
            "pole_prob": (0.0, 1.0),
        }
        for name, (lo, hi) in scalars.items():
            object.__setattr__(self, name, _scalar(name, getattr(self, name), lo, hi))


DEFAULT_CONFIG = VariationConfig()
"""The default variation ranges (those used to train the default classifier)."""


@dataclass(frozen=True, slots=True)
class VariantParams:
    """Every value that produced one variant (see :func:`sample_params`).

    Attributes:
        out_size: output side in pixels.
        scale, aspect, rotation: sign size (fraction of the output side), horizontal
            squash, and in-plane rotation in degrees counter-clockwise.
        shift: (dx, dy) of the sign centre, fractions of the output side.
        corners: displacement (dx, dy) of the top-left, top-right, bottom-right and
            bottom-left corners of the sign's bounding box, fractions of the output side.
        fade: wash-out of the sign's colours towards grey, 0..1.
        background: whether the surroundings are replaced by a generated background.
        pole: ``(width, grey)`` of the post below the sign, width as a fraction of the
            output side and grey level 0..1; None for no post.
        shadow: ``(angle in radians, offset in -0.5..0.5, darkness 0..1)`` or None.
        brightness, gains, contrast, gamma: illumination and tone.
        blur_sigma, jpeg_quality, noise_sigma: camera degradations.
        seed: seeds the generator of the background texture and the sensor noise.
    """

    out_size: int
    scale: float
    aspect: float
    rotation: float
    shift: tuple[float, float]
    corners: tuple[tuple[float, float], ...]
    fade: float
    background: bool
    pole: tuple[float, float] | None
    shadow: tuple[float, float, float] | None
    brightness: float
    gains: tuple[float, float, float]
    contrast: float
    gamma: float
    blur_sigma: float
    jpeg_quality: int
    noise_sigma: float
    seed: int


def _lerp(r: FloatRange, u: float) -> float:
    return r[0] + (r[1] - r[0]) * u


def sample_params(
    rng: np.random.Generator, config: VariationConfig = DEFAULT_CONFIG
) -> VariantParams:
    """Draw the parameters of one variant from ``rng`` within the ranges of ``config``."""
    u = rng.random(31)
    c = config
    shadow = None
    if u[9] < c.shadow_prob:
        shadow = (float(u[10] * 2 * math.pi), float(u[11] - 0.5) * 0.8, 0.3 + 0.45 * float(u[12]))
    jpeg = round(_lerp((c.jpeg_quality[0] - 0.499, c.jpeg_quality[1] + 0.499), float(u[17])))
    corners = (2.0 * u[20:28] - 1.0) * c.perspective
    # The scale is sampled log-uniformly: small and large signs are equally common.
    log_scale = _lerp((math.log(c.scale[0]), math.log(c.scale[1])), float(u[0]))
    return VariantParams(
        out_size=int(c.out_size),
        scale=math.exp(log_scale),
        aspect=_lerp(c.aspect, float(u[1])),
        rotation=(2.0 * float(u[2]) - 1.0) * c.max_rotation,
        shift=((2.0 * float(u[3]) - 1.0) * c.max_shift, (2.0 * float(u[4]) - 1.0) * c.max_shift),
        corners=tuple((float(corners[2 * i]), float(corners[2 * i + 1])) for i in range(4)),
        fade=_lerp(c.fade, float(u[5])),
        background=bool(u[6] < c.background_prob),
        pole=((0.03 + 0.05 * float(u[29])) * math.exp(log_scale), 0.3 + 0.45 * float(u[30]))
        if u[28] < c.pole_prob
        else None,
        shadow=shadow,
        brightness=_lerp(c.brightness, float(u[7])),
        gains=(
            1.0 + (2.0 * float(u[13]) - 1.0) * c.colour_cast,
            1.0 + (2.0 * float(u[14]) - 1.0) * c.colour_cast * 0.5,
            1.0 + (2.0 * float(u[15]) - 1.0) * c.colour_cast,
        ),
        contrast=_lerp(c.contrast, float(u[8])),
        gamma=_lerp(c.gamma, float(u[16])),
        blur_sigma=_lerp(c.blur_sigma, float(u[18])),
        jpeg_quality=int(jpeg),
        noise_sigma=_lerp(c.noise_sigma, float(u[19])),
        seed=int(rng.integers(0, 2**63 - 1)),
    )


# --------------------------------------------------------------------------- backgrounds

_SKY = (
    np.array(
        [
            (118, 160, 212),
            (150, 186, 226),
            (186, 206, 232),
            (212, 220, 230),
            (168, 174, 186),
            (226, 196, 158),
            (92, 122, 172),
            (236, 238, 240),
        ],
        dtype=np.float32,
    )
    / 255.0
)
_FOLIAGE = (
    np.array(
        [
            (48, 74, 34),
            (74, 104, 44),
            (102, 126, 58),
            (34, 48, 28),
            (122, 112, 50),
            (150, 96, 40),
            (168, 122, 60),
            (92, 70, 44),
            (60, 60, 40),
            (130, 140, 80),
        ],
        dtype=np.float32,
    )
    / 255.0
)
_BUILT = (
    np.array(
        [
            (152, 150, 148),
            (120, 116, 110),
            (172, 162, 142),
            (142, 86, 66),
            (110, 72, 56),
            (90, 96, 106),
            (202, 196, 186),
            (62, 62, 66),
            (96, 96, 100),
            (72, 72, 76),
            (124, 120, 116),
            (140, 134, 122),
        ],
        dtype=np.float32,
    )
    / 255.0
)
_PALETTES = (_FOLIAGE, _BUILT, np.concatenate([_FOLIAGE, _BUILT]))
_WORK_MAX = 48  # backgrounds are generated at most this large, then upscaled
_MAX_STRUCTURES = 5  # poles, walls, wires, ... drawn over a background


@lru_cache(maxsize=16)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in 0..1, float32 (size, size) each (x, y)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    gx, gy = np.meshgrid(t, t)
    return gx, gy


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`make_background` as float32 (size, size, 3), about 0..1 (not clipped)."""
    w = int(min(size, _WORK_MAX))
    gx, gy = _grid(w)
    # One draw for all scalars: 20 choices, 49 blotch colours, 6 per structure.
    u = rng.random(20 + 49 + 6 * _MAX_STRUCTURES)
    # Sky: a vertical gradient between two sky colours.
    ends = _SKY[[int(u[15] * len(_SKY)), int(u[16] * len(_SKY))]].reshape(2, 1, 3)
    sky = cv2.resize(ends, (w, w), interpolation=cv2.INTER_LINEAR)
    # Ground: a blotchy colour field from a palette, shaded by a smooth field, with grain.
    palette = _PALETTES[int(u[0] * len(_PALETTES))]
    cells = 2 + int(u[1] * 6)
    picks = (u[20 : 20 + cells * cells] * len(palette)).astype(np.intp)
    blotch = palette[picks].reshape(cells, cells, 3)
    ground = cv2.resize(blotch, (w, w), interpolation=cv2.INTER_LINEAR)
    coarse = 3 + int(u[5] * 4)
    shade_field, canopy = cv2.split(
        cv2.resize(
            rng.random((coarse, coarse, 2), dtype=np.float32),
            (w, w),
            interpolation=cv2.INTER_LINEAR,
        )
    )
    grain = rng.random((w, w), dtype=np.float32)
    grain_amp = 0.5 * float(u[2])
    shade = (0.65 + 0.7 * shade_field) * (grain * grain_amp + (1.0 - 0.5 * grain_amp))
    ground = cv2.multiply(ground, cv2.merge((shade, shade, shade)))
    # Where the ground is: below a tilted horizon, plus canopies reaching into the sky.
    horizon = -0.3 + 1.2 * float(u[3])
    tilt = (float(u[4]) - 0.5) * 0.6
    plane = cv2.addWeighted(gy, w / 2.0, gx, -tilt * w / 2.0, (tilt * 0.5 - horizon) * w / 2.0)
    level = np.maximum(plane, canopy * 12.0 + (3.6 * float(u[6]) - 9.0))
    a = np.clip(level, 0.0, 1.0)
    img = cv2.blendLinear(ground, sky, a, 1.0 - a)
    # Straight structures: poles, walls and windows, wires, road markings.
    for i in range(int(u[7] * (_MAX_STRUCTURES + 1))):
        kind, x0, y0, x1, y1, pick = u[69 + 6 * i : 75 + 6 * i].tolist()
        colour = (palette[int(pick * len(palette))] * (0.5 + x1)).tolist()
        p0 = (int(x0 * w), int(y0 * w))
        if kind < 0.3:  # pole or post
            cv2.rectangle(img, (p0[0], -1), (p0[0] + max(1, int(y1 * w / 8)), w), colour, -1)
        elif kind < 0.6:  # wall, window, other sign or vehicle
            p1 = (p0[0] + int((x1 - 0.3) * w), p0[1] + int((y1 - 0.3) * w))
            cv2.rectangle(img, p0, p1, colour, -1)
        else:  # wire, edge or road marking
            light = (0.9, 0.9, 0.85) if pick < 0.3 else colour
            cv2.line(img, p0, (int(x1 * w), int(y1 * w)), light, 1, cv2.LINE_AA)
    if u[8] < 0.3:  # something brightly coloured (car, billboard, flowers)
        colour = (float(u[17]), float(u[18]), float(u[19]))
        centre = (int(u[9] * w), int(u[10] * w))
        axes = (1 + int(u[11] * w / 4), 1 + int(u[12] * w / 4))
        cv2.ellipse(img, centre, axes, float(u[13] * 180), 0, 360, colour, -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), (0.2 + 0.8 * float(u[14])) * w / 32.0)
    if w != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
        img = img * (1.0 + 0.04 * (rng.random((size, size, 1), dtype=np.float32) - 0.5))
    return np.asarray(img, dtype=np.float32)


def make_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A cluttered, photograph-like scene behind a sign.

    Sky with a gradient above a random, tilted horizon; below it (and as tree canopies
    reaching into the sky) blotchy foliage or built-up colour fields with grain; then
    straight structures (poles, walls, windows, wires, road markings) and sometimes a
    brightly coloured object; all slightly defocused. Never a flat colour.

    Shape:
        uint8 (size, size, 3) RGB, values 0..255. Drawn at most 48 px wide and upscaled
        (with fresh grain) for larger sizes.

    Raises:
        LeafattackError: ``size`` is not an integer >= 1.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise LeafattackError(f"background size {size!r} is invalid (expected an integer >= 1)")
    return cv2.convertScaleAbs(_background(int(size), rng), alpha=255.0)


# --------------------------------------------------------------------------- applying


@dataclass(frozen=True, slots=True)
class _Source:
    """A sign image prepared once for many variants."""

    levels: tuple[np.ndarray, ...]  # uint8 (H, W, 4) RGB + mask 0/255, halved level by level
    centre: tuple[float, float]  # centre of the mask's bounding box, pixel-index coordinates
    extent: float  # longest side of the mask's bounding box in pixels


def _prepare(image: np.ndarray, mask: np.ndarray) -> _Source:
    img = np.asarray(image)
    m = np.asarray(mask)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise LeafattackError(
            f"sign image has dtype {img.dtype} and shape {img.shape} (expected uint8 (H, W, 3))"
        )
    if m.shape != img.shape[:2]:
        raise LeafattackError(
            f"sign mask has shape {m.shape} (expected {img.shape[:2]}, the image's size)"
        )
    m = m.astype(bool)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        raise LeafattackError("sign mask is empty (expected True on the sign face)")
    levels = [np.dstack([img, m.astype(np.uint8) * np.uint8(255)])]
    while min(levels[-1].shape[:2]) >= 16:
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    centre = ((cols[0] + cols[-1]) / 2.0, (rows[0] + rows[-1]) / 2.0)
    extent = float(max(cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1))
    return _Source(levels=tuple(levels), centre=centre, extent=extent)


def _homography(src: _Source, p: VariantParams, fx: float, fy: float) -> np.ndarray:
    """3x3 map from pixel indices of the source resized by (fx, fy) to output pixel indices.

    The corners of the sign's (square) bounding box are scaled, squashed, rotated and
    shifted into the output, then each is displaced by its perspective offset.
    """
    n = p.out_size
    half = 0.5 * src.extent
    k = p.scale * n / src.extent  # output pixels per source pixel
    theta = math.radians(p.rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    ox, oy = (n - 1) / 2.0 + p.shift[0] * n, (n - 1) / 2.0 + p.shift[1] * n
    src_pts, dst_pts = [], []
    for (bx, by), (dx, dy) in zip(((-1, -1), (1, -1), (1, 1), (-1, 1)), p.corners, strict=True):
        # Pixel index x of the full image sits at (x + 0.5) * f - 0.5 in the resized one.
        src_pts.append(
            (
                (src.centre[0] + bx * half + 0.5) * fx - 0.5,
                (src.centre[1] + by * half + 0.5) * fy - 0.5,
            )
        )
        sx, sy = bx * half * k * p.aspect, by * half * k
        # Counter-clockwise on screen (y points down).
        dst_pts.append((ox + sx * cos + sy * sin + dx * n, oy + sy * cos - sx * sin + dy * n))
    return cv2.getPerspectiveTransform(
        np.array(src_pts, dtype=np.float32), np.array(dst_pts, dtype=np.float32)
    )


def _draw_pole(back: np.ndarray, p: VariantParams, width: float, grey: float) -> None:
    """Draw the sign's post (in place) from the sign centre down, rolled like the sign."""
    n = p.out_size
    theta = math.radians(p.rotation)
    down = np.array([math.sin(theta), math.cos(theta)])
    across = np.array([down[1], -down[0]]) * (0.5 * width * n)
    top = np.array([(n - 1) / 2.0 + p.shift[0] * n, (n - 1) / 2.0 + p.shift[1] * n])
    bottom = top + down * 2 * n
    quad = np.array([top - across, top + across, bottom + across, bottom - across])
    colour = (255 * grey, 255 * grey, 255 * min(1.0, grey * 1.04))
    cv2.fillConvexPoly(back, np.round(quad * 16).astype(np.int32), colour, cv2.LINE_AA, 4)


def _apply(src: _Source, p: VariantParams) -> tuple[np.ndarray, np.ndarray]:
    n = p.out_size
    gen = np.random.default_rng(p.seed)
    # Warp from the pyramid level that the warp shrinks by at most 2x (bilinear is fine).
    k = p.scale * n / src.extent
    level = 0
    while level + 1 < len(src.levels) and k * 2 ** (level + 1) <= 1.25:
        level += 1
    rgba = src.levels[level]
    h0, w0 = src.levels[0].shape[:2]
    fx, fy = rgba.shape[1] / w0, rgba.shape[0] / h0
    hom = _homography(src, p, fx, fy)
    warped = cv2.warpPerspective(rgba, hom, (n, n), flags=cv2.INTER_LINEAR)
    alpha = cv2.extractChannel(warped, 3).astype(np.float32) * np.float32(1.0 / 255.0)
    sign = cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB)
    if p.fade > 0:
        # Washed-out colours drift towards a light grey of similar lightness.
        grey = cv2.cvtColor(cv2.cvtColor(sign, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        sign = cv2.addWeighted(sign, 1.0 - p.fade, grey, 0.65 * p.fade, 0.35 * 255.0 * p.fade)
    if p.background:
        back = cv2.convertScaleAbs(_background(n, gen), alpha=255.0)
        if p.pole is not None:
            _draw_pole(back, p, *p.pole)
    else:
        back = cv2.warpPerspective(
            np.ascontiguousarray(rgba[..., :3]),
            hom,
            (n, n),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
    out = cv2.blendLinear(sign, back, alpha, 1.0 - alpha)
    # Lighting: a shadow, then illumination level and colour, contrast and tone curve,
    # which act on each channel alone and so are one lookup table per channel.
    if p.shadow is not None:
        angle, offset, darkness = p.shadow
        gx, gy = _grid(n)
        side = (gx - 0.5) * math.cos(angle) + (gy - 0.5) * math.sin(angle) - offset
        shade = 1.0 - darkness * np.clip(side * (n / 3.0) + 0.5, 0.0, 1.0)
        out = cv2.multiply(out, cv2.merge((shade, shade, shade)), dtype=cv2.CV_8U)
    gains = np.asarray(p.gains) * p.brightness
    mean = float(np.dot(cv2.mean(out)[:3], gains)) / 3.0
    levels = np.arange(256, dtype=np.float64)[:, None] * (gains * p.contrast)
    levels = np.clip((levels + mean * (1.0 - p.contrast)) / 255.0, 0.0, 1.0) ** p.gamma
    out = cv2.LUT(out, np.rint(255.0 * levels).astype(np.uint8).reshape(256, 1, 3))
    if p.blur_sigma >= 0.25:
        out = cv2.GaussianBlur(out, (0, 0), p.blur_sigma)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, p.jpeg_quality]
    )
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is not None:
        out = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if p.noise_sigma > 0:
        # Mostly luminance noise, as left by a camera's processing, plus some colour noise.
        luma = gen.standard_normal((n, n, 1), dtype=np.float32)
        chroma = gen.random((n, n, 3), dtype=np.float32) - np.float32(0.5)
        noise = (luma + chroma) * np.float32(p.noise_sigma / math.sqrt(1.0 + 1.0 / 12.0))
        out = cv2.add(out, noise, dtype=cv2.CV_8U)
    return out, alpha


def apply_variant(
    image: np.ndarray, mask: np.ndarray, params: VariantParams
) -> tuple[np.ndarray, np.ndarray]:
    """Make the variant that ``params`` describes.

    Args:
        image: uint8 (H, W, 3) RGB sign image.
        mask: bool (H, W), True on the sign face; must not be empty.
        params: from :func:`sample_params`.

    Returns:
        ``(variant, alpha)``: uint8 (out_size, out_size, 3) RGB, and float32
        (out_size, out_size) in 0..1, the fraction of each output pixel covered by the
        sign face (before blur).

    Raises:
        LeafattackError: image not uint8 (H, W, 3), mask of another size, or empty mask.
    """
    return _apply(_prepare(image, mask), params)


def random_variant_with_mask(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    config: VariationConfig = DEFAULT_CONFIG,
) -> tuple[np.ndarray, np.ndarray]:
    """One random variant and its sign coverage, see :func:`apply_variant`."""
    src = _prepare(image, mask)
    return _apply(src, sample_params(rng, config))


def random_variant(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    config: VariationConfig = DEFAULT_CONFIG,
) -> np.ndarray:
    """One random variant of a sign image.

    Shape:
        image uint8 (H, W, 3), mask bool (H, W) -> uint8 (out_size, out_size, 3), 0..255.
    """
    return random_variant_with_mask(image, mask, rng, config)[0]


def make_variants(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    labels: np.ndarray,
    n_per_image: int,
    rng: np.random.Generator,
    config: VariationConfig = DEFAULT_CONFIG,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_image`` random variants of every image, grouped by image.

    Args:
        images: uint8 (H_i, W_i, 3) sign images.
        masks: bool (H_i, W_i) face masks, one per image.
        labels: int array (N,), one label per image.
        n_per_image: variants per image, at least 1.
        rng: the only source of randomness; the same state gives the same arrays.

    Returns:
        ``(x, y)``: x uint8 (N * n_per_image, out_size, out_size, 3), rows
        ``i * n_per_image ... (i + 1) * n_per_image - 1`` from image ``i``; y int64
        (N * n_per_image,) the matching labels.
    """
    lab = np.asarray(labels)
    if len(masks) != len(images) or lab.shape != (len(images),):
        raise LeafattackError(
            f"make_variants got {len(images)} images, {len(masks)} masks and labels of shape "
            f"{lab.shape} (expected one mask and one label per image)"
        )
    if (
        isinstance(n_per_image, bool)
        or not isinstance(n_per_image, int | np.integer)
        or (n_per_image < 1)
    ):
        raise LeafattackError(
            f"n_per_image = {n_per_image!r} is invalid (expected an integer >= 1)"
        )
    n = config.out_size
    out = np.empty((len(images) * n_per_image, n, n, 3), dtype=np.uint8)
    k = 0
    for image, mask in zip(images, masks, strict=True):
        src = _prepare(image, mask)
        for _ in range(n_per_image):
            out[k] = _apply(src, sample_params(rng, config))[0]
            k += 1
    return out, np.repeat(lab.astype(np.int64), n_per_image)
