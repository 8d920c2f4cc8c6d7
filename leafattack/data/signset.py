"""The sign set type and the class-name tables of GTSRB and LISA."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from leafattack.errors import LeafattackError

GTSRB_CLASSES: tuple[str, ...] = (
    "Speed limit (20km/h)",
    "Speed limit (30km/h)",
    "Speed limit (50km/h)",
    "Speed limit (60km/h)",
    "Speed limit (70km/h)",
    "Speed limit (80km/h)",
    "End of speed limit (80km/h)",
    "Speed limit (100km/h)",
    "Speed limit (120km/h)",
    "No passing",
    "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection",
    "Priority road",
    "Yield",
    "Stop",
    "No vehicles",
    "Vehicles over 3.5 metric tons prohibited",
    "No entry",
    "General caution",
    "Dangerous curve to the left",
    "Dangerous curve to the right",
    "Double curve",
    "Bumpy road",
    "Slippery road",
    "Road narrows on the right",
    "Road work",
    "Traffic signals",
    "Pedestrians",
    "Children crossing",
    "Bicycles crossing",
    "Beware of ice/snow",
    "Wild animals crossing",
    "End of all speed and passing limits",
    "Turn right ahead",
    "Turn left ahead",
    "Ahead only",
    "Go straight or right",
    "Go straight or left",
    "Keep right",
    "Keep left",
    "Roundabout mandatory",
    "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)
"""The 43 GTSRB class names; index = ``ClassId``."""


LISA_CLASSES: tuple[str, ...] = (
    "addedLane",
    "keepRight",
    "laneEnds",
    "merge",
    "pedestrianCrossing",
    "school",
    "schoolSpeedLimit25",
    "signalAhead",
    "speedLimit25",
    "speedLimit30",
    "speedLimit35",
    "speedLimit45",
    "stop",
    "stopAhead",
    "turnRight",
    "yield",
)
"""The 16 LISA sign classes leafattack uses (LISA annotation tags); index = label.

This tuple is the single definition; :mod:`leafattack.data.builtin` imports it.
"""


@dataclass(frozen=True, slots=True)
class SignSet:
    """A labelled set of sign images.

    Attributes:
        images: one uint8 array (H, W, 3) RGB per sign; sizes may differ.
        labels: int64 array (N,), indices into ``class_names``.
        class_names: the names of all classes of the set (index = label).
        files: one identifier per image (relative path inside the source).
        masks: optional bool arrays (H, W), True on the face of the sign.
        source: the spec string the set was loaded from.
    """

    images: tuple[np.ndarray, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    masks: tuple[np.ndarray, ...] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.images)
        labels = np.asarray(self.labels)
        if labels.shape != (n,):
            raise ValueError(f"SignSet.labels has shape {labels.shape}, expected ({n},)")
        if len(self.files) != n:
            raise ValueError(f"SignSet.files has {len(self.files)} entries, expected {n}")
        if n and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(
                f"SignSet.labels must lie in 0..{len(self.class_names) - 1}, "
                f"got {labels.min()}..{labels.max()}"
            )
        for i, img in enumerate(self.images):
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(
                    f"SignSet image {self.files[i]!r} has dtype {img.dtype} and shape "
                    f"{img.shape}, expected uint8 (H, W, 3)"
                )
        if self.masks is not None:
            if len(self.masks) != n:
                raise ValueError(f"SignSet.masks has {len(self.masks)} entries, expected {n}")
            for i, (img, m) in enumerate(zip(self.images, self.masks, strict=True)):
                if m.dtype != bool or m.shape != img.shape[:2]:
                    raise ValueError(
                        f"SignSet mask of {self.files[i]!r} has dtype {m.dtype} and shape "
                        f"{m.shape}, expected bool {img.shape[:2]}"
                    )

    def __len__(self) -> int:
        return len(self.images)

    def mask(self, i: int) -> np.ndarray:
        """The bool (H, W) sign mask of image ``i``; the whole image when the set has no masks."""
        if self.masks is not None:
            return self.masks[i]
        return np.ones(self.images[i].shape[:2], dtype=bool)


def present_classes(signs: SignSet) -> list[str]:
    """Names of the classes that occur in ``signs.labels``, in label order."""
    labels = np.unique(np.asarray(signs.labels, dtype=np.int64))
    return [signs.class_names[int(i)] for i in labels]


def short_list(names: Sequence[str], limit: int = 8) -> str:
    """``a, b, c, ... (43 in all)`` for error messages."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


def subset(signs: SignSet, indices: Sequence[int] | np.ndarray) -> SignSet:
    """The signs at ``indices`` (in that order, repeats allowed), same class names and source.

    Raises:
        LeafattackError: an index outside ``0..len(signs) - 1`` or a non-integer index.
    """
    idx = np.asarray(indices)
    if idx.size == 0:
        idx = idx.astype(np.int64)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise LeafattackError(
            f"subset indices have dtype {idx.dtype} and shape {idx.shape} "
            "(expected a 1-D sequence of integers)"
        )
    n = len(signs)
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise LeafattackError(
            f"subset index {int(bad[0])} out of range for a set of {n} signs (expected 0..{n - 1})"
        )
    picked = [int(i) for i in idx]
    return SignSet(
        images=tuple(signs.images[i] for i in picked),
        labels=np.asarray(signs.labels, dtype=np.int64)[idx].reshape(len(picked)),
        class_names=signs.class_names,
        files=tuple(signs.files[i] for i in picked),
        masks=None if signs.masks is None else tuple(signs.masks[i] for i in picked),
        source=signs.source,
    )


def fingerprint(signs: SignSet) -> str:
    """Identify the data of a sign set: the first 16 hex digits of a SHA-256.

    Covers, in order and length-prefixed: class names, labels (int64), files, each
    image's shape and bytes, and the masks (or their absence). ``source`` is left out,
    so the same data loaded through different specs gets the same fingerprint.

    Returns:
        16 lowercase hex characters, e.g. ``"3f2a9c0d41b7e865"``.
    """
    digest = hashlib.sha256()

    def put(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    put(b"leafattack.SignSet/1")
    put(len(signs.class_names).to_bytes(8, "little"))
    for name in signs.class_names:
        put(name.encode("utf-8"))
    put(np.ascontiguousarray(signs.labels, dtype="<i8").tobytes())
    for file in signs.files:
        put(file.encode("utf-8"))
    for image in signs.images:
        put(np.asarray(image.shape, dtype="<i8").tobytes())
        put(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    if signs.masks is None:
        put(b"no masks")
    else:
        put(b"masks")
        for mask in signs.masks:
            put(np.asarray(mask.shape, dtype="<i8").tobytes())
            put(np.packbits(np.ascontiguousarray(mask, dtype=bool)).tobytes())
    return digest.hexdigest()[:16]
