"""Viewing transforms: how a camera sees the composited sign, batched on tensors.

After the leaves are pasted, each image of a batch can be seen as a camera would see it:
from an angle (perspective), tilted (rotation), from far away (distance), out of focus
(defocus), from a moving car (motion blur), in other light (brightness, colour
temperature, contrast, gamma), with sensor noise and JPEG compression.

Choosing the parameters (:func:`sample_views`, from a :class:`ViewSpec` of ranges and an
explicit ``np.random.Generator``) is separate from applying them (:func:`apply_views`,
through the :data:`VIEW_TRANSFORMS` registry). The chosen values, one per image and
parameter, are plain arrays that can be written to each trial's CSV row; with the
``seed`` of :func:`apply_views` they reproduce the batch byte for byte (on one device).

Every transform has the same signature ``f(images, params, generator=None) -> images``:

- ``images``: float32 (N, 3, H, W) in [0, 1], on any device;
- ``params``: ``{name: float32 (N,)}`` with (at least) the parameters the transform reads,
  :data:`TRANSFORM_PARAMS`, one value per image;
- ``generator``: a ``torch.Generator`` on the images' device; only :func:`noise` draws
  from it, the others ignore it.

and returns float32 (N, 3, H, W) in [0, 1]. Images whose parameters are the identity
values (:data:`VIEW_PARAMETERS`) come back bit for bit unchanged. All transforms are
vectorised over the batch with per-image parameters; the only Python loops are over the
distinct downscaled sizes in :func:`distance` (at most ``max(H, W)``) and over images in
:func:`jpeg` (torchvision has no batched JPEG codec on the CPU).

Example:
    >>> spec = ViewSpec.parse("yaw=-30:30,distance=1:4,noise=0:0.03")
    >>> params = sample_views(spec, 8, np.random.default_rng(0))
    >>> images = torch.rand(8, 3, 32, 32)
    >>> apply_views(images, params, seed=0).shape
    torch.Size([8, 3, 32, 32])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from leafattack.errors import LeafattackError

FloatRange = tuple[float, float]
Params = Mapping[str, torch.Tensor]
ViewTransform = Callable[[torch.Tensor, Params, torch.Generator | None], torch.Tensor]

CAMERA_DISTANCE = 4.0
"""Distance from the camera to the sign plane for :func:`perspective`, in units of half the
image's longer side (the camera sees the unrotated image with a field of view of about
28 degrees across its longer side). Smaller values exaggerate the perspective."""

NEUTRAL_KELVIN = 6500.0
"""Colour temperature (kelvin) that the camera's white balance assumes: the identity of
:func:`temperature`."""


@dataclass(frozen=True, slots=True)
class ViewParameter:
    """One parameter of the viewing transforms: identity value and physical limits.

    Attributes:
        identity: the value that leaves the image unchanged.
        low, high: physical limits of the value (inclusive).
        unit: what the value means, for messages and docs.
        integer: whether only integer values are allowed.
    """

    identity: float
    low: float
    high: float
    unit: str
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.identity <= self.high:
            raise ValueError(
                f"ViewParameter identity {self.identity} is outside [{self.low}, {self.high}]"
            )


VIEW_PARAMETERS: dict[str, ViewParameter] = {
    "yaw": ViewParameter(0.0, -60.0, 60.0, "degrees, > 0 turns the sign's right edge away"),
    "pitch": ViewParameter(0.0, -60.0, 60.0, "degrees, > 0 turns the sign's top edge away"),
    "rotation": ViewParameter(0.0, -180.0, 180.0, "degrees counter-clockwise in the image"),
    "distance": ViewParameter(1.0, 1.0, 64.0, "downscale factor, >= 1"),
    "blur": ViewParameter(0.0, 0.0, 20.0, "defocus disc radius, pixels"),
    "motion": ViewParameter(0.0, 0.0, 40.0, "motion blur length, pixels"),
    "motion_angle": ViewParameter(0.0, -180.0, 180.0, "motion direction, degrees CCW"),
    "brightness": ViewParameter(1.0, 0.0, 10.0, "multiplicative gain"),
    "temperature": ViewParameter(NEUTRAL_KELVIN, 1000.0, 40000.0, "light colour, kelvin"),
    "contrast": ViewParameter(1.0, 0.0, 10.0, "factor around the image mean"),
    "gamma": ViewParameter(1.0, 0.05, 20.0, "exponent of the tone curve"),
    "noise": ViewParameter(0.0, 0.0, 1.0, "Gaussian sigma, image units 0..1"),
    "jpeg": ViewParameter(0.0, 0.0, 100.0, "JPEG quality 1..100, 0 = no JPEG", integer=True),
}
"""Every view parameter, in the order of :class:`ViewSpec`'s fields and of sampling."""


