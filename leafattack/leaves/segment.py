"""Cut leaves out of photographs of single leaves on a plain, light background.

The method (all steps on the photo's own pixels, no learned model):

1. **Background colour.** The most common colour of the image border (a coarse
   CIELAB histogram), refined to the median of the border pixels near it. Its spread
   (median absolute deviation of the colour distance) sets the noise level.
2. **Foreground score.** The CIELAB distance of every pixel to the background
   (lightness weighted down a little, so faint shading does not count).
3. **Hysteresis threshold.** Strong pixels (far above the noise) seed components;
   weak pixels (just above the noise) that touch the chosen seed are added, which
   keeps thin, faint petioles attached.
4. **Leaf-likeness.** Each strong component is scored by area, with penalties for
   touching the image border, for being rectangular (colour charts, rulers, labels),
   for a very elongated box, for colours no leaf has (blue, purple, magenta,
   neutral grey/black) and for many different hues (chart patches). The best
   component wins.
5. **Clean-up.** The edge is moved to the half-way colour between leaf and
   background (the 50 % alpha contour), holes are filled (and their colour later
   inpainted from the leaf), the largest component is kept. No morphological
   opening or closing, so thin stalks survive and sinuses stay open. The edge is
   feathered with a small Gaussian; edge pixels take the colour of the leaf just
   inside, so no background halo remains.

The Leafsnap "lab" photos carry a colour chart and a ruler along the right and
bottom edges: they touch the border, are rectangular and have rainbow or grey
colours, so step 4 rejects them without knowing where they are.
``ignore_border=(0.2, 0.2)`` can additionally blank out the right and bottom 20 %.

Example:
    >>> rgba = segment_leaf(read_rgb("leaf.jpg"))  # doctest: +SKIP
    >>> rgba.shape[2], rgba.dtype
    (4, dtype('uint8'))
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from leafattack.errors import LeafattackError
from leafattack.imageio import read_rgb, write_png
from leafattack.leaves.colours import NATURAL
from leafattack.leaves.leaf import bleed_colours, composite, crop_to_alpha, fill_holes, fit_into
from leafattack.leaves.library import ALL_SPECIES, append_to_manifest, load_leaves
from leafattack.leaves.library import contact_sheet as library_sheet

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SegmentParams:
    """Tuning constants of the segmentation (a parameter table, validated once).

    Attributes:
        border: width of the border band used for the background, fraction of the short side.
        lightness_weight: weight of the L* difference in the colour distance (a*, b* weigh 1).
        strong: seed threshold, in multiples of the background noise ...
        strong_min: ... but at least this CIELAB distance.
        weak: grow threshold, in multiples of the background noise ...
        weak_min: ... but at least this CIELAB distance.
        min_area: smallest leaf, fraction of the image area.
    """

    border: float = 0.03
    lightness_weight: float = 0.35
    strong: float = 5.0
    strong_min: float = 14.0
    weak: float = 2.5
    weak_min: float = 7.0
    min_area: float = 0.002

    def __post_init__(self) -> None:
        for name in (
            "border",
            "lightness_weight",
            "strong",
            "strong_min",
            "weak",
            "weak_min",
            "min_area",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"SegmentParams.{name} = {value!r}, expected a finite number >= 0")
        if not 0 < self.border < 0.5:
            raise ValueError(f"SegmentParams.border = {self.border!r}, expected 0 < border < 0.5")
        if self.weak_min > self.strong_min:
            raise ValueError(
                f"SegmentParams.weak_min = {self.weak_min!r}, expected <= strong_min "
                f"({self.strong_min!r})"
            )


DEFAULT_PARAMS = SegmentParams()


def _check_photo(photo: np.ndarray) -> None:
    if not isinstance(photo, np.ndarray) or photo.dtype != np.uint8:
        raise ValueError(
            f"photo has type {type(photo).__name__} / dtype {getattr(photo, 'dtype', None)}, "
            "expected a uint8 numpy array (H, W, 3)"
        )
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photo has shape {photo.shape}, expected (H, W, 3) RGB")
    if min(photo.shape[:2]) < 16:
        raise ValueError(f"photo has shape {photo.shape}, expected at least 16x16 pixels")


def _lab(photo: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3) CIELAB (L* 0..100) of a lightly denoised uint8 RGB image."""
    smooth = cv2.GaussianBlur(photo, (0, 0), 0.8)
    lab8 = cv2.cvtColor(smooth, cv2.COLOR_RGB2Lab)  # 8-bit: L * 255 / 100, a + 128, b + 128
    lab = lab8.astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab


