"""Canonical sign colours: the palette of every GTSRB and LISA class, in sRGB.

A palette lists the few colours a sign's face is printed in (red rim, white field, black
symbol, ...), as they look in a well-exposed daylight photo. The appearance estimators
(:func:`leafattack.compose.appearance.estimate_appearance`) compare a photo's face with
its class's palette to find the photo's exposure and white balance, and segment the face
into those colours to measure its blur.

* :data:`GTSRB_FAMILIES`, :data:`LISA_FAMILIES` - family name -> colours (a table).
* :data:`GTSRB_PALETTES`, :data:`LISA_PALETTES` - class name -> family name.
* :func:`palette_array` / :func:`sign_palettes` - the palettes as float arrays.

Colours. LISA (US, MUTCD) uses the built-in signs' colours
(:mod:`leafattack.data.builtin`), so that built-in renders match their palette exactly.
GTSRB (German, StVO) uses approximate sRGB renderings of the RAL traffic colours the
German regulations name: RAL 3020 traffic red, 9016 traffic white, 9017 traffic black,
5017 traffic blue, 1023 traffic yellow and 7042 traffic grey A. Published sRGB
renderings of a RAL colour differ by a few units; that moves an estimated gain by about
2 %, far less than the photos' own spread.

Example:
    >>> palette_array(GTSRB_FAMILIES[GTSRB_PALETTES["Stop"]])
    array([[0.75686276, 0.07058824, 0.10980392],
           [0.94509804, 0.9411765 , 0.91764706]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from leafattack.data.builtin import (
    BLACK,
    LIGHT_AMBER,
    LIGHT_GREEN,
    LIGHT_RED,
    RED,
    WHITE,
    YELLOW,
    YELLOW_GREEN,
    Colour,
)
from leafattack.data.signset import GTSRB_CLASSES, SignSet, present_classes, short_list
from leafattack.errors import LeafattackError

RAL_TRAFFIC_RED: Colour = (193, 18, 28)
"""RAL 3020, approximate sRGB."""
RAL_TRAFFIC_WHITE: Colour = (241, 240, 234)
"""RAL 9016, approximate sRGB."""
RAL_TRAFFIC_BLACK: Colour = (30, 30, 30)
"""RAL 9017, approximate sRGB."""
RAL_TRAFFIC_BLUE: Colour = (0, 83, 135)
"""RAL 5017, approximate sRGB."""
RAL_TRAFFIC_YELLOW: Colour = (240, 202, 0)
"""RAL 1023, approximate sRGB."""
RAL_TRAFFIC_GREY: Colour = (143, 150, 152)
"""RAL 7042 (traffic grey A), approximate sRGB: the bands of the old "end of" signs."""

GTSRB_FAMILIES: dict[str, tuple[Colour, ...]] = {
    "red_white_black": (RAL_TRAFFIC_RED, RAL_TRAFFIC_WHITE, RAL_TRAFFIC_BLACK),
    "red_white": (RAL_TRAFFIC_RED, RAL_TRAFFIC_WHITE),
    "white_black_grey": (RAL_TRAFFIC_WHITE, RAL_TRAFFIC_BLACK, RAL_TRAFFIC_GREY),
    "blue_white": (RAL_TRAFFIC_BLUE, RAL_TRAFFIC_WHITE),
    "yellow_white": (RAL_TRAFFIC_YELLOW, RAL_TRAFFIC_WHITE),
}
"""GTSRB colour families: red rim + white field + black symbol (prohibitory and danger
signs), red + white (no entry, yield, stop), white + black + grey ("end of" signs), blue
disc + white symbol (mandatory), yellow + white (priority road)."""


def _gtsrb_palettes() -> dict[str, str]:
    table = dict.fromkeys(GTSRB_CLASSES, "red_white_black")  # limits, no passing, danger
    for i in (6, 32, 41, 42):
        table[GTSRB_CLASSES[i]] = "white_black_grey"
    for i in (13, 14, 17):
        table[GTSRB_CLASSES[i]] = "red_white"
    for i in range(33, 41):
        table[GTSRB_CLASSES[i]] = "blue_white"
    table[GTSRB_CLASSES[12]] = "yellow_white"
    return table


GTSRB_PALETTES: dict[str, str] = _gtsrb_palettes()
"""Family (:data:`GTSRB_FAMILIES`) of each of the 43 GTSRB classes.

