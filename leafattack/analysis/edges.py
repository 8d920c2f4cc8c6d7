"""Canny edge maps of sign images and metrics of how an attack changes them.

Etim & Szefer (2024) found that whether a fall-leaf occlusion fools a traffic-sign
classifier correlates with how much it changes the Canny edge map of the sign.
This module is the pure, batched layer of that analysis:

* :func:`canny_batch` turns a batch of RGB images into boolean edge maps
  (grayscale, Gaussian blur, Canny; optionally resized first to a fixed
  square resolution such as the model input size).
* :data:`EDGE_METRICS` is the registry of per-trial metrics that compare a clean
  edge map with an attacked one; :func:`edge_metrics` evaluates any of them on
  a whole batch at once.

Conventions shared by every metric (all of them are vectorised over the batch):

Sign region
    Only edge pixels inside the *sign region* count, in both maps: the sign mask
    grown by one pixel (3 x 3 square), so that the sign's own outline counts
    even where Canny puts it on the background side of the colour step.
Tolerance
    A clean edge pixel is *kept* when an attacked edge pixel of the sign region
    lies within ``EdgeConfig.tolerance`` pixels of it (Chebyshev distance, i.e.
    inside a (2t+1) x (2t+1) square; default t = 1), and an attacked edge pixel
    is *new* when no clean edge pixel lies that close. With t = 0 the
    comparisons are exact pixel matches.
Border band
    The pixels within ``b`` pixels (Chebyshev) of the sign mask's contour, on
    both sides of it, where ``b = EdgeConfig.border_pixels(H, W)`` (a fraction
    of the image's shorter side, at least one pixel). The image frame is not a
    contour: a mask that fills the whole image has an empty band. *Border*
    edges are the clean edge pixels of the sign region inside the band,
    *interior* edges (text, pictograms) the others.
Empty denominators
    A ratio whose denominator is zero (a sign without clean edges, an empty
    sign region, no clean edges in the border band) is NaN, never 0.0, so that
    "nothing to lose" is not mistaken for "nothing lost"; the statistics in
    :mod:`leafattack.analysis.stats` drop NaN rows metric by metric.

Inputs are (N, H, W) arrays at the same resolution (use :func:`resize_masks`
to bring sign masks and leaf alpha to ``EdgeConfig.resolution``); the clean
edges are computed once per sign and indexed by the trials' sign ids.
Registry entries follow :class:`EdgeMetric`: ``(clean, attacked, leaf, sign)``
positionally, plus an optional ``geometry=`` keyword through which
:func:`edge_metrics` shares one :class:`EdgeGeometry` (the dilations and counts
all metrics need) among them.

Example:
    >>> img = np.full((2, 32, 32, 3), 128, np.uint8)
    >>> img[:, 8:24, 8:24] = (200, 30, 30)        # a red square "sign"
    >>> img[1, 8:24, 8:16] = (230, 140, 20)       # an orange leaf over its left half
    >>> edges = canny_batch(img)                  # (orange is close to grey in grayscale)
    >>> mask = np.zeros((2, 32, 32), bool); mask[:, 8:24, 8:24] = True
    >>> m = edge_metrics(edges[[0, 0]], edges, np.zeros((2, 32, 32)), mask)
    >>> [round(float(v), 2) for v in m["edges_lost"]]
    [0.0, 0.47]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Final, Protocol

import cv2
import numpy as np

from leafattack.errors import LeafattackError

REGION_GROW_PX: Final[int] = 1
"""How far (pixels, Chebyshev) the sign mask is grown to form the sign region."""

CHUNK_PIXELS: Final[int] = 1 << 20
"""Batches are processed internally in blocks of about this many pixels per image plane
(1024 images at 32 x 32): bounded temporary memory, and faster than one huge block."""


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """How edge maps are computed and compared.

    Attributes:
        low: lower Canny hysteresis threshold, >= 0 (on the scale of the L1 Sobel
            gradient of a 0..255 grayscale image, as in ``cv2.Canny``).
        high: upper Canny hysteresis threshold, >= ``low``.
        auto: derive the thresholds of each image from the median ``m`` of its
            blurred grayscale: ``low = max(0, (1 - sigma) * m)``,
            ``high = min(255, (1 + sigma) * m)``; ``low`` and ``high`` are then ignored.
        sigma: spread of the automatic thresholds around the median, in [0, 1].
        blur_ksize: side of the Gaussian kernel applied before Canny; odd >= 3,
            or 0 / 1 for no blur.
        blur_sigma: standard deviation of that kernel (>= 0; 0 = derived from
            ``blur_ksize`` as OpenCV does).
        resolution: compute edges at this square size (e.g. 32, the model
            input); images are resized to ``resolution x resolution`` with
            ``cv2.INTER_AREA`` first. ``None`` keeps each image's size.
        border_width: thickness of the border band along the sign mask's contour,
            as a fraction of the image's shorter side, in (0, 0.5]; see
            :meth:`border_pixels`. The default 0.05 is 2 px at 32 x 32 and
            6 px at 128 x 128.
        tolerance: match distance in pixels (Chebyshev) for kept / new edge
            pixels, >= 0.

    Example:
        >>> EdgeConfig(resolution=32).border_pixels(32, 32)
        2
    """

    low: float = 50.0
    high: float = 150.0
    auto: bool = False
    sigma: float = 0.33
    blur_ksize: int = 3
    blur_sigma: float = 0.0
    resolution: int | None = None
    border_width: float = 0.05
    tolerance: int = 1

    def __post_init__(self) -> None:
        for name in ("low", "high", "sigma", "blur_sigma", "border_width"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value):
                raise ValueError(f"EdgeConfig.{name}={value!r}: expected a finite number")
        if self.low < 0:
            raise ValueError(f"EdgeConfig.low={self.low!r}: expected a threshold >= 0")
        if self.high < self.low:
            raise ValueError(
                f"EdgeConfig.high={self.high!r}: expected a threshold >= low ({self.low!r})"
            )
        if not isinstance(self.auto, bool | np.bool_):
            raise ValueError(f"EdgeConfig.auto={self.auto!r}: expected True or False")
        if not 0.0 <= self.sigma <= 1.0:
            raise ValueError(f"EdgeConfig.sigma={self.sigma!r}: expected a value in [0, 1]")
        if not _is_int(self.blur_ksize) or not (
            self.blur_ksize in (0, 1) or (self.blur_ksize >= 3 and self.blur_ksize % 2 == 1)
        ):
            raise ValueError(
                f"EdgeConfig.blur_ksize={self.blur_ksize!r}: expected 0 or 1 (no blur) "
                "or an odd integer >= 3"
            )
        if self.blur_sigma < 0:
            raise ValueError(f"EdgeConfig.blur_sigma={self.blur_sigma!r}: expected a value >= 0")
        if self.resolution is not None and (not _is_int(self.resolution) or self.resolution < 3):
            raise ValueError(
                f"EdgeConfig.resolution={self.resolution!r}: expected None or an integer >= 3"
            )
        if not 0.0 < self.border_width <= 0.5:
            raise ValueError(
                f"EdgeConfig.border_width={self.border_width!r}: expected a fraction of the "
                "image side in (0, 0.5]"
            )
        if not _is_int(self.tolerance) or self.tolerance < 0:
            raise ValueError(
                f"EdgeConfig.tolerance={self.tolerance!r}: expected an integer >= 0 (pixels)"
            )

    def border_pixels(self, height: int, width: int) -> int:
        """Border band width in pixels for an image of ``height x width``.

        ``max(1, round(border_width * min(height, width)))``.

        Example:
            >>> EdgeConfig(border_width=0.1).border_pixels(128, 100)
            10
        """
        return max(1, round(self.border_width * min(height, width)))


# --------------------------------------------------------------------------- edge maps


def _check_images(images: np.ndarray) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(
            f"images have dtype {arr.dtype} and shape {arr.shape}, expected uint8 (N, H, W, 3) RGB"
        )
    if arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"images have shape {arr.shape}, expected H >= 1 and W >= 1")
    return np.ascontiguousarray(arr)


def _resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Resize every image of a (N, H, W, ...) batch to (size, size) with INTER_AREA."""
    n = images.shape[0]
    out = np.empty((n, size, size, *images.shape[3:]), dtype=images.dtype)
    for i in range(n):
        out[i] = cv2.resize(images[i], (size, size), interpolation=cv2.INTER_AREA).reshape(
            out.shape[1:]
        )
    return out


