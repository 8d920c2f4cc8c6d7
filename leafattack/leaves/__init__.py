"""Leaves: the Leaf type, fall colours, procedural species, recolouring and leaf folders."""

from __future__ import annotations

from leafattack.leaves.colours import (
    NATURAL,
    RGB,
    Palette,
    PALETTES,
    FALL_COLOURS,
    LIBRARY_COLOURS,
)
from leafattack.leaves.leaf import (
    Leaf,
    fill_holes,
    bleed_colours,
    crop_to_alpha,
    composite,
    fit_into,
)
from leafattack.leaves.recolour import (
    check_colour,
)
from leafattack.leaves.species import (
    ShapeFn,
    SPECIES,
    LIBRARY_SPECIES,
    check_species,
    generate_leaf,
)
from leafattack.leaves.library import (
    MANIFEST_NAME,
    MANIFEST_COLUMNS,
    builtin_leaves_dir,
    append_to_manifest,
    load_leaves,
    select_leaves,
    write_leaf_library,
    contact_sheet,
)

__all__ = [
    "FALL_COLOURS",
    "LIBRARY_COLOURS",
    "LIBRARY_SPECIES",
    "Leaf",
    "MANIFEST_COLUMNS",
    "MANIFEST_NAME",
    "NATURAL",
    "PALETTES",
    "Palette",
    "RGB",
    "SPECIES",
    "ShapeFn",
    "append_to_manifest",
    "bleed_colours",
    "builtin_leaves_dir",
    "check_colour",
    "check_species",
    "composite",
    "contact_sheet",
    "crop_to_alpha",
    "fill_holes",
    "fit_into",
    "generate_leaf",
    "load_leaves",
    "select_leaves",
    "write_leaf_library",
]