red_white_black: 0-5, 7-8 speed limits, 9-10 no passing, 15-16, 11 and 18-31 danger.
red_white: 13 yield, 14 stop, 17 no entry. white_black_grey: 6, 32, 41, 42 ("end of").
blue_white: 33-40 mandatory. yellow_white: 12 priority road.
"""

LISA_FAMILIES: dict[str, tuple[Colour, ...]] = {
    "yellow_black": (YELLOW, BLACK),
    "white_black": (WHITE, BLACK),
    "yellow_green_black": (YELLOW_GREEN, BLACK),
    "yellow_green_white_black": (YELLOW_GREEN, WHITE, BLACK),
    "red_white": (RED, WHITE),
    "yellow_black_red_white": (YELLOW, BLACK, RED, WHITE),
    "signal": (YELLOW, BLACK, LIGHT_RED, LIGHT_AMBER, LIGHT_GREEN),
}
"""LISA colour families (US MUTCD, the built-in signs' colours): yellow warning diamonds
with black symbols, white regulatory rectangles with black text, fluorescent yellow-green
school signs, red + white stop and yield; stop-ahead adds the red octagon and its white
letters, signal-ahead the three lights."""

LISA_PALETTES: dict[str, str] = {
    "addedLane": "yellow_black",
    "keepRight": "white_black",
    "laneEnds": "yellow_black",
    "merge": "yellow_black",
    "pedestrianCrossing": "yellow_black",
    "school": "yellow_green_black",
    "schoolSpeedLimit25": "yellow_green_white_black",
    "signalAhead": "signal",
    "speedLimit25": "white_black",
    "speedLimit30": "white_black",
    "speedLimit35": "white_black",
    "speedLimit45": "white_black",
    "stop": "red_white",
    "stopAhead": "yellow_black_red_white",
    "turnRight": "yellow_black",
    "yield": "red_white",
}
"""Family (:data:`LISA_FAMILIES`) of each of the 16 LISA classes."""


def palette_array(colours: Sequence[Colour]) -> np.ndarray:
    """Colours as a float32 (K, 3) array of sRGB values in [0, 1].

    Raises:
        LeafattackError: no colours, or a colour that is not three integers in 0..255.
    """
    arr = np.asarray(colours)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != 3:
        raise LeafattackError(f"palette has shape {arr.shape} (expected (K, 3) with K >= 1)")
    if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > 255:
        raise LeafattackError(f"palette {colours!r} (expected RGB integers in 0..255)")
    return (arr.astype(np.float32) / np.float32(255.0)).astype(np.float32)


def sign_palettes(
    signs: SignSet,
    classes: Mapping[str, str],
    families: Mapping[str, Sequence[Colour]],
) -> tuple[np.ndarray, ...]:
    """The palette of every image of ``signs``, from its class.

    Args:
        signs: the sign set.
        classes: class name -> family name (e.g. :data:`GTSRB_PALETTES`); must cover every
            class that occurs in ``signs.labels``.
        families: family name -> colours (e.g. :data:`GTSRB_FAMILIES`).

    Returns:
        One float32 (K, 3) sRGB array in [0, 1] per image (see :func:`palette_array`).

    Raises:
        LeafattackError: a class without a family, or a family without colours (named).

    Example:
        >>> pals = sign_palettes(signs, GTSRB_PALETTES, GTSRB_FAMILIES)
    """
    labels = np.asarray(signs.labels, dtype=np.int64)
    present = present_classes(signs)
    missing = [name for name in present if name not in classes]
    if missing:
        raise LeafattackError(
            f"no palette for class(es) {short_list([repr(m) for m in missing])} "
            f"(the palette table has {len(classes)} classes)"
        )
    unknown = sorted({classes[name] for name in present} - set(families))
    if unknown:
        raise LeafattackError(
            f"unknown palette family(ies) {', '.join(map(repr, unknown))} (expected one of "
            f"{', '.join(families)})"
        )
    arrays = {name: palette_array(families[classes[name]]) for name in present}
    return tuple(arrays[signs.class_names[int(i)]] for i in labels)
