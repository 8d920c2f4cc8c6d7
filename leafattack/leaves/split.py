"""Split a leaf library into disjoint training and attack libraries (seeded).

A defence study trains with leaves pasted on the signs (``train --leaf-augment P
--augment-leaves TRAIN``) and then attacks with leaves the training never saw
(``run --leaves ATTACK``). :func:`split_library` makes the two libraries:

* ``by="leaf"`` (default): each species' leaves are shuffled with the seed and the
  first ``round(test_frac * n)`` go to the attack library, the others to the training
  library; a species with at least two leaves keeps at least one on each side, so both
  libraries hold every such species.
* ``by="species"``: whole species go to one side (``round(test_frac * n_species)`` of
  them to the attack library, at least one on each side). Use it when the leaves of a
  species share their silhouette, as the generated library's colours do.

Example:
    >>> split_library("lib", "lib-train", "lib-attack", test_frac=0.3, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leafattack.errors import LeafattackError
from leafattack.imageio import write_png
from leafattack.leaves.leaf import Leaf
from leafattack.leaves.library import (
    MANIFEST_NAME,
    append_to_manifest,
    builtin_leaves_dir,
    load_leaves,
)

logger = logging.getLogger(__name__)

SPLIT_UNITS: tuple[str, ...] = ("leaf", "species")
"""What :func:`split_library` keeps together: single leaves, or whole species."""


@dataclass(frozen=True, slots=True)
class LibrarySplit:
    """Outcome of :func:`split_library`: the two folders and the leaf ids in each."""

    train_dir: Path
    attack_dir: Path
    train_ids: tuple[str, ...]
    attack_ids: tuple[str, ...]


def choose_attack_leaves(
    leaves: Sequence[Leaf], test_frac: float, seed: int, by: str = "leaf"
) -> np.ndarray:
    """Which leaves go to the attack library.

    Args:
        leaves: the library, in manifest order.
        test_frac: share of leaves (``by="leaf"``, per species) or of species
            (``by="species"``) for the attack library, in (0, 1).
        seed: seed of the shuffles; species are shuffled with
            ``default_rng([seed, crc32(species)])``, so adding a species leaves the
            split of the others unchanged.
        by: ``leaf`` or ``species`` (:data:`SPLIT_UNITS`).

    Returns:
        bool (N,): True for the attack library, aligned with ``leaves``.
    """
    if not 0.0 < test_frac < 1.0:
        raise LeafattackError(f"test_frac={test_frac}: expected a share in (0, 1)")
    if by not in SPLIT_UNITS:
        raise LeafattackError(f"split by {by!r}: expected one of {', '.join(SPLIT_UNITS)}")
    if seed < 0:
        raise LeafattackError(f"seed={seed}: expected a non-negative integer")
    species = np.array([lf.species for lf in leaves], dtype=object)
    names = sorted(set(species.tolist()))
    attack = np.zeros(len(leaves), dtype=bool)
    if by == "species":
        if len(names) < 2:
            raise LeafattackError(
                f"split by species: the library holds {len(names)} species (expected at least 2)"
            )
        order = np.random.default_rng(seed).permutation(len(names))
        k = min(max(1, round(test_frac * len(names))), len(names) - 1)
        chosen = {names[i] for i in order[:k]}
        attack[:] = [s in chosen for s in species]
        return attack
    for name in names:
        idx = np.flatnonzero(species == name)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
        perm = idx[rng.permutation(len(idx))]
        if len(idx) == 1:
            k = int(rng.random() < test_frac)
        else:
            k = min(max(1, round(test_frac * len(idx))), len(idx) - 1)
        attack[perm[:k]] = True
    if attack.all() or not attack.any():
        raise LeafattackError(
            f"test_frac={test_frac}: puts every leaf on one side (expected a library with "
            "more leaves, or another share)"
        )
    return attack


def _write(folder: Path, leaves: Sequence[Leaf]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for lf in leaves:
        file = f"{lf.leaf_id}.png"
        write_png(folder / file, np.asarray(lf.rgba))
        entries.append((file, lf.species, lf.colour, lf.source))
    append_to_manifest(folder, entries)


def split_library(
    folder: str | Path,
    train_dir: str | Path | None = None,
    attack_dir: str | Path | None = None,
    *,
    test_frac: float = 0.3,
    seed: int = 0,
    by: str = "leaf",
) -> LibrarySplit:
    """Split a leaf folder into two disjoint leaf folders (see the module docstring).

    Args:
        folder: a leaf folder with ``manifest.csv``, or ``builtin``.
        train_dir, attack_dir: new folders (default ``<folder>-train`` and
            ``<folder>-attack`` beside it; ``leaves-train``/``leaves-attack`` in the
            working directory for ``builtin``). Existing manifests there are refused.
        test_frac, seed, by: see :func:`choose_attack_leaves`.

    Returns:
        The folders and the leaf ids of each (manifest order). Every leaf of ``folder``
        is in exactly one of them, with its pixels, species, colour and source.
    """
    src = builtin_leaves_dir() if str(folder) == "builtin" else Path(folder)
    stem = Path("leaves") if str(folder) == "builtin" else src
    train = Path(train_dir) if train_dir is not None else stem.with_name(stem.name + "-train")
    attack = Path(attack_dir) if attack_dir is not None else stem.with_name(stem.name + "-attack")
    if train.resolve() == attack.resolve():
        raise LeafattackError(f"{train}: the same folder for both libraries (expected two)")
    for out in (train, attack):
        if (out / MANIFEST_NAME).exists():
            raise LeafattackError(
                f"{out}: already holds a {MANIFEST_NAME} (expected a new folder for the split)"
            )
    leaves = load_leaves(src)
    mask = choose_attack_leaves(leaves, test_frac, seed, by)
    chosen_train = [lf for lf, a in zip(leaves, mask, strict=True) if not a]
    chosen_attack = [lf for lf, a in zip(leaves, mask, strict=True) if a]
    _write(train, chosen_train)
    _write(attack, chosen_attack)
    logger.info(
        "split %s: %d training and %d attack leaves", src, len(chosen_train), len(chosen_attack)
    )
    return LibrarySplit(
        train,
        attack,
        tuple(lf.leaf_id for lf in chosen_train),
        tuple(lf.leaf_id for lf in chosen_attack),
    )
