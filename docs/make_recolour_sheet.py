"""Regenerate docs/recolour_leafsnap.png: real Leafsnap leaves as segmented (left) and
recoloured into each fall colour; veins, texture and spots stay (the luminance is kept).

Usage: uv run python docs/make_recolour_sheet.py /path/to/shared/data/leafsnap
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from leafattack.imageio import read_rgb, write_png
from leafattack.leaves import FALL_COLOURS, Leaf, contact_sheet, recolour
from leafattack.leaves.segment import segment_leaf

SPECIES = ["acer_palmatum", "platanus_acerifolia", "betula_alleghaniensis", "fagus_grandifolia"]
"""Four species with visible veins; the first photo of each."""


def main(root: str) -> None:
    index = pd.read_csv(Path(root) / "index.csv")
    leaves, labels = [], []
    for species in SPECIES:
        rel = index.loc[index["species"] == species, "path"].iloc[0]
        rgba = segment_leaf(read_rgb(Path(root) / rel), ignore_border=(0.2, 0.2))
        leaf = Leaf(rgba, Path(rel).stem, species, "natural", rel)
        for variant in (leaf, *(recolour(leaf, c) for c in FALL_COLOURS)):
            leaves.append(variant)
            labels.append(f"{species.split('_')[0]} {variant.colour}")
    sheet = contact_sheet(leaves, columns=1 + len(FALL_COLOURS), cell=150, labels=labels)
    write_png(Path(__file__).resolve().parent / "recolour_leafsnap.png", sheet)


if __name__ == "__main__":
    main(sys.argv[1])
