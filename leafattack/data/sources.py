"""Sign datasets: one :class:`SignSet` type for every source.

A *sign source spec* picks the loader (see :func:`load_signs`):

==================  ==========================================================
``builtin``         the 16 rendered LISA-class signs shipped in ``signs/``
``PATH``            a folder ``PATH/<class_name>/*.png|jpg|ppm`` or ``PATH/manifest.csv``
``folder:PATH``     the same, spelled out
``gtsrb:PATH``      the official GTSRB layout (``Final_Training`` / ``Final_Test``)
``lisa:PATH``       LISA ``allAnnotations.csv`` (file, tag, box), cropped to the box
==================  ==========================================================

Every loader returns a :class:`SignSet`: uint8 (H, W, 3) RGB images (sizes may
differ), int64 labels indexing ``class_names``, one identifier per image in
``files`` and, where the source has them, bool sign masks.

Box convention (GTSRB ROIs and LISA boxes): half-open pixel intervals, i.e. the
crop is ``image[y1:y2, x1:x2]`` and has shape ``(y2 - y1, x2 - x1)``. For GTSRB
this is the reading under which the documented border ("10 percent of the sign
size, at least 5 pixel") holds on all four sides: on the 2,000 real training
photos every image keeps >= 5 px outside ``[x1, x2) x [y1, y2)``, whereas an
inclusive ``x2``/``y2`` would leave only 4 px at the right or bottom of 1,549 of
them.

Example:
    >>> signs = load_signs("gtsrb:/data/gtsrb", max_per_class=10)  # doctest: +SKIP
    >>> signs.images[0].shape, signs.class_names[signs.labels[0]]  # doctest: +SKIP
    ((45, 49, 3), 'Speed limit (20km/h)')
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from leafattack.data.signset import GTSRB_CLASSES, LISA_CLASSES, SignSet, short_list
from leafattack.errors import LeafattackError
from leafattack.imageio import IMAGE_SUFFIXES, read_rgb
from leafattack.paths import resolve_inside

logger = logging.getLogger(__name__)


GTSRB_COLUMNS: tuple[str, ...] = (
    "Filename",
    "Width",
    "Height",
    "Roi.X1",
    "Roi.Y1",
    "Roi.X2",
    "Roi.Y2",
    "ClassId",
)
"""Columns of the GTSRB ``GT-000NN.csv`` / ``GT-final_test.csv`` files (``;``-separated)."""


LISA_COLUMNS: tuple[str, ...] = (
    "Filename",
    "Annotation tag",
    "Upper left corner X",
    "Upper left corner Y",
    "Lower right corner X",
    "Lower right corner Y",
)
"""Columns of LISA's ``allAnnotations.csv`` that the loader needs (``;``-separated)."""


MANIFEST_NAME = "manifest.csv"
"""File name of a folder's manifest (comma-separated columns ``file,name[,label][,mask]``)."""


GTSRB_SPLITS: tuple[str, ...] = ("auto", "train", "test")
"""Accepted values of ``load_gtsrb(split=...)``."""


_BUILTIN_DIR = Path(__file__).resolve().parent.parent / "assets" / "signs"


_BUILTIN_SIZE = 128


_SUFFIXES = frozenset(s.lower() for s in IMAGE_SUFFIXES)


