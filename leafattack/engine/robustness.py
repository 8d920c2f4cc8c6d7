"""Do found attacks last? Survival of a run's successful scenes under viewing changes, and
their transfer to other models.

* :func:`attack_scenes` - the scenes to re-evaluate: each sign's best scene when it
  succeeded, or every successful scene.
* :func:`scene_images` - their composites (and the clean signs), float on the device.
* :func:`survival_rows` - every scene under N seeded views: ``robustness.csv`` rows.
* :func:`transfer_rows` - every scene on another model: ``transfer.csv`` rows.

Everything runs in batches on tensors; randomness comes from the seed only (views are
drawn with ``np.random.default_rng([seed, VIEW_STREAM])``, the sensor noise of batch ``b``
with seed ``(seed, b)``), so the same inputs give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from leafattack.compose.views import ViewSpec, apply_views, sample_views
from leafattack.criteria import build_criterion
from leafattack.engine.evaluate import (
    classify,
    composite_scenes,
    composite_trials,
    decode_trial_ids,
)
from leafattack.engine.preparation import Prepared
from leafattack.errors import LeafattackError
from leafattack.grid import Plan, ScenePlan
from leafattack.models.classifier import Classifier, match_classes
from leafattack.rundir import read_trials

VIEW_STREAM = 8101
"""Seed stream (with the seed) of the sampled view parameters."""

SCENE_COLUMNS = ("trial_id", "sign_id", "true_label", "true_name")


def attack_scenes(run_dir: Path, all_successes: bool = False) -> pd.DataFrame:
    """The successful scenes of a finished run: per sign its best scene (``best.csv``,
    lowest true-class confidence) when that scene succeeded, or with ``all_successes``
    every successful trial.

    Returns:
        Rows with :data:`SCENE_COLUMNS`, in trial order.

    Raises:
        LeafattackError: no ``best.csv`` or ``trials.csv``, or no successful scene.
    """
    if all_successes:
        trials = read_trials(run_dir, ("trial_id", "sign_id", "true_label", "true_name",
                                       "success"), require=True)
        found = trials[trials["success"].astype(bool)]
    else:
        path = run_dir / "best.csv"
        if not path.exists():
            raise LeafattackError(
                f"{run_dir}: no best.csv (expected a finished run with best scenes)"
            )
        best = pd.read_csv(path)
        missing = [c for c in (*SCENE_COLUMNS, "success") if c not in best.columns]
        if missing:
            raise LeafattackError(f"{path}: missing column(s) {', '.join(missing)}")
        found = best[best["success"].astype(bool)]
    if found.empty:
        raise LeafattackError(
            f"{run_dir}: no successful scene to re-evaluate (no sign was fooled)"
        )
    return found[list(SCENE_COLUMNS)].sort_values("trial_id").reset_index(drop=True)


def scene_images(
    prep: Prepared, plan: Plan, trial_ids: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Composites of the given trials and their clean signs.

    Returns:
        ``(attacked, clean, sign)``: float32 (N, 3, H, W) in [0, 1] each, on the run's
        device, and int64 (N,) indices of the signs in ``prep``.
    """
    d = decode_trial_ids(plan, np.asarray(trial_ids, dtype=np.int64))
    with torch.inference_mode():
        if isinstance(plan, ScenePlan):
            attacked, _ = composite_scenes(prep, d)
        else:
            attacked, _, _ = composite_trials(prep, d)
    sign = d["sign"]
    clean = prep.sign_images[torch.from_numpy(sign).to(prep.sign_images.device)]
    return attacked, clean.float().div(255.0), sign


def _judge(
    clf: Classifier,
    model: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    target: int | None,
    min_confidence: float | None,
) -> dict[str, np.ndarray]:
    probs = classify(clf, images, model)
    labels = labels.to(probs.device)
    crit = build_criterion(target, min_confidence)
    pred = probs.argmax(1)
    return {
        "pred_label": pred.cpu().numpy(),
        "pred_conf": probs.gather(1, pred[:, None])[:, 0].double().cpu().numpy(),
        "true_conf": probs.gather(1, labels[:, None])[:, 0].double().cpu().numpy(),
        "success": crit(probs, labels).cpu().numpy(),
    }


