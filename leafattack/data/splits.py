"""Training splits: which sign images a checkpoint was trained on, and choosing by split.

A checkpoint written by ``leafattack train`` records its :class:`TrainingSplit`: the sign
source spec it was trained on, the training images' identifiers inside that source
(``SignSet.files``) and their content hashes (:func:`image_hash`). A sign of any set is
*in the training split* when its image has one of those hashes: the match follows the
pixels, not the path, so the same photo loaded through another spec or folder is still
recognised, and a fresh render (another variant seed) is not.

Example:
    >>> from leafattack.data.sources import load_signs
    >>> signs = load_signs("builtin")
    >>> split = training_split(signs, range(len(signs)), note="the built-in renders")
    >>> int(in_training(signs, split).sum())
    16
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from leafattack.data.signset import SignSet
from leafattack.errors import LeafattackError

SPLITS: tuple[str, ...] = ("all", "train", "heldout")
"""Values of ``--split``: every sign, only those in the model's training split, or only
those outside it."""

SPLIT_KEY = "split"
"""Key of the training split in a checkpoint (a JSON text, see :meth:`TrainingSplit.to_json`)."""

BUILTIN_VARIATIONS_NOTE = "variations of the built-in renders (leafattack.data.variations)"
"""Note of a split trained on the 16 built-in renders, as the shipped default model was."""


def image_hash(image: np.ndarray) -> str:
    """Content hash of one sign image: the first 16 hex digits of a SHA-256 over its shape
    (int64, little-endian) and its uint8 bytes.

    Shape:
        image: uint8 (H, W, 3) RGB, 0..255.
    """
    arr = np.ascontiguousarray(image, dtype=np.uint8)
    h = hashlib.sha256()
    h.update(np.asarray(arr.shape, dtype="<i8").tobytes())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TrainingSplit:
    """The images a model was trained on.

    Attributes:
        source: the sign source spec of the training set (``builtin``, ``gtsrb:PATH``, ...).
        files: identifiers of the training images inside that source (sorted, unique).
        hashes: :func:`image_hash` of every training image (sorted, unique).
        n_source: how many images the source held (training plus validation).
        note: a phrase saying what the training saw, e.g. :data:`BUILTIN_VARIATIONS_NOTE`.
    """

    source: str
    files: tuple[str, ...]
    hashes: tuple[str, ...]
    n_source: int = 0
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise ValueError(f"TrainingSplit.source={self.source!r}: expected a spec string")
        hexdigits = set("0123456789abcdef")
        for h in self.hashes:
            if not (isinstance(h, str) and len(h) == 16 and set(h) <= hexdigits):
                raise ValueError(f"TrainingSplit hash {h!r}: expected 16 lowercase hex digits")
        if isinstance(self.n_source, bool) or self.n_source < 0:
            raise ValueError(f"TrainingSplit.n_source={self.n_source!r}: expected a count >= 0")

    def to_json(self) -> str:
        """The split as a JSON text with sorted keys (what a checkpoint stores)."""
        return json.dumps(
            {
                "source": self.source,
                "files": list(self.files),
                "hashes": list(self.hashes),
                "n_source": self.n_source,
                "note": self.note,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> TrainingSplit:
        """Parse :meth:`to_json`'s text; ValueError on anything else."""
        try:
            doc = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"training split is not JSON ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("hashes"), list):
            raise ValueError("training split: expected an object with a list of hashes")
        return cls(
            source=str(doc.get("source", "")),
            files=tuple(str(f) for f in doc.get("files", [])),
            hashes=tuple(str(h) for h in doc["hashes"]),
            n_source=int(doc.get("n_source", 0)),
            note=str(doc.get("note", "")),
        )

    def describe(self) -> str:
        """One phrase: ``1,700 of 2,000 images of gtsrb:/data`` (plus the note)."""
        of = f" of {self.n_source:,}" if self.n_source else ""
        text = f"{len(self.hashes):,}{of} images of {self.source or 'an unnamed source'}"
        return f"{text}, {self.note}" if self.note else text


def training_split(
    signs: SignSet, indices: Iterable[int], *, note: str = ""
) -> TrainingSplit:
    """The split made of ``signs`` at ``indices`` (the images a model is trained on)."""
    idx = sorted({int(i) for i in indices})
    return TrainingSplit(
        source=signs.source,
        files=tuple(sorted({signs.files[i] for i in idx})),
        hashes=tuple(sorted({image_hash(signs.images[i]) for i in idx})),
        n_source=len(signs),
        note=note,
    )


def split_from_metadata(meta: Mapping[str, Any], where: str = "model") -> TrainingSplit | None:
    """The training split a checkpoint's metadata records, or None when it has none (older
    checkpoints, TorchScript files, factories).

    Raises:
        LeafattackError: a split entry that cannot be read.
    """
    raw = meta.get(SPLIT_KEY)
    if raw is None or raw == "":
        return None
    try:
        return TrainingSplit.from_json(raw) if isinstance(raw, str) else TrainingSplit.from_json(
            json.dumps(raw)
        )
    except (TypeError, ValueError) as exc:
        raise LeafattackError(f"{where}: unreadable training split ({exc})") from None


def in_training(signs: SignSet, split: TrainingSplit) -> np.ndarray:
    """Which images of ``signs`` are in ``split``, by content hash.

    Returns:
        bool (N,).
    """
    known = set(split.hashes)
    return np.array([image_hash(img) in known for img in signs.images], dtype=bool)


def check_split_name(which: str) -> str:
    """``which`` if it is one of :data:`SPLITS`; LeafattackError otherwise."""
    if which not in SPLITS:
        raise LeafattackError(f"split {which!r}: expected one of {', '.join(SPLITS)}")
    return which


def split_indices(
    signs: SignSet, split: TrainingSplit | None, which: str, model: str = "model"
) -> np.ndarray:
    """Indices of the signs of ``signs`` that ``which`` selects.

    ``all`` selects every sign (whatever the model records); ``train`` and ``heldout``
    need a recorded ``split`` and select the signs inside it or outside it.

    Returns:
        int64 (K,) sorted indices into ``signs``.

    Raises:
        LeafattackError: an unknown ``which``, ``train``/``heldout`` against a model
            without a recorded split, or a split that selects no sign.
    """
    check_split_name(which)
    if which == "all":
        return np.arange(len(signs), dtype=np.int64)
    if split is None:
        raise LeafattackError(
            f"--split {which}: {model} records no training split (expected a checkpoint "
            f"written by 'leafattack train'; use --split all)"
        )
    inside = in_training(signs, split)
    chosen = np.flatnonzero(inside if which == "train" else ~inside).astype(np.int64)
    if chosen.size == 0:
        hint = (
            "; attack fresh renders instead: leafattack signs render --variant-seed 1 "
            "--out DIR, then --signs DIR"
            if which == "heldout"
            else ""
        )
        raise LeafattackError(
            f"--split {which}: none of the {len(signs)} signs of {signs.source or 'the source'} "
            f"is {'in' if which == 'train' else 'outside'} the training split of {model} "
            f"({split.describe()}){hint}"
        )
    return chosen