def _blur_batch(gray: np.ndarray, ksize: int, sigma: float) -> np.ndarray:
    """``cv2.GaussianBlur`` of every image of a uint8 (N, H, W) batch, bit-identical to per image.

    The images are stacked into one tall image, each padded above and below with
    its own reflected rows (OpenCV's default BORDER_REFLECT_101), so that one
    OpenCV call sees exactly the neighbourhoods the per-image calls would see.
    """
    if ksize <= 1:
        return gray
    n, h, w = gray.shape
    pad = ksize // 2
    if n == 0:
        return gray.copy()
    if pad >= h:  # reflection would wrap more than once: do it image by image
        out = np.empty_like(gray)
        for i in range(n):
            out[i] = cv2.GaussianBlur(gray[i], (ksize, ksize), sigma)
        return out
    padded = np.pad(gray, ((0, 0), (pad, pad), (0, 0)), mode="reflect")
    tall = padded.reshape(n * (h + 2 * pad), w)
    blurred = cv2.GaussianBlur(tall, (ksize, ksize), sigma)
    return blurred.reshape(n, h + 2 * pad, w)[:, pad : pad + h]


THRESHOLD_MODES: tuple[str, ...] = ("source", "auto", "fixed")
"""How an edge analysis picks its Canny thresholds: ``auto`` per image from the median
(:func:`auto_thresholds`), ``fixed`` (``EdgeConfig.low``/``high``, 50/150 by default), or
``source``: automatic on photo sources (no masks of their own: GTSRB, LISA, folders of
photos), fixed on rendered signs (the built-in renders and other sources with masks)."""