def survival_rows(
    prep: Prepared,
    plan: Plan,
    scenes: pd.DataFrame,
    spec: ViewSpec,
    n_views: int,
    *,
    seed: int,
    quiet: bool = False,
) -> pd.DataFrame:
    """Every scene under ``n_views`` seeded views, and its clean sign under the same view.

    Rows are scene-major (scene 0's views first). ``clean_correct`` says whether the clean
    sign, seen the same way, is still classified correctly (and, in a targeted run, not as
    the target): a view that defeats the clean sign says nothing about the leaf.

    Returns:
        Columns ``trial_id, sign_id, view``, every view parameter, ``clean_correct,
        pred_label, pred_name, pred_conf, true_conf, success``.
    """
    if n_views < 1:
        raise LeafattackError(f"--views {n_views}: expected at least 1 view per scene")
    cfg = prep.config
    attacked, clean, sign = scene_images(prep, plan, scenes["trial_id"].to_numpy())
    n = len(scenes)
    total = n * n_views
    params = sample_views(spec, total, np.random.default_rng([seed, VIEW_STREAM]))
    scene_of = np.repeat(np.arange(n), n_views)
    labels_all = torch.from_numpy(prep.true_labels[sign])
    names = np.array(prep.classifier.class_names, dtype=object)
    parts: list[dict[str, np.ndarray]] = []
    bs = cfg.batch_size
    for b, k0 in enumerate(tqdm(range(0, total, bs), disable=quiet, desc="views", unit="batch")):
        k1 = min(total, k0 + bs)
        idx = torch.from_numpy(scene_of[k0:k1]).to(attacked.device)
        chunk = {k: v[k0:k1] for k, v in params.items()}
        batch_seed = int(np.random.SeedSequence([seed, b]).generate_state(1)[0])
        with torch.inference_mode():
            seen = apply_views(attacked.index_select(0, idx), chunk, batch_seed)
            seen_clean = apply_views(clean.index_select(0, idx), chunk, batch_seed)
        labels = labels_all[scene_of[k0:k1]]
        res = _judge(prep.classifier, cfg.model, seen, labels, prep.target_index,
                     cfg.min_confidence)
        ok = _judge(prep.classifier, cfg.model, seen_clean, labels, prep.target_index, None)
        clean_correct = ok["pred_label"] == labels.numpy()
        if prep.target_index is not None:
            clean_correct &= ok["pred_label"] != prep.target_index
        parts.append({"clean_correct": clean_correct, **res})
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out = pd.DataFrame({
        "trial_id": scenes["trial_id"].to_numpy()[scene_of],
        "sign_id": scenes["sign_id"].to_numpy()[scene_of],
        "view": np.tile(np.arange(n_views), n),
        **params,
        "clean_correct": cols["clean_correct"],
        "pred_label": cols["pred_label"],
        "pred_name": names[cols["pred_label"]],
        "pred_conf": cols["pred_conf"],
        "true_conf": cols["true_conf"],
        "success": cols["success"],
    })
    return out


def transfer_rows(
    prep: Prepared,
    plan: Plan,
    scenes: pd.DataFrame,
    target_model: Classifier,
    spec: str,
    *,
    batch_size: int = 512,
) -> pd.DataFrame:
    """The scenes of a run, found against its model, on another model.

    The other model must know every class of the attacked signs (by name) and, in a
    targeted run, the target class. A sign it misclassifies when clean is left out
    (``clean_correct`` False, ``success`` False): the leaf did not fool it.

    Returns:
        Columns ``model, trial_id, sign_id, clean_correct, pred_label, pred_name,
        pred_conf, true_conf, success``.
    """
    cfg = prep.config
    attacked, clean, sign = scene_images(prep, plan, scenes["trial_id"].to_numpy())
    own_names = [prep.classifier.class_names[int(t)] for t in prep.true_labels[sign]]
    try:
        mapping = match_classes(tuple(own_names), target_model.class_names,
                                used_labels=list(range(len(own_names))))
    except LeafattackError as exc:
        raise LeafattackError(f"model {spec!r}: {exc}") from None
    labels = torch.as_tensor(np.asarray(mapping, dtype=np.int64))
    target = None
    if prep.target_index is not None:
        tname = prep.classifier.class_names[prep.target_index]
        if tname not in target_model.class_names:
            raise LeafattackError(
                f"model {spec!r}: has no class {tname!r} (the run's target)"
            )
        target = target_model.class_names.index(tname)
    attacked = attacked.to(target_model.device)
    clean = clean.to(target_model.device)
    parts, ok_parts = [], []
    for k0 in range(0, len(sign), batch_size):
        k1 = min(len(sign), k0 + batch_size)
        parts.append(_judge(target_model, spec, attacked[k0:k1], labels[k0:k1], target,
                            cfg.min_confidence))
        ok_parts.append(_judge(target_model, spec, clean[k0:k1], labels[k0:k1], target,
                               None))
    res = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ok = np.concatenate([p["pred_label"] for p in ok_parts]) == labels.numpy()
    if target is not None:
        ok &= np.concatenate([p["pred_label"] for p in ok_parts]) != target
    names = np.array(target_model.class_names, dtype=object)
    return pd.DataFrame({
        "model": spec,
        "trial_id": scenes["trial_id"].to_numpy(),
        "sign_id": scenes["sign_id"].to_numpy(),
        "clean_correct": ok,
        "pred_label": res["pred_label"],
        "pred_name": names[res["pred_label"]],
        "pred_conf": res["pred_conf"],
        "true_conf": res["true_conf"],
        "success": res["success"] & ok,
    })
