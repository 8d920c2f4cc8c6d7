"""Fall colours: palettes and the names the leaf types accept."""

from __future__ import annotations

from dataclasses import dataclass

NATURAL = "natural"
"""The colour name of leaves segmented from photographs (their own colours)."""


RGB = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Palette:
    """The colours a leaf of one fall colour is painted with (RGB, 0..255 each).

    Attributes:
        base: the blade's main colour (also the value in :data:`FALL_COLOURS`).
        margin: towards the edge of the blade (fall colour progresses from the margin).
        near_vein: in the band along the veins (keeps chlorophyll longest).
        vein: the veins and the petiole themselves.
        spot: small dark spots (fungal "tar spots").
    """

    base: RGB
    margin: RGB
    near_vein: RGB
    vein: RGB
    spot: RGB

    def __post_init__(self) -> None:
        for name in ("base", "margin", "near_vein", "vein", "spot"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in value):
                raise ValueError(f"Palette.{name} = {value!r}, expected three ints in 0..255")


PALETTES: dict[str, Palette] = {
    #                 base            margin          near_vein       vein             spot
    "green": Palette((72, 118, 44), (104, 128, 40), (88, 136, 56), (158, 182, 104), (52, 76, 30)),
    "yellow": Palette(
        (222, 186, 48), (212, 146, 36), (188, 184, 64), (238, 218, 128), (140, 96, 34)
    ),
    "orange": Palette(
        (226, 118, 32), (192, 62, 28), (230, 164, 44), (240, 192, 104), (116, 58, 26)
    ),
    "red": Palette((178, 36, 32), (118, 20, 28), (206, 92, 38), (216, 124, 84), (84, 20, 20)),
    "brown": Palette((128, 82, 42), (86, 52, 28), (152, 108, 52), (178, 138, 88), (58, 34, 20)),
}
"""The painting palette of each fall colour (a parameter table; see :class:`Palette`)."""


FALL_COLOURS: dict[str, RGB] = {name: pal.base for name, pal in PALETTES.items()}
"""Fall colour name -> representative RGB (uint8 values) of a leaf of that colour."""


LIBRARY_COLOURS: tuple[str, ...] = ("green", "yellow", "red")
"""Colours the built-in library ships; orange and brown are reached through :func:`recolour`."""
