"""Neutral-occluder controls of a run: its exact scenes re-rendered with the leaf's colour
replaced (:mod:`leafattack.compose.controls`), classified, and written to ``controls.csv``.

Every attacked trial of the run (a grid trial, or a random scene of K >= 1 leaves) is
rendered once per control kind with the same leaves, alpha masks, sizes, angles and
positions as in the run; only the leaves' colours change. The table is kind-major (all
trials under the first kind, in trial order, then the next kind) and resumable exactly as
``trials.csv`` is: a run killed at any moment continues after the last complete batch and
writes the same bytes as an uninterrupted one.

Grid trials are rendered at full resolution by :func:`~leafattack.compose.composite` (the
reference compositor); a run whose model resizes by area pooling took the equivalent pooled
path, which agrees up to float rounding.

Sources: a run directory (``config.toml``, ``clean.csv``, complete ``trials.csv``), or a
search directory, whose chosen queries come as a :class:`~leafattack.engine.found.FoundPlan`
(:func:`leafattack.api.run_controls`): everything below the plan is shared.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from leafattack import schema
from leafattack.compose.controls import control_hook
from leafattack.engine.evaluate import batch_bounds, classify, composite_scenes, composite_trials
from leafattack.engine.preparation import Prepared
from leafattack.errors import LeafattackError
from leafattack.grid import Plan, ScenePlan
from leafattack.rundir import PROGRESS_FILE, AppendLog, csv_bytes, read_progress

log = logging.getLogger(__name__)

CONTROLS_FILE = "controls.csv"
CONTROLS_PROGRESS_FILE = "controls_progress.json"


def check_run_complete(run_dir: Path) -> None:
    """Refuse a run whose ``trials.csv`` is incomplete (the leaf side of the comparison).

    Raises:
        LeafattackError: not a run directory, or a run that has not finished. (A search
            directory takes the other path of :func:`leafattack.api.run_controls`.)
    """
    if not (run_dir / "config.toml").exists():
        raise LeafattackError(f"{run_dir}: not a run directory (expected config.toml, trials.csv)")
    progress = read_progress(run_dir / PROGRESS_FILE)
    if not progress.get("complete"):
        raise LeafattackError(
            f"{run_dir}: the run is not complete (resume it with leafattack run first)"
        )


def control_rows(
    prep: Prepared, plan: Plan, kind: str, k0: int, k1: int
) -> pd.DataFrame:
    """Render, classify and judge active trials ``k0..k1`` under control ``kind``.

    Returns:
        CONTROL_COLUMNS rows, in trial order.
    """
    d = plan.decode(k0, k1)
    dev = prep.sign_images.device
    hook = control_hook(kind, prep.config.seed, torch.from_numpy(d["trial_id"]).to(dev))
    if isinstance(plan, ScenePlan):
        images, _ = composite_scenes(prep, d, recolour=hook)
    else:
        images, _, _ = composite_trials(prep, d, recolour=hook)
    probs = classify(prep.classifier, images, prep.config.model)
    true_np = prep.true_labels[d["sign"]]
    true = torch.from_numpy(true_np).to(probs.device)
    success = prep.criterion(probs, true)
    pred = probs.argmax(1)
    pred_np = pred.cpu().numpy()
    names = np.array(prep.classifier.class_names, dtype=object)
    return pd.DataFrame(
        {
            "trial_id": d["trial_id"],
            "control": kind,
            "pred_label": pred_np,
            "pred_name": names[pred_np],
            "pred_conf": probs.gather(1, pred[:, None])[:, 0].double().cpu().numpy(),
            "true_conf": probs.gather(1, true[:, None])[:, 0].double().cpu().numpy(),
            "success": success.cpu().numpy(),
        }
    )


def control_batches(
    prep: Prepared, plan: Plan, kinds: Sequence[str], start: int
) -> Iterator[tuple[int, bytes]]:
    """``(rows done, csv bytes)`` per batch from row ``start`` of the kind-major table.

    Batches are aligned to the run's batch size within each kind, so a resumed table is
    computed in exactly the batches of an uninterrupted one.
    """
    total = plan.total_active
    for i, kind in enumerate(kinds):
        if (i + 1) * total <= start:
            continue
        first = max(0, start - i * total)
        for k0, k1 in batch_bounds(first, total, prep.config.batch_size):
            with torch.inference_mode():
                rows = control_rows(prep, plan, kind, k0, k1)
            yield i * total + k1, csv_bytes(rows, header=False)


def run_controls(
    prep: Prepared, plan: Plan, run_dir: Path, kinds: Sequence[str], *, quiet: bool = False
) -> tuple[int, float]:
    """Write ``RUN_DIR/controls.csv`` for ``kinds`` (resuming a table of the same kinds).

    Another list of kinds, or another seed, starts the table over; other attacked signs than
    the rows were made for are refused.

    Returns:
        (rows already complete when it started, seconds spent on the new rows).

    Raises:
        LeafattackError: the attacked signs changed since the rows were written.
        OSError: a write failed (the caller turns it into a one-line error).
    """
    attacked = [int(s) for s in np.asarray(prep.sign_ids)[np.asarray(plan.active, dtype=bool)]]
    total = len(kinds) * plan.total_active
    table = AppendLog(
        run_dir / CONTROLS_FILE,
        run_dir / CONTROLS_PROGRESS_FILE,
        header=(",".join(schema.CONTROL_COLUMNS) + "\n").encode(),
        total=total,
        meta={"kinds": list(kinds), "seed": prep.config.seed, "attacked": attacked},
        strict_meta=("attacked",),
    )
    t0 = time.perf_counter()
    with table as done:
        with tqdm(
            total=total, initial=done, unit="trial", unit_scale=True, disable=quiet,
            desc="controls", dynamic_ncols=True,
        ) as bar:
            for k1, data in control_batches(prep, plan, kinds, done):
                table.append(k1, data)
                bar.update(k1 - bar.n)
    return table.started_from, time.perf_counter() - t0


def read_controls(run_dir: Path) -> pd.DataFrame:
    """The complete rows of ``controls.csv`` (CONTROL_COLUMNS), empty when there is none.

    Raises:
        LeafattackError: an unreadable table.
    """
    path = run_dir / CONTROLS_FILE
    empty = pd.DataFrame({k: pd.Series(dtype=v) for k, v in schema.CONTROL_COLUMNS.items()})
    if not path.exists():
        return empty
    raw = path.read_bytes()
    done = read_progress(run_dir / CONTROLS_PROGRESS_FILE)["bytes"]
    if 0 < done < len(raw):
        raw = raw[:done]
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=dict(schema.CONTROL_COLUMNS))
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeafattackError(f"{path}: not a valid controls table ({first})") from None
    missing = [c for c in schema.CONTROL_COLUMNS if c not in df.columns]
    if missing:
        raise LeafattackError(f"{path}: missing columns {', '.join(missing)}")
    return df[list(schema.CONTROL_COLUMNS)]
