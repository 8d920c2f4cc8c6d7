"""Leaf folders: manifest.csv plus RGBA PNGs; loading, selecting, writing, contact sheets."""

from __future__ import annotations

import csv
import logging
import math
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from leafattack.errors import LeafattackError
from leafattack.imageio import read_rgba, write_png
from leafattack.leaves.colours import LIBRARY_COLOURS, RGB
from leafattack.leaves.leaf import Leaf, composite, fit_into
from leafattack.leaves.recolouring import check_colour
from leafattack.leaves.species import (
    LIBRARY_SPECIES,
    SPECIES,
    check_species,
    generate_leaf,
)
from leafattack.paths import resolve_inside

MANIFEST_NAME = "manifest.csv"


MANIFEST_COLUMNS: tuple[str, ...] = ("file", "species", "colour", "source")
"""Columns of a leaf folder's ``manifest.csv``, in order."""

ALL_SPECIES = "all"
"""The species filter that keeps every species of a library (``--species all``)."""


logger = logging.getLogger(__name__)


def builtin_leaves_dir() -> Path:
    """The folder of the leaf library shipped with leafattack (``<repo>/leaves``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "leaves"


def _read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a manifest.csv (columns checked); raises LeafattackError naming the file."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in MANIFEST_COLUMNS if c not in header]
            if missing:
                raise LeafattackError(
                    f"{path}: missing column(s) {', '.join(missing)} "
                    f"(expected a header {','.join(MANIFEST_COLUMNS)})"
                )
            rows = [{k: (v or "") for k, v in row.items() if k is not None} for row in reader]
    except UnicodeDecodeError:
        raise LeafattackError(f"{path}: not a UTF-8 text CSV (expected a manifest.csv)") from None
    except csv.Error as exc:
        raise LeafattackError(f"{path}: malformed CSV ({exc})") from None
    return rows


def _write_manifest(path: Path, rows: Sequence[Sequence[str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    os.replace(tmp, path)


def append_to_manifest(folder: str | Path, entries: Sequence[tuple[str, str, str, str]]) -> None:
    """Add rows ``(file, species, colour, source)`` to ``folder/manifest.csv``.

    Creates the manifest when missing. A row whose ``file`` is already listed replaces
    the old row in place, so re-running a writer leaves the manifest byte-identical.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST_NAME
    rows: dict[str, list[str]] = {}
    if path.exists():
        for row in _read_manifest(path):
            rows[row["file"]] = [row[c] for c in MANIFEST_COLUMNS]
    for entry in entries:
        if len(entry) != 4 or not all(isinstance(v, str) for v in entry):
            raise ValueError(
                f"manifest entry {entry!r}, expected (file, species, colour, source) strings"
            )
        if not entry[0].strip() or any("\n" in v or "\r" in v for v in entry):
            raise ValueError(
                f"manifest entry {entry!r}, expected a non-empty file and one-line values"
            )
        rows[entry[0]] = list(entry)
    _write_manifest(path, list(rows.values()))


def load_leaves(folder: str | Path) -> tuple[Leaf, ...]:
    """Read a leaf folder: ``manifest.csv`` (file,species,colour,source) + RGBA PNGs.

    Leaves come back in manifest order; ``leaf_id`` is the file's stem. The ``colour``
    column is a free label (``natural``, ``red``, ``grey-of-green``, ...): it names the
    leaf as shipped; the colours a run recolours into are the :data:`FALL_COLOURS`.

    Raises:
        LeafattackError: with a one-line message naming the folder, the manifest (and
            line) or the image: folder or manifest missing, missing columns, no rows,
            empty fields, duplicate ids, a path escaping the folder
            (absolute, ``..`` climbing above it, or a symlink to outside; see
            :func:`leafattack.paths.resolve_inside`, which reads ``sub/../x.png`` as
            ``x.png``), an unreadable image, an image without alpha or with an empty
            alpha.
    """
    folder = Path(folder)
    if not folder.exists():
        raise LeafattackError(
            f"{folder}: leaf folder not found "
            f"(expected a folder with {MANIFEST_NAME} and RGBA PNGs)"
        )
    if not folder.is_dir():
        raise LeafattackError(f"{folder}: not a folder (expected a folder with {MANIFEST_NAME})")
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        raise LeafattackError(
            f"{manifest}: leaf manifest not found (expected a CSV with columns "
            f"{','.join(MANIFEST_COLUMNS)})"
        )
    rows = _read_manifest(manifest)
    if not rows:
        raise LeafattackError(f"{manifest}: no rows (expected at least one leaf)")
    leaves: list[Leaf] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        rel, species, colour = row["file"].strip(), row["species"].strip(), row["colour"].strip()
        for name, value in (("file", rel), ("species", species), ("colour", colour)):
            if not value:
                raise LeafattackError(f"{manifest}, line {line}: empty {name!r} (expected a value)")
        if "\n" in colour or "\r" in colour:
            raise LeafattackError(
                f"{manifest}, line {line}: colour {colour!r} (expected a one-line label)"
            )
        path = resolve_inside(folder, rel, f"{manifest}, line {line}")
        leaf_id = path.stem
        if leaf_id in seen:
            raise LeafattackError(
                f"{manifest}, line {line}: leaf id {leaf_id!r} repeats line {seen[leaf_id]} "
                "(expected unique file stems)"
            )
        seen[leaf_id] = line
        rgba = read_rgba(path)
        if not rgba[..., 3].any():
            raise LeafattackError(f"{path}: alpha channel is empty (expected an opaque leaf)")
        leaves.append(Leaf(rgba, leaf_id, species, colour, row["source"].strip() or "unknown"))
    logger.debug("loaded %d leaves from %s", len(leaves), folder)
    return tuple(leaves)