def thresholds_for(config: EdgeConfig, mode: str, photo: bool) -> EdgeConfig:
    """``config`` with ``auto`` set as ``mode`` (one of :data:`THRESHOLD_MODES`) says for
    a source that is (``photo``) or is not made of photos.

    Example:
        >>> thresholds_for(EdgeConfig(), "source", photo=True).auto
        True
        >>> thresholds_for(EdgeConfig(), "source", photo=False).auto
        False
    """
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"thresholds mode {mode!r}: expected one of {', '.join(THRESHOLD_MODES)}")
    auto = mode == "auto" or (mode == "source" and photo)
    return dataclasses.replace(config, auto=auto)


def describe_thresholds(config: EdgeConfig) -> str:
    """``automatic per image (median of the blurred grey image +- 33%)`` or ``fixed 50/150``."""
    if config.auto:
        return (
            f"automatic per image (median of the blurred grey image \u00b1 "
            f"{config.sigma:.0%})"
        )
    return f"fixed {config.low:g}/{config.high:g}"


def auto_thresholds(blurred: np.ndarray, sigma: float = 0.33) -> tuple[np.ndarray, np.ndarray]:
    """Median-based Canny thresholds of each image of a (N, H, W) batch.

    Returns ``(low, high)``, float64 (N,): ``max(0, (1 - sigma) * median)`` and
    ``min(255, (1 + sigma) * median)`` of each image's pixel values.

    Example:
        >>> low, high = auto_thresholds(np.full((1, 4, 4), 100, np.uint8))
        >>> float(low[0]), float(high[0])
        (67.0, 133.0)
    """
    arr = np.asarray(blurred)
    if arr.ndim != 3:
        raise ValueError(f"blurred has shape {arr.shape}, expected (N, H, W)")
    median = np.median(
        arr.reshape(arr.shape[0], arr.shape[1] * arr.shape[2]).astype(np.float64), axis=1
    )
    return np.maximum(0.0, (1.0 - sigma) * median), np.minimum(255.0, (1.0 + sigma) * median)


