"""Executing a prepared run's trials into ``trials.csv``, resumably, on an executor."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from leafattack import schema
from leafattack.engine.evaluate import leaf_rows, local_batches
from leafattack.engine.preparation import Prepared
from leafattack.errors import LeafattackError
from leafattack.grid import Plan, ScenePlan
from leafattack.rundir import PROGRESS_FILE, AppendLog, write_atomic

log = logging.getLogger(__name__)

TRIALS_FILE = "trials.csv"
LEAVES_FILE = "leaves.csv"
"""The leaves of each scene of a multi-leaf run (LEAF_COLUMNS)."""


def remote_batches(prep: Prepared, plan: Plan, start: int) -> Iterator[tuple[int, bytes]]:
    """The Ray executor's batches (same contract as :func:`local_batches`)."""
    try:
        from leafattack.engine.distributed import ray_batches
    except ImportError:
        raise LeafattackError(
            "--executor ray needs Ray: install it with  uv sync --extra ray  "
            "(or pip install 'leafattack[ray]')"
        ) from None
    return ray_batches(prep, plan, start)


def execute_trials(prep: Prepared, plan: Plan, run_dir: Path) -> tuple[int, float]:
    """Evaluate every active trial of ``plan`` into ``RUN_DIR/trials.csv``.

    The table is an :class:`~leafattack.rundir.AppendLog` whose progress file records
    the attacked signs: a resume whose clean predictions would attack other signs (another
    device or torch version) is refused rather than appending mismatched rows.

    Returns:
        (rows already complete when it started, seconds spent on the new rows).

    Raises:
        LeafattackError: the attacked set changed since the rows were written, or Ray is
            missing for ``executor = "ray"``.
        OSError: a write failed (the caller turns it into a one-line error).
    """
    attacked = [int(s) for s in np.asarray(prep.sign_ids)[np.asarray(plan.active, dtype=bool)]]
    if isinstance(plan, ScenePlan):
        if prep.config.executor != "local":
            raise LeafattackError(
                "random multi-leaf scenes run on the local executor only (use --executor local)"
            )
        # The scenes depend only on the config and seed: written whole, before any trial.
        leaves = leaf_rows(prep, plan).to_csv(index=False, float_format="%.9g", lineterminator="\n")
        write_atomic(run_dir / LEAVES_FILE, leaves.encode())
    table = AppendLog(
        run_dir / TRIALS_FILE,
        run_dir / PROGRESS_FILE,
        header=",".join(
            schema.trial_columns(prep.target_index is not None, isinstance(plan, ScenePlan))
        ).encode()
        + b"\n",
        total=plan.total_active,
        meta={"attacked": attacked},
        strict_meta=("attacked",),
    )
    config = prep.config
    t0 = time.perf_counter()
    with table as done:
        batches = (
            local_batches(prep, plan, done)
            if config.executor == "local"
            else remote_batches(prep, plan, done)
        )
        with tqdm(
            total=plan.total_active,
            initial=done,
            unit="trial",
            unit_scale=True,
            disable=config.quiet,
            desc="attack",
            dynamic_ncols=True,
        ) as bar:
            for k1, data in batches:
                table.append(k1, data)
                bar.update(k1 - bar.n)
    return table.started_from, time.perf_counter() - t0