def _border_pixels(lab: np.ndarray, width: int) -> np.ndarray:
    h, w = lab.shape[:2]
    parts = [lab[:width].reshape(-1, 3), lab[h - width :].reshape(-1, 3)]
    parts += [lab[width : h - width, :width].reshape(-1, 3)]
    parts += [lab[width : h - width, w - width :].reshape(-1, 3)]
    return np.concatenate(parts)


def estimate_background(
    lab: np.ndarray, border: float = 0.03, lightness_weight: float = 1.0
) -> tuple[np.ndarray, float]:
    """Background colour and noise level from the image border.

    Args:
        lab: float32 (H, W, 3) CIELAB image.
        border: width of the border band, fraction of the short side.
        lightness_weight: weight of L* in the distance that ``noise`` is measured in.

    Returns:
        ``(colour, noise)``: float64 (3,) CIELAB colour, and the noise level (median plus
        1.4826 * MAD of the weighted colour distance of the background pixels to it), at
        least 1.
    """
    width = max(2, int(round(border * min(lab.shape[:2]))))
    px = _border_pixels(lab, width).astype(np.float64)
    # (at most ~20000 border pixels are enough)
    px = px[:: max(1, len(px) // 20000)]
    # density mode of the border colours (robust when charts or a leaf cover part of the
    # border; the background is the densest colour, and light backgrounds are preferred)
    sample = px[:: max(1, len(px) // 500)].astype(np.float32)
    dist2 = ((sample[:, None, :] - sample[None, :, :]) ** 2).sum(axis=2)
    density = (dist2 < 6.0**2).sum(axis=1) * (0.5 + sample[:, 0] / 200.0)
    mode = sample[int(np.argmax(density))]
    near = px[np.linalg.norm(px - mode, axis=1) < 8.0]
    colour = np.median(near, axis=0) if len(near) else mode
    near = px[np.linalg.norm(px - colour, axis=1) < 12.0]
    diff = (near - colour) * np.array([lightness_weight, 1.0, 1.0])
    dist = np.linalg.norm(diff, axis=1) if len(near) else np.zeros(1)
    noise = 1.4826 * float(np.median(np.abs(dist - np.median(dist)))) + float(np.median(dist))
    return np.asarray(colour), max(1.0, noise)


def _distance(lab: np.ndarray, colour: np.ndarray, lightness_weight: float) -> np.ndarray:
    l_star, a_star, b_star = cv2.split(lab)
    dl = (l_star - np.float32(colour[0])) * np.float32(lightness_weight)
    da = a_star - np.float32(colour[1])
    db = b_star - np.float32(colour[2])
    return np.asarray(np.sqrt(dl * dl + da * da + db * db))


def _ignore_mask(shape: tuple[int, int], ignore_border: tuple[float, float] | None) -> np.ndarray:
    """bool (H, W): True where the search is allowed."""
    allowed = np.ones(shape, bool)
    if ignore_border is None:
        return allowed
    right, bottom = ignore_border
    for name, v in (("right", right), ("bottom", bottom)):
        if not (isinstance(v, int | float) and 0.0 <= v < 1.0):
            raise ValueError(f"ignore_border {name} = {v!r}, expected a fraction in [0, 1)")
    h, w = shape
    allowed[:, w - int(round(right * w)) :] = False
    allowed[h - int(round(bottom * h)) :, :] = False
    return allowed


def _leaf_score(
    comp: np.ndarray, stats: np.ndarray, lab: np.ndarray, shape: tuple[int, int]
) -> float:
    """How leaf-like one connected component is (0 = not at all; larger = better)."""
    x, y, w, h, area = (int(v) for v in stats)
    img_h, img_w = shape
    score = float(area)
    margin = max(2, int(0.03 * min(img_h, img_w)))
    if x <= margin or y <= margin or x + w >= img_w - margin or y + h >= img_h - margin:
        score *= 0.05  # charts and rulers run off the edge; leaves lie inside the photo
    pts = np.column_stack(np.nonzero(comp))[:, ::-1].astype(np.float32)
    (_, _), (rw, rh), _ = cv2.minAreaRect(pts)
    fill = area / max(rw * rh, 1.0)
    if fill > 0.85:
        score *= 0.1  # solid rectangles: chart patches, labels, ruler
    elongation = max(rw, rh) / max(min(rw, rh), 1.0)
    if elongation > 8.0:
        score *= 0.1  # a ruler or a strip of the chart's frame
    px = lab[comp]
    chroma = np.hypot(px[:, 1], px[:, 2])
    hue = np.degrees(np.arctan2(px[:, 2], px[:, 1])) % 360.0
    # leaves are green, yellow, orange, red or brown; blue, cyan, violet and magenta
    # (chart patches) and dark neutral grey/black (chart frames, rulers) are not
    alien = (chroma > 15.0) & (hue > 190.0) & (hue < 335.0)
    neutral_dark = (chroma < 5.0) & (px[:, 0] < 45.0)
    score *= max(0.01, 1.0 - 8.0 * float(alien.mean()))
    score *= max(0.05, 1.0 - 2.0 * float(neutral_dark.mean()))
    # one leaf has one family of hues; a chart has patches of many
    vivid = chroma > 15.0
    if vivid.sum() > 20:
        ang = np.radians(hue[vivid])
        mean = math.atan2(float(np.sin(ang).mean()), float(np.cos(ang).mean()))
        off = np.abs(np.degrees(np.angle(np.exp(1j * (ang - mean)))))
        score *= max(0.02, 1.0 - 4.0 * float((off > 75.0).mean()))
    return score


def _nearest(source: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel: the distance to the nearest True pixel of ``source`` and its value.

    Shape:
        source bool (H, W) with some True; values (H, W, ...) -> float32 (H, W), (H, W, ...).
    """
    dist, labels = cv2.distanceTransformWithLabels(
        (~source).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    ys, xs = np.nonzero(source)
    lut = np.zeros((int(labels.max()) + 1, *values.shape[2:]), values.dtype)
    lut[labels[ys, xs]] = values[ys, xs]
    return np.asarray(dist), np.asarray(lut[labels])


def _refine_edge(mask: np.ndarray, lab_w: np.ndarray) -> np.ndarray:
    """Move the mask's edge to the 50 % alpha contour between leaf and local background.

    Each pixel near the edge (within 6 px of the mask eroded by 2 px) is unmixed
    against two local references: the colour of the nearest interior pixel (leaf)
    and of the nearest pixel >= 3 px outside the mask (background, including any
    shadow the leaf casts). The pixel stays in the mask when its colour lies at least
    half-way from the background to the leaf. Thin parts (narrower than 5 px:
    petioles, tooth tips) are left as they are.

    Shape:
        mask bool (H, W); lab_w float32 (H, W, 3), CIELAB with L* weighted -> bool (H, W).
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m8 = mask.astype(np.uint8)
    interior = cv2.erode(m8, kernel) > 0
    outside = cv2.dilate(m8, kernel) == 0
    if not interior.any() or not outside.any():
        return mask
    thin = mask & (cv2.morphologyEx(m8, cv2.MORPH_OPEN, kernel) == 0)
    gap, leaf = _nearest(interior, lab_w)
    _, back = _nearest(outside, lab_w)
    band = mask & ~interior & ~thin & (gap <= 6.0)
    span = leaf - back
    norm2 = np.maximum((span * span).sum(axis=2), 1e-6)
    alpha = ((lab_w - back) * span).sum(axis=2) / norm2
    return np.asarray((mask & ~band) | (band & (alpha >= 0.5)))


def segment_mask(
    photo: np.ndarray,
    *,
    feather: float = 1.0,
    ignore_border: tuple[float, float] | None = None,
    params: SegmentParams = DEFAULT_PARAMS,
) -> np.ndarray:
    """The leaf's alpha mask in photo coordinates.

    See :func:`segment_mask_and_holes`, which also returns the filled holes.
    """
    return segment_mask_and_holes(
        photo, feather=feather, ignore_border=ignore_border, params=params
    )[0]


def segment_mask_and_holes(
    photo: np.ndarray,
    *,
    feather: float = 1.0,
    ignore_border: tuple[float, float] | None = None,
    params: SegmentParams = DEFAULT_PARAMS,
) -> tuple[np.ndarray, np.ndarray]:
    """The leaf's alpha mask in photo coordinates, and the holes that were filled.

    Args:
        photo: uint8 (H, W, 3) RGB, one leaf on a plain light background.
        feather: sigma (pixels) of the Gaussian that softens the edge; 0 = hard edge.
        ignore_border: ``(right, bottom)`` fractions of the photo to leave out of the
            search (e.g. ``(0.2, 0.2)`` for a chart along those edges); None = search all.
        params: tuning constants.

    Returns:
        ``(alpha, holes)``: float32 (H, W) alpha in [0, 1], where ``alpha >= 0.5`` is
        exactly the hard leaf mask (one 8-connected component without holes); and bool
        (H, W), True on the pixels inside the leaf that showed background (insect holes,
        specular spots; at least 9 pixels each) and were filled in.

    Raises:
        LeafattackError: no leaf-like component is found.
    """
    _check_photo(photo)
    if not (math.isfinite(feather) and feather >= 0):
        raise ValueError(f"feather = {feather!r}, expected a finite number >= 0")
    h, w = photo.shape[:2]
    lab = _lab(photo)
    bg, noise = estimate_background(lab, params.border, params.lightness_weight)
    dist = _distance(lab, bg, params.lightness_weight)
    allowed = _ignore_mask((h, w), ignore_border)
    t_strong = max(params.strong_min, params.strong * noise)
    t_weak = max(params.weak_min, params.weak * noise)
    strong = ((dist > t_strong) & allowed).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(strong, connectivity=8)
    min_area = max(20.0, params.min_area * h * w)
    best, best_score = 0, 0.0
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area:
            continue
        score = _leaf_score(labels == i, stats[i], lab, (h, w))
        if score > best_score:
            best, best_score = i, score
    if best == 0 or best_score < 0.5 * min_area:
        raise LeafattackError(
            f"no leaf-like region found in the {w}x{h} photo (expected one leaf that stands "
            f"out from a plain light background; background CIELAB {np.round(bg, 1).tolist()})"
        )
    seed = labels == best
    weak = ((dist > t_weak) & allowed).astype(np.uint8)
    _, weak_labels = cv2.connectedComponents(weak, connectivity=8)
    grown = np.isin(weak_labels, np.unique(weak_labels[seed & (weak > 0)]))
    grown &= weak > 0
    mask = grown | seed
    ys, xs = np.nonzero(mask)
    t0, l0 = max(0, int(ys.min()) - 8), max(0, int(xs.min()) - 8)
    b0, r0 = int(ys.max()) + 9, int(xs.max()) + 9
    lab_w = lab[t0:b0, l0:r0].copy()
    lab_w[..., 0] *= params.lightness_weight
    mask[t0:b0, l0:r0] = _refine_edge(mask[t0:b0, l0:r0], lab_w)
    mask &= allowed
    solid = mask.copy()
    mask = fill_holes(mask)
    _, comp_labels, comp_stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    largest = 1 + int(np.argmax(comp_stats[1:, cv2.CC_STAT_AREA]))
    mask = comp_labels == largest
    holes = mask & ~solid
    if holes.any():
        # specks of a few pixels are pale texture, not holes: keep their own colour
        n_holes, hole_labels, hole_stats, _ = cv2.connectedComponentsWithStats(
            holes.astype(np.uint8), connectivity=4
        )
        big = np.zeros(n_holes, bool)
        big[1:] = hole_stats[1:, cv2.CC_STAT_AREA] >= 9
        holes = big[hole_labels]
    if feather <= 0:
        return mask.astype(np.float32), holes
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), feather)
    # keep every mask pixel at >= 0.5 and every other pixel below it, so thin
    # petioles survive feathering and alpha >= 0.5 is the hard mask
    soft = np.where(mask, np.maximum(soft, 0.55), np.minimum(soft, 0.49))
    return np.asarray(np.clip(soft, 0.0, 1.0), dtype=np.float32), holes


def cutout(
    photo: np.ndarray, alpha: np.ndarray, holes: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Tight RGBA crop of a photo under an alpha mask.

    Colours outside the hard mask (the feathered fringe) are replaced by the nearest
    leaf colour, so no background halo shows when the leaf is pasted elsewhere; filled
    ``holes`` are inpainted from the leaf around them.

    Shape:
        photo uint8 (H, W, 3), alpha float (H, W) in [0, 1], holes bool (H, W) or None
        -> uint8 (h, w, 4), plus the crop box ``(top, left, bottom, right)`` in photo
        coordinates.
    """
    a8 = np.clip(np.round(alpha * 255.0), 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(a8)
    if len(ys) == 0:
        raise ValueError("cutout: alpha is empty, expected some opaque pixels")
    top, left = int(ys.min()), int(xs.min())
    bottom, right = int(ys.max()) + 1, int(xs.max()) + 1
    # work inside the box (plus a margin for the inpainting) only
    m = 4
    t0, l0 = max(0, top - m), max(0, left - m)
    b0, r0 = min(photo.shape[0], bottom + m), min(photo.shape[1], right + m)
    rgb = photo[t0:b0, l0:r0].copy()
    mask = alpha[t0:b0, l0:r0] >= 0.5
    if holes is not None and holes[t0:b0, l0:r0].any():
        grow = cv2.dilate(holes[t0:b0, l0:r0].astype(np.uint8), np.ones((3, 3), np.uint8))
        rgb = np.asarray(cv2.inpaint(rgb, grow, 3, cv2.INPAINT_TELEA))
    # edge pixels mix leaf and background: give them the colour of the leaf just inside
    interior = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if interior.any():
        gap, inside_colour = _nearest(interior, rgb)
        edge = mask & ~interior & (gap <= 2.0)
        rgb[edge] = inside_colour[edge]
    rgb = bleed_colours(rgb, mask)
    rgba = np.concatenate([rgb, a8[t0:b0, l0:r0, None]], axis=2)
    crop = rgba[top - t0 : bottom - t0, left - l0 : right - l0].copy()
    return crop, (top, left, bottom, right)


def segment_leaf(
    photo: np.ndarray,
    *,
    feather: float = 1.0,
    ignore_border: tuple[float, float] | None = None,
) -> np.ndarray:
    """Cut the leaf out of a photo of a single leaf on a plain (light) background.

    Keeps the largest leaf-like component (colour charts, rulers and labels are
    rejected), fills its holes, keeps the petiole, and feathers the edge slightly.

    Args:
        photo: uint8 (H, W, 3) RGB.
        feather: sigma of the edge feathering in pixels (0 = hard edge).
        ignore_border: ``(right, bottom)`` fractions of the photo to leave out.

    Returns:
        uint8 (h, w, 4) RGBA, cropped tight around the leaf (alpha > 0).

    Raises:
        LeafattackError: no leaf-like component is found.
    """
    alpha, holes = segment_mask_and_holes(photo, feather=feather, ignore_border=ignore_border)
    rgba, _ = cutout(photo, alpha, holes)
    return rgba


def petiole_direction(mask: np.ndarray) -> tuple[float, float] | None:
    """Unit vector (dx, dy), image coordinates, from the blade's centre to its petiole.

    The blade is the mask opened with a disk of radius ~5 % of sqrt(area); the
    petiole is the longest thin (elongation > 3) part that the opening removes.

    Shape:
        mask: bool (H, W). Returns None when no stalk-like part is found.
    """
    area = float(mask.sum())
    if area < 50:
        return None
    radius = max(2, int(round(0.05 * math.sqrt(area))))
    pad = radius + 2
    padded = np.pad(mask, pad).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    core = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel)
    if core.sum() < 0.3 * area:
        return None
    residue = (padded > 0) & (core == 0)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(
        residue.astype(np.uint8), connectivity=8
    )
    best, best_len = 0, 0.0
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < 6:
            continue
        pts = np.column_stack(np.nonzero(labels == i))[:, ::-1].astype(np.float32)
        (_, _), (rw, rh), _ = cv2.minAreaRect(pts)
        length = max(rw, rh)
        width = stats[i, cv2.CC_STAT_AREA] / max(length, 1.0)
        if length / max(width, 1.0) > 3.0 and length > 1.5 * radius and length > best_len:
            best, best_len = i, float(length)
    if best == 0:
        return None
    ys, xs = np.nonzero(core)
    # attachment: the stalk's pixel nearest to the blade centre
    cy, cx = float(ys.mean()), float(xs.mean())
    sy, sx = np.nonzero(labels == best)
    d = np.hypot(sx - cx, sy - cy)
    far = d >= np.quantile(d, 0.5)
    vec = np.array([sx[far].mean() - cx, sy[far].mean() - cy])
    norm = float(np.hypot(*vec))
    if norm < 1e-6:
        return None
    return float(vec[0] / norm), float(vec[1] / norm)


def rotate_rgba(rgba: np.ndarray, angle: float) -> np.ndarray:
    """Rotate an RGBA image by ``angle`` degrees counter-clockwise, canvas expanded.

    Shape:
        uint8 (H, W, 4) -> uint8 (H', W', 4), cropped tight to its alpha.
    """
    h, w = rgba.shape[:2]
    phi = math.radians(angle)
    c, s = math.cos(phi), math.sin(phi)
    new_w = int(math.ceil(abs(w * c) + abs(h * s))) + 2
    new_h = int(math.ceil(abs(w * s) + abs(h * c))) + 2
    # image coordinates have y down: counter-clockwise on screen is [[c, s], [-s, c]]
    m = np.array([[c, s, 0.0], [-s, c, 0.0]])
    centre_src = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    centre_dst = np.array([(new_w - 1) / 2.0, (new_h - 1) / 2.0])
    m[:, 2] = centre_dst - m[:, :2] @ centre_src
    out = cv2.warpAffine(
        rgba, m, (new_w, new_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0, 0),
    )  # fmt: skip
    # transparent border pixels pulled the colours of the edge towards black: restore them
    mask = out[..., 3] > 0
    if mask.any():
        inner = out[..., 3] >= 250
        rgb = bleed_colours(out[..., :3], inner if inner.any() else mask)
        out = np.concatenate([rgb, out[..., 3:]], axis=2)
        out, _ = crop_to_alpha(out)
    return np.asarray(out)


def _major_axis(mask: np.ndarray) -> tuple[float, float] | None:
    """Unit vector along the mask's long axis, pointing down-ish (dy >= 0); None if round."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 10:
        return None
    cov = np.cov(np.stack([xs, ys]).astype(np.float64))
    values, vectors = np.linalg.eigh(cov)
    if values[1] < 1.2 * max(values[0], 1e-9):
        return None
    vx, vy = vectors[:, 1]
    if vy < 0:
        vx, vy = -vx, -vy
    return float(vx), float(vy)


def orient_leaf(rgba: np.ndarray) -> np.ndarray:
    """Rotate a leaf cut-out into the canonical orientation: petiole at the bottom, tip up.

    Uses :func:`petiole_direction`; a leaf without a visible stalk gets its long axis
    vertical (by the smaller of the two possible rotations).

    Shape:
        uint8 (H, W, 4) -> uint8 (H', W', 4).
    """
    mask = rgba[..., 3] >= 128
    direction = petiole_direction(mask)
    if direction is None:
        direction = _major_axis(mask)
    if direction is None:
        return rgba
    dx, dy = direction
    # screen angle of the petiole, counter-clockwise from "down" ...
    angle = math.degrees(math.atan2(dx, dy))
    if abs(angle) < 1.0:
        return rgba
    # ... so rotating clockwise by it (counter-clockwise by -angle) puts the petiole down
    return rotate_rgba(rgba, -angle)


def _downscale(photo: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side is None or max(photo.shape[:2]) <= max_side:
        return photo
    return fit_into(photo, max_side)


def _overlay(photo: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Photo dimmed outside the mask, with the mask's outline in magenta."""
    mask = alpha >= 0.5
    out = photo.astype(np.float32)
    out[~mask] = 0.35 * out[~mask] + 0.65 * 255.0
    img = np.clip(out, 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thick = max(1, int(round(min(photo.shape[:2]) / 250)))
    cv2.drawContours(img, contours, -1, (230, 0, 200), thick, cv2.LINE_AA)
    return img


def _checker(h: int, w: int, square: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    light = ((yy // square + xx // square) % 2).astype(bool)
    out = np.full((h, w, 3), 205, np.uint8)
    out[light] = 235
    return out


def _tile(image: np.ndarray, cell: int) -> np.ndarray:
    thumb = fit_into(image, cell - 8)
    tile = np.full((cell, cell, 3), 255, np.uint8)
    th, tw = thumb.shape[:2]
    y0, x0 = (cell - th) // 2, (cell - tw) // 2
    if thumb.shape[2] == 4:
        thumb = composite(thumb, _checker(th, tw))
    tile[y0 : y0 + th, x0 : x0 + tw] = thumb
    return tile


def segmentation_sheet(
    items: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    columns: int = 2,
    cell: int = 150,
) -> np.ndarray:
    """Contact sheet of ``(label, photo, alpha, rgba cut-out)`` triplets.

    Each entry shows photo | mask overlay | cut-out (over a checkerboard), labelled.

    Returns:
        uint8 RGB image (rows * (cell + 16), columns * 3 * cell, 3).
    """
    if not items:
        raise ValueError("segmentation_sheet: no items, expected at least one")
    label_h = 16
    rows = math.ceil(len(items) / columns)
    sheet = np.full((rows * (cell + label_h), columns * 3 * cell, 3), 255, np.uint8)
    for i, (label, photo, alpha, rgba) in enumerate(items):
        r, c = divmod(i, columns)
        y0, x0 = r * (cell + label_h), c * 3 * cell
        for k, img in enumerate((photo, _overlay(photo, alpha), rgba)):
            sheet[y0 : y0 + cell, x0 + k * cell : x0 + (k + 1) * cell] = _tile(img, cell)
        cv2.putText(
            sheet, label[:48], (x0 + 6, y0 + cell + 11),
            cv2.FONT_HERSHEY_SIMPLEX, 0.4, (30, 30, 30), 1, cv2.LINE_AA,
        )  # fmt: skip
        cv2.line(sheet, (x0, y0), (x0, y0 + cell + label_h - 1), (200, 200, 200), 1)
    return sheet


def write_library_sheet(folder: Path, cell: int = 140) -> Path:
    """Write ``folder/contact_sheet.png``: every leaf of the leaf folder, captioned
    ``species: leaf id``, about square (at most 10 columns)."""
    leaves = load_leaves(folder)
    columns = max(1, min(10, math.ceil(math.sqrt(len(leaves)))))
    labels = [f"{lf.species}: {lf.leaf_id}" for lf in leaves]
    path = Path(folder) / "contact_sheet.png"
    write_png(path, library_sheet(leaves, columns=columns, cell=cell, labels=labels))
    return path


def segment_files(
    paths: Sequence[Path],
    out_dir: Path,
    species: str | None = None,
    contact_sheet: bool = True,
    *,
    feather: float = 1.0,
    ignore_border: tuple[float, float] | None = None,
    max_side: int | None = None,
    orient: bool = True,
) -> list[Path]:
    """Segment leaf photos into a leaf folder.

    Writes ``out_dir/<stem>.png`` (RGBA) for each photo, adds rows
    ``(file, species, "natural", <photo path>)`` to ``out_dir/manifest.csv`` (rows of
    the same file are replaced), and, with ``contact_sheet``, writes
    ``out_dir/contact_sheet.png``, every leaf of the whole library as it stands after
    this call (captioned ``species: leaf id``), and ``out_dir/segmentation_sheet.png``,
    photo | mask overlay | cut-out of each photo of this call.

    Species from the folder: without ``species``, each photo's species is the name of
    the folder holding it (``photos/maple/IMG_1.jpg`` is a ``maple``), the layout of
    Leafsnap; ``all`` is refused as a species name (it selects every species).

    Args:
        paths: photo files (any format :func:`leafattack.imageio.read_rgb` reads).
        out_dir: the leaf folder; created when missing.
        species: written to the manifest; None = each photo's parent folder name
            (the layout ``<species>/<photo>`` of Leafsnap).
        contact_sheet: also write the contact sheet.
        feather, ignore_border: passed to :func:`segment_leaf`.
        max_side: downscale photos whose longer side exceeds this many pixels first.
        orient: rotate each cut-out into the canonical orientation (petiole at the
            bottom, see :func:`orient_leaf`).

    Returns:
        The written leaf PNG paths, in input order.

    Raises:
        LeafattackError: no photos, two photos with the same stem, an unreadable
            photo, or a photo without a leaf (the message names the file).
    """
    paths = [Path(p) for p in paths]
    if species is not None and species.strip() in ("", ALL_SPECIES):
        raise LeafattackError(
            f"species {species!r}: expected a species name ('all' selects every species)"
        )
    if not paths:
        raise LeafattackError(f"{out_dir}: no photos to segment (expected at least one path)")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise LeafattackError(
                f"{p}: same file name stem as {stems[p.stem]} (expected unique stems, "
                "they become leaf ids)"
            )
        stems[p.stem] = p
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    entries: list[tuple[str, str, str, str]] = []
    sheet_items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    for path in tqdm(paths, desc="segmenting leaves", unit="photo", disable=None):
        photo = _downscale(read_rgb(path), max_side)
        try:
            alpha, holes = segment_mask_and_holes(
                photo, feather=feather, ignore_border=ignore_border
            )
        except LeafattackError as exc:
            raise LeafattackError(f"{path}: {exc}") from None
        rgba, _ = cutout(photo, alpha, holes)
        if orient:
            rgba = orient_leaf(rgba)
        target = out_dir / f"{path.stem}.png"
        write_png(target, rgba)
        written.append(target)
        leaf_species = species or path.parent.name or "unknown"
        if leaf_species == ALL_SPECIES:
            raise LeafattackError(
                f"{path}: species from the folder name is {ALL_SPECIES!r}, a reserved word "
                "(expected --species NAME)"
            )
        entries.append((target.name, leaf_species, NATURAL, str(path)))
        if contact_sheet:
            small = fit_into(photo, 300)
            small_alpha = cv2.resize(alpha, small.shape[1::-1], interpolation=cv2.INTER_AREA)
            label = f"{leaf_species} ({path.stem})"
            sheet_items.append((label, small, small_alpha, fit_into(rgba, 300)))
    append_to_manifest(out_dir, entries)
    if contact_sheet:
        columns = min(4, math.ceil(math.sqrt(len(sheet_items) / 1.5)))
        write_png(out_dir / "segmentation_sheet.png", segmentation_sheet(sheet_items, columns))
        write_library_sheet(out_dir)
    logger.info("segmented %d photos into %s", len(written), out_dir)
    return written
