"""Regenerate docs/appearance_gtsrb.png: real GTSRB photos, a raw pasted leaf beside a matched one.

Usage: uv run python docs/make_appearance_sheet.py /path/to/shared/data/gtsrb

Each pair shows one photo at the run's sign size (128 px; the crop padded to a square by
repeating its edge, then upsampled bilinearly, as a run sees it): on the left the shipped
leaf pasted as rendered, on the right the same leaf after
:func:`leafattack.compose.appearance.match_layers` (native resolution, blur, exposure and
white balance, noise, estimated from the photo) over its seeded soft shadow
(:func:`~leafattack.compose.appearance.cast_shadow`). The caption gives the class, the
native size and the estimates. Everything is seeded: the same data give the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from leafattack.compose.appearance import (
    cast_shadow,
    estimate_appearance,
    match_layers,
    sample_shadows,
)
from leafattack.compose.scenes import build_variant_bank, slot_grid
from leafattack.data import load_signs
from leafattack.data.faces import GTSRB_BORDER, GTSRB_SHAPES, derive_faces
from leafattack.data.palettes import GTSRB_FAMILIES, GTSRB_PALETTES, sign_palettes
from leafattack.imageio import write_png
from leafattack.leaves import builtin_leaves_dir, load_leaves

CLASSES = [1, 4, 9, 17, 13, 14, 12, 25, 18, 33, 38, 40]
"""Prohibitory, no entry, yield, stop, priority, danger and blue mandatory signs; per class,
the photo whose height is closest to :data:`NATIVE` (a typical, upscaled GTSRB crop)."""

NATIVE = 40
SIZE = 128
SEED = 0
COLUMNS = 3


def _square(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (size, size, 3): the crop padded to a square (edge repeated), bilinear to size."""
    h, w = img.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    padded = cv2.copyMakeBorder(
        img, top, side - h - top, left, side - w - left, cv2.BORDER_REPLICATE
    )
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(padded, (size, size), interpolation=interp)


def main(root: str) -> None:
    signs = load_signs(f"gtsrb:{root}")
    faces = derive_faces(signs, GTSRB_SHAPES, GTSRB_BORDER)
    palettes = sign_palettes(signs, GTSRB_PALETTES, GTSRB_FAMILIES)
    heights = np.array([img.shape[0] for img in signs.images])
    labels = np.asarray(signs.labels)
    pick = [
        int(np.flatnonzero(labels == c)[np.argmin(abs(heights[labels == c] - NATIVE))])
        for c in CLASSES
    ]
    photos = [signs.images[i] for i in pick]
    rng = np.random.default_rng(SEED)
    app = estimate_appearance(photos, [faces[i] for i in pick], [palettes[i] for i in pick], SIZE)
    app = sample_shadows(app, rng)

    leaves = load_leaves(builtin_leaves_dir())
    bank = build_variant_bank([leaf.rgba for leaf in leaves], SIZE)
    m = len(pick)
    variant = torch.arange(m, dtype=torch.int64) % bank.n_variants
    size = torch.full((m,), 0.45) * float(SIZE)
    angle = torch.from_numpy(rng.uniform(-40.0, 40.0, m).astype(np.float32))
    cx = torch.from_numpy(rng.uniform(0.4, 0.6, m).astype(np.float32)) * float(SIZE)
    cy = torch.from_numpy(rng.uniform(0.45, 0.65, m).astype(np.float32)) * float(SIZE)
    grid = slot_grid(bank, variant, size, angle, cx, cy, SIZE, SIZE)
    layer = F.grid_sample(
        bank.atlas.expand(m, -1, -1, -1),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    base = torch.from_numpy(
        np.stack([_square(p, SIZE) for p in photos]).astype(np.float32) / 255.0
    ).permute(0, 3, 1, 2)
    raw = base * (1.0 - layer[:, 3:]) + layer[:, :3]
    matched_layer = match_layers(layer, app, torch.Generator().manual_seed(SEED))
    shaded = cast_shadow(base, matched_layer, app)
    matched = shaded * (1.0 - matched_layer[:, 3:]) + matched_layer[:, :3]

    def to_uint8(t: torch.Tensor) -> np.ndarray:
        return (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)

    pad, caption, gap = 6, 34, 2
    pair_w = 2 * SIZE + gap
    rows = -(-m // COLUMNS)
    sheet = np.full(
        (rows * (SIZE + caption + pad) + pad, COLUMNS * (pair_w + pad) + pad, 3), 255, np.uint8
    )
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(m):
        r, c = divmod(i, COLUMNS)
        y, x = pad + r * (SIZE + caption + pad), pad + c * (pair_w + pad)
        sheet[y : y + SIZE, x : x + SIZE] = to_uint8(raw[i])
        sheet[y : y + SIZE, x + SIZE + gap : x + pair_w] = to_uint8(matched[i])
        h, w = photos[i].shape[:2]
        g = app.gain[i].tolist()
        lines = (
            f"class {CLASSES[i]}, {w}x{h} px   raw | matched",
            f"blur {float(app.blur_sigma[i]):.2f}px gain {g[0]:.2f},{g[1]:.2f},{g[2]:.2f} "
            f"noise {float(app.noise_sigma[i]):.3f}",
        )
        for k, text in enumerate(lines):
            org = (x, y + SIZE + 13 + 13 * k)
            cv2.putText(sheet, text, org, font, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
    write_png(Path(__file__).resolve().parent / "appearance_gtsrb.png", sheet)


if __name__ == "__main__":
    main(sys.argv[1])
