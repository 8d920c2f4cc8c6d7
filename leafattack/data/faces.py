"""Sign faces derived from the annotated box: the class's shape inscribed in the crop.

Real sign photos (GTSRB, LISA) come with a bounding box but no sign mask, so leaf
positions and coverage would otherwise use the whole crop, background included. This
module derives a face mask from the *class* instead: every class has a known outline
(a speed limit is a circle, a stop sign an octagon, ...), and that outline, inscribed in
the crop shrunk by a border, is the face.

* :data:`SHAPES` - registry ``name -> f(h, w, inset) -> bool (h, w) mask``.
* :data:`GTSRB_SHAPES`, :data:`LISA_SHAPES` - class name -> shape name.
* :data:`GTSRB_BORDER` - the ``inset`` that fits GTSRB crops (see its docstring).
* :func:`derive_faces` - one mask per image of a :class:`SignSet`.
* :func:`faces_contact_sheet` - photos with their derived faces outlined, for review.

Geometry: the crop of ``h x w`` pixels spans ``[0, w] x [0, h]`` in pixel-edge
coordinates (pixel ``(y, x)`` covers ``[x, x + 1] x [y, y + 1]``). ``inset`` shrinks that
box by ``inset * w`` on the left and right and ``inset * h`` on the top and bottom, and
the shape is stretched to fill the shrunk box (an oblique view of a circle is an
ellipse). A pixel belongs to the face when its *centre* lies inside the shape (boundary
included): no anti-aliasing, exact to well below a pixel, and mirror-symmetric shapes
give mirror-symmetric masks. (``cv2.fillPoly`` with sub-pixel ``shift`` bits was the
first choice, but it fills every pixel whose centre lies within about half a pixel of
the outline, +9% area on a 20 x 20 circle, and rounds ties one way, so its masks are
not flip-symmetric. The tests compare with it at large sizes.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import cv2
import numpy as np

from leafattack.data.signset import GTSRB_CLASSES, SignSet, present_classes, short_list
from leafattack.errors import LeafattackError

ShapeFn = Callable[[int, int, float], np.ndarray]
"""``f(h, w, inset) -> bool (h, w)`` face mask of a shape (see :data:`SHAPES`)."""

_EPS = 1e-9
"""Tolerance (pixels, or unit-circle radius squared) that puts centres exactly on an
outline inside, whatever the rounding on either side of a mirror-symmetric shape."""

# Vertices in the unit box (x right, y down), clockwise on screen.
_TRIANGLE = np.array([(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)])
_INVERTED_TRIANGLE = np.array([(0.0, 0.0), (1.0, 0.0), (0.5, 1.0)])
_DIAMOND = np.array([(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)])
_RECTANGLE = np.array([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
_CUT = 1.0 / (2.0 + math.sqrt(2.0))
"""Corner cut of a regular octagon in a unit square: side ``s = sqrt2 - 1``, cut ``s / sqrt2``."""
_OCTAGON = np.array(
    [
        (_CUT, 0.0),
        (1 - _CUT, 0.0),
        (1.0, _CUT),
        (1.0, 1 - _CUT),
        (1 - _CUT, 1.0),
        (_CUT, 1.0),
        (0.0, 1 - _CUT),
        (0.0, _CUT),
    ]
)
PENTAGON_SHOULDER = 0.5
"""Height (fraction of the box, from the top) of the pentagon's shoulders, where the
sloping roof meets the vertical sides; half the height, as the built-in school sign."""
_PENTAGON = np.array(
    [
        (0.5, 0.0),
        (1.0, PENTAGON_SHOULDER),
        (1.0, 1.0),
        (0.0, 1.0),
        (0.0, PENTAGON_SHOULDER),
    ]
)


def _check(h: int, w: int, inset: float) -> None:
    for name, value in (("h", h), ("w", w)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise LeafattackError(f"face mask {name} = {value!r} (expected an integer >= 1)")
    if (
        isinstance(inset, bool)
        or not isinstance(inset, int | float | np.integer | np.floating)
        or not 0 <= inset < 0.5
    ):
        raise LeafattackError(f"face inset = {inset!r} (expected a number in [0, 0.5))")


def _centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: float64 (h, 1) y and (1, w) x, in pixel-edge units."""
    ys = np.arange(h, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float64)[None, :] + 0.5
    return ys, xs


