"""Leaves: the Leaf type, fall colours, procedural species, recolouring and leaf folders."""

from __future__ import annotations

from leafattack.leaves.colours import (
    FALL_COLOURS,
    LIBRARY_COLOURS,
    NATURAL,
    PALETTES,
    RGB,
    Palette,
)
from leafattack.leaves.leaf import (
    Leaf,
    bleed_colours,
    composite,
    crop_to_alpha,
    fill_holes,
    fit_into,
)
from leafattack.leaves.library import (
    ALL_SPECIES,
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    append_to_manifest,
    builtin_leaves_dir,
    contact_sheet,
    load_leaves,
    select_leaves,
    write_leaf_library,
)
from leafattack.leaves.recolouring import (
    check_colour,
    recolour,
)
from leafattack.leaves.species import (
    LIBRARY_SPECIES,
    SPECIES,
    ShapeFn,
    check_species,
    generate_leaf,
)

__all__ = [
    "ALL_SPECIES",
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
    "recolour",
    "select_leaves",
    "write_leaf_library",
]