def select_leaves(
    leaves: Sequence[Leaf],
    *,
    ids: Sequence[str] | None = None,
    species: Sequence[str] | None = None,
    colours: Sequence[str] | None = None,
) -> tuple[Leaf, ...]:
    """Keep the leaves matching all given filters (``None`` = no filter), in input order.

    ``species=["all"]`` (:data:`ALL_SPECIES`) keeps every species.

    Raises:
        LeafattackError: a requested id, species or colour is not in ``leaves`` (the
            message lists the available ones), or no leaf matches all filters.
    """
    filters: list[tuple[str, Sequence[str] | None, Callable[[Leaf], str]]] = [
        ("leaf id", ids, lambda lf: lf.leaf_id),
        ("species", species, lambda lf: lf.species),
        ("colour", colours, lambda lf: lf.colour),
    ]
    if species == ALL_SPECIES or (
        not isinstance(species, str) and list(species or ()) == [ALL_SPECIES]
    ):
        filters[1] = ("species", None, filters[1][2])
    out = tuple(leaves)
    for what, wanted, key in filters:
        if wanted is None:
            continue
        if isinstance(wanted, str):
            wanted = [wanted]
        available = list(dict.fromkeys(key(lf) for lf in leaves))
        unknown = [w for w in wanted if w not in available]
        if unknown:
            raise LeafattackError(
                f"unknown {what} {', '.join(map(repr, unknown))} "
                f"(available: {', '.join(available) or 'none'})"
            )
        keep = set(wanted)
        out = tuple(lf for lf in out if key(lf) in keep)
    if not out:
        raise LeafattackError(
            f"no leaf matches ids={list(ids or [])}, species={list(species or [])}, "
            f"colours={list(colours or [])} (expected at least one)"
        )
    return out


def write_leaf_library(
    out_dir: str | Path,
    seed: int = 0,
    species: Sequence[str] | None = None,
    colours: Sequence[str] = LIBRARY_COLOURS,
    size: int = 256,
) -> Path:
    """Generate a leaf library: ``<species>_<colour>_0.png`` per pair, plus ``manifest.csv``.

    The output is deterministic (byte-identical on rerun with the same arguments). All
    colours of one species share the silhouette and texture (the generator of each
    species is seeded from ``(seed, crc32(species))``), so colour varies on its own.

    Args:
        out_dir: created when missing; other rows of an existing manifest are kept.
        seed: the library seed.
        species: defaults to :data:`LIBRARY_SPECIES`; ``["all"]`` is every
            :data:`~leafattack.leaves.species.SPECIES`.
        colours: fall colours to paint each species in.
        size: render canvas side in pixels.

    Returns:
        The path of ``manifest.csv``.
    """
    names = list(LIBRARY_SPECIES if species is None else species)
    if names == [ALL_SPECIES]:
        names = list(SPECIES)
    for sp in names:
        check_species(sp)
    for c in colours:
        check_colour(c)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for sp in names:
        for c in colours:
            rng = np.random.default_rng([seed, zlib.crc32(sp.encode("utf-8"))])
            leaf = generate_leaf(sp, c, rng, size=size, leaf_id=f"{sp}_{c}_0")
            file = f"{leaf.leaf_id}.png"
            write_png(out / file, leaf.rgba)
            entries.append((file, sp, c, "generated"))
    append_to_manifest(out, entries)
    logger.info("wrote %d leaves to %s", len(entries), out)
    return out / MANIFEST_NAME


def contact_sheet(
    leaves: Sequence[Leaf],
    columns: int = 5,
    cell: int = 180,
    background: RGB = (236, 236, 230),
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """A labelled grid of leaves for looking at them.

    Args:
        labels: one caption per leaf (default: the leaf ids).

    Returns:
        uint8 (rows * (cell + 18), columns * cell, 3) RGB image.
    """
    if not leaves:
        raise ValueError("contact_sheet: no leaves, expected at least one")
    if labels is not None and len(labels) != len(leaves):
        raise ValueError(
            f"contact_sheet: {len(labels)} labels for {len(leaves)} leaves, expected one each"
        )
    captions = [lf.leaf_id for lf in leaves] if labels is None else list(labels)
    label_h = 18
    rows = math.ceil(len(leaves) / columns)
    sheet = np.empty((rows * (cell + label_h), columns * cell, 3), np.uint8)
    sheet[:] = background
    for i, leaf in enumerate(leaves):
        r, c = divmod(i, columns)
        thumb = composite(fit_into(np.asarray(leaf.rgba), cell - 12), background)
        th, tw = thumb.shape[:2]
        y0 = r * (cell + label_h) + (cell - th) // 2
        x0 = c * cell + (cell - tw) // 2
        sheet[y0 : y0 + th, x0 : x0 + tw] = thumb
        cv2.putText(
            sheet,
            captions[i][: max(4, cell // 7)],
            (c * cell + 4, r * (cell + label_h) + cell + 12),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.38,
            (40, 40, 40),
            1,
            cv2.LINE_AA,
        )
    return sheet