def _gradients_stacked(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel gradients of a uint8 (N, H, W) batch, laid out for one stacked ``cv2.Canny`` call.

    Returns int16 ``(dx, dy)`` of shape (N, H + 2, W): rows 1..H of block i
    hold exactly what ``cv2.Canny(gray[i], ...)`` computes internally (3 x 3
    Sobel, BORDER_REPLICATE); rows 0 and H + 1 are zero. Zero-gradient rows are
    what Canny assumes beyond the image border, and they are never edge
    candidates, so Canny on the stacked blocks reproduces per-image Canny exactly.
    """
    n, h, w = gray.shape
    padded = np.empty((n, h + 2, w), dtype=np.uint8)
    padded[:, 1 : h + 1] = gray
    padded[:, 0] = gray[:, 0]
    padded[:, h + 1] = gray[:, h - 1]
    tall = padded.reshape(n * (h + 2), w)
    out = []
    for order in ((1, 0), (0, 1)):
        grad = cv2.Sobel(tall, cv2.CV_16S, *order, ksize=3, borderType=cv2.BORDER_REPLICATE)
        grad = grad.reshape(n, h + 2, w)
        grad[:, 0] = 0
        grad[:, h + 1] = 0
        out.append(grad)
    return out[0], out[1]


def canny_batch(images: np.ndarray, config: EdgeConfig = EdgeConfig()) -> np.ndarray:
    """Canny edge maps of a batch of RGB images.

    Per image: resize to ``config.resolution`` (INTER_AREA, when set and the
    size differs), ``cv2.cvtColor(RGB2GRAY)``, ``cv2.GaussianBlur`` (unless
    ``blur_ksize`` is 0 or 1), ``cv2.Canny(low, high)`` (3 x 3 aperture, L1
    gradient) with the fixed or the automatic thresholds. The output is
    identical to doing exactly that image by image; internally each step runs
    once per block of images stacked into one tall image (once per distinct
    threshold pair with ``auto``).

    Args:
        images: uint8 (N, H, W, 3) RGB, values 0..255.
        config: thresholds, blur and resolution.

    Returns:
        bool (N, h, w): True on edge pixels; (h, w) = (resolution, resolution)
        when set, else (H, W).

    Example:
        >>> img = np.zeros((1, 32, 32, 3), np.uint8)
        >>> img[0, :, 16:] = 255
        >>> edges = canny_batch(img, EdgeConfig(blur_ksize=0))
        >>> edges.shape, bool(edges[0, 10, 15] or edges[0, 10, 16])
        ((1, 32, 32), True)
    """
    arr = _check_images(images)
    if config.resolution is not None and arr.shape[1:3] != (config.resolution,) * 2:
        arr = _resize_batch(arr, config.resolution)
    n, h, w = arr.shape[:3]
    out = np.empty((n, h, w), dtype=bool)
    step = _chunk_size(h, w)
    for start in range(0, n, step):
        out[start : start + step] = _canny_chunk(arr[start : start + step], config)
    return out


def _chunk_size(h: int, w: int) -> int:
    """Images per internal block: about CHUNK_PIXELS pixels (bounded memory, cache-friendly)."""
    return max(1, CHUNK_PIXELS // max(1, h * w))


def _canny_chunk(arr: np.ndarray, config: EdgeConfig) -> np.ndarray:
    """:func:`canny_batch` of a uint8 (n, h, w, 3) block already at the working size."""
    n, h, w = arr.shape[:3]
    gray = cv2.cvtColor(arr.reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY).reshape(n, h, w)
    blurred = _blur_batch(gray, config.blur_ksize, config.blur_sigma)
    dx, dy = _gradients_stacked(blurred)
    if not config.auto:
        edges = cv2.Canny(dx.reshape(-1, w), dy.reshape(-1, w), config.low, config.high)
        return edges.reshape(n, h + 2, w)[:, 1 : h + 1] != 0
    lows, highs = auto_thresholds(blurred, config.sigma)
    pairs, group = np.unique(np.stack([lows, highs], axis=1), axis=0, return_inverse=True)
    out = np.empty((n, h, w), dtype=bool)
    for k, (low, high) in enumerate(pairs):
        idx = np.flatnonzero(group.ravel() == k)
        edges = cv2.Canny(dx[idx].reshape(-1, w), dy[idx].reshape(-1, w), low, high)
        out[idx] = edges.reshape(idx.size, h + 2, w)[:, 1 : h + 1] != 0
    return out


def resize_masks(masks: np.ndarray, resolution: int | None) -> np.ndarray:
    """Resize sign or leaf masks to the square edge-map resolution (INTER_AREA).

    Args:
        masks: (N, H, W) bool (sign masks) or float in [0, 1] (leaf alpha).
        resolution: target side, or ``None`` to return the masks unchanged.

    Returns:
        (N, r, r): bool masks stay bool (a pixel is in the mask when at least
        half of its area was); float masks become float32 area averages in [0, 1].

    Example:
        >>> m = np.zeros((1, 8, 8), bool); m[0, :, :4] = True
        >>> resize_masks(m, 4)[0].astype(int).tolist()[0]
        [1, 1, 0, 0]
    """
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"masks have shape {arr.shape}, expected (N, H, W)")
    if resolution is None or arr.shape[1:] == (resolution, resolution):
        return arr
    resized = _resize_batch(np.ascontiguousarray(arr, dtype=np.float32), resolution)
    if arr.dtype == bool:
        return resized >= 0.5
    return resized


# --------------------------------------------------------------------------- morphology


def dilate_batch(maps: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation of every map of a bool (N, H, W) batch.

    A pixel of the result is True when some True pixel lies within ``radius``
    pixels (Chebyshev distance), i.e. a ``(2r+1) x (2r+1)`` structuring
    element; pixels outside the image count as False. One ``cv2.dilate`` call
    for the whole batch (images stacked, ``radius`` empty rows between them).

    Example:
        >>> m = np.zeros((1, 5, 5), bool); m[0, 2, 2] = True
        >>> int(dilate_batch(m, 1).sum())
        9
    """
    if not _is_int(radius) or radius < 0:
        raise ValueError(f"radius={radius!r}: expected an integer >= 0")
    arr = np.asarray(maps, dtype=bool)
    if arr.ndim != 3:
        raise ValueError(f"maps have shape {arr.shape}, expected (N, H, W)")
    n, h, w = arr.shape
    if radius == 0 or arr.size == 0:
        return arr.copy()
    stacked = np.zeros((n, h + radius, w), dtype=np.uint8)
    stacked[:, :h] = arr
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), dtype=np.uint8)
    grown = cv2.dilate(stacked.reshape(n * (h + radius), w), kernel)
    return grown.reshape(n, h + radius, w)[:, :h] != 0


def border_band(sign_masks: np.ndarray, width: int) -> np.ndarray:
    """The band along each sign mask's outline, as bool (N, H, W).

    A pixel belongs to the band when the ``(2 width + 1)`` square around it
    holds both mask and non-mask pixels of the image, i.e. it lies within
    ``width`` pixels (Chebyshev) of the contour, on either side. Pixels outside
    the image are treated as mask, so the image frame is not a contour.

    Args:
        sign_masks: bool (N, H, W), True on the sign face.
        width: half-thickness of the band in pixels, >= 0 (0 gives an empty band).

    Example:
        >>> m = np.zeros((1, 1, 8), bool); m[0, 0, :4] = True
        >>> border_band(m, 2)[0, 0].astype(int).tolist()
        [0, 0, 1, 1, 1, 1, 0, 0]
    """
    masks = np.asarray(sign_masks, dtype=bool)
    if width == 0:
        return np.zeros(masks.shape, dtype=bool)
    return dilate_batch(masks, width) & dilate_batch(~masks, width)


