"""Sign datasets: one :class:`SignSet` type for every source.

A *sign source spec* picks the loader:

==================  ==========================================================
``builtin``         the 16 rendered LISA-class signs shipped in ``signs/``
``PATH``            a folder ``PATH/<class_name>/*.png|jpg|ppm`` or ``PATH/manifest.csv``
``gtsrb:PATH``      the official GTSRB layout (``Final_Training`` / ``Final_Test``)
``lisa:PATH``       LISA ``allAnnotations.csv`` (file, tag, box), cropped to the box
==================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
