"""The attack loss: a margin on the model's logits (lower is a stronger attack).

* untargeted: ``logit[true] - max_{j != true} logit[j]``; below zero the prediction is no
  longer the true class.
* targeted: ``max_{j != target} logit[j] - logit[target]``; below zero the prediction is the
  target class.

Success is not the sign of the loss but the run's criterion
(:func:`leafattack.criteria.build_criterion`), so ``--min-confidence`` applies exactly as
in ``leafattack run``.
"""

from __future__ import annotations

import torch


def margin_loss(logits: torch.Tensor, labels: torch.Tensor, target: int | None) -> torch.Tensor:
    """Margin loss per scene.

    Args:
        logits: float32 (N, C) raw model outputs.
        labels: int64 (N,) true class index of each scene's sign.
        target: target class index for a targeted attack, or None.

    Returns:
        float32 (N,); negative where the top-1 class is no longer the true class
        (untargeted) or is the target class (targeted).

    Example:
        >>> margin_loss(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([0]), None)
        tensor([1.])
    """
    logits = logits.float()
    n = logits.shape[0]
    rows = torch.arange(n, device=logits.device)
    key = labels if target is None else torch.full_like(labels, target)
    own = logits[rows, key]
    others = logits.clone()
    others[rows, key] = float("-inf")
    best_other = others.max(dim=1).values
    return own - best_other if target is None else best_other - own