# --------------------------------------------------------------------------- metrics


def _as_bool_batch(name: str, arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 3:
        raise ValueError(f"{name} has shape {a.shape}, expected (N, H, W)")
    if a.dtype == bool:
        return a
    if a.dtype.kind in "iu":
        return a != 0
    raise ValueError(f"{name} has dtype {a.dtype}, expected bool (or integer, nonzero = True)")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64, NaN where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _count(maps: np.ndarray) -> np.ndarray:
    """Number of True pixels per map of a bool (N, H, W) batch, int64 (N,)."""
    n = maps.shape[0]
    return maps.reshape(n, maps[0].size if n else 0).view(np.uint8).sum(axis=1, dtype=np.int64)


def _distinct_pairs(clean: np.ndarray, sign: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Representatives and inverse index of the distinct (clean, sign) map pairs of a batch.

    Returns ``(first, inverse)`` with ``pairs[first][inverse] == pairs``, or
    ``None`` when fewer than half of the trials share a pair (then working on
    the distinct pairs would not save anything).
    """
    n = clean.shape[0]
    if n < 2:
        return None
    bits = np.packbits(np.concatenate([clean.reshape(n, -1), sign.reshape(n, -1)], axis=1), axis=1)
    keys = np.ascontiguousarray(bits).view(np.dtype((np.void, bits.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if 2 * first.size > n:
        return None
    return first, inverse.ravel()


class EdgeGeometry:
    """The quantities the edge metrics share, for one batch of trials.

    Each attribute is computed on first use and then cached, so
    :func:`edge_metrics` builds one ``EdgeGeometry`` and hands it to every
    metric instead of letting each recompute the same dilations. Quantities
    that depend only on the clean edges and the sign mask (the sign region,
    the border band, the clean counts) are computed once per distinct
    (clean, sign) pair, i.e. once per sign when the batch indexes a few signs.

    Args:
        clean_edges: bool (N, H, W), edges of each trial's clean sign.
        attacked_edges: bool (N, H, W), edges of the attacked images.
        leaf_mask: float in [0, 1] or bool (N, H, W), leaf coverage (validated,
            kept for metrics that want it; no built-in metric reads it).
        sign_mask: bool (N, H, W), True on the sign face.
        config: supplies ``tolerance`` and ``border_width``.

    Example:
        >>> e = np.zeros((1, 8, 8), bool); e[0, 2:6, 4] = True
        >>> g = EdgeGeometry(e, e, np.zeros((1, 8, 8)), np.ones((1, 8, 8), bool))
        >>> int(g.clean_count[0]), int(g.kept_count[0])
        (4, 4)
    """

    def __init__(
        self,
        clean_edges: np.ndarray,
        attacked_edges: np.ndarray,
        leaf_mask: np.ndarray,
        sign_mask: np.ndarray,
        config: EdgeConfig = EdgeConfig(),
    ) -> None:
        self.clean = _as_bool_batch("clean_edges", clean_edges)
        self.attacked = _as_bool_batch("attacked_edges", attacked_edges)
        self.sign = _as_bool_batch("sign_mask", sign_mask)
        leaf = np.asarray(leaf_mask)
        shapes = {self.clean.shape, self.attacked.shape, self.sign.shape, leaf.shape}
        if len(shapes) != 1:
            raise ValueError(
                "clean_edges, attacked_edges, leaf_mask and sign_mask have shapes "
                f"{self.clean.shape}, {self.attacked.shape}, {leaf.shape}, {self.sign.shape}; "
                "expected one common (N, H, W)"
            )
        if leaf.dtype != bool and leaf.dtype.kind not in "fiu":
            raise ValueError(f"leaf_mask has dtype {leaf.dtype}, expected float in [0, 1] or bool")
        self.leaf = leaf
        self.tolerance = config.tolerance
        self.border_px = config.border_pixels(*self.clean.shape[1:])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(N, H, W)."""
        n, h, w = self.clean.shape
        return n, h, w

    # Per distinct (clean, sign) pair ("_u_" = one entry per pair), expanded to N on demand.

    @cached_property
    def _pairs(self) -> tuple[np.ndarray, np.ndarray] | None:
        return _distinct_pairs(self.clean, self.sign)

    def _expand(self, per_pair: np.ndarray) -> np.ndarray:
        return per_pair if self._pairs is None else per_pair[self._pairs[1]]

    @cached_property
    def _u_clean(self) -> np.ndarray:
        return self.clean if self._pairs is None else self.clean[self._pairs[0]]

    @cached_property
    def _u_sign(self) -> np.ndarray:
        return self.sign if self._pairs is None else self.sign[self._pairs[0]]

    @cached_property
    def _u_region(self) -> np.ndarray:
        return dilate_batch(self._u_sign, REGION_GROW_PX)

    @cached_property
    def _u_clean_in(self) -> np.ndarray:
        return self._u_clean & self._u_region

    @cached_property
    def _u_band(self) -> np.ndarray:
        return border_band(self._u_sign, self.border_px)

    @cached_property
    def region(self) -> np.ndarray:
        """bool (N, H, W): the sign region (mask grown by REGION_GROW_PX)."""
        return self._expand(self._u_region)

    @cached_property
    def clean_in(self) -> np.ndarray:
        """bool (N, H, W): clean edge pixels inside the sign region."""
        return self._expand(self._u_clean_in)

    @cached_property
    def clean_near(self) -> np.ndarray:
        """bool (N, H, W): pixels within tolerance of a clean edge pixel of the sign region."""
        return self._expand(dilate_batch(self._u_clean_in, self.tolerance))

    @cached_property
    def band(self) -> np.ndarray:
        """bool (N, H, W): the border band of the sign mask."""
        return self._expand(self._u_band)

    @cached_property
    def attacked_in(self) -> np.ndarray:
        """bool (N, H, W): attacked edge pixels inside the sign region."""
        return self.attacked & self.region

    @cached_property
    def kept(self) -> np.ndarray:
        """bool (N, H, W): clean edge pixels with an attacked edge pixel within tolerance."""
        return self.clean_in & dilate_batch(self.attacked_in, self.tolerance)

    @cached_property
    def region_count(self) -> np.ndarray:
        """int64 (N,): pixels in the sign region."""
        return self._expand(_count(self._u_region))

    @cached_property
    def clean_count(self) -> np.ndarray:
        """int64 (N,): clean edge pixels in the sign region."""
        return self._expand(_count(self._u_clean_in))

    @cached_property
    def border_clean_count(self) -> np.ndarray:
        """int64 (N,): clean edge pixels in the border band."""
        return self._expand(_count(self._u_clean_in & self._u_band))

    @cached_property
    def attacked_count(self) -> np.ndarray:
        """int64 (N,): attacked edge pixels in the sign region."""
        return _count(self.attacked_in)

    @cached_property
    def kept_count(self) -> np.ndarray:
        """int64 (N,): kept clean edge pixels."""
        return _count(self.kept)

    @cached_property
    def matched_count(self) -> np.ndarray:
        """int64 (N,): attacked edge pixels with a clean edge pixel within tolerance."""
        return _count(self.attacked_in & self.clean_near)

    @cached_property
    def border_kept_count(self) -> np.ndarray:
        """int64 (N,): kept clean edge pixels in the border band."""
        return _count(self.kept & self.band)


class EdgeMetric(Protocol):
    """A per-trial edge metric: ``(clean, attacked, leaf, sign) -> float64 (N,)``.

    Called with the four (N, H, W) arrays of :class:`EdgeGeometry` (positionally),
    so any ``Callable[[ndarray] * 4, ndarray]`` use works. :func:`edge_metrics`
    also passes ``geometry=`` (built from the same arrays with its config) so
    that shared intermediate maps are computed once per batch; a metric given a
    geometry reads everything from it. Without one, a metric builds its own with
    the default :class:`EdgeConfig`. A new registry entry must accept the
    ``geometry`` keyword (it may ignore it).
    """

    def __call__(
        self,
        clean_edges: np.ndarray,
        attacked_edges: np.ndarray,
        leaf_mask: np.ndarray,
        sign_mask: np.ndarray,
        /,
        *,
        geometry: EdgeGeometry | None = None,
    ) -> np.ndarray: ...


def _geometry(
    geometry: EdgeGeometry | None,
    clean_edges: np.ndarray,
    attacked_edges: np.ndarray,
    leaf_mask: np.ndarray,
    sign_mask: np.ndarray,
) -> EdgeGeometry:
    if geometry is not None:
        return geometry
    return EdgeGeometry(clean_edges, attacked_edges, leaf_mask, sign_mask)


def edges_lost(
    clean_edges: np.ndarray,
    attacked_edges: np.ndarray,
    leaf_mask: np.ndarray,
    sign_mask: np.ndarray,
    /,
    *,
    geometry: EdgeGeometry | None = None,
) -> np.ndarray:
    """Fraction of the clean sign's edge pixels that are gone in the attacked map.

    ``1 - kept / clean`` over the sign region; float64 (N,) in [0, 1], NaN
    when the clean sign has no edge pixels.

    Example:
        >>> e = np.zeros((1, 8, 8), bool); e[0, 1:7, 2] = True
        >>> float(edges_lost(e, np.zeros_like(e), np.zeros((1, 8, 8)), np.ones_like(e))[0])
        1.0
    """
    g = _geometry(geometry, clean_edges, attacked_edges, leaf_mask, sign_mask)
    return _ratio(g.clean_count - g.kept_count, g.clean_count)


def edges_added(
    clean_edges: np.ndarray,
    attacked_edges: np.ndarray,
    leaf_mask: np.ndarray,
    sign_mask: np.ndarray,
    /,
    *,
    geometry: EdgeGeometry | None = None,
) -> np.ndarray:
    """New edge pixels of the attacked map relative to the clean edge count.

    ``(attacked pixels with no clean edge within tolerance) / clean`` over the
    sign region; float64 (N,) >= 0 (may exceed 1), NaN when the clean sign has
    no edge pixels.

    Example:
        >>> c = np.zeros((1, 8, 8), bool); c[0, 1:5, 1] = True
        >>> a = c.copy(); a[0, 1:3, 6] = True
        >>> float(edges_added(c, a, np.zeros((1, 8, 8)), np.ones_like(c))[0])
        0.5
    """
    g = _geometry(geometry, clean_edges, attacked_edges, leaf_mask, sign_mask)
    return _ratio(g.attacked_count - g.matched_count, g.clean_count)


def edge_density_change(
    clean_edges: np.ndarray,
    attacked_edges: np.ndarray,
    leaf_mask: np.ndarray,
    sign_mask: np.ndarray,
    /,
    *,
    geometry: EdgeGeometry | None = None,
) -> np.ndarray:
    """Change of edge density over the sign region.

    ``(attacked edge pixels - clean edge pixels) / pixels of the sign region``,
    both counts taken inside the sign region (mask grown by one pixel); exact
    counts, no tolerance. float64 (N,) in [-1, 1], NaN for an empty mask.

    Example:
        >>> c = np.zeros((1, 4, 4), bool); a = c.copy(); a[0, 0, :2] = True
        >>> float(edge_density_change(c, a, np.zeros((1, 4, 4)), np.ones_like(c))[0])
        0.125
    """
    g = _geometry(geometry, clean_edges, attacked_edges, leaf_mask, sign_mask)
    return _ratio(g.attacked_count - g.clean_count, g.region_count)


def edge_iou(
    clean_edges: np.ndarray,
    attacked_edges: np.ndarray,
    leaf_mask: np.ndarray,
    sign_mask: np.ndarray,
    /,
    *,
    geometry: EdgeGeometry | None = None,
) -> np.ndarray:
    """Jaccard index of the two edge maps over the sign region, with tolerance.

    With ``M = (kept clean + matched attacked) / 2`` matched pixels, ``lost``
    clean and ``added`` attacked pixels: ``M / (M + lost + added)``. With
    tolerance 0 this is exactly ``|C & A| / |C | A|``. float64 (N,) in [0, 1];
    1.0 when both maps are empty.

    Example:
        >>> c = np.zeros((1, 8, 8), bool); c[0, 1:5, 1] = True
        >>> a = np.zeros_like(c); a[0, 1:5, 6] = True
        >>> float(edge_iou(c, a, np.zeros((1, 8, 8)), np.ones_like(c))[0])
        0.0
    """
    g = _geometry(geometry, clean_edges, attacked_edges, leaf_mask, sign_mask)
    matched = 0.5 * (g.kept_count + g.matched_count)
    union = g.clean_count + g.attacked_count - matched
    iou = _ratio(matched, union)
    return np.where(union == 0, 1.0, iou)


def chamfer(
    clean_edges: np.ndarray,
    attacked_edges: np.ndarray,
    leaf_mask: np.ndarray,
    sign_mask: np.ndarray,
    /,
    *,
    geometry: EdgeGeometry | None = None,
) -> np.ndarray:
    """Mean distance (pixels) from each clean edge pixel to the nearest attacked one.

    Both maps restricted to the sign region. Distances come from
    ``cv2.distanceTransform(DIST_L2, DIST_MASK_5)`` of the inverted attacked
    map: exact along rows and columns, within 2 % of the Euclidean distance
    otherwise. Each distance is capped at the image diagonal ``hypot(H, W)``,
    which is also the value when the attacked map has no edge pixels.
    No tolerance. float64 (N,) >= 0; NaN when the clean sign has no edge pixels.

    Example:
        >>> c = np.zeros((1, 8, 8), bool); c[0, 1:7, 2] = True
        >>> a = np.roll(c, 3, axis=2)
        >>> float(chamfer(c, a, np.zeros((1, 8, 8)), np.ones_like(c))[0])
        3.0
    """
    g = _geometry(geometry, clean_edges, attacked_edges, leaf_mask, sign_mask)
    n, h, w = g.shape
    cap = math.hypot(h, w)
    nc, na = g.clean_count, g.attacked_count
    out = np.full(n, np.nan)
    out[(nc > 0) & (na == 0)] = cap
    todo = np.flatnonzero((nc > 0) & (na > 0))
    if todo.size:
        not_edge = np.ascontiguousarray(~g.attacked_in[todo]).view(np.uint8)
        dist = np.empty((todo.size, h, w), dtype=np.float32)
        for k in range(todo.size):
            cv2.distanceTransform(not_edge[k], cv2.DIST_L2, cv2.DIST_MASK_5, dst=dist[k])
        np.minimum(dist, cap, out=dist)
        np.multiply(dist, g.clean_in[todo], out=dist)  # keep the distances of clean edge pixels
        out[todo] = dist.reshape(todo.size, -1).sum(axis=1, dtype=np.float64) / nc[todo]
    return out


def border_edges_lost(
    clean_edges: np.ndarray,
    attacked_edges: np.ndarray,
    leaf_mask: np.ndarray,
    sign_mask: np.ndarray,
    /,
    *,
    geometry: EdgeGeometry | None = None,
) -> np.ndarray:
    """:func:`edges_lost` restricted to the clean edge pixels in the border band.

    float64 (N,) in [0, 1]; NaN when no clean edge pixel lies in the band
    (e.g. a mask that fills the whole image).

    Example:
        >>> m = np.zeros((1, 16, 16), bool); m[0, 4:12, 4:12] = True
        >>> c = m & border_band(m, 1)  # the outline pixels of the square
        >>> float(border_edges_lost(c, np.zeros_like(c), np.zeros((1, 16, 16)), m)[0])
        1.0
    """
    g = _geometry(geometry, clean_edges, attacked_edges, leaf_mask, sign_mask)
    return _ratio(g.border_clean_count - g.border_kept_count, g.border_clean_count)


def interior_edges_lost(
    clean_edges: np.ndarray,
    attacked_edges: np.ndarray,
    leaf_mask: np.ndarray,
    sign_mask: np.ndarray,
    /,
    *,
    geometry: EdgeGeometry | None = None,
) -> np.ndarray:
    """:func:`edges_lost` restricted to interior edges (text, pictograms).

    Interior edge pixels are the clean edge pixels of the sign region outside
    the border band. float64 (N,) in [0, 1]; NaN when there are none.

    Example:
        >>> c = np.zeros((1, 32, 32), bool); c[0, 10:20, 16] = True
        >>> float(interior_edges_lost(c, c, np.zeros((1, 32, 32)), np.ones_like(c))[0])
        0.0
    """
    g = _geometry(geometry, clean_edges, attacked_edges, leaf_mask, sign_mask)
    inner = g.clean_count - g.border_clean_count
    return _ratio(inner - (g.kept_count - g.border_kept_count), inner)


EDGE_METRICS: dict[str, EdgeMetric] = {
    "edges_lost": edges_lost,
    "edges_added": edges_added,
    "edge_density_change": edge_density_change,
    "edge_iou": edge_iou,
    "chamfer": chamfer,
    "border_edges_lost": border_edges_lost,
    "interior_edges_lost": interior_edges_lost,
}
"""The edge metrics by name, in report order. Each maps (N, H, W) maps to float64 (N,)."""


def edge_metrics(
    clean_edges: np.ndarray,
    attacked_edges: np.ndarray,
    leaf_mask: np.ndarray,
    sign_mask: np.ndarray,
    names: Sequence[str] | None = None,
    *,
    config: EdgeConfig = EdgeConfig(),
) -> dict[str, np.ndarray]:
    """Evaluate registry metrics on a batch of trials.

    Args:
        clean_edges: bool (N, H, W), the clean sign's edges for each trial
            (compute once per sign, then index by the trials' sign ids).
        attacked_edges: bool (N, H, W), edges of the attacked images.
        leaf_mask: float in [0, 1] or bool (N, H, W), leaf coverage.
        sign_mask: bool (N, H, W), the sign face.
        names: metrics to compute (default: all of :data:`EDGE_METRICS`, in order).
        config: ``tolerance`` and ``border_width`` of the comparison.

    Returns:
        ``{name: float64 (N,)}`` in the order of ``names``.

    Raises:
        LeafattackError: an unknown metric name.

    Example:
        >>> e = np.zeros((2, 16, 16), bool); e[:, 4:12, 8] = True
        >>> out = edge_metrics(e, e, np.zeros((2, 16, 16)), np.ones_like(e))
        >>> out["edges_lost"].tolist(), out["edge_iou"].tolist()
        ([0.0, 0.0], [1.0, 1.0])
    """
    chosen = list(EDGE_METRICS) if names is None else list(names)
    unknown = [name for name in chosen if name not in EDGE_METRICS]
    if unknown:
        raise LeafattackError(
            f"unknown edge metric {unknown[0]!r}; expected one of {', '.join(EDGE_METRICS)}"
        )
    first = EdgeGeometry(clean_edges, attacked_edges, leaf_mask, sign_mask, config)  # validates
    n, h, w = first.shape
    out = {name: np.empty(n, dtype=np.float64) for name in chosen}
    step = _chunk_size(h, w)
    for start in range(0, n, step):
        part = slice(start, start + step)
        geometry = (
            first
            if step >= n
            else EdgeGeometry(
                first.clean[part], first.attacked[part], first.leaf[part], first.sign[part], config
            )
        )
        for name in chosen:
            out[name][part] = EDGE_METRICS[name](
                geometry.clean, geometry.attacked, geometry.leaf, geometry.sign, geometry=geometry
            )
    return out
