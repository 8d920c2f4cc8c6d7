"""Record the training split of the shipped default model in its checkpoint.

The default model (``leafattack/models/weights/lisacnn_default.pt``) was trained with
``leafattack train --signs builtin`` on seeded variations of the 16 built-in renders,
before checkpoints recorded their split. This writes that split (the 16 renders, by file
and content hash) into the checkpoint without touching its weights::

    uv run python -m leafattack.training.default_split

The same command gives the same bytes; a test checks the shipped file against it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from leafattack.data.sources import load_signs
from leafattack.data.splits import BUILTIN_VARIATIONS_NOTE, TrainingSplit, training_split
from leafattack.models.loading import DEFAULT_MODEL_PATH, write_split


def builtin_split() -> TrainingSplit:
    """The split of a model trained on variations of the 16 built-in renders."""
    signs = load_signs("builtin")
    return training_split(signs, range(len(signs)), note=BUILTIN_VARIATIONS_NOTE)


def record_default_split(path: Path = DEFAULT_MODEL_PATH, out: Path | None = None) -> Path:
    """Write :func:`builtin_split` into the checkpoint at ``path`` (or to ``out``)."""
    return write_split(path, builtin_split().to_json(), out)


if __name__ == "__main__":  # pragma: no cover
    print(f"wrote {record_default_split(*(Path(a) for a in sys.argv[1:3]))}")
