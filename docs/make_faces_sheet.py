"""Regenerate docs/faces_gtsrb.png: real GTSRB photos with their derived sign faces.

Usage: uv run python docs/make_faces_sheet.py /path/to/shared/data/gtsrb
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from leafattack.data import load_signs
from leafattack.data.faces import GTSRB_BORDER, GTSRB_SHAPES, derive_faces, faces_contact_sheet
from leafattack.imageio import write_png

CLASSES = [1, 4, 8, 9, 15, 17, 33, 35, 38, 40, 32, 6, 11, 18, 19, 22, 25, 27, 31, 28, 12, 13, 14,
           36]
"""A mix of circles, triangles, the diamond, yield and stop; per class, the photo whose
height is closest to 64 px."""


def main(root: str) -> None:
    signs = load_signs(f"gtsrb:{root}")
    faces = derive_faces(signs, GTSRB_SHAPES, GTSRB_BORDER)
    heights = np.array([img.shape[0] for img in signs.images])
    labels = np.asarray(signs.labels)
    pick = [
        int(np.flatnonzero(labels == c)[np.argmin(abs(heights[labels == c] - 64))])
        for c in CLASSES
    ]
    names = [f"{c} {GTSRB_SHAPES[signs.class_names[c]]}" for c in CLASSES]
    sheet = faces_contact_sheet(
        [signs.images[i] for i in pick], [faces[i] for i in pick], names, 6
    )
    write_png(Path(__file__).resolve().parent / "faces_gtsrb.png", sheet)


if __name__ == "__main__":
    main(sys.argv[1])
