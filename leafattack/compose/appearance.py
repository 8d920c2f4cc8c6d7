"""A leaf that belongs in the photo: estimate a sign photo's conditions, give them to the leaf.

A leaf pasted onto a real photo (GTSRB crops of 30-60 px upscaled to the run's sign size)
looks like a sticker: sharp, saturated and lit by another sun. This module measures, per
sign photo at its **native** resolution, what the camera did to the sign, and applies the
same to the premultiplied leaf layer before it is composited:

* :func:`estimate_exposure` - per-channel gain ``photo ~ gain * canonical`` (exposure and
  white balance at once, a von Kries diagonal model in sRGB values) of the sign face
  against its class's canonical palette (:mod:`leafattack.data.palettes`, passed in by
  the caller), in the spirit of REAP's per-sign relighting.
* :func:`estimate_blur` - Gaussian blur sigma, native pixels.
* :func:`estimate_noise` - sensor noise sigma, image units in [0, 1].
* :func:`estimate_appearance` - all of them at once, plus the resolution ``scale``, as an
  :class:`Appearance`.
* :func:`match_layers` - the leaf layer through the photo's pipeline: gain, area
  downscale to the native resolution, blur, sensor noise, bilinear upscale back.
* :func:`cast_shadow` - a soft, offset, darkened copy of the leaf's alpha on the sign,
  under the leaf; :func:`sample_shadows` draws its light direction from a seeded
  ``np.random.Generator``.

The photo model. A sign photo at its native resolution is ``noise + blur_sigma(area(gain *
scene))``: the printed sign lit with per-channel ``gain``, area-sampled by the sensor (an
anti-aliased, "sharp" image), blurred by a sampled Gaussian of ``blur_sigma`` native
pixels (OpenCV's ``GaussianBlur``: radius ``(round(8 sigma + 1) | 1) // 2``, reflected
borders), plus white Gaussian noise; the run then upsamples it bilinearly (half-pixel
centres, as ``cv2.INTER_LINEAR``) to the sign size. :func:`match_layers` puts the leaf
through exactly that model, so a leaf on the photo is as sharp, as bright, as tinted, as
pixelated and as noisy as the sign under it.

Estimation methods (per photo, on the CPU with NumPy and OpenCV; sign photos are
estimated once per run, so this is not the hot path):

* Exposure and blur are one model fit. The face is segmented into its palette colours
  (each pixel to the nearest ``gain * colour``, on a 4x bilinear upsampling, so edges
  keep sub-pixel positions), which gives a sharp, anti-aliased model of the sign (the
  label maps area-reduced to native pixels). The blur sigma is the one whose blurred
  model, with each palette colour's photo colour fitted by least squares at that sigma
  (variable projection), best explains the eroded face (a 0.5 px grid over
  0..:data:`MAX_BLUR`, refined by golden-section search). The segmentation is then
  repeated on the photo deblurred with the current sigma (15 Richardson-Lucy
  iterations), which restores thin strokes that thresholding a blurred photo would lose,
  and sigma refitted within 1 px of the last value, up to :data:`ROUNDS` times until it
  moves less than 0.02 px. After each round the gain is the
  least-squares fit (per channel, through the origin, weighted by pixel counts) of the
  fitted photo colours to the canonical ones, pulled lightly towards one grey gain so a
  channel that no palette colour carries (the blue of a yellow sign) stays defined. The
  initial gain for the first segmentation comes from the flat face pixels, each
  assigned to its nearest ``gain * colour`` and the gains refitted (trimmed least
  squares, 20 rounds).
* Noise: Immerkaer's fast noise-variance estimator (the 3x3 mask ``[1 -2 1; -2 4 -2;
  1 -2 1]``, blind to straight edges and ramps) on the flattest 20 % of the eroded face
  by 3x3 Sobel gradient magnitude (an odd filter, uncorrelated with the even mask, so
  for Gaussian noise the choice does not bias the estimate), made robust with the
  median: ``sigma = median|I * M| / (6 * 0.6745)``, pooled over the three channels.

Accuracy (measured on synthetic red-ring "30" signs of 32, 48 and 64 px, area-rendered,
blurred with ``cv2.GaussianBlur``, lit with per-channel gains 0.35..1.0, noised with
sigma 0.01..0.04 and quantised to uint8; ``tests/test_appearance.py`` asserts blur within
0.25 px, gains within 10 % and noise within 20 % on a table of such cases):

* blur: within 0.1 px for sigma 0.5..2.5 on 48-64 px signs; within 0.2 px for sigma up
  to 2.0 on 32 px signs (sigma 2.5 on 32 px reads up to 0.4 px high: the digits' 2 px
  strokes are nearly gone). Below about 0.4 px a sampled Gaussian is nearly a delta, so
  a sharp photo reads 0.35-0.45.
* gain: within 10 % per channel (up to 15 % on 32 px signs blurred by 2.5 px).
* noise: within 10 % (up to +30 % on sharp 32 px signs, whose few flat pixels touch
  edges); uint8 quantisation adds about 0.001, and photos darker than their
  quantisation step read 0.
* On the real GTSRB sample: blur median 0.6 native px (95th percentile 2), gains
  0.05..1.4; halving a photo's exposure halves its gains; blurring it by 1.5 px moves
  its blur estimate to ``sqrt(s0**2 + 1.5**2)`` within 0.4 px.

Shapes and ranges: photos are uint8 (h, w, 3) RGB (or float32 in [0, 1]) of any size,
face masks bool (h, w); layers are float32 (M, 4, H, W) premultiplied RGBA in [0, 1].

Example:
    >>> app = estimate_appearance(photos, faces, palettes, size=128)
    >>> matched = match_layers(layer, app.take(batch.sign), torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from leafattack.errors import LeafattackError

MAX_BLUR: float = 6.0
"""Largest blur sigma (native pixels) the estimator searches; blurrier photos read this."""

GAIN_RANGE: tuple[float, float] = (0.02, 8.0)
"""Estimated gains are clipped to this range (a face this dark or bright is not a sign)."""

UPSAMPLE: int = 4
"""Supersampling of the segmentation that models the sharp sign."""

ROUNDS: int = 5
"""Most deblur-and-resegment rounds of the blur fit (it stops once sigma moves < 0.02 px)."""

MIN_FACE_PIXELS: int = 16
"""Fewest face pixels (after a 1 px erosion) a photo needs for its estimates."""

_MAD_TO_SIGMA = 1.0 / 0.6744897501960817
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class Appearance:
    """Per-sign (or, after :meth:`take`, per-scene) photo conditions, as tensors.

    Identity values (the leaf is left as rendered): ``scale >= 1`` with ``blur_sigma == 0``,
    ``gain == 1``, ``noise_sigma == 0`` and ``shadow_strength == 0``.

    Attributes:
        scale: float32 (S,) native size / rendered size of the sign (longest sides); < 1 means
            the photo was upscaled to the run's size, and the leaf is then rendered at the
            native resolution (area) and upsampled back (bilinear). In (0, 64].
        blur_sigma: float32 (S,) Gaussian blur, native pixels, in [0, 20].
        gain: float32 (S, 3) per-channel gain on sRGB colour, ``photo = gain * canonical``,
            in (0, 8].
        noise_sigma: float32 (S,) Gaussian sensor noise at native resolution, image units,
            in [0, 1].
        shadow_angle: float32 (S,) direction the leaf's shadow falls, degrees counter-
            clockwise from +x on screen (away from the light), finite.
        shadow_distance: float32 (S,) shadow offset, fraction of the sign width, in [0, 1].
        shadow_blur: float32 (S,) shadow softness (Gaussian sigma), fraction of the sign
            width, in [0, 1].
        shadow_strength: float32 (S,) how much of the light the shadow takes, in [0, 1];
            0 = no shadow.

    Example:
        >>> app = Appearance.identity(4)
        >>> app.take(torch.tensor([0, 0, 3])).n
        3
    """

    scale: torch.Tensor
    blur_sigma: torch.Tensor
    gain: torch.Tensor
    noise_sigma: torch.Tensor
    shadow_angle: torch.Tensor
    shadow_distance: torch.Tensor
    shadow_blur: torch.Tensor
    shadow_strength: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.scale, torch.Tensor) or self.scale.ndim != 1:
            raise ValueError(f"Appearance.scale is {_describe(self.scale)}, expected float32 (S,)")
        n = int(self.scale.shape[0])
        dev = self.scale.device
        for f in dataclasses.fields(self):
            t = getattr(self, f.name)
            shape = (n, 3) if f.name == "gain" else (n,)
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
                raise ValueError(f"Appearance.{f.name} is {_describe(t)}, expected float32 {shape}")
            if tuple(t.shape) != shape:
                raise ValueError(
                    f"Appearance.{f.name} has shape {tuple(t.shape)}, expected {shape} "
                    f"(S={n}, the length of scale)"
                )
            if t.device != dev:
                raise ValueError(f"Appearance.{f.name} is on {t.device}, expected {dev}")
            if n and not bool(torch.isfinite(t).all()):
                raise ValueError(f"Appearance.{f.name} has non-finite values, expected finite")
        for name, lo, lo_open, hi in _RANGES:
            t = getattr(self, name)
            bad = ((t <= lo) if lo_open else (t < lo)) | (t > hi)
            if n and bool(bad.any()):
                interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
                raise ValueError(
                    f"Appearance.{name} has {float(t[bad][0]):g}, expected values in {interval}"
                )

    @property
    def n(self) -> int:
        """S, the number of signs (or scenes)."""
        return int(self.scale.shape[0])

    @property
    def device(self) -> torch.device:
        return self.scale.device

    @classmethod
    def identity(cls, n: int, device: torch.device | str = "cpu") -> Appearance:
        """``n`` signs whose appearance leaves a leaf exactly as rendered."""
        z = torch.zeros(n, dtype=torch.float32, device=device)
        one = torch.ones(n, dtype=torch.float32, device=device)
        gain = torch.ones((n, 3), dtype=torch.float32, device=device)
        return cls(one, z, gain, z.clone(), z.clone(), z.clone(), z.clone(), z.clone())

    def take(self, index: torch.Tensor) -> Appearance:
        """The appearance of ``index`` (int64 (M,), e.g. ``SceneBatch.sign``), one per scene."""
        idx = index.to(self.device)
        return Appearance(
            *(getattr(self, f.name).index_select(0, idx) for f in dataclasses.fields(self))
        )

    def to(self, device: torch.device | str) -> Appearance:
        """The same values with every tensor on ``device``."""
        return Appearance(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))

    def columns(self) -> dict[str, np.ndarray]:
        """Per-sign CSV columns: float64 (S,) arrays named ``scale``, ``blur_sigma``,
        ``gain_r``, ``gain_g``, ``gain_b``, ``noise_sigma`` and ``shadow_*``, in this order."""
        out: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            values = getattr(self, f.name).detach().cpu().double().numpy()
            if f.name == "gain":
                for i, c in enumerate("rgb"):
                    out[f"gain_{c}"] = values[:, i].copy()
            else:
                out[f.name] = values
        return out


_RANGES: tuple[tuple[str, float, bool, float], ...] = (
    ("scale", 0.0, True, 64.0),
    ("blur_sigma", 0.0, False, 20.0),
    ("gain", 0.0, True, 8.0),
    ("noise_sigma", 0.0, False, 1.0),
    ("shadow_distance", 0.0, False, 1.0),
    ("shadow_blur", 0.0, False, 1.0),
    ("shadow_strength", 0.0, False, 1.0),
)
"""``(field, low, low is open, high)``: the valid values of :class:`Appearance`."""


def sample_shadows(
    appearance: Appearance,
    rng: np.random.Generator,
    *,
    distance: tuple[float, float] = (0.01, 0.03),
    blur: tuple[float, float] = (0.004, 0.012),
    strength: tuple[float, float] = (0.25, 0.5),
) -> Appearance:
    """``appearance`` with a soft shadow per sign, its light from a uniform random direction.

    A leaf stuck on a sign lies nearly flat, so its shadow is short: the defaults offset it
    1-3 % of the sign width, blur it 0.4-1.2 % and take 25-50 % of the light. Each value
    is drawn uniformly from its range, in the order angle, distance, blur, strength per
    sign, from ``rng`` only.

    Args:
        appearance: S signs; its shadow fields are replaced.
        rng: the explicit source of randomness.
        distance, blur: ranges, fractions of the sign width, within [0, 1].
        strength: range within [0, 1].

    Example:
        >>> app = sample_shadows(Appearance.identity(3), np.random.default_rng(0))
    """
    for name, (lo, hi) in (("distance", distance), ("blur", blur), ("strength", strength)):
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo <= hi <= 1.0):
            raise ValueError(f"shadow {name} range ({lo}, {hi}): expected 0 <= low <= high <= 1")
    n = appearance.n
    draws = rng.random((n, 4))

    def col(i: int, lo: float, hi: float) -> torch.Tensor:
        values = (lo + (hi - lo) * draws[:, i]).astype(np.float32)
        return torch.from_numpy(values).to(appearance.device)

    return dataclasses.replace(
        appearance,
        shadow_angle=col(0, 0.0, 360.0),
        shadow_distance=col(1, *distance),
        shadow_blur=col(2, *blur),
        shadow_strength=col(3, *strength),
    )


# --------------------------------------------------------------------------- estimators


def estimate_noise(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> np.ndarray:
    """Sensor noise sigma of each photo (Immerkaer's estimator on its flattest face pixels).

    See the module docstring for the method. uint8 quantisation adds about 0.001.

    Args:
        images: S photos, uint8 (h, w, 3) in 0..255 or float32 in [0, 1], any sizes.
        masks: S bool (h, w) face masks.

    Returns:
        float32 (S,) noise sigma in image units [0, 1].

    Example:
        >>> sigma = estimate_noise([photo], [face])
    """
    _check_photos(images, masks, None)
    return np.array(
        [_noise_one(_as_float(img), m) for img, m in zip(images, masks, strict=True)],
        dtype=np.float32,
    )


def estimate_exposure(
    images: Sequence[np.ndarray], face_masks: Sequence[np.ndarray], palettes: Sequence[np.ndarray]
) -> np.ndarray:
    """Per-channel gain of each photo's face against its canonical palette.

    ``photo ~ gain * canonical`` (sRGB values, per channel): a dark photo has gains
    below 1, a bluish one a larger blue gain. Fitted jointly with the blur (see the module
    docstring), so blurred, mixed edge pixels do not pull the colours.

    Args:
        images: S photos, uint8 (h, w, 3) or float32 in [0, 1].
        face_masks: S bool (h, w) sign faces (e.g. from ``derive_faces``).
        palettes: S float (K, 3) canonical sRGB colours in [0, 1] of each photo's class.

    Returns:
        float32 (S, 3) gains within :data:`GAIN_RANGE`.

    Example:
        >>> estimate_exposure([photo], [face], [palette_array(GTSRB_FAMILIES["blue_white"])])
    """
    _check_photos(images, face_masks, palettes)
    fits = [
        _fit_sign(_as_float(i), m, np.asarray(p, dtype=np.float32))
        for i, m, p in zip(images, face_masks, palettes, strict=True)
    ]
    return np.stack([f[1] for f in fits]).astype(np.float32)


def estimate_blur(
    images: Sequence[np.ndarray], face_masks: Sequence[np.ndarray], palettes: Sequence[np.ndarray]
) -> np.ndarray:
    """Gaussian blur sigma of each photo, in native pixels, from its sign's own edges.

    The sigma whose blur of a sharp palette segmentation of the face best explains the
    photo (see the module docstring). It needs the palette to segment the face.

    Args:
        images: S photos, uint8 (h, w, 3) or float32 in [0, 1], at native resolution.
        face_masks: S bool (h, w) sign faces.
        palettes: S float (K, 3) canonical sRGB colours in [0, 1].

    Returns:
        float32 (S,) sigma in [0, :data:`MAX_BLUR`].

    Example:
        >>> estimate_blur([photo], [face], [palette])
    """
    _check_photos(images, face_masks, palettes)
    return np.array(
        [
            _fit_sign(_as_float(i), m, np.asarray(p, dtype=np.float32))[0]
            for i, m, p in zip(images, face_masks, palettes, strict=True)
        ],
        dtype=np.float32,
    )


def estimate_appearance(
    images: Sequence[np.ndarray],
    face_masks: Sequence[np.ndarray],
    palettes: Sequence[np.ndarray],
    size: int,
    device: torch.device | str = "cpu",
) -> Appearance:
    """Every estimate of every photo (one joint blur and exposure fit each), no shadow.

    Args:
        images, face_masks, palettes: as :func:`estimate_exposure`.
        size: the run's sign size in pixels; ``scale = max(h, w) / size`` (crops are padded
            to a square, not squashed).
        device: where the tensors go.

    Returns:
        An :class:`Appearance` of S signs.

    Example:
        >>> app = estimate_appearance(signs.images, faces, palettes, 128)
    """
    _check_photos(images, face_masks, palettes)
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ValueError(f"size={size!r}: expected a positive whole number of pixels")
    sigma, gain, noise, scale = [], [], [], []
    for img, m, p in zip(images, face_masks, palettes, strict=True):
        x = _as_float(img)
        s, g = _fit_sign(x, m, np.asarray(p, dtype=np.float32))
        sigma.append(s)
        gain.append(g)
        noise.append(_noise_one(x, m))
        scale.append(max(x.shape[:2]) / float(size))
    n = len(sigma)

    def t(values: list[float] | list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.asarray(values, dtype=np.float32)).to(device)

    z = torch.zeros(n, dtype=torch.float32, device=device)
    return Appearance(
        t(scale).clamp(max=64.0),
        t(sigma),
        t(gain),
        t(noise).clamp(max=1.0),
        z,
        z.clone(),
        z.clone(),
        z.clone(),
    )


def _check_photos(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    palettes: Sequence[np.ndarray] | None,
) -> None:
    n = len(images)
    if n == 0 or len(masks) != n or (palettes is not None and len(palettes) != n):
        raise LeafattackError(
            f"appearance estimation got {n} images, {len(masks)} masks"
            + ("" if palettes is None else f" and {len(palettes)} palettes")
            + " (expected at least one image and one of each per image)"
        )
    for i, (img, m) in enumerate(zip(images, masks, strict=True)):
        if (
            not isinstance(img, np.ndarray)
            or img.ndim != 3
            or img.shape[2] != 3
            or img.dtype not in (np.uint8, np.float32)
        ):
            raise LeafattackError(
                f"appearance image {i} is {_describe(img)} (expected uint8 or float32 (h, w, 3))"
            )
        if not isinstance(m, np.ndarray) or m.dtype != bool or m.shape != img.shape[:2]:
            raise LeafattackError(
                f"appearance mask {i} is {_describe(m)} (expected bool {img.shape[:2]})"
            )
        if _eroded(m).sum() < MIN_FACE_PIXELS:
            raise LeafattackError(
                f"appearance mask {i} has {int(_eroded(m).sum())} inner face pixels "
                f"(expected at least {MIN_FACE_PIXELS})"
            )
        if palettes is not None:
            p = np.asarray(palettes[i])
            if (
                p.ndim != 2
                or p.shape[0] < 1
                or p.shape[1] != 3
                or not (np.all(np.isfinite(p)) and p.min() >= 0.0 and p.max() <= 1.0)
            ):
                raise LeafattackError(
                    f"appearance palette {i} is {_describe(p)} (expected float (K, 3) in [0, 1])"
                )


def _as_float(img: np.ndarray) -> np.ndarray:
    """float32 (h, w, 3) in [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(img, dtype=np.float32)


def _eroded(mask: np.ndarray) -> np.ndarray:
    """bool (h, w): the mask eroded by one pixel (3x3), image border pixels excluded."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    inner[0, :] = inner[-1, :] = False
    inner[:, 0] = inner[:, -1] = False
    return inner


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (OpenCV, reflected borders); sigma <= 0 returns ``x``."""
    if sigma <= 0.0:
        return x
    out: np.ndarray = cv2.GaussianBlur(x, (0, 0), float(sigma))
    return out.reshape(x.shape)


def _flat(x: np.ndarray, mask: np.ndarray, keep: float, smooth_sigma: float) -> np.ndarray:
    """bool (h, w): the ``keep`` share of the inner face with the smallest gradient (3x3
    Sobel, largest over the channels, after a Gaussian of ``smooth_sigma`` px)."""
    inner = _eroded(mask)
    smooth = _gauss(x, smooth_sigma)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    grad = np.sqrt(gx * gx + gy * gy).reshape(x.shape).max(axis=2)
    limit = np.quantile(grad[inner], keep)
    return inner & (grad <= limit)


def _noise_one(x: np.ndarray, mask: np.ndarray) -> float:
    flat = _flat(x, mask, 0.2, 0.0)
    response = cv2.filter2D(x, cv2.CV_32F, _IMMERKAER, borderType=cv2.BORDER_REFLECT_101)
    r = np.abs(response.reshape(x.shape)[flat])
    return float(np.median(r) * _MAD_TO_SIGMA / 6.0)


def _initial_gain(x: np.ndarray, mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """float64 (3,) gain from the flat face pixels: nearest-colour assignment, trimmed LS."""
    p = x[_flat(x, mask, 0.6, 1.0)].astype(np.float64)
    pal = palette.astype(np.float64)
    lum = p @ _LUMA
    g = np.full(3, np.quantile(lum, 0.9) / max(float((pal @ _LUMA).max()), 1e-3))
    for _ in range(20):
        d = ((p[:, None, :] - (g * pal)[None]) ** 2).sum(axis=2)
        k = d.argmin(axis=1)
        r = np.sqrt(d[np.arange(len(k)), k])
        keep = r <= max(3.0 * 1.4826 * float(np.median(r)), 0.02)
        new = _gain_fit(p[keep], pal[k[keep]], np.ones(int(keep.sum())))
        if np.allclose(new, g, atol=1e-6):
            return new
        g = new
    return g


def _gain_fit(photo: np.ndarray, canon: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-channel gains ``photo ~ g * canon`` (weighted LS through 0), pulled lightly to grey.

    The pull (2 % of the total weight) towards the single best grey gain keeps a channel
    that no colour carries (the blue of yellow) defined.
    """
    w = weight[:, None]
    num = (w * photo * canon).sum(axis=0)
    den = (w * canon * canon).sum(axis=0)
    grey = num.sum() / max(den.sum(), 1e-12)
    lam = 0.02 * max(float(weight.sum()), 1e-12)
    g = (num + lam * grey) / (den + lam)
    return np.clip(g, *GAIN_RANGE)


def _richardson_lucy(x: np.ndarray, sigma: float, iterations: int = 15) -> np.ndarray:
    """The photo deblurred by ``sigma`` (Gaussian PSF), clipped to [0, 1]."""
    if sigma < 0.1:
        return x
    est = x.copy()
    for _ in range(iterations):
        est = est * _gauss(x / np.maximum(_gauss(est, sigma), 1e-4), sigma)
    return np.clip(est, 0.0, 1.0)


def _fit_blur(
    x: np.ndarray,
    source: np.ndarray,
    mask: np.ndarray,
    colours: np.ndarray,
    lo: float,
    hi: float,
) -> tuple[float, np.ndarray, np.ndarray]:
    """One segmentation of ``source`` into ``colours`` and the sigma that blurs it into ``x``.

    Returns ``(sigma, fitted colours float64 (K, 3), pixel count per colour float64 (K,))``.
    """
    h, w = mask.shape
    k = len(colours)
    up = cv2.resize(source, (w * UPSAMPLE, h * UPSAMPLE), interpolation=cv2.INTER_LINEAR)
    labels = ((up[:, :, None, :] - colours[None, None]) ** 2).sum(axis=3).argmin(axis=2)
    maps = (labels[..., None] == np.arange(k)).astype(np.float32)
    sharp = cv2.resize(maps, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, k)
    sharp *= mask[..., None]
    stack = np.ascontiguousarray(np.concatenate([sharp, x * ~mask[..., None]], axis=2))
    inner = _eroded(mask)
    target = x[inner].astype(np.float64)
    counts = sharp[mask].sum(axis=0).astype(np.float64)

    def fit(sigma: float) -> tuple[float, np.ndarray]:
        b = np.stack([_gauss(stack[..., i], sigma) for i in range(stack.shape[2])], axis=2)
        inside = b[inner].astype(np.float64)
        a, t = inside[:, :k], target - inside[:, k:]
        c, *_ = np.linalg.lstsq(a, t, rcond=None)
        return float(((t - a @ c) ** 2).sum()), c

    grid = np.arange(lo, hi + 1e-9, 0.5)
    errs = [fit(float(s))[0] for s in grid]
    i = int(np.argmin(errs))
    a, b = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])
    c1, c2 = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    f1, f2 = fit(c1)[0], fit(c2)[0]
    for _ in range(10):
        if f1 < f2:
            b, c2, f2 = c2, c1, f1
            c1 = b - _GOLDEN * (b - a)
            f1 = fit(c1)[0]
        else:
            a, c1, f1 = c1, c2, f2
            c2 = a + _GOLDEN * (b - a)
            f2 = fit(c2)[0]
    sigma = (a + b) / 2.0
    return sigma, fit(sigma)[1], counts


def _refit_gain(
    fitted: np.ndarray, counts: np.ndarray, palette: np.ndarray, gain: np.ndarray
) -> np.ndarray:
    """Gain from the fitted colours of the palette entries with >= 4 pixels (else ``gain``)."""
    use = counts >= 4.0
    if not use.any():
        return gain
    return _gain_fit(np.clip(fitted[use], 0.0, None), palette[use], counts[use])


def _fit_sign(x: np.ndarray, mask: np.ndarray, palette: np.ndarray) -> tuple[float, np.ndarray]:
    """Joint blur and exposure fit of one photo: ``(sigma, float64 (3,) gain)``."""
    gain = _initial_gain(x, mask, palette)
    pal = palette.astype(np.float64)
    colours = (gain * pal).astype(np.float32)
    sigma, fitted, counts = _fit_blur(x, _gauss(x, 0.7), mask, colours, 0.0, MAX_BLUR)
    for _ in range(ROUNDS):
        gain = _refit_gain(fitted, counts, pal, gain)
        colours = (gain * pal).astype(np.float32)
        previous = sigma
        sigma, fitted, counts = _fit_blur(
            x,
            _richardson_lucy(x, sigma),
            mask,
            colours,
            max(0.0, sigma - 1.0),
            min(MAX_BLUR, sigma + 1.0),
        )
        if abs(sigma - previous) < 0.02:
            break
    gain = _refit_gain(fitted, counts, pal, gain)
    return float(np.clip(sigma, 0.0, MAX_BLUR)), gain


# --------------------------------------------------------------------------- applying


def gaussian_matrices(sigma: torch.Tensor, n: torch.Tensor, size: int) -> torch.Tensor:
    """Per-sample 1-D Gaussian blur as matrices, with reflected (101) borders, as OpenCV.

    Row ``i`` of matrix ``m`` holds the weights of output pixel ``i`` of a signal of
    ``n[m]`` pixels (zero-padded to ``size``): the sampled Gaussian of ``sigma[m]`` pixels,
    radius ``(round(8 sigma + 1) | 1) // 2``, normalised to sum 1, with taps past an end
    reflected without repeating the end pixel (``cv2.BORDER_REFLECT_101``). Rows and
    columns at or beyond ``n[m]`` are zero; sigma 0 gives the identity on ``n[m]``.

    Args:
        sigma: float32 (M,) >= 0.
        n: int64 (M,) signal lengths, 1..size.
        size: padded length.

    Returns:
        float32 (M, size, size).
    """
    dev = sigma.device
    m = int(sigma.shape[0])
    radius = _radius(sigma)
    r_max = int(radius.max()) if m else 0
    taps = torch.arange(-r_max, r_max + 1, device=dev, dtype=torch.float32)  # (T,)
    s = sigma.clamp_min(1e-6)[:, None]
    kernel = torch.exp(-0.5 * (taps[None, :] / s) ** 2)
    kernel = torch.where(taps[None, :].abs() <= radius[:, None], kernel, torch.zeros_like(kernel))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (M, T)
    rows = torch.arange(size, device=dev)
    src = rows[None, :, None] + taps.long()[None, None, :]  # (1, size, T)
    nn = n.to(dev)[:, None, None]
    period = (2 * (nn - 1)).clamp_min(1)
    folded = torch.remainder(src, period)
    folded = torch.where(folded > nn - 1, period - folded, folded)
    folded = torch.where(nn == 1, torch.zeros_like(folded), folded)  # (M, size, T)
    weight = kernel[:, None, :].expand(m, size, -1) * (rows[None, :, None] < nn)
    out = torch.zeros((m, size, size), dtype=torch.float32, device=dev)
    out.scatter_add_(2, folded, weight.contiguous())
    return out


def area_matrices(n_out: torch.Tensor, n_in: int, size: int) -> torch.Tensor:
    """Per-sample 1-D area downscaling from ``n_in`` to ``n_out[m]`` pixels, as matrices.

    Output pixel ``i`` averages the input over ``[i f, (i + 1) f]`` with ``f = n_in /
    n_out[m]``, weighting partly covered input pixels by their overlap (as
    ``cv2.INTER_AREA`` when shrinking). Rows at or beyond ``n_out[m]`` are zero;
    ``n_out == n_in`` gives the identity.

    Args:
        n_out: int64 (M,) in 1..n_in.
        n_in: input length.
        size: padded output length (>= max n_out).

    Returns:
        float32 (M, size, n_in).
    """
    dev = n_out.device
    f = (n_in / n_out.double())[:, None, None]
    i = torch.arange(size, device=dev, dtype=torch.float64)[None, :, None]
    j = torch.arange(n_in, device=dev, dtype=torch.float64)[None, None, :]
    lo = torch.maximum(j, i * f)
    hi = torch.minimum(j + 1.0, (i + 1.0) * f)
    w = (hi - lo).clamp_min(0.0) / f
    w = w * (i < n_out.double()[:, None, None])
    return w.float()


def linear_matrices(n_in: torch.Tensor, n_out: int, size: int) -> torch.Tensor:
    """Per-sample 1-D bilinear resizing from ``n_in[m]`` to ``n_out`` pixels, as matrices.

    Half-pixel centres (``cv2.INTER_LINEAR``, ``align_corners=False``): output pixel
    ``j`` reads input position ``x = (j + 0.5) n_in / n_out - 0.5``, clamped to
    ``[0, n_in - 1]``, interpolating its two neighbours. ``n_in == n_out`` is the identity.

    Args:
        n_in: int64 (M,) input lengths in 1..size.
        n_out: output length.
        size: padded input length.

    Returns:
        float32 (M, n_out, size), zero in the columns at or beyond ``n_in[m]``.
    """
    dev = n_in.device
    m = int(n_in.shape[0])
    nin = n_in.double()[:, None]
    j = torch.arange(n_out, device=dev, dtype=torch.float64)[None, :]
    x = ((j + 0.5) * nin / n_out - 0.5).clamp_min(0.0)
    x = torch.minimum(x, nin - 1.0)
    i0 = x.floor()
    frac = (x - i0).float()
    i0 = i0.long()
    i1 = torch.minimum(i0 + 1, n_in[:, None] - 1)
    out = torch.zeros((m, n_out, size), dtype=torch.float32, device=dev)
    out.scatter_add_(2, i0[..., None], (1.0 - frac)[..., None])
    out.scatter_add_(2, i1[..., None], frac[..., None])
    return out


def match_layers(
    layer: torch.Tensor,
    appearance: Appearance,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Give each scene's leaf layer its photo's resolution, blur, exposure and noise.

    Per scene ``m`` with ``s = scale[m]``, the leaf goes through the photo model (module
    docstring): colour times ``gain``; area-downscaled to the native resolution
    ``max(1, round(H s)) x max(1, round(W s))`` when ``s < 1``; blurred by a Gaussian of
    ``blur_sigma`` native pixels (``blur_sigma / s`` rendered pixels when ``s >= 1``);
    white noise of ``noise_sigma`` (``noise_sigma / s`` when ``s >= 1``) added to the
    colour, times the leaf's alpha (so only inside the leaf); upscaled back bilinearly.
    All steps are linear per axis, so each scene's is one pair of matrices (rows and
    columns), applied in batched matrix products: no loop over scenes. Premultiplied
    colour and alpha go through the same resampling and blur, so the alpha edge softens
    with the colour. Colour is clipped to ``[0, alpha]``, alpha to ``[0, 1]``. Scenes with
    identity parameters come back bit for bit unchanged. Cost: about
    ``M * 4 * H * W * (h + w)`` multiply-adds (``h, w`` the largest native size).

    Args:
        layer: float32 (M, 4, H, W), premultiplied RGBA in [0, 1] at the run's size.
        appearance: M entries, one per scene (``Appearance.take(batch.sign)``), on the
            layer's device; the shadow fields are ignored (see :func:`cast_shadow`).
        generator: ``torch.Generator`` on the layer's device; required when any
            ``noise_sigma > 0`` and ``noise`` is not given (the only randomness).
        noise: optional float32 (M, 3, Hn, Wn) standard-normal fields, one per scene, used
            instead of drawing from ``generator``; scene ``m`` reads its top-left
            ``h_m x w_m`` native pixels, so ``Hn, Wn`` must cover the largest native size
            (:func:`native_size`). A run passes each sign's own field, fixed by the seed,
            so a scene's noise does not depend on the batch it is rendered in (a photo has
            one noise realisation, and so has the leaf on it).

    Returns:
        float32 (M, 4, H, W) premultiplied RGBA in [0, 1].

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> matched = match_layers(layer, app.take(batch.sign[sel]), gen)
    """
    _check_layer(layer, appearance, "match_layers")
    m, _, h, w = layer.shape
    a = appearance
    active = (
        (a.scale < 1.0) | (a.blur_sigma > 0.0) | (a.gain != 1.0).any(dim=1) | (a.noise_sigma > 0.0)
    )
    if m == 0 or not bool(active.any()):
        return layer
    if bool((a.noise_sigma[active] > 0).any()) and generator is None and noise is None:
        raise ValueError(
            "match_layers: noise_sigma > 0 needs an explicit torch.Generator or noise fields"
        )
    idx = active.nonzero().flatten()
    x = layer.index_select(0, idx)
    scale = a.scale.index_select(0, idx)
    # Work at the native resolution when the photo was upscaled (s < 1), else at the
    # rendered one, where a native pixel is 1 / s rendered pixels wide.
    to_work = torch.clamp(1.0 / scale, max=1.0)
    sigma = a.blur_sigma.index_select(0, idx) * to_work
    noise_sd = a.noise_sigma.index_select(0, idx) * to_work
    gain = a.gain.index_select(0, idx)
    small = scale < 1.0
    full_h = torch.full_like(idx, h)
    full_w = torch.full_like(idx, w)
    hn = torch.where(small, (h * scale.double()).round().clamp_min(1).long(), full_h)
    wn = torch.where(small, (w * scale.double()).round().clamp_min(1).long(), full_w)
    hmax, wmax = int(hn.max()), int(wn.max())
    down_h = gaussian_matrices(sigma, hn, hmax) @ area_matrices(hn, h, hmax)  # (k, hmax, H)
    down_w = gaussian_matrices(sigma, wn, wmax) @ area_matrices(wn, w, wmax)  # (k, wmax, W)
    x = torch.cat([x[:, :3] * gain[:, :, None, None], x[:, 3:]], dim=1)
    native = _separable(x, down_h, down_w)  # (k, 4, hmax, wmax)
    if bool((noise_sd > 0).any()):
        if noise is not None:
            if noise.ndim != 4 or noise.shape[0] != m or noise.shape[1] != 3:
                raise ValueError(
                    f"match_layers: noise is {_describe(noise)}, "
                    f"expected float32 (M={m}, 3, Hn, Wn)"
                )
            if noise.shape[2] < hmax or noise.shape[3] < wmax:
                raise ValueError(
                    f"match_layers: noise fields are {tuple(noise.shape[2:])}, expected at "
                    f"least the native size {(hmax, wmax)}"
                )
            z = noise.index_select(0, idx)[:, :, :hmax, :wmax].to(torch.float32)
        else:
            z = torch.randn(
                native[:, :3].shape, generator=generator, device=layer.device, dtype=torch.float32
            )
        native[:, :3] += z * noise_sd[:, None, None, None] * native[:, 3:4].clamp(0.0, 1.0)
    up_h = linear_matrices(hn, h, hmax)  # (k, H, hmax)
    up_w = linear_matrices(wn, w, wmax)  # (k, W, wmax)
    out = _separable(native, up_h, up_w)
    alpha = out[:, 3:4].clamp(0.0, 1.0)
    out = torch.cat([torch.minimum(out[:, :3].clamp_min(0.0), alpha), alpha], dim=1)
    result = layer.clone()
    result.index_copy_(0, idx, out)
    return result


def native_size(
    appearance: Appearance, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The resolution :func:`match_layers` works at for each entry on a ``height x width``
    render: the native size when the photo was upscaled (``scale < 1``), else the render's.

    Returns:
        int64 (S,) heights and widths, at least 1.
    """
    s = appearance.scale
    small = s < 1.0
    hn = torch.where(
        small, (height * s.double()).round().clamp_min(1).long(), torch.full_like(s, height).long()
    )
    wn = torch.where(
        small, (width * s.double()).round().clamp_min(1).long(), torch.full_like(s, width).long()
    )
    return hn, wn


def cast_shadow(images: torch.Tensor, layer: torch.Tensor, appearance: Appearance) -> torch.Tensor:
    """Darken each image under its leaf's soft shadow; composite the leaf over it afterwards.

    The shadow is the leaf's alpha moved ``shadow_distance * W`` pixels towards
    ``shadow_angle`` (counter-clockwise from +x on screen), blurred by a Gaussian of
    ``max(shadow_blur * W, 0.5)`` pixels (sub-pixel moves are exact: the shifted Gaussian is
    sampled), with nothing coming in from beyond the image; each image is multiplied by
    ``1 - shadow_strength * shadow``. Scenes with ``shadow_strength == 0`` come back bit for
    bit unchanged.

    Args:
        images: float32 (M, 3, H, W) in [0, 1], the sign (and earlier leaves) under this leaf.
        layer: float32 (M, 4, H, W) premultiplied leaf layer (after :func:`match_layers`);
            only its alpha is read.
        appearance: M entries on the images' device.

    Returns:
        float32 (M, 3, H, W) in [0, 1].

    Example:
        >>> base = cast_shadow(base, matched, app_m)
        >>> out = base * (1 - matched[:, 3:]) + matched[:, :3]
    """
    _check_layer(layer, appearance, "cast_shadow")
    if images.dtype != torch.float32 or images.shape != (layer.shape[0], 3, *layer.shape[2:]):
        raise ValueError(
            f"cast_shadow: images is {_describe(images)}, expected float32 "
            f"{(layer.shape[0], 3, *layer.shape[2:])}"
        )
    a = appearance
    active = a.shadow_strength > 0.0
    if not bool(active.any()):
        return images
    idx = active.nonzero().flatten()
    _, _, h, w = layer.shape
    t = torch.deg2rad(a.shadow_angle.index_select(0, idx))
    d = a.shadow_distance.index_select(0, idx) * float(w)
    soft = (a.shadow_blur.index_select(0, idx) * float(w)).clamp_min(0.5)
    rows = _shifted_gaussians(-d * torch.sin(t), soft, h)  # (k, H, H), y down
    cols = _shifted_gaussians(d * torch.cos(t), soft, w)  # (k, W, W)
    alpha = layer.index_select(0, idx)[:, 3:4].clamp(0.0, 1.0)
    shadow = _separable(alpha, rows, cols)
    strength = a.shadow_strength.index_select(0, idx)[:, None, None, None]
    out = images.clone()
    out.index_copy_(0, idx, images.index_select(0, idx) * (1.0 - strength * shadow.clamp(0, 1)))
    return out


def _separable(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows[m] @ x[m, c] @ cols[m].T`` for every sample and channel, as two ``bmm`` calls.

    Shape: x float32 (M, C, H, W), rows (M, H', H), cols (M, W', W) -> (M, C, H', W').
    """
    m, c, h, w = x.shape
    w2 = cols.shape[1]
    y = torch.bmm(x.reshape(m, c * h, w), cols.transpose(1, 2))  # (M, C*H, W')
    y = y.reshape(m, c, h, w2).permute(0, 2, 1, 3).reshape(m, h, c * w2)
    z = torch.bmm(rows, y)  # (M, H', C*W')
    return z.reshape(m, rows.shape[1], c, w2).permute(0, 2, 1, 3).contiguous()


def _shifted_gaussians(shift: torch.Tensor, sigma: torch.Tensor, n: int) -> torch.Tensor:
    """float32 (M, n, n): output ``i`` = sum_j g(i - j - shift) x_j, g the Gaussian of
    ``sigma`` normalised over the integers (zero beyond the signal's ends)."""
    dev = shift.device
    i = torch.arange(n, device=dev, dtype=torch.float32)
    diff = i[None, :, None] - i[None, None, :] - shift[:, None, None]
    s = sigma[:, None, None]
    g = torch.exp(-0.5 * (diff / s) ** 2)
    reach = math.ceil(float((shift.abs() + 6.0 * sigma).max())) + 1
    k = torch.arange(-reach, reach + 1, device=dev, dtype=torch.float32)
    norm = torch.exp(-0.5 * ((k[None, :] - shift[:, None]) / sigma[:, None]) ** 2).sum(dim=1)
    return g / norm[:, None, None]


def _radius(sigma: torch.Tensor) -> torch.Tensor:
    """int64 (M,) Gaussian kernel radius as OpenCV's: ``(round(8 sigma + 1) | 1) // 2``."""
    k = torch.floor(sigma.double() * 8.0 + 1.5).long()  # cvRound of a positive value
    k = torch.where(sigma > 0, k | 1, torch.ones_like(k))
    return k // 2


def _check_layer(layer: torch.Tensor, appearance: Appearance, who: str) -> None:
    if (
        not isinstance(layer, torch.Tensor)
        or layer.dtype != torch.float32
        or layer.ndim != 4
        or layer.shape[1] != 4
    ):
        raise ValueError(f"{who}: layer is {_describe(layer)}, expected float32 (M, 4, H, W)")
    if appearance.n != layer.shape[0]:
        raise ValueError(
            f"{who}: appearance has {appearance.n} entries, expected {layer.shape[0]} "
            "(one per scene of the layer)"
        )
    if appearance.device != layer.device:
        raise ValueError(f"{who}: appearance is on {appearance.device}, expected {layer.device}")


def _describe(obj: object) -> str:
    if isinstance(obj, torch.Tensor | np.ndarray):
        return f"{obj.dtype} {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"
