"""Expectation over Transformation (EOT) for the adaptive search: each query is judged
under M sampled viewing transforms instead of the single head-on view.

Choosing the views (:func:`draw_eot_views`) is separate from applying them
(:func:`see_eot`). Within one round of the search every candidate of a sign is seen under
the *same* M views (parameters and sensor-noise fields), drawn from
``np.random.default_rng([seed, EOT_STREAM, sign_id, step])`` where ``step`` is the number of
queries the sign had used before the round; so candidates compare fairly, and a search
resumed by replaying ``queries.csv`` draws exactly the views of an uninterrupted one.

Aggregation over the M views of a query (:func:`eot_judge`):

* ``loss``: the mean of the M margin losses;
* ``pred_label``: the arg-max of the mean class probabilities, ``pred_conf`` and
  ``true_conf`` the mean probabilities of that class and of the true class;
* ``success``: the run's criterion holds under a strict majority of the M views (more than
  ``M / 2``).

Means are taken in float64, so M identical views give back the single view's values
exactly: EOT over identity views is the plain search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from leafattack.adaptive.loss import margin_loss
from leafattack.compose.views import ViewSpec, apply_views, sample_views
from leafattack.criteria import Criterion

EOT_STREAM = 8102
"""Seed stream (with the search seed, the sign and the step) of the EOT views."""


def parse_view_spec(text: str | None) -> ViewSpec:
    """``None`` or ``"approach"`` -> :meth:`ViewSpec.approach`, ``"identity"`` -> the
    identity spec, else :meth:`ViewSpec.parse` (one-line LeafattackError when invalid).

    Example:
        >>> parse_view_spec("identity").is_identity
        True
    """
    if text is None or text.strip() == "approach":
        return ViewSpec.approach()
    if text.strip() == "identity":
        return ViewSpec()
    return ViewSpec.parse(text)


@dataclass(frozen=True, slots=True)
class EotViews:
    """The M views of R (sign, step) groups.

    Attributes:
        params: ``{name: float64 (R, M)}`` every view parameter (int64 for ``jpeg``).
        noise: float32 (R, M, 3, H, W) standard-normal sensor-noise fields, scaled by the
            ``noise`` parameter when applied; None when the spec has no noise.
    """

    params: dict[str, np.ndarray]
    noise: torch.Tensor | None

    def __post_init__(self) -> None:
        shapes = {v.shape for v in self.params.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"EotViews.params must share one (R, M) shape, got {shapes}")
        if self.noise is not None and tuple(self.noise.shape[:2]) != next(iter(shapes)):
            raise ValueError("EotViews.noise must be (R, M, 3, H, W) like params")

    @property
    def m(self) -> int:
        """Views per query."""
        return int(next(iter(self.params.values())).shape[1])


def draw_eot_views(
    spec: ViewSpec,
    m: int,
    seed: int,
    keys: list[tuple[int, int]],
    image_shape: tuple[int, int, int],
    device: torch.device | str = "cpu",
) -> EotViews:
    """Draw M views per ``(sign_id, step)`` key (see the module docstring for the seeds).

    Args:
        m: views per query (>= 1).
        keys: R pairs ``(sign_id, step)``.
        image_shape: ``(3, H, W)`` of the images the views will see (for the noise).

    Returns:
        EotViews with (R, M) parameters, and (R, M, 3, H, W) noise when ``spec`` has any.
    """
    per_key = [
        sample_views(spec, m, np.random.default_rng([seed, EOT_STREAM, s, step]))
        for s, step in keys
    ]
    params = {name: np.stack([p[name] for p in per_key]) for name in spec.ranges()}
    noise = None
    if spec.noise[1] > 0:
        fields = []
        for s, step in keys:
            gen = torch.Generator(device=device)
            state = np.random.SeedSequence([seed, EOT_STREAM, s, step, 1]).generate_state(1)
            gen.manual_seed(int(state[0]))
            fields.append(
                torch.randn((m, *image_shape), generator=gen, dtype=torch.float32, device=device)
            )
        noise = torch.stack(fields)
    return EotViews(params, noise)


def see_eot(images: torch.Tensor, group: np.ndarray, views: EotViews) -> torch.Tensor:
    """Every image under the M views of its group, candidate-major.

    Shape:
        images: float32 (B, 3, H, W) in [0, 1]; group: int64 (B,) indices into the R
        groups of ``views``. Returns float32 (B * M, 3, H, W) in [0, 1]: row
        ``i * M + j`` is image i under view j.
    """
    m = views.m
    b = images.shape[0]
    g = np.repeat(np.asarray(group, dtype=np.int64), m)
    v = np.tile(np.arange(m, dtype=np.int64), b)
    picked = {name: arr[g, v] for name, arr in views.params.items()}
    seen = images.repeat_interleave(m, dim=0)
    if not images.is_contiguous() and images.is_contiguous(memory_format=torch.channels_last):
        # keep the renderer's memory layout: a model's reductions may depend on it, and
        # identity views must give back the plain search's logits bit for bit
        seen = seen.contiguous(memory_format=torch.channels_last)
    geometry = {k: a for k, a in picked.items() if k not in ("noise", "jpeg")}
    seen = apply_views(seen, geometry, seed=0)  # no noise drawn: its parameter is absent
    if views.noise is not None:
        sigma = torch.as_tensor(picked["noise"], dtype=torch.float32, device=seen.device)
        z = views.noise.to(seen.device)[torch.from_numpy(g), torch.from_numpy(v)]
        seen = (seen + sigma.view(-1, 1, 1, 1) * z).clamp_(0.0, 1.0)
    if "jpeg" in picked and picked["jpeg"].any():
        seen = apply_views(seen, {"jpeg": picked["jpeg"]}, seed=0)
    return seen


def eot_judge(
    logits: torch.Tensor,
    labels: torch.Tensor,
    m: int,
    target: int | None,
    criterion: Criterion,
) -> dict[str, torch.Tensor]:
    """Aggregate the logits of B queries under M views each (module docstring).

    Shape:
        logits: float32 (B * M, C), candidate-major as from :func:`see_eot`; labels:
        int64 (B,). Returns ``loss`` float32 (B,), ``pred_label`` int64 (B,),
        ``pred_conf`` and ``true_conf`` float64 (B,) in [0, 1], ``success`` bool (B,).
    """
    b = labels.shape[0]
    rep = labels.repeat_interleave(m)
    loss = margin_loss(logits, rep, target).double().view(b, m).mean(1).float()
    probs = torch.softmax(logits.float(), dim=1)
    ok = criterion(probs, rep).view(b, m).sum(1) * 2 > m
    mean = probs.double().view(b, m, -1).mean(1)
    pred = mean.argmax(1)
    return {
        "loss": loss,
        "pred_label": pred,
        "pred_conf": mean.gather(1, pred[:, None])[:, 0],
        "true_conf": mean.gather(1, labels[:, None])[:, 0],
        "success": ok,
    }