def _polygon(h: int, w: int, inset: float, unit: np.ndarray) -> np.ndarray:
    """bool (h, w): pixels whose centre lies in the convex polygon ``unit`` mapped to the box."""
    _check(h, w, inset)
    vx = inset * w + unit[:, 0] * (w * (1 - 2 * inset))
    vy = inset * h + unit[:, 1] * (h * (1 - 2 * inset))
    cy, cx = _centres(h, w)
    inside = np.ones((h, w), dtype=bool)
    for i in range(len(unit)):
        ax, ay = vx[i], vy[i]
        ex, ey = vx[(i + 1) % len(unit)] - ax, vy[(i + 1) % len(unit)] - ay
        # Signed distance of each centre from the edge's line, positive inside.
        inside &= (ex * (cy - ay) - ey * (cx - ax)) / math.hypot(ex, ey) >= -_EPS
    return inside


def circle(h: int, w: int, inset: float) -> np.ndarray:
    """The ellipse inscribed in the box (a circle when the box is square).

    Shape: bool (h, w). Area ``pi / 4`` of the shrunk box.

    Example:
        >>> circle(5, 5, 0.0).sum()
        21
    """
    _check(h, w, inset)
    a = w * (1 - 2 * inset) / 2
    b = h * (1 - 2 * inset) / 2
    cy, cx = _centres(h, w)
    return ((cx - w / 2) / a) ** 2 + ((cy - h / 2) / b) ** 2 <= 1 + _EPS


def triangle(h: int, w: int, inset: float) -> np.ndarray:
    """Point-up triangle (danger signs): apex at the top centre, base along the bottom.

    Shape: bool (h, w). Area ``1 / 2`` of the shrunk box.
    """
    return _polygon(h, w, inset, _TRIANGLE)


def inverted_triangle(h: int, w: int, inset: float) -> np.ndarray:
    """Point-down triangle (yield): base along the top, apex at the bottom centre.

    Shape: bool (h, w). Area ``1 / 2``; the vertical flip of :func:`triangle`.
    """
    return _polygon(h, w, inset, _INVERTED_TRIANGLE)


def octagon(h: int, w: int, inset: float) -> np.ndarray:
    """Regular octagon with flat top and bottom (stop), stretched to the box.

    Shape: bool (h, w). Area ``2 (sqrt2 - 1) ~ 0.828`` of the shrunk box.
    """
    return _polygon(h, w, inset, _OCTAGON)


def diamond(h: int, w: int, inset: float) -> np.ndarray:
    """Square standing on a corner (priority road, US warning signs), corners on the box's sides.

    Shape: bool (h, w). Area ``1 / 2`` of the shrunk box.
    """
    return _polygon(h, w, inset, _DIAMOND)


def rectangle(h: int, w: int, inset: float) -> np.ndarray:
    """The shrunk box itself (US speed limits, keep right).

    Shape: bool (h, w). Area ``1`` of the shrunk box.
    """
    return _polygon(h, w, inset, _RECTANGLE)


def pentagon(h: int, w: int, inset: float) -> np.ndarray:
    """House-shaped pentagon pointing up (US school sign S1-1).

    Apex at the top centre, roof down to :data:`PENTAGON_SHOULDER`, vertical sides, flat
    bottom. Shape: bool (h, w). Area ``1 - PENTAGON_SHOULDER / 2`` (``3 / 4``).
    """
    return _polygon(h, w, inset, _PENTAGON)