# --------------------------------------------------------------------------- helpers


def _active(
    images: torch.Tensor,
    active: torch.Tensor,
    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
) -> torch.Tensor:
    """Apply ``fn(subset, index)`` to the images where ``active``; keep the others as is.

    ``index`` is None when every image is active (then ``subset`` is the whole batch).
    """
    if not bool(active.any()):
        return images
    if bool(active.all()):
        return fn(images, None)
    idx = active.nonzero().squeeze(1)
    out = images.clone()
    out[idx] = fn(images[idx], idx)
    return out


def _pick(values: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return values if idx is None else values[idx]


def _param(params: Params, name: str, images: torch.Tensor) -> torch.Tensor:
    """``params[name]`` as float32 (N,) on the images' device."""
    try:
        value = params[name]
    except KeyError:
        raise LeafattackError(f"view parameter '{name}' is missing") from None
    return torch.as_tensor(value, dtype=torch.float32, device=images.device).reshape(-1)


def _warp(images: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Resample each image through a homography (bilinear, reflected at the borders).

    Args:
        images: float32 (n, 3, H, W).
        m: float64 (n, 3, 3) mapping homogeneous output coordinates to input coordinates,
            both centred on the image centre in units of half the image's longer side
            (so that angles are the same along x and y for non-square images).

    Returns:
        float32 (n, 3, H, W) in [0, 1].
    """
    n, _, h, w = images.shape
    side = max(h, w)
    sx, sy = w / side, h / side
    scale = torch.tensor([sx, sy, 1.0], dtype=torch.float64, device=images.device)
    # grid_sample's normalised coordinates -> centred metric -> (m) -> back to normalised.
    full = (m * scale.view(1, 1, 3) / scale.view(1, 3, 1)).to(images.dtype)
    xs = (torch.arange(w, dtype=images.dtype, device=images.device) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=images.dtype, device=images.device) * 2 + 1) / h - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, h * w, 3)
    hom = base @ full.transpose(1, 2)  # (n, H*W, 3)
    # Beyond the sign plane's horizon (only reachable at extreme yaw and pitch together).
    den = hom[..., 2:].clamp_min(1e-6)
    grid = (hom[..., :2] / den).reshape(n, h, w, 2)
    out = F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return out.clamp_(0.0, 1.0)


def _conv_per_image(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate each image with its own kernel (replicated borders), in one grouped conv.

    Args:
        images: float32 (n, C, H, W).
        kernels: float32 (n, k, k), k odd, each summing to 1.
    """
    n, c, h, w = images.shape
    p = kernels.shape[-1] // 2
    x = F.pad(images.reshape(1, n * c, h, w), (p, p, p, p), mode="replicate")
    weight = kernels.repeat_interleave(c, dim=0).unsqueeze(1)  # (n*C, 1, k, k)
    return F.conv2d(x, weight, groups=n * c).reshape(n, c, h, w).clamp_(0.0, 1.0)


def _offsets(half: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel offsets (dy, dx), each float32 (k, k) with k = 2 * half + 1."""
    r = torch.arange(-half, half + 1, dtype=torch.float32, device=device)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return dy, dx


def disc_kernels(radius: torch.Tensor) -> torch.Tensor:
    """Anti-aliased disc kernels, one per radius.

    A pixel at distance ``d`` from the centre weighs ``clamp(radius + 0.5 - d, 0, 1)``
    (about its coverage by the disc), normalised to sum 1. Radii below 0.5 give a delta.

    Args:
        radius: float32 (n,) radii in pixels, >= 0.

    Returns:
        float32 (n, k, k) with ``k = 2 * ceil(max radius + 0.5) + 1``.
    """
    half = math.ceil(float(radius.max()) + 0.5) if radius.numel() else 0
    dy, dx = _offsets(half, radius.device)
    d = torch.sqrt(dy * dy + dx * dx)
    k = (radius.view(-1, 1, 1) + 0.5 - d).clamp(0.0, 1.0)
    return k / k.sum(dim=(1, 2), keepdim=True)


def line_kernels(length: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Anti-aliased line kernels of a given length and direction (motion blur).

    Along the line a pixel weighs ``clamp(length / 2 + 0.5 - |t|, 0, 1)`` (``t`` its
    offset along the direction) and across it ``clamp(1 - |s|, 0, 1)``; so for an
    axis-aligned line the weights sum to ``length`` (for ``length >= 1``) before
    normalisation to sum 1. Length 0 gives a delta.

    Args:
        length: float32 (n,) lengths in pixels, >= 0.
        angle: float32 (n,) directions in degrees counter-clockwise from the +x axis.

    Returns:
        float32 (n, k, k) with ``k = 2 * (ceil(max length / 2) + 1) + 1``.
    """
    half = math.ceil(float(length.max()) / 2) + 1 if length.numel() else 1
    dy, dx = _offsets(half, length.device)
    t = torch.deg2rad(angle).view(-1, 1, 1)
    c, s = torch.cos(t), torch.sin(t)
    # Direction on screen (y down) is (cos, -sin).
    along = dx * c - dy * s
    across = dx * s + dy * c
    k = (length.view(-1, 1, 1) / 2 + 0.5 - along.abs()).clamp(0.0, 1.0)
    k = k * (1.0 - across.abs()).clamp(0.0, 1.0)
    return k / k.sum(dim=(1, 2), keepdim=True)


def kelvin_gains(kelvin: torch.Tensor) -> torch.Tensor:
    """Per-channel gains that re-light a neutral (6500 K) scene with light of ``kelvin``.

    The colour of a black body at ``kelvin`` is Tanner Helland's fit of the CIE 1964
    colour-matching data (1000..40000 K); the gains are that colour divided by the colour
    at :data:`NEUTRAL_KELVIN` and scaled to keep luma (0.299 R + 0.587 G + 0.114 B) of
    grey. Low temperatures are warm (red up, blue down), high ones cool.

    Args:
        kelvin: float (n,) colour temperatures.

    Returns:
        float32 (n, 3) RGB gains; exactly 1 at :data:`NEUTRAL_KELVIN`.
    """

    def rgb(k: torch.Tensor) -> torch.Tensor:
        t = k / 100.0
        warm = t <= 66
        tc = t.clamp_min(61.0)  # keeps the powers of the cool branch finite
        red = torch.where(
            warm, torch.full_like(t, 255.0), 329.698727446 * (tc - 60) ** -0.1332047592
        )
        green = torch.where(
            warm,
            99.4708025861 * torch.log(t) - 161.1195681661,
            288.1221695283 * (tc - 60) ** -0.0755148492,
        )
        blue = torch.where(
            t >= 66,
            torch.full_like(t, 255.0),
            138.5177312231 * torch.log((t - 10).clamp_min(1.0)) - 305.0447927307,
        )
        blue = torch.where(t <= 19, torch.zeros_like(t), blue)
        return torch.stack([red, green, blue], -1).clamp(0.0, 255.0)

    k64 = kelvin.to(torch.float64)
    gains = rgb(k64) / rgb(torch.full_like(k64, NEUTRAL_KELVIN))
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64, device=kelvin.device)
    gains = gains / (gains @ luma).unsqueeze(-1)
    gains = torch.where((k64 == NEUTRAL_KELVIN).unsqueeze(-1), torch.ones_like(gains), gains)
    return gains.to(torch.float32)


# --------------------------------------------------------------------------- geometry


def perspective(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """See the sign plane turned by ``yaw`` about its vertical axis and ``pitch`` about its
    horizontal axis (degrees), through a pinhole camera at :data:`CAMERA_DISTANCE`.

    The plane is rotated about the image centre (first yaw, then pitch) and projected back
    with the focal length equal to the camera distance, so yaw = pitch = 0 is the
    identity. Yaw > 0 turns the right edge away (the right side looks shorter), pitch > 0
    the top edge (the top looks narrower). Pixels outside the source are reflected.

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``yaw``, ``pitch`` float32 (N,).
    """
    yaw = _param(params, "yaw", images)
    pitch = _param(params, "pitch", images)

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        th = torch.deg2rad(_pick(yaw, idx).double())
        ph = torch.deg2rad(_pick(pitch, idx).double())
        ct, st, cp, sp = torch.cos(th), torch.sin(th), torch.cos(ph), torch.sin(ph)
        d = CAMERA_DISTANCE
        zero = torch.zeros_like(ct)
        # Plane point (X, Y, 1) -> image (homogeneous): columns of R = R_pitch @ R_yaw
        # for X and Y, plus the translation to depth d; the focal length is d.
        fwd = torch.stack(
            [
                torch.stack([d * ct, zero, zero], -1),
                torch.stack([d * sp * st, d * cp, zero], -1),
                torch.stack([cp * st, -sp, torch.full_like(ct, d)], -1),
            ],
            -2,
        )
        return _warp(x, torch.linalg.inv(fwd))

    return _active(images, (yaw != 0) | (pitch != 0), fn)


def rotation(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate each image about its centre by ``rotation`` degrees counter-clockwise.

    Bilinear, reflected at the borders; +90 on a square image is ``torch.rot90(x, 1,
    (-2, -1))``.

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``rotation`` float32 (N,).
    """
    angle = _param(params, "rotation", images)

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        t = torch.deg2rad(_pick(angle, idx).double())
        c, s = torch.cos(t), torch.sin(t)
        zero, one = torch.zeros_like(c), torch.ones_like(c)
        # Output -> input: the inverse of the on-screen CCW rotation in y-down coordinates.
        m = torch.stack(
            [
                torch.stack([c, -s, zero], -1),
                torch.stack([s, c, zero], -1),
                torch.stack([zero, zero, one], -1),
            ],
            -2,
        )
        return _warp(x, m)

    return _active(images, angle != 0, fn)


def distance(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """See each image from ``distance`` times farther: downscale by that factor with area
    averaging, then upscale back with bilinear interpolation (``align_corners=False``).

    The low resolution is ``max(1, round(H / d))`` x ``max(1, round(W / d))``, so the
    effective factor is quantised to whole pixels. Images are grouped by their low
    resolution (a loop over at most ``max(H, W)`` distinct sizes, not over images).

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``distance`` float32 (N,) >= 1.
    """
    factor = _param(params, "distance", images)

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        h, w = x.shape[-2:]
        f = _pick(factor, idx).double()
        hs = (h / f).round().clamp_min(1).long()
        ws = (w / f).round().clamp_min(1).long()
        keys = hs * (w + 1) + ws
        out = torch.empty_like(x)
        for key in torch.unique(keys).tolist():
            sel = (keys == key).nonzero().squeeze(1)
            size = divmod(int(key), w + 1)
            small = F.interpolate(x[sel], size=size, mode="area")
            up = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
            out[sel] = up.clamp_(0.0, 1.0)
        return out

    return _active(images, factor != 1, fn)


# --------------------------------------------------------------------------- optics


def defocus(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Defocus blur: correlate each image with an anti-aliased disc of radius ``blur``
    pixels (:func:`disc_kernels`), borders replicated. Radii below 0.5 leave it unchanged.

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``blur`` float32 (N,) >= 0.
    """
    radius = _param(params, "blur", images)

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return _conv_per_image(x, disc_kernels(_pick(radius, idx)))

    return _active(images, radius >= 0.5, fn)  # smaller discs are deltas: skip them


def motion_blur(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Motion blur: correlate each image with an anti-aliased line ``motion`` pixels long
    in the direction ``motion_angle`` (degrees CCW from +x; :func:`line_kernels`).

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``motion`` (>= 0) and
    ``motion_angle`` float32 (N,).
    """
    length = _param(params, "motion", images)
    angle = _param(params, "motion_angle", images)

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return _conv_per_image(x, line_kernels(_pick(length, idx), _pick(angle, idx)))

    return _active(images, length > 0, fn)


# --------------------------------------------------------------------------- photometry


def brightness(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Multiply each image by ``brightness``, then clip to [0, 1].

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``brightness`` float32 (N,) >= 0.
    """
    k = _param(params, "brightness", images)

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return (x * _pick(k, idx).view(-1, 1, 1, 1)).clamp_(0.0, 1.0)

    return _active(images, k != 1, fn)


def temperature(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Re-light each image with light of ``temperature`` kelvin (:func:`kelvin_gains`):
    per-channel gains, luma of grey kept, clipped to [0, 1]. 6500 K is the identity.

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``temperature`` float32 (N,).
    """
    kelvin = _param(params, "temperature", images)

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        gains = kelvin_gains(_pick(kelvin, idx)).to(x.device)
        return (x * gains.view(-1, 3, 1, 1)).clamp_(0.0, 1.0)

    return _active(images, kelvin != NEUTRAL_KELVIN, fn)


def contrast(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Scale each image's deviations from its mean (over channels and pixels) by
    ``contrast``, then clip to [0, 1]: ``m + c * (x - m)``.

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``contrast`` float32 (N,) >= 0.
    """
    c = _param(params, "contrast", images)

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (m + _pick(c, idx).view(-1, 1, 1, 1) * (x - m)).clamp_(0.0, 1.0)

    return _active(images, c != 1, fn)


def gamma(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Tone curve ``x ** gamma`` on values in [0, 1] (> 1 darkens mid-tones).

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``gamma`` float32 (N,) > 0.
    """
    g = _param(params, "gamma", images)

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return x.clamp(0.0, 1.0).pow(_pick(g, idx).view(-1, 1, 1, 1))

    return _active(images, g != 1, fn)


# --------------------------------------------------------------------------- sensor


def noise(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add Gaussian sensor noise of standard deviation ``noise`` (image units), clip.

    The noise is one ``torch.randn`` of the batch's shape drawn from ``generator``, which
    must be given (seeded explicitly) when any sigma is positive; an image's noise thus
    depends on the seed, its position in the batch and the batch's shape.

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``noise`` float32 (N,) >= 0.
    """
    sigma = _param(params, "noise", images)
    active = sigma > 0
    if not bool(active.any()):
        return images
    if generator is None:
        raise LeafattackError("noise needs an explicitly seeded torch.Generator")
    z = torch.randn(images.shape, generator=generator, dtype=images.dtype, device=images.device)

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return (x + _pick(sigma, idx).view(-1, 1, 1, 1) * _pick(z, idx)).clamp_(0.0, 1.0)

    return _active(images, active, fn)


def jpeg(
    images: torch.Tensor, params: Params, generator: torch.Generator | None = None
) -> torch.Tensor:
    """JPEG-compress each image at quality ``jpeg`` (1..100; 0 = leave it alone).

    Images are rounded to uint8, encoded and decoded with ``torchvision.io`` on the CPU
    (4:2:0 chroma subsampling, libjpeg), one image at a time: this is the one transform
    with a Python loop over images, because torchvision has no batched JPEG on the CPU.

    Shape: float32 (N, 3, H, W) in [0, 1] -> same; params ``jpeg`` float32 (N,) integers.
    """
    quality = _param(params, "jpeg", images).round().long()

    def fn(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

        qs = _pick(quality, idx).tolist()
        u8 = x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).cpu()
        out = torch.empty(u8.shape, dtype=torch.uint8)
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its codecs in favour of TorchCodec; pinned < 0.30.
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            for i, q in enumerate(qs):  # no batched JPEG on the CPU
                data = encode_jpeg(u8[i], quality=int(q))
                assert isinstance(data, torch.Tensor)
                img = decode_jpeg(data, mode=ImageReadMode.RGB)
                assert isinstance(img, torch.Tensor)
                out[i] = img
        return out.to(device=x.device, dtype=x.dtype).div_(255.0)

    return _active(images, quality > 0, fn)


VIEW_TRANSFORMS: dict[str, ViewTransform] = {
    "perspective": perspective,
    "rotation": rotation,
    "distance": distance,
    "defocus": defocus,
    "motion_blur": motion_blur,
    "brightness": brightness,
    "temperature": temperature,
    "contrast": contrast,
    "gamma": gamma,
    "noise": noise,
    "jpeg": jpeg,
}
"""The viewing transforms in the order :func:`apply_views` applies them: geometry
(perspective, rotation, distance), optics (defocus, motion blur), photometry (brightness,
colour temperature, contrast, gamma), sensor noise, then JPEG."""

TRANSFORM_PARAMS: dict[str, tuple[str, ...]] = {
    "perspective": ("yaw", "pitch"),
    "rotation": ("rotation",),
    "distance": ("distance",),
    "defocus": ("blur",),
    "motion_blur": ("motion", "motion_angle"),
    "brightness": ("brightness",),
    "temperature": ("temperature",),
    "contrast": ("contrast",),
    "gamma": ("gamma",),
    "noise": ("noise",),
    "jpeg": ("jpeg",),
}
"""The parameters (keys of :data:`VIEW_PARAMETERS`) that each transform reads."""


# --------------------------------------------------------------------------- the spec


def _check_range(name: str, value: object) -> FloatRange:
    """Validate a ``(low, high)`` range of parameter ``name``; return it as floats."""
    p = VIEW_PARAMETERS[name]
    try:
        if isinstance(value, str | bytes):
            raise TypeError
        a, b = (float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise LeafattackError(
            f"view parameter {name} = {value!r} is invalid (expected a pair (low, high))"
        ) from None
    expected = f"{p.low:g} <= low <= high <= {p.high:g} ({p.unit})"
    if not (math.isfinite(a) and math.isfinite(b) and p.low <= a <= b <= p.high):
        raise LeafattackError(
            f"view parameter {name} = {a:g}:{b:g} is invalid (expected {expected})"
        )
    if p.integer:
        if a != round(a) or b != round(b):
            raise LeafattackError(
                f"view parameter {name} = {a:g}:{b:g} is invalid (expected integers, {p.unit})"
            )
        if a == 0 and b != 0:
            raise LeafattackError(
                f"view parameter {name} = {a:g}:{b:g} mixes 0 (off) with qualities "
                "(expected 0:0, or 1 <= low <= high <= 100)"
            )
    return (a, b)


def _num(value: float) -> str:
    """The shortest text that parses back to exactly ``value`` (``30.0`` -> ``"30"``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """Ranges ``(low, high)`` of the view parameters; each is sampled uniformly.

    The default is the identity for every transform, so nothing changes unless asked.
    Parameters and their physical limits (see :data:`VIEW_PARAMETERS`):

    - ``yaw``, ``pitch``: -60..60 degrees (sign plane turned about its vertical /
      horizontal axis; default 0:0).
    - ``rotation``: -180..180 degrees counter-clockwise (default 0:0).
    - ``distance``: 1..64, downscale factor (default 1:1).
    - ``blur``: 0..20, defocus disc radius in pixels (default 0:0).
    - ``motion``: 0..40, motion blur length in pixels; ``motion_angle``: -180..180
      degrees (defaults 0:0).
    - ``brightness``: 0..10 gain (default 1:1); ``contrast``: 0..10 (default 1:1);
      ``gamma``: 0.05..20 (default 1:1); ``temperature``: 1000..40000 kelvin (default
      6500:6500).
    - ``noise``: 0..1, Gaussian sigma in image units (default 0:0).
    - ``jpeg``: integer quality 1..100, or 0:0 for no JPEG (the default).

    Invalid ranges raise :class:`~leafattack.errors.LeafattackError` naming the parameter.

    Example:
        >>> ViewSpec.parse("yaw=-30:30,jpeg=60:100").jpeg
        (60.0, 100.0)
    """

    yaw: FloatRange = (0.0, 0.0)
    pitch: FloatRange = (0.0, 0.0)
    rotation: FloatRange = (0.0, 0.0)
    distance: FloatRange = (1.0, 1.0)
    blur: FloatRange = (0.0, 0.0)
    motion: FloatRange = (0.0, 0.0)
    motion_angle: FloatRange = (0.0, 0.0)
    brightness: FloatRange = (1.0, 1.0)
    temperature: FloatRange = (NEUTRAL_KELVIN, NEUTRAL_KELVIN)
    contrast: FloatRange = (1.0, 1.0)
    gamma: FloatRange = (1.0, 1.0)
    noise: FloatRange = (0.0, 0.0)
    jpeg: FloatRange = (0.0, 0.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _check_range(f.name, getattr(self, f.name)))

    def ranges(self) -> dict[str, FloatRange]:
        """``{parameter: (low, high)}`` in :data:`VIEW_PARAMETERS` order."""
        return {name: getattr(self, name) for name in VIEW_PARAMETERS}

    @property
    def is_identity(self) -> bool:
        """Whether every range is the single identity value."""
        return all(
            r == (p.identity, p.identity)
            for r, p in zip(self.ranges().values(), VIEW_PARAMETERS.values(), strict=True)
        )

    def to_text(self) -> str:
        """The non-identity ranges as a :meth:`parse` string (``""`` for the default)."""
        items = []
        for name, (a, b) in self.ranges().items():
            ident = VIEW_PARAMETERS[name].identity
            if (a, b) != (ident, ident):
                items.append(f"{name}={_num(a)}" if a == b else f"{name}={_num(a)}:{_num(b)}")
        return ",".join(items)

    @classmethod
    def parse(cls, text: str) -> ViewSpec:
        """Parse ``"name=low:high,name=value,..."`` (e.g. ``"yaw=-30:30,jpeg=60:100"``).

        A single value ``name=v`` means ``v:v``; unnamed parameters keep their identity
        default; an empty string is the default spec.
        """
        ranges: dict[str, FloatRange] = {}
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep:
                raise LeafattackError(f"view '{item}' is not NAME=LOW:HIGH (e.g. yaw=-30:30)")
            if key not in VIEW_PARAMETERS:
                raise LeafattackError(
                    f"unknown view parameter '{key}' (expected one of: "
                    f"{', '.join(VIEW_PARAMETERS)})"
                )
            if key in ranges:
                raise LeafattackError(f"view parameter {key} is given twice")
            parts = value.split(":")
            try:
                if len(parts) > 2:
                    raise ValueError
                nums = [float(p) for p in parts]
            except ValueError:
                raise LeafattackError(
                    f"view parameter {key} = '{value.strip()}' is not a number or LOW:HIGH "
                    f"range (e.g. {key}={VIEW_PARAMETERS[key].low:g}:"
                    f"{VIEW_PARAMETERS[key].high:g})"
                ) from None
            ranges[key] = (nums[0], nums[-1])
        return cls(**ranges)

    @classmethod
    def approach(cls) -> ViewSpec:
        """What a car's camera sees while approaching a roadside sign.

        Ranges: ``distance=1:4`` (from four times the crop's distance up to it),
        ``yaw=-30:30`` (the sign is off to the side, more so when near; either side of
        the road), ``pitch=-10:10`` (signs are mounted above the camera, roads climb),
        ``brightness=0.6:1.4`` (overcast to sunlit), ``blur=0:1.5`` (defocus radius,
        pixels) and ``noise=0:0.03`` (sensor noise sigma). Everything else is identity.
        """
        return cls(
            distance=(1.0, 4.0),
            yaw=(-30.0, 30.0),
            pitch=(-10.0, 10.0),
            brightness=(0.6, 1.4),
            blur=(0.0, 1.5),
            noise=(0.0, 0.03),
        )


# --------------------------------------------------------------------------- choose, apply


def sample_views(spec: ViewSpec, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Choose every view parameter for ``n`` images, uniformly within ``spec``'s ranges.

    Every parameter draws ``n`` uniforms from ``rng`` in :data:`VIEW_PARAMETERS` order,
    even when its range is a single value, so widening one range does not change the
    values of the others. A single-value range gives exactly that value; ``jpeg``
    qualities are uniform integers in ``[low, high]``.

    Returns:
        ``{name: (n,) array}``: float64, except int64 for ``jpeg``.

    Example:
        >>> p = sample_views(ViewSpec(), 2, np.random.default_rng(0))
        >>> p["distance"].tolist(), p["jpeg"].tolist()
        ([1.0, 1.0], [0, 0])
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise LeafattackError(f"number of views {n!r} is invalid (expected an integer >= 0)")
    out: dict[str, np.ndarray] = {}
    for name, (lo, hi) in spec.ranges().items():
        u = rng.random(int(n))
        if VIEW_PARAMETERS[name].integer:
            out[name] = np.minimum(np.floor(lo + (hi - lo + 1) * u), hi).astype(np.int64)
        else:
            out[name] = lo + (hi - lo) * u
    return out


def _param_tensors(
    params: Mapping[str, object], n: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Check ``params`` against :data:`VIEW_PARAMETERS`; missing ones become identity."""
    unknown = sorted(set(params) - set(VIEW_PARAMETERS))
    if unknown:
        raise LeafattackError(
            f"unknown view parameter '{unknown[0]}' (expected one of: {', '.join(VIEW_PARAMETERS)})"
        )
    out: dict[str, torch.Tensor] = {}
    for name, p in VIEW_PARAMETERS.items():
        if name not in params:
            out[name] = torch.full((n,), p.identity, dtype=torch.float32, device=device)
            continue
        value = params[name]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        try:
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise LeafattackError(f"view parameter {name} is not numeric") from None
        if arr.shape != (n,):
            raise LeafattackError(
                f"view parameter {name} has {arr.size} values for {n} images "
                "(expected one per image)"
            )
        bad = ~(np.isfinite(arr) & (arr >= p.low) & (arr <= p.high))
        if p.integer:
            bad |= arr != np.round(arr)
        if bad.any():
            raise LeafattackError(
                f"view parameter {name} = {arr[bad][0]:g} is out of range "
                f"(expected {p.low:g}..{p.high:g}, {p.unit})"
            )
        out[name] = torch.as_tensor(arr, dtype=torch.float32).to(device)
    return out


def apply_views(
    images: torch.Tensor,
    params: Mapping[str, np.ndarray | torch.Tensor | Sequence[float]],
    seed: int,
) -> torch.Tensor:
    """Apply the view parameters to a batch, transform by transform (:data:`VIEW_TRANSFORMS`).

    Args:
        images: float32 (N, 3, H, W) in [0, 1], on any device.
        params: ``{name: (N,)}`` values, as from :func:`sample_views`; missing parameters
            are the identity, unknown names and out-of-range values raise
            :class:`~leafattack.errors.LeafattackError`.
        seed: seeds the ``torch.Generator`` (on the images' device) of the sensor noise.

    Returns:
        float32 (N, 3, H, W) in [0, 1]; the input tensor itself when nothing applies.
        Same images, parameters and seed give byte-identical output on the same device.
    """
    if (
        not isinstance(images, torch.Tensor)
        or images.dtype != torch.float32
        or images.ndim != 4
        or images.shape[1] != 3
    ):
        what = (
            f"{images.dtype} {tuple(images.shape)}"
            if isinstance(images, torch.Tensor)
            else (type(images).__name__)
        )
        raise LeafattackError(f"view images are {what}, expected float32 (N, 3, H, W)")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise LeafattackError(f"view seed {seed!r} is invalid (expected an integer >= 0)")
    tensors = _param_tensors(params, images.shape[0], images.device)
    generator = torch.Generator(device=images.device)
    generator.manual_seed(int(seed))
    out = images
    for fn in VIEW_TRANSFORMS.values():
        out = fn(out, tensors, generator)
    return out
