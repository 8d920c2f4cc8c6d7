"""Fresh renders: seeded variants of the built-in signs that no training run has seen.

The shipped default model was trained on variations of the 16 built-in renders, the very
images the default run attacks. :func:`write_fresh_signs` writes a sign folder of new
variants (perspective, lighting, blur, JPEG, noise, cluttered backgrounds; see
:mod:`leafattack.data.variations`) drawn from a seed stream that training never uses, with
their face masks, so that a run can attack signs outside the model's training split::

    leafattack signs render --variant-seed 1 --out fresh1
    leafattack run --signs fresh1 --split heldout

Every variant's parameters are written to ``variants.csv``, so each image can be
reproduced from them alone (:func:`~leafattack.data.variations.apply_variant`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from leafattack.data.builtin import render_sign_set
from leafattack.data.signset import LISA_CLASSES
from leafattack.data.variations import VariationConfig, apply_variant, sample_params
from leafattack.errors import LeafattackError
from leafattack.imageio import write_png

logger = logging.getLogger(__name__)

FRESH_STREAM = 14_004
"""Second word of the seed sequence ``[variant_seed, FRESH_STREAM]`` of fresh renders.

Training, validation and evaluation draw from integer seeds (``seed``,
``seed + VALIDATION_SEED_OFFSET``, ``seed + EVALUATION_SEED_OFFSET``); a two-word seed
sequence is a different stream from any of them."""


def fresh_rng(variant_seed: int) -> np.random.Generator:
    """The generator of the fresh renders of ``variant_seed`` (>= 0)."""
    if isinstance(variant_seed, bool) or not isinstance(variant_seed, int) or variant_seed < 0:
        raise LeafattackError(f"variant seed {variant_seed!r}: expected an integer >= 0")
    return np.random.default_rng([variant_seed, FRESH_STREAM])


def write_fresh_signs(
    out_dir: str | Path, *, variant_seed: int, variants: int = 1, size: int = 128
) -> Path:
    """Write ``variants`` fresh variants of each of the 16 built-in signs into ``out_dir``.

    Files: ``<name>_<k>.png`` (RGB, uint8 (size, size, 3)), ``<name>_<k>_mask.png`` (the
    face after the variant's warp: coverage > 0.5, 0/255), ``manifest.csv`` (columns
    ``file,mask,label,name``, readable as a sign source ``--signs OUT``) and
    ``variants.csv`` (``file``, ``variant_seed`` and every parameter of the variant as
    JSON). The same arguments give the same bytes.

    Returns:
        The path of ``manifest.csv``.

    Raises:
        LeafattackError: a negative seed, ``variants`` outside 1..1000, ``size`` below 16.
    """
    rng = fresh_rng(variant_seed)
    if isinstance(variants, bool) or not isinstance(variants, int) or not 1 <= variants <= 1000:
        raise LeafattackError(f"variants={variants!r}: expected 1..1000 per sign")
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 1024:
        raise LeafattackError(f"size={size!r}: expected 16..1024 pixels")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = render_sign_set(size)
    config = VariationConfig(out_size=size)
    rows: list[tuple[str, str, int, str]] = []
    params_rows: list[tuple[str, int, str]] = []
    for label, name in enumerate(LISA_CLASSES):
        for k in range(variants):
            params = sample_params(rng, config)
            image, alpha = apply_variant(base.images[label], base.mask(label), params)
            mask = alpha > 0.5
            file, mask_file = f"{name}_{k}.png", f"{name}_{k}_mask.png"
            write_png(out / file, image)
            write_png(out / mask_file, mask.astype(np.uint8) * np.uint8(255))
            rows.append((file, mask_file, label, name))
            params_rows.append(
                (file, variant_seed, json.dumps(dataclasses.asdict(params), sort_keys=True))
            )
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("file", "mask", "label", "name"))
        writer.writerows(rows)
    with (out / "variants.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("file", "variant_seed", "params"))
        writer.writerows(params_rows)
    logger.info("wrote %d fresh renders (variant seed %d) to %s", len(rows), variant_seed, out)
    return manifest