SHAPES: dict[str, ShapeFn] = {
    "circle": circle,
    "triangle": triangle,
    "inverted_triangle": inverted_triangle,
    "octagon": octagon,
    "diamond": diamond,
    "rectangle": rectangle,
    "pentagon": pentagon,
}
"""Registry of sign outlines: ``name -> f(h, w, inset)``.

Each returns a bool (h, w) mask, True on the shape inscribed in the ``h x w`` box shrunk
by ``inset`` (fraction of each side, in ``[0, 0.5)``); see the module docstring.
Raises LeafattackError for ``h`` or ``w`` < 1 or ``inset`` outside ``[0, 0.5)``.
"""


def _gtsrb_shapes() -> dict[str, str]:
    shapes = dict.fromkeys(GTSRB_CLASSES, "circle")  # prohibitory, mandatory, end-of
    for i in (11, *range(18, 32)):  # right-of-way and danger signs
        shapes[GTSRB_CLASSES[i]] = "triangle"
    shapes[GTSRB_CLASSES[12]] = "diamond"  # priority road
    shapes[GTSRB_CLASSES[13]] = "inverted_triangle"  # yield
    shapes[GTSRB_CLASSES[14]] = "octagon"  # stop
    return shapes


GTSRB_SHAPES: dict[str, str] = _gtsrb_shapes()
"""Shape of each of the 43 GTSRB classes (German signs, Vienna convention).

Circles: speed limits 0-8 (and 6, end of 80), 9-10 no passing, 15-17 (no vehicles, no
trucks, no entry), 32 and 41-42 (end of limits), 33-40 (blue mandatory discs).
Triangles point up: 11 right-of-way and 18-31 danger. 12 priority road: diamond.
13 yield: inverted_triangle. 14 stop: octagon.
"""

LISA_SHAPES: dict[str, str] = {
    "addedLane": "diamond",
    "keepRight": "rectangle",
    "laneEnds": "diamond",
    "merge": "diamond",
    "pedestrianCrossing": "diamond",
    "school": "pentagon",
    "schoolSpeedLimit25": "rectangle",
    "signalAhead": "diamond",
    "speedLimit25": "rectangle",
    "speedLimit30": "rectangle",
    "speedLimit35": "rectangle",
    "speedLimit45": "rectangle",
    "stop": "octagon",
    "stopAhead": "diamond",
    "turnRight": "diamond",
    "yield": "inverted_triangle",
}
"""Shape of each of the 16 LISA classes (US MUTCD): warning signs are diamonds, speed
limits and keep right rectangles (regulatory), school (S1-1) a pentagon, the school
speed limit assembly a rectangle, stop an octagon, yield an inverted triangle."""

GTSRB_BORDER = 0.04
"""``inset`` for GTSRB crops: the ROI's margin around the sign, as a fraction of each side.

GTSRB documents a border of 10 % of the sign, at least 5 px, around the sign in each
*image*; the annotated ROI (``Roi.X1``..) marks the sign inside that border, and
:func:`leafattack.data.load_gtsrb` crops to the ROI, so that border is already gone.
What is left is a small annotation margin, measured on the 2,000-photo sample with the
red rims and blue discs whose largest colour blob has a round hull covering > 25 % of the
crop (573 photos): the gap between that hull and the crop edge is 1.5 px per side at the
median (2, 1, 2 and 0 px left, right, top, bottom), about 4 % of the side (quartiles
2.6 % and 6 %). It is nearly constant in pixels (2.5 px on crops under 30 px, 3 px over
70 px, on the photos whose blob keeps off the border), so a fraction is a compromise:
0.04 maximises the median IoU of the derived circle with the filled colour hull on the
156 photos where that segmentation is unambiguous (0.908; 0.903 at 0.03 and at 0.05;
0.808 with no inset), see ``tests/test_faces.py``. The HSV thresholds miss the blurred
outermost rim pixels, so if anything the true margin is a little smaller.
"""