_GTSRB_CLASS_DIR = re.compile(r"^\d{5}$")


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string (both unresolved)."""
    return PurePosixPath(os.path.relpath(path, root).replace(os.sep, "/")).as_posix()


def _read_table(
    path: Path, *, delimiter: str, required: Sequence[str], expected: str
) -> list[tuple[int, dict[str, str]]]:
    """Read a delimited text table, checking that the ``required`` columns exist.

    Column names are matched case-insensitively and ignoring surrounding blanks;
    the returned rows are keyed by the names in ``required`` (plus any other
    column under its own stripped name). Blank lines are skipped.

    Returns:
        ``(line_number, row)`` pairs; line numbers are 1-based file lines.

    Raises:
        LeafattackError: unreadable file, no header, or missing columns (the message
        lists them and gives ``expected``, the full header).
    """
    if not path.is_file():
        raise LeafattackError(f"{path}: file not found (expected a table with {expected})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LeafattackError(
            f"{path}: unreadable ({type(exc).__name__}; expected a UTF-8 text table with "
            f"{expected})"
        ) from None
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    canonical = {name.strip().lower(): name for name in required}
    for fields in _csv_rows(reader, path, expected):
        if not any(f.strip() for f in fields):
            continue
        if header is None:
            header = [canonical.get(f.strip().lower(), f.strip()) for f in fields]
            missing = [name for name in required if name not in header]
            if missing:
                raise LeafattackError(
                    f"{path}: missing columns {', '.join(missing)} (expected {expected})"
                )
            continue
        row = {
            name: (fields[i].strip() if i < len(fields) else "") for i, name in enumerate(header)
        }
        rows.append((reader.line_num, row))
    if header is None:
        raise LeafattackError(f"{path}: empty table (expected a header {expected})")
    return rows


def _csv_rows(reader: Any, path: Path, expected: str) -> Iterator[list[str]]:
    """The rows of a ``csv.reader``, turning csv.Error (e.g. a field longer than
    ``csv.field_size_limit()``) into a LeafattackError naming the file and line."""
    try:
        yield from reader
    except csv.Error as exc:
        raise LeafattackError(
            f"{path}: malformed table at line {reader.line_num} ({exc}; expected {expected})"
        ) from None


def _int(value: str, column: str, where: str) -> int:
    """Parse an integer cell (``"12"``, ``" 12 "``, ``"12.0"``), naming the cell on failure."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number):
        raise LeafattackError(f"{where}: {column} = {value!r} (expected an integer)")
    return int(number)


def _check_box(
    box: tuple[int, int, int, int], width: int, height: int, names: str, where: str
) -> None:
    """Check that the half-open box ``(x1, y1, x2, y2)`` is non-empty and inside the image."""
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise LeafattackError(
            f"{where}: box {names} = ({x1}, {y1}, {x2}, {y2}) does not lie inside the "
            f"{width}x{height} image (expected 0 <= x1 < x2 <= {width} and "
            f"0 <= y1 < y2 <= {height})"
        )


