"""Executing a prepared run's trials into ``trials.csv``, resumably, on an executor."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Generator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from leafattack import schema
from leafattack.engine.evaluate import leaf_rows, local_batches, resolve_streams, torch_threads
from leafattack.engine.preparation import Prepared
from leafattack.errors import LeafattackError
from leafattack.grid import Plan, ScenePlan
from leafattack.rundir import (
    PARQUET_FROM_TRIALS,
    PROGRESS_FILE,
    TRIALS_PARQUET,
    AppendLog,
    BackgroundWriter,
    PartsLog,
    iter_trials,
    parquet_available,
    write_atomic,
)

log = logging.getLogger(__name__)

TRIALS_FILE = "trials.csv"
LEAVES_FILE = "leaves.csv"
"""The leaves of each scene of a multi-leaf run (LEAF_COLUMNS)."""


def remote_batches(
    prep: Prepared, plan: Plan, start: int
) -> Generator[tuple[int, bytes], None, None]:
    """The Ray executor's batches (same contract as :func:`local_batches`)."""
    try:
        from leafattack.engine.distributed import ray_batches
    except ImportError:
        raise LeafattackError(
            "--executor ray needs Ray: install it with  uv sync --extra ray  "
            "(or pip install 'leafattack[ray]')"
        ) from None
    return ray_batches(prep, plan, start)


PARQUET_CHUNK_ROWS = 65_536
"""Least rows of a Parquet part file (one row group); a multiple of the batch size is used."""


def commit_rows(batch_size: int, fmt: str) -> int:
    """Rows between commits (fsync + progress record). CSV: every batch (the fsyncs run on
    the writer thread, overlapped with the next batches). Parquet: chunks of at least
    65,536 rows, a multiple of the batch size (each chunk is one part file and row group;
    a kill loses at most one chunk of work)."""
    if fmt != "parquet":
        return batch_size
    return batch_size * max(1, -(-PARQUET_CHUNK_ROWS // batch_size))


def resolve_format(requested: str, total: int) -> str:
    """``csv`` or ``parquet`` for ``RunConfig.trials_format`` and a run of ``total`` trials
    (``auto``: Parquet from :data:`~leafattack.rundir.PARQUET_FROM_TRIALS` trials on, when
    pyarrow is installed)."""
    if requested == "auto":
        if total >= PARQUET_FROM_TRIALS and parquet_available():
            return "parquet"
        return "csv"
    return requested


def execute_trials(
    prep: Prepared,
    plan: Plan,
    run_dir: Path,
    observe: Callable[[pd.DataFrame], None] | None = None,
) -> tuple[int, float]:
    """Evaluate every active trial of ``plan`` into ``RUN_DIR/trials.csv`` (or
    ``trials.parquet``, by ``config.trials_format``).

    The table is an :class:`~leafattack.rundir.AppendLog` (or a
    :class:`~leafattack.rundir.PartsLog`) whose progress file records the attacked signs: a
    resume whose clean predictions would attack other signs (another device or torch
    version) is refused rather than appending mismatched rows. Batches are formatted and
    written by a :class:`~leafattack.rundir.BackgroundWriter` while the next one is
    computed.

    Args:
        observe: called with every row of the table exactly once, in trial order, as
            typed DataFrames (:func:`~leafattack.rundir.read_trials` types): the rows
            already complete on a resume (read back in chunks), then each new batch.

    Returns:
        (rows already complete when it started, seconds spent on the new rows).

    Raises:
        LeafattackError: the attacked set changed since the rows were written, or Ray is
            missing for ``executor = "ray"``.
        OSError: a write failed (the caller turns it into a one-line error).
    """
    attacked = [int(s) for s in np.asarray(prep.sign_ids)[np.asarray(plan.active, dtype=bool)]]
    scenes = isinstance(plan, ScenePlan)
    if isinstance(plan, ScenePlan):
        if prep.config.executor != "local":
            raise LeafattackError(
                "random multi-leaf scenes run on the local executor only (use --executor local)"
            )
        # The scenes depend only on the config and seed: written whole, before any trial.
        leaves = leaf_rows(prep, plan).to_csv(index=False, float_format="%.9g", lineterminator="\n")
        write_atomic(run_dir / LEAVES_FILE, leaves.encode())
    config = prep.config
    dtypes = schema.trial_columns(prep.target_index is not None, scenes)
    fmt = resolve_format(config.trials_format, plan.total_active)
    meta = {"attacked": attacked, "format": fmt}
    table: AppendLog | PartsLog
    if fmt == "parquet":
        if not parquet_available():
            raise LeafattackError(
                "trials_format = parquet needs pyarrow: install it with  uv sync --extra "
                "parquet  (or pip install 'leafattack[parquet]')"
            )
        (run_dir / TRIALS_FILE).unlink(missing_ok=True)
        table = PartsLog(
            run_dir / TRIALS_PARQUET,
            run_dir / PROGRESS_FILE,
            columns=dtypes,
            total=plan.total_active,
            meta=meta,
            strict_meta=("attacked",),
        )
    else:
        shutil.rmtree(run_dir / TRIALS_PARQUET, ignore_errors=True)
        table = AppendLog(
            run_dir / TRIALS_FILE,
            run_dir / PROGRESS_FILE,
            header=",".join(dtypes).encode() + b"\n",
            total=plan.total_active,
            meta=meta,
            strict_meta=("attacked",),
        )
    t0 = time.perf_counter()
    with table as done:
        if observe is not None and done:
            for chunk in iter_trials(run_dir, list(dtypes), limit=done):
                observe(chunk)
        t0 = time.perf_counter()
        writer = BackgroundWriter(
            table, dtypes=dtypes, commit_rows=commit_rows(config.batch_size, fmt), observe=observe
        )
        batches: Generator[tuple[int, Any], None, None]
        if config.executor == "local":
            streams, threads = resolve_streams(
                config.streams, prep.sign_images.device, builtin=prep.classifier.builtin
            )
            if streams > 1:
                log.debug("%d batches at once, %d torch thread(s) each", streams, threads)
            batches = local_batches(prep, plan, done, streams)
        else:
            threads = torch.get_num_threads()
            batches = remote_batches(prep, plan, done)
        try:
            # closing: a failing write stops the streams before the threads are restored
            with torch_threads(threads), closing(batches), tqdm(
                total=plan.total_active,
                initial=done,
                unit="trial",
                unit_scale=True,
                disable=config.quiet,
                desc="attack",
                dynamic_ncols=True,
            ) as bar:
                for k1, data in batches:
                    writer.put(k1, data)
                    bar.update(k1 - bar.n)
        finally:
            writer.close()  # what was computed is written and committed (or raises)
    return table.started_from, time.perf_counter() - t0