def derive_faces(signs: SignSet, shapes: Mapping[str, str], inset: float) -> tuple[np.ndarray, ...]:
    """The face mask of every image: its class's shape inscribed in the crop.

    Args:
        signs: the sign set; existing ``signs.masks`` are ignored.
        shapes: class name -> name in :data:`SHAPES` (e.g. :data:`GTSRB_SHAPES`); must
            cover every class that occurs in ``signs.labels``.
        inset: fraction of each side left as background, in ``[0, 0.5)``
            (:data:`GTSRB_BORDER` for GTSRB, 0 for tight boxes such as LISA's).

    Returns:
        One bool (H, W) array per image, the image's height and width.

    Raises:
        LeafattackError: a class of the set without an entry in ``shapes`` (named), a shape
        name not in :data:`SHAPES`, or ``inset`` outside ``[0, 0.5)``.

    Example:
        >>> faces = derive_faces(load_signs("gtsrb:data/gtsrb"), GTSRB_SHAPES, GTSRB_BORDER)
    """
    _check(1, 1, inset)
    bad = sorted({v for v in shapes.values() if v not in SHAPES})
    if bad:
        raise LeafattackError(
            f"unknown face shape(s) {', '.join(map(repr, bad))} (expected one of "
            f"{', '.join(SHAPES)})"
        )
    labels = np.asarray(signs.labels, dtype=np.int64)
    present = present_classes(signs)
    missing = [name for name in present if name not in shapes]
    if missing:
        raise LeafattackError(
            f"no face shape for class(es) {short_list([repr(m) for m in missing])} "
            f"(the shape table has {len(shapes)} classes)"
        )
    fns = {int(i): SHAPES[shapes[signs.class_names[i]]] for i in np.unique(labels)}
    faces = [
        fns[int(label)](img.shape[0], img.shape[1], inset)
        for img, label in zip(signs.images, labels, strict=True)
    ]
    return tuple(faces)


OUTLINE: tuple[int, int, int] = (0, 255, 0)
"""RGB colour of the face outline in :func:`faces_contact_sheet` (green: far from sign colours)."""


