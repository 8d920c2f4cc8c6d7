"""Standard sign-face sizes, so leaf sizes can be given in centimetres.

A 12 cm maple leaf is the same leaf on every sign: on a 60 cm German speed-limit disc it
spans a fifth of the face, on a 108 cm wide US warning diamond a ninth. ``--sizes-cm``
converts through these tables, per sign: ``size (fraction of the face width) = cm /
FACE_WIDTH_CM[class]``.

Widths are the horizontal extent of the face's bounding box, as the face masks of
:mod:`leafattack.data.faces` measure it (so a diamond's width is its diagonal).

German signs (GTSRB), the standard size ("Groesse 2") of the VwV-StVO for roads within and
outside built-up areas:

* round signs (speed limits, prohibitions, mandatory blue discs, end signs): 600 mm
  diameter;
* triangles (danger signs, right of way at the next junction; yield, pointing down):
  900 mm side;
* stop (Z 206): 600 mm octagon;
* priority road (Z 306): 600 mm square set on its corner, 849 mm across.

US signs (LISA), the conventional-road column of MUTCD 2009 tables 2B-1, 2C-2 and 7B-1:

* stop R1-1: 30 in octagon (76.2 cm); yield R1-2: 36 in triangle (91.4 cm);
* speed limit R2-1 and keep right R4-7: 24 x 30 in (61.0 cm wide);
* warning diamonds (W1-1 turn, W3-1 stop ahead, W3-3 signal ahead, W4-1 merge, W4-2 lane
  ends, W4-3 added lane, W11-2 pedestrian crossing): 30 in squares on their corners,
  107.8 cm across;
* school S1-1: 36 in pentagon (91.4 cm); school speed limit S5-1: 24 x 48 in (61.0 cm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from leafattack.data.signset import GTSRB_CLASSES, short_list
from leafattack.errors import LeafattackError

INCH_CM = 2.54

_GERMAN_CIRCLE = 60.0
_GERMAN_TRIANGLE = 90.0
_GERMAN_OCTAGON = 60.0
_GERMAN_DIAMOND = 60.0 * math.sqrt(2.0)


def _gtsrb_widths() -> dict[str, float]:
    widths = dict.fromkeys(GTSRB_CLASSES, _GERMAN_CIRCLE)
    for i in (11, 13, *range(18, 32)):
        widths[GTSRB_CLASSES[i]] = _GERMAN_TRIANGLE
    widths[GTSRB_CLASSES[12]] = _GERMAN_DIAMOND
    widths[GTSRB_CLASSES[14]] = _GERMAN_OCTAGON
    return widths


GTSRB_FACE_WIDTH_CM: dict[str, float] = _gtsrb_widths()
"""Face width in cm of each GTSRB class (module docstring)."""

_US_DIAMOND = 30.0 * INCH_CM * math.sqrt(2.0)

LISA_FACE_WIDTH_CM: dict[str, float] = {
    "addedLane": _US_DIAMOND,
    "keepRight": 24.0 * INCH_CM,
    "laneEnds": _US_DIAMOND,
    "merge": _US_DIAMOND,
    "pedestrianCrossing": _US_DIAMOND,
    "school": 36.0 * INCH_CM,
    "schoolSpeedLimit25": 24.0 * INCH_CM,
    "signalAhead": _US_DIAMOND,
    "speedLimit25": 24.0 * INCH_CM,
    "speedLimit30": 24.0 * INCH_CM,
    "speedLimit35": 24.0 * INCH_CM,
    "speedLimit45": 24.0 * INCH_CM,
    "stop": 30.0 * INCH_CM,
    "stopAhead": _US_DIAMOND,
    "turnRight": _US_DIAMOND,
    "yield": 36.0 * INCH_CM,
}
"""Face width in cm of each LISA class (module docstring)."""

FACE_WIDTH_CM: dict[str, float] = {**GTSRB_FACE_WIDTH_CM, **LISA_FACE_WIDTH_CM}
"""Both tables; the class names do not overlap."""


def face_widths_cm(class_names: Sequence[str]) -> np.ndarray:
    """Standard face width of each named class.

    Returns:
        float64 (len(class_names),) in cm.

    Raises:
        LeafattackError: a class without a standard size (named), as sizes in cm need one.
    """
    missing = [n for n in class_names if n not in FACE_WIDTH_CM]
    if missing:
        raise LeafattackError(
            f"sizes in cm: no standard face size for class(es) "
            f"{short_list([repr(m) for m in sorted(set(missing))])} (expected GTSRB or LISA "
            f"class names; give sizes as fractions of the face width instead)"
        )
    return np.array([FACE_WIDTH_CM[n] for n in class_names], dtype=np.float64)