def _crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Copy of ``image[y1:y2, x1:x2]`` (half-open box), C-contiguous uint8 (h, w, 3)."""
    x1, y1, x2, y2 = box
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def _read_mask(path: Path, shape: tuple[int, int], image_file: str) -> np.ndarray:
    """Read a 0/255 mask image as bool (H, W): True where any channel is > 127."""
    rgb = read_rgb(path)
    if rgb.shape[:2] != shape:
        raise LeafattackError(
            f"{path}: mask is {rgb.shape[1]}x{rgb.shape[0]} pixels but its image {image_file} "
            f"is {shape[1]}x{shape[0]} (expected the same size)"
        )
    mask: np.ndarray = rgb.max(axis=2) > 127
    return mask


def _make_set(
    images: list[np.ndarray],
    labels: list[int],
    class_names: Sequence[str],
    files: list[str],
    source: str,
    masks: list[np.ndarray] | None = None,
) -> SignSet:
    return SignSet(
        images=tuple(images),
        labels=np.asarray(labels, dtype=np.int64).reshape(len(labels)),
        class_names=tuple(class_names),
        files=tuple(files),
        masks=None if masks is None else tuple(masks),
        source=source,
    )


def _root_dir(root: str | os.PathLike[str], what: str) -> Path:
    path = Path(root)
    if not path.exists():
        raise LeafattackError(f"{path}: folder not found (expected {what})")
    if not path.is_dir():
        raise LeafattackError(f"{path}: not a folder (expected {what})")
    return path


_FOLDER_EXPECTED = "manifest.csv or <class_name>/ sub-folders of .png/.jpg/.jpeg/.ppm images"


def load_folder(
    root: str | os.PathLike[str], *, class_names: Sequence[str] | None = None
) -> SignSet:
    """Load signs from a folder, laid out either by class folder or by manifest.

    Layouts:
        * ``root/manifest.csv`` (comma-separated, wins when present) with columns
          ``file`` (image path relative to ``root``), ``name`` (class name),
          optional ``label`` (int, checked against ``name``) and optional ``mask``
          (0/255 mask image path relative to ``root``; rows that leave it empty get
          an all-True mask). Rows keep the manifest order. Paths must stay inside
          ``root`` (:func:`leafattack.paths.resolve_inside`): absolute paths, ``..``
          that climbs above ``root`` and symlinks that resolve outside are refused;
          ``sub/../x.png`` is read as ``x.png``.
        * ``root/<class_name>/*`` with image suffixes ``.png .jpg .jpeg .ppm``
          (and ``.pgm .bmp .tif .tiff``), matched case-insensitively. Classes and
          files are sorted by name (Python string order), hidden entries and
          sub-folders without images are skipped. No masks.

    Class names and labels:
        * ``class_names`` given: labels index into it; a class folder or manifest
          ``name`` that is not in it raises :class:`LeafattackError`.
        * otherwise, without a ``label`` column: the sorted distinct class names
          (folder names or manifest ``name`` values), so both layouts of the same
          data get the same labels.
        * otherwise, with a ``label`` column: ``class_names[label] = name``; the
          labels must cover ``0..K-1`` and map one-to-one to names.

    Returns:
        SignSet with uint8 (H, W, 3) RGB images, int64 labels, ``files`` = POSIX
        paths relative to ``root``, bool (H, W) masks when the manifest has a
        ``mask`` column, ``source = str(root)``.

    Raises:
        LeafattackError: missing/empty folder, missing columns, unknown class,
        path outside ``root``, unreadable image or mask.
    """
    path = _root_dir(root, _FOLDER_EXPECTED)
    known = tuple(class_names) if class_names is not None else None
    if known is not None and len(set(known)) != len(known):
        raise LeafattackError(
            f"class_names has duplicates: {short_list(sorted(_duplicates(known)))} "
            "(expected distinct class names)"
        )
    if (path / MANIFEST_NAME).is_file():
        signs = _load_manifest(path, known)
    else:
        signs = _load_class_folders(path, known)
    logger.info("loaded %d signs of %d classes from %s", len(signs), len(signs.class_names), path)
    return signs


def _duplicates(names: Sequence[str]) -> set[str]:
    return {name for name, count in Counter(names).items() if count > 1}


def _load_class_folders(root: Path, known: tuple[str, ...] | None) -> SignSet:
    by_class: dict[str, list[Path]] = {}
    stray = 0
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            stray += entry.suffix.lower() in _SUFFIXES
            continue
        if not entry.is_dir():
            continue
        files = sorted(
            (
                f
                for f in entry.iterdir()
                if f.is_file() and f.suffix.lower() in _SUFFIXES and not f.name.startswith(".")
            ),
            key=lambda p: p.name,
        )
        if not files:
            logger.warning("%s: no images, skipped", entry)
            continue
        by_class[entry.name] = files
    if stray:
        logger.warning("%s: %d image(s) outside class folders ignored", root, stray)
    if not by_class:
        raise LeafattackError(f"{root}: no images found (expected {_FOLDER_EXPECTED})")
    if known is None:
        names: tuple[str, ...] = tuple(sorted(by_class))
    else:
        unknown = [name for name in by_class if name not in known]
        if unknown:
            raise LeafattackError(
                f"{root / unknown[0]}: class folder {unknown[0]!r} is not a known class "
                f"(expected one of {short_list(known)})"
            )
        names = known
    index = {name: i for i, name in enumerate(names)}
    images: list[np.ndarray] = []
    labels: list[int] = []
    rel_files: list[str] = []
    for name in sorted(by_class, key=lambda n: index[n]):
        for file in by_class[name]:
            images.append(read_rgb(file))
            labels.append(index[name])
            rel_files.append(_rel(file, root))
    return _make_set(images, labels, names, rel_files, str(root))


def _load_manifest(root: Path, known: tuple[str, ...] | None) -> SignSet:
    manifest = root / MANIFEST_NAME
    rows = _read_table(
        manifest, delimiter=",", required=("file", "name"), expected="file,name[,label][,mask]"
    )
    if not rows:
        raise LeafattackError(f"{manifest}: no rows (expected one row per sign image)")
    has_label = "label" in rows[0][1]
    has_mask = "mask" in rows[0][1]
    where = [f"{manifest} line {line}" for line, _ in rows]
    names_col = [row["name"] for _, row in rows]
    for w, name in zip(where, names_col, strict=True):
        if not name:
            raise LeafattackError(f"{w}: empty name (expected a class name)")
    labels_col = (
        [_int(row["label"], "label", w) for w, (_, row) in zip(where, rows, strict=True)]
        if has_label
        else None
    )
    names = _manifest_classes(manifest, where, names_col, labels_col, known)
    index = {name: i for i, name in enumerate(names)}
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    rel_files: list[str] = []
    labels: list[int] = []
    for w, (_, row), name in zip(where, rows, names_col, strict=True):
        file = resolve_inside(root, row["file"], w)
        image = read_rgb(file)
        images.append(image)
        rel = _rel(file, root)
        rel_files.append(rel)
        labels.append(index[name])
        if has_mask:
            if row["mask"]:
                mask_file = resolve_inside(root, row["mask"], w)
                masks.append(_read_mask(mask_file, image.shape[:2], rel))
            else:
                masks.append(np.ones(image.shape[:2], dtype=bool))
    return _make_set(images, labels, names, rel_files, str(root), masks if has_mask else None)


def _manifest_classes(
    manifest: Path,
    where: list[str],
    names_col: list[str],
    labels_col: list[int] | None,
    known: tuple[str, ...] | None,
) -> tuple[str, ...]:
    """Class names of a manifest (see :func:`load_folder`), checking labels against names."""
    if known is not None:
        for i, name in enumerate(names_col):
            if name not in known:
                raise LeafattackError(
                    f"{where[i]}: class {name!r} is not a known class "
                    f"(expected one of {short_list(known)})"
                )
            if labels_col is not None and labels_col[i] != known.index(name):
                raise LeafattackError(
                    f"{where[i]}: label {labels_col[i]} does not match name {name!r} "
                    f"(expected label {known.index(name)})"
                )
        return known
    if labels_col is None:
        return tuple(sorted(set(names_col)))
    by_label: dict[int, str] = {}
    for i, (label, name) in enumerate(zip(labels_col, names_col, strict=True)):
        if label < 0:
            raise LeafattackError(f"{where[i]}: label {label} (expected a label >= 0)")
        first = by_label.setdefault(label, name)
        if first != name:
            raise LeafattackError(
                f"{where[i]}: label {label} is named {name!r} here but {first!r} earlier "
                "(expected one name per label)"
            )
    dup = _duplicates(list(by_label.values()))
    if dup:
        raise LeafattackError(
            f"{manifest}: class {sorted(dup)[0]!r} has several labels (expected one label per name)"
        )
    gaps = [i for i in range(max(by_label) + 1) if i not in by_label]
    if gaps:
        raise LeafattackError(
            f"{manifest}: labels skip {short_list([str(g) for g in gaps])} so their class "
            "names are unknown (expected labels 0..K-1, or pass class_names)"
        )
    return tuple(by_label[i] for i in range(len(by_label)))


_GTSRB_HEADER = ";".join(GTSRB_COLUMNS)


_GTSRB_EXPECTED = "a folder with Final_Training/Images/000NN/GT-000NN.csv or Final_Test/Images"


def _gtsrb_dirs(root: Path) -> dict[str, Path]:
    """The ``Final_Training`` / ``Final_Test`` folders reachable from ``root``."""
    found: dict[str, Path] = {}
    for split, name in (("train", "Final_Training"), ("test", "Final_Test")):
        for cand in (root, root / name, root / "GTSRB" / name):
            if cand.name == name and cand.is_dir():
                found[split] = cand
                break
    return found


def _pick(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k`` is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    return [(i * n) // k for i in range(k)]


def load_gtsrb(
    root: str | os.PathLike[str],
    *,
    split: str = "auto",
    max_per_class: int | None = None,
    strict_size: bool = False,
) -> SignSet:
    """Load GTSRB signs in the official layout, each cropped to its ROI.

    Layout: ``root`` is a folder holding ``Final_Training/`` and/or ``Final_Test/``
    (directly or under ``GTSRB/``), or one of those two folders itself.

    * train: ``Final_Training/Images/000NN/*.ppm`` with ``GT-000NN.csv`` in each class
      folder; the CSV's ``ClassId`` must equal the folder number.
    * test: ``Final_Test/Images/*.ppm`` with the ground truth ``GT-final_test.csv``
      (looked up in ``Final_Test/Images/``, ``Final_Test/`` and next to
      ``Final_Test/``). The unlabelled ``GT-final_test.test.csv`` is not enough.

    CSV columns (``;``-separated): ``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``.
    The ROI is half-open (see the module docstring): the crop is
    ``image[Roi.Y1:Roi.Y2, Roi.X1:Roi.X2]``, shape ``(Roi.Y2 - Roi.Y1, Roi.X2 - Roi.X1, 3)``.
    It must satisfy ``0 <= X1 < X2 <= Width`` and ``0 <= Y1 < Y2 <= Height``.

    ``Width``/``Height`` are compared with the decoded image. When they differ (public
    copies of GTSRB that were resized, e.g. to 35x35, but kept the original CSV), the
    ROI is scaled to the stored size (rounded half up) and one warning counts such
    files; ``strict_size=True`` raises instead.

    Args:
        root: see Layout.
        split: ``"train"``, ``"test"`` or ``"auto"`` (every split found, train first).
        max_per_class: keep at most this many images per class, spread evenly over the
            class's CSV rows (GTSRB tracks are runs of ~30 frames of one sign, so
            taking the first rows would give near-duplicates). Unselected images are
            not decoded.
        strict_size: raise on a Width/Height mismatch instead of rescaling the ROI.

    Returns:
        SignSet with uint8 (h, w, 3) RGB crops, int64 labels = ``ClassId`` (0..42),
        ``class_names = GTSRB_CLASSES``, ``files`` = image paths relative to ``root``
        (e.g. ``Final_Training/Images/00014/00003_00029.ppm``), no masks, rows in
        class-folder then CSV order (train) and CSV order (test).

    Raises:
        LeafattackError: layout not found, missing columns, bad cell, ClassId outside
        0..42, ROI outside the image, unreadable image (each names the file).
    """
    path = _root_dir(root, _GTSRB_EXPECTED)
    if split not in GTSRB_SPLITS:
        raise LeafattackError(
            f"split {split!r} for {path} (expected one of {', '.join(GTSRB_SPLITS)})"
        )
    if max_per_class is not None and (
        isinstance(max_per_class, bool) or not isinstance(max_per_class, int) or max_per_class < 1
    ):
        raise LeafattackError(f"max_per_class = {max_per_class!r} (expected an integer >= 1)")
    dirs = _gtsrb_dirs(path)
    wanted = ("train", "test") if split == "auto" else (split,)
    chosen = [s for s in wanted if s in dirs]
    if not chosen:
        what = (
            "Final_Training or Final_Test"
            if split == "auto"
            else ("Final_Training" if split == "train" else "Final_Test")
        )
        raise LeafattackError(f"{path}: no {what} folder found (expected {_GTSRB_EXPECTED})")
    items: list[_GtsrbRow] = []
    for s in chosen:
        rows = _gtsrb_train_rows(dirs[s]) if s == "train" else _gtsrb_test_rows(dirs[s])
        items.extend(_select_per_class(rows, max_per_class))
    if not items:
        raise LeafattackError(f"{path}: no GTSRB images listed (expected {_GTSRB_EXPECTED})")
    images: list[np.ndarray] = []
    rescaled = 0
    for item in items:
        image = read_rgb(item.image)
        h, w = image.shape[:2]
        box = item.box
        if (w, h) != (item.width, item.height):
            if strict_size:
                raise LeafattackError(
                    f"{item.image}: image is {w}x{h} pixels but {item.where} says "
                    f"{item.width}x{item.height} (expected the sizes to match)"
                )
            box = _scale_box(box, w / item.width, h / item.height)
            rescaled += 1
        images.append(_crop(image, box))
    if rescaled:
        logger.warning(
            "%s: %d image(s) differ from their CSV Width/Height; their ROIs were scaled "
            "to the stored size",
            path,
            rescaled,
        )
    signs = _make_set(
        images,
        [item.label for item in items],
        GTSRB_CLASSES,
        [_rel(item.image, path) for item in items],
        f"gtsrb:{path}",
    )
    logger.info("loaded %d GTSRB signs (%s) from %s", len(signs), "+".join(chosen), path)
    return signs


@dataclass(frozen=True, slots=True)
class _GtsrbRow:
    """One checked GTSRB CSV row: image path, declared size, half-open ROI, label."""

    image: Path
    width: int
    height: int
    box: tuple[int, int, int, int]
    label: int
    where: str


def _scale_box(box: tuple[int, int, int, int], sx: float, sy: float) -> tuple[int, int, int, int]:
    """Scale a half-open box by ``(sx, sy)``, rounding half up and keeping >= 1 px."""
    x1, y1, x2, y2 = (
        math.floor(box[0] * sx + 0.5),
        math.floor(box[1] * sy + 0.5),
        math.floor(box[2] * sx + 0.5),
        math.floor(box[3] * sy + 0.5),
    )
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def _gtsrb_rows(csv_path: Path, image_dir: Path) -> list[_GtsrbRow]:
    rows = _read_table(csv_path, delimiter=";", required=GTSRB_COLUMNS, expected=_GTSRB_HEADER)
    out: list[_GtsrbRow] = []
    for line, row in rows:
        name = row["Filename"]
        where = f"{csv_path} line {line} ({name})"
        image = resolve_inside(image_dir, name, where)
        width, height, x1, y1, x2, y2, label = (_int(row[c], c, where) for c in GTSRB_COLUMNS[1:])
        if width < 1 or height < 1:
            raise LeafattackError(
                f"{where}: Width x Height = {width}x{height} (expected positive sizes)"
            )
        if not 0 <= label < len(GTSRB_CLASSES):
            raise LeafattackError(
                f"{where}: ClassId = {label} (expected 0..{len(GTSRB_CLASSES) - 1})"
            )
        _check_box((x1, y1, x2, y2), width, height, "Roi.X1, Roi.Y1, Roi.X2, Roi.Y2", where)
        out.append(_GtsrbRow(image, width, height, (x1, y1, x2, y2), label, where))
    return out


def _gtsrb_train_rows(train_dir: Path) -> list[_GtsrbRow]:
    images = train_dir / "Images"
    if not images.is_dir():
        raise LeafattackError(
            f"{images}: folder not found (expected Final_Training/Images/000NN/GT-000NN.csv)"
        )
    class_dirs = sorted(
        (d for d in images.iterdir() if d.is_dir() and _GTSRB_CLASS_DIR.match(d.name)),
        key=lambda d: d.name,
    )
    if not class_dirs:
        raise LeafattackError(
            f"{images}: no class folders 000NN (expected Final_Training/Images/000NN/GT-000NN.csv)"
        )
    out: list[_GtsrbRow] = []
    for class_dir in class_dirs:
        folder_id = int(class_dir.name)
        rows = _gtsrb_rows(class_dir / f"GT-{class_dir.name}.csv", class_dir)
        for row in rows:
            if row.label != folder_id:
                raise LeafattackError(
                    f"{row.where}: ClassId = {row.label} in class folder {class_dir.name} "
                    f"(expected {folder_id})"
                )
        out.extend(rows)
    return out


def _gtsrb_test_rows(test_dir: Path) -> list[_GtsrbRow]:
    images = test_dir / "Images"
    if not images.is_dir():
        raise LeafattackError(f"{images}: folder not found (expected Final_Test/Images/*.ppm)")
    for cand in (images, test_dir, test_dir.parent):
        if (cand / "GT-final_test.csv").is_file():
            return _gtsrb_rows(cand / "GT-final_test.csv", images)
    hint = ""
    if (images / "GT-final_test.test.csv").is_file():
        hint = " (GT-final_test.test.csv has no ClassId)"
    raise LeafattackError(
        f"{test_dir}: GT-final_test.csv not found{hint} (expected the ground-truth file "
        f"with {_GTSRB_HEADER} in Final_Test/Images/ or Final_Test/)"
    )


def _select_per_class(rows: list[_GtsrbRow], k: int | None) -> list[_GtsrbRow]:
    """Keep at most ``k`` rows per label, spread evenly, preserving the row order."""
    if k is None:
        return rows
    by_label: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        by_label.setdefault(row.label, []).append(i)
    keep: set[int] = set()
    for idx in by_label.values():
        keep.update(idx[j] for j in _pick(len(idx), k))
    return [row for i, row in enumerate(rows) if i in keep]


_LISA_HEADER = ";".join(LISA_COLUMNS) + ";..."


def load_lisa(root: str | os.PathLike[str], *, annotations: str = "allAnnotations.csv") -> SignSet:
    """Load LISA traffic signs, each cropped to its annotated box.

    ``root/annotations`` is LISA's ``;``-separated annotation table with (at least) the
    columns ``Filename;Annotation tag;Upper left corner X;Upper left corner Y;Lower right
    corner X;Lower right corner Y``. ``Filename`` is relative to the table's folder and
    must stay inside ``root``. Rows whose tag is not one of :data:`LISA_CLASSES` are
    skipped (counted per tag in a ``logging.info``). A box is half-open: the crop is
    ``image[y1:y2, x1:x2]``, shape ``(y2 - y1, x2 - x1, 3)``, and must lie inside the
    image (``0 <= x1 < x2 <= W``, ``0 <= y1 < y2 <= H``).

    Returns:
        SignSet with uint8 (h, w, 3) RGB crops in table order, int64 labels indexing
        ``class_names = LISA_CLASSES``, ``files`` = ``"<image path relative to
        root>#x1,y1,x2,y2"`` (a scene may hold several signs), no masks.

    Raises:
        LeafattackError: missing table or columns, bad cell, box outside the image,
        unreadable image, or no row with a known tag.
    """
    path = _root_dir(root, "a LISA folder with allAnnotations.csv")
    table = resolve_inside(path, annotations, f"{path}: annotations")
    rows = _read_table(table, delimiter=";", required=LISA_COLUMNS, expected=_LISA_HEADER)
    index = {name: i for i, name in enumerate(LISA_CLASSES)}
    skipped: Counter[str] = Counter()
    images: list[np.ndarray] = []
    labels: list[int] = []
    files: list[str] = []
    cache: tuple[Path, np.ndarray] | None = None
    for line, row in rows:
        tag = row["Annotation tag"]
        if tag not in index:
            skipped[tag] += 1
            continue
        where = f"{table} line {line} ({row['Filename']})"
        file = resolve_inside(table.parent, row["Filename"], where)
        if not file.resolve().is_relative_to(path.resolve()):
            raise LeafattackError(
                f"{where}: path resolves outside {path} (expected a path inside the dataset folder)"
            )
        box = (
            _int(row["Upper left corner X"], "Upper left corner X", where),
            _int(row["Upper left corner Y"], "Upper left corner Y", where),
            _int(row["Lower right corner X"], "Lower right corner X", where),
            _int(row["Lower right corner Y"], "Lower right corner Y", where),
        )
        if cache is None or cache[0] != file:
            cache = (file, read_rgb(file))
        image = cache[1]
        _check_box(box, image.shape[1], image.shape[0], "(upper left, lower right)", where)
        images.append(_crop(image, box))
        labels.append(index[tag])
        files.append(f"{_rel(file, path)}#{box[0]},{box[1]},{box[2]},{box[3]}")
    if skipped:
        logger.info(
            "%s: skipped %d annotation(s) with tags outside LISA_CLASSES: %s",
            table,
            sum(skipped.values()),
            ", ".join(f"{tag} x{n}" for tag, n in sorted(skipped.items())),
        )
    if not images:
        raise LeafattackError(
            f"{table}: no annotation with a known tag (expected tags among "
            f"{short_list(LISA_CLASSES)})"
        )
    signs = _make_set(images, labels, LISA_CLASSES, files, f"lisa:{path}")
    logger.info("loaded %d LISA signs from %s", len(signs), table)
    return signs


def load_builtin(size: int | None = None) -> SignSet:
    """The 16 rendered LISA-class signs with their masks.

    Reads the repository's committed ``signs/`` folder (``manifest.csv`` with columns
    ``file,mask,label,name``; 0/255 PNG masks). When that folder is missing (an
    installed wheel) or ``size`` differs from the stored images, the signs are
    rendered with ``leafattack.data.builtin.render_sign_set(size or 128)``.

    Args:
        size: side length in pixels of the square sign images, or None for the stored
            ones.

    Returns:
        SignSet of 16 uint8 (size, size, 3) images, labels indexing ``LISA_CLASSES``,
        bool masks, ``source = "builtin"``.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise LeafattackError(f"builtin sign size = {size!r} (expected an integer >= 1)")
    if (_BUILTIN_DIR / MANIFEST_NAME).is_file():
        signs = load_folder(_BUILTIN_DIR, class_names=LISA_CLASSES)
        if size is None or all(img.shape[:2] == (size, size) for img in signs.images):
            return replace(signs, source="builtin")
    from leafattack.data.builtin import render_sign_set

    rendered = render_sign_set(size or _BUILTIN_SIZE)
    if not isinstance(rendered, SignSet):
        raise TypeError(f"render_sign_set returned {type(rendered).__name__}, expected SignSet")
    return replace(rendered, source="builtin")


SIGN_LOADERS: dict[str, Callable[..., SignSet]] = {
    "folder": load_folder,
    "gtsrb": load_gtsrb,
    "lisa": load_lisa,
}
"""Loaders selected by a ``prefix:PATH`` sign source spec."""


def load_signs(spec: str, **kwargs: Any) -> SignSet:
    """Load signs from a sign source spec.

    Specs: ``builtin`` (:func:`load_builtin`), ``PATH`` or ``folder:PATH``
    (:func:`load_folder`), ``gtsrb:PATH`` (:func:`load_gtsrb`), ``lisa:PATH``
    (:func:`load_lisa`). A one-letter prefix (``C:\\signs``) and an existing path
    that contains ``:`` are read as plain paths. ``kwargs`` go to the loader.

    Returns:
        The loader's SignSet with ``source = spec``.

    Raises:
        LeafattackError: unknown prefix, missing PATH, or whatever the loader raises
        (missing or empty folder, bad table, unreadable image, ...).
    """
    text = str(spec)
    if text == "builtin":
        signs = load_builtin(**kwargs)
    else:
        prefix, sep, rest = text.partition(":")
        if sep and prefix in SIGN_LOADERS:
            if not rest:
                raise LeafattackError(
                    f"sign source {text!r}: missing PATH (expected {prefix}:PATH)"
                )
            signs = SIGN_LOADERS[prefix](rest, **kwargs)
        elif sep and not (len(prefix) == 1 and prefix.isalpha()) and not Path(text).exists():
            raise LeafattackError(
                f"unknown sign source prefix {prefix!r} "
                "(expected builtin, PATH, gtsrb:PATH or lisa:PATH)"
            )
        else:
            signs = load_folder(text, **kwargs)
    return replace(signs, source=text)