def _cell(image: np.ndarray, mask: np.ndarray, cell: int) -> np.ndarray:
    """uint8 (cell, cell, 3) on white: the image scaled to fit, the mask's outline on top."""
    h, w = mask.shape
    f = cell / max(h, w)
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    big = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_CUBIC)
    big_mask = cv2.resize(mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big_mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(big, contours, -1, OUTLINE, max(1, cell // 60), cv2.LINE_8)
    out = np.full((cell, cell, 3), 255, dtype=np.uint8)
    y, x = (cell - nh) // 2, (cell - nw) // 2
    out[y : y + nh, x : x + nw] = big
    return out


def faces_contact_sheet(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    names: Sequence[str],
    columns: int,
    *,
    cell: int = 150,
) -> np.ndarray:
    """Tile photos with their face masks outlined, each captioned, for a visual check.

    Each photo is scaled (bicubic) to fit a ``cell x cell`` square on white, its mask
    scaled with nearest neighbour (so the outline shows the mask's real pixels) and the
    mask's outer contour drawn in :data:`OUTLINE`; the caption goes below, shortened to
    fit.

    Args:
        images: uint8 (H, W, 3) RGB photos; sizes may differ.
        masks: one bool (H, W) mask per photo, the photo's height and width.
        names: one caption per photo.
        columns: photos per row, at least 1.
        cell: side of a photo's square in pixels, at least 16.

    Returns:
        uint8 (rows * (cell + caption + pad) + pad, columns * (cell + pad) + pad, 3) RGB,
        ``rows = ceil(n / columns)``, ``pad = cell // 25 + 2``, ``caption = cell // 8 + 4``.

    Raises:
        LeafattackError: no photos, counts that differ, ``columns < 1``, ``cell < 16``,
        or a photo or mask of the wrong dtype or shape.

    Example:
        >>> sheet = faces_contact_sheet(signs.images[:24], faces[:24], captions, 6)
    """
    n = len(images)
    if n == 0 or len(masks) != n or len(names) != n or columns < 1 or cell < 16:
        raise LeafattackError(
            f"faces contact sheet got {n} images, {len(masks)} masks, {len(names)} names, "
            f"columns={columns} and cell={cell} (expected at least one image, one mask and "
            "one name per image, columns >= 1 and cell >= 16)"
        )
    for i, (img, m) in enumerate(zip(images, masks, strict=True)):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise LeafattackError(
                f"faces contact sheet image {i} has dtype {img.dtype} and shape {img.shape} "
                "(expected uint8 (H, W, 3))"
            )
        if m.dtype != bool or m.shape != img.shape[:2]:
            raise LeafattackError(
                f"faces contact sheet mask {i} has dtype {m.dtype} and shape {m.shape} "
                f"(expected bool {img.shape[:2]})"
            )
    pad = cell // 25 + 2
    caption = cell // 8 + 4
    rows = -(-n // columns)
    sheet = np.full(
        (rows * (cell + caption + pad) + pad, columns * (cell + pad) + pad, 3), 255, np.uint8
    )
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, cell / 360
    for i, (img, m, name) in enumerate(zip(images, masks, names, strict=True)):
        r, c = divmod(i, columns)
        y = pad + r * (cell + caption + pad)
        x = pad + c * (cell + pad)
        sheet[y : y + cell, x : x + cell] = _cell(img, m, cell)
        text = name
        while len(text) > 3 and cv2.getTextSize(text, font, scale, 1)[0][0] > cell:
            text = text[:-3] + ".."
        (tw, th), _ = cv2.getTextSize(text, font, scale, 1)
        org = (x + max(0, (cell - tw) // 2), y + cell + (caption + th) // 2)
        cv2.putText(sheet, text, org, font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def _table_for(signs: SignSet) -> tuple[str, Mapping[str, str], float] | None:
    """The shape table and inset that fit a set without masks, by source and class names."""
    prefix = signs.source.partition(":")[0] if ":" in signs.source else ""
    present = set(present_classes(signs))
    if prefix == "gtsrb":
        return "GTSRB shapes, inset 0.04", GTSRB_SHAPES, GTSRB_BORDER
    if prefix == "lisa":
        return "LISA shapes, inset 0", LISA_SHAPES, 0.0
    for name, table in (("GTSRB", GTSRB_SHAPES), ("LISA", LISA_SHAPES)):
        if present and present <= table.keys():
            return f"{name} shapes by class name, inset 0", table, 0.0
    return None


def sign_faces(signs: SignSet) -> tuple[SignSet, str]:
    """The set with a face mask for every image, and how the faces were obtained.

    * A set with masks (the built-in renders, folders with mask files) keeps them.
    * ``gtsrb:`` sources: :data:`GTSRB_SHAPES` inscribed with :data:`GTSRB_BORDER`.
    * ``lisa:`` sources: :data:`LISA_SHAPES` in the tight annotated box (inset 0).
    * Other sources whose class names all appear in one of those tables: that table,
      inset 0 (a folder's crops are taken to be tight boxes).
    * Anything else: the whole image is the face (as without faces).

    Returns:
        ``(signs, rule)``: a :class:`SignSet` whose ``masks`` are set, and a short text
        for the run's records (``"masks of the source"``, ``"GTSRB shapes, inset 0.04"``,
        ``"whole image"``, ...).
    """
    if signs.masks is not None:
        return signs, "masks of the source"
    found = _table_for(signs)
    if found is None:
        whole = tuple(np.ones(img.shape[:2], dtype=bool) for img in signs.images)
        return dataclasses.replace(signs, masks=whole), "whole image"
    rule, table, inset = found
    return dataclasses.replace(signs, masks=derive_faces(signs, table, inset)), rule
