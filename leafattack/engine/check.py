"""``leafattack check-model``: load a model, state its contract, test it on signs.

Two checks:

* **Accuracy** on a sign set, each sign squared to ``sign_size`` pixels as a run does
  (:func:`~leafattack.data.canvas.square_canvas`), signs of classes the model does not
  know left out (classes are matched by name).
* **Batch-size independence**: the logits of up to ``n_probe`` signs computed as one
  batch, one image at a time, and as a shuffled batch (seeded) must agree within
  ``atol + rtol * max|logit|``. A model whose outputs change with the batch's
  composition (batch norm in training mode, normalisation over the batch, ...) gives
  results that depend on the batch size of a run, and is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from leafattack.data.canvas import square_canvas
from leafattack.data.signset import SignSet
from leafattack.errors import LeafattackError
from leafattack.models.classifier import Classifier
from leafattack.models.contract import describe_model


@dataclass(frozen=True, slots=True)
class ModelCheck:
    """Outcome of :func:`check_model`.

    Attributes:
        n_signs: signs of classes the model knows (scored).
        n_correct: of those, classified correctly.
        n_skipped: signs of classes the model does not know.
        n_probe: signs used for the batch-independence check.
        max_diff_single: max |logit difference| between the batch and one at a time.
        max_diff_shuffled: max |logit difference| between the batch and a shuffled batch.
        tolerance: the allowed difference (``atol + rtol * max|logit|``).
    """

    n_signs: int
    n_correct: int
    n_skipped: int
    n_probe: int
    max_diff_single: float
    max_diff_shuffled: float
    tolerance: float

    @property
    def accuracy(self) -> float:
        """Share of scored signs classified correctly (NaN when none is scored)."""
        return self.n_correct / self.n_signs if self.n_signs else float("nan")

    @property
    def batch_independent(self) -> bool:
        """Whether both differences lie within the tolerance."""
        return max(self.max_diff_single, self.max_diff_shuffled) <= self.tolerance


def square_signs(signs: SignSet, size: int) -> torch.Tensor:
    """Every sign padded to a square and resized to ``size`` (as a run prepares them).

    Returns:
        uint8 (N, 3, size, size) RGB tensor.
    """
    out = np.stack([square_canvas(img, None, size)[0] for img in signs.images])
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))


def check_model(
    clf: Classifier,
    signs: SignSet,
    *,
    sign_size: int = 128,
    batch_size: int = 256,
    n_probe: int = 32,
    seed: int = 0,
    atol: float = 1e-3,
    rtol: float = 1e-3,
) -> ModelCheck:
    """Accuracy on ``signs`` and batch-size independence of ``clf`` (module docstring).

    Args:
        clf: the loaded model.
        signs: the signs to classify.
        sign_size: side the signs are squared to before the model's own resize.
        batch_size: signs per batch for the accuracy.
        n_probe: signs (the first of each class in turn, then the rest) for the
            batch-independence check; at least 2 are needed.
        seed: seed of the shuffled batch.
        atol, rtol: the tolerance, ``atol + rtol * max|logit|``.
    """
    if len(signs) == 0:
        raise LeafattackError("check-model: the sign set is empty (expected signs)")
    index = {n: i for i, n in enumerate(clf.class_names)}
    target = np.array([index.get(signs.class_names[int(lb)], -1) for lb in signs.labels])
    known = np.flatnonzero(target >= 0)
    if len(known) == 0:
        raise LeafattackError(
            f"check-model: no sign class is a class of the model (model knows "
            f"{', '.join(clf.class_names[:8])}{', ...' if clf.num_classes > 8 else ''}; "
            f"signs are {', '.join(signs.class_names[:8])}"
            f"{', ...' if len(signs.class_names) > 8 else ''})"
        )
    images = square_signs(signs, sign_size)
    correct = 0
    for start in range(0, len(known), batch_size):
        idx = known[start : start + batch_size]
        pred = clf.logits(images[idx]).argmax(dim=1).cpu().numpy()
        correct += int((pred == target[idx]).sum())
    # probe: classes interleaved, so a small probe spans many classes
    labels = signs.labels[known]
    rank = np.zeros(len(known), dtype=np.int64)
    for c in np.unique(labels):
        sel = np.flatnonzero(labels == c)
        rank[sel] = np.arange(len(sel))
    probe = known[np.lexsort((labels, rank))][: max(2, n_probe)]
    x = images[probe]
    batch = clf.logits(x).cpu()
    single = torch.cat([clf.logits(x[i : i + 1]).cpu() for i in range(len(x))])
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    shuffled = torch.empty_like(batch)
    shuffled[perm] = clf.logits(x[perm]).cpu()
    tol = atol + rtol * float(batch.abs().max())
    return ModelCheck(
        n_signs=len(known),
        n_correct=correct,
        n_skipped=len(signs) - len(known),
        n_probe=len(probe),
        max_diff_single=float((batch - single).abs().max()),
        max_diff_shuffled=float((batch - shuffled).abs().max()),
        tolerance=tol,
    )


def format_model_check(
    spec: str, clf: Classifier, signs: SignSet, res: ModelCheck, sign_size: int = 128
) -> str:
    """The report ``leafattack check-model`` prints: contract, classes, both checks."""
    lines = [
        f"model: {spec} (arch {clf.arch}, fingerprint {clf.fingerprint})",
        describe_model(clf),
        "",
        f"accuracy: {res.n_correct}/{res.n_signs} ({res.accuracy:.1%}) on the signs of "
        f"{signs.source or 'the sign set'} as given, squared to {sign_size} px"
        + (
            f"; {res.n_skipped} signs of classes the model does not know left out"
            if res.n_skipped
            else ""
        ),
        f"batch-size independence on {res.n_probe} signs: max |logit difference| "
        f"{res.max_diff_single:.2g} (one at a time), {res.max_diff_shuffled:.2g} (shuffled), "
        f"tolerance {res.tolerance:.2g}: " + ("ok" if res.batch_independent else "FLAGGED"),
    ]
    if not res.batch_independent:
        lines.append(
            "  the outputs change with the batch's composition (batch norm or dropout in "
            "training mode, normalisation over the batch, ...): results would depend on "
            "--batch-size; put the model in eval mode or fix it before attacking it"
        )
    return "\n".join(lines)
