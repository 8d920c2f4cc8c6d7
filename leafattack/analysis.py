"""Edge analysis of a run directory: recompose, Canny, metrics, statistics.

``run_edges(RUN_DIR)`` re-creates every trial's attacked image deterministically from the
run's ``config.toml`` (after checking that signs, leaves and model still match the stored
fingerprints), computes the :data:`~leafattack.edges.EDGE_METRICS` in batches, and appends
them to ``edges.csv`` (joined to ``trials.csv`` by ``trial_id``). Like ``run`` it is
resumable: ``edges_progress.json`` records the complete rows and bytes. Finally it writes
``correlation.csv`` (:func:`~leafattack.stats.correlation_table`) and returns a text table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from leafattack import schema
from leafattack.attack import (
    PROGRESS_FILE,
    Prepared,
    _csv_bytes,
    _disk_error,
    _progress_fits,
    _valid_progress,
    _write_atomic,
    batch_bounds,
    composite_trials,
    open_run,
    run_lock,
)
from leafattack.compose import to_uint8_hwc
from leafattack.edges import EDGE_METRICS, EdgeConfig, canny_batch, edge_metrics, resize_masks
from leafattack.errors import LeafattackError
from leafattack.grid import TrialPlan
from leafattack.stats import correlation_table, format_correlation_table

log = logging.getLogger(__name__)

EDGES_PROGRESS = "edges_progress.json"
NEEDED_TRIAL_COLUMNS = ("trial_id", "sign_id", "species", "size", "true_conf", "success")


@dataclass(frozen=True, slots=True)
class EdgesResult:
    """Outcome of an edge analysis."""

    edges_path: Path
    correlation_path: Path
    edges: pd.DataFrame
    correlation: pd.DataFrame
    table_text: str


def _read_trials_for_edges(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "trials.csv"
    if not path.exists():
        raise LeafattackError(f"{path}: missing (expected the trials of a finished run)")
    try:
        head = pd.read_csv(path, nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise LeafattackError(f"{path}: not a readable trials CSV") from None
    missing = [c for c in NEEDED_TRIAL_COLUMNS if c not in head.columns]
    if missing:
        raise LeafattackError(
            f"{path}: missing columns {', '.join(missing)} (expected leafattack's trials.csv)"
        )
    dtypes = {c: schema.TRIAL_COLUMNS[c] for c in NEEDED_TRIAL_COLUMNS}
    trials = pd.read_csv(path, usecols=list(NEEDED_TRIAL_COLUMNS), dtype=dtypes)
    if trials.empty:
        raise LeafattackError(f"{path}: holds no trials (nothing to analyse)")
    progress = _valid_progress(run_dir / PROGRESS_FILE)
    if not progress.get("complete", False):
        raise LeafattackError(
            f"{run_dir}: the run is not finished; complete it with 'leafattack run' first"
        )
    return trials


def _edge_images(
    prep: Prepared, plan: TrialPlan, k0: int, k1: int, cfg: EdgeConfig
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Recompose active trials k0..k1; return decoded params, attacked edges and leaf alpha."""
    d = plan.decode(k0, k1)
    images, _, alpha = composite_trials(prep, d)
    attacked = canny_batch(to_uint8_hwc(images), cfg)
    leaf = resize_masks(alpha.cpu().numpy(), cfg.resolution)
    return d, attacked, leaf


def run_edges(
    run_dir: Path,
    *,
    prep: Prepared | None = None,
    plan: TrialPlan | None = None,
    config: EdgeConfig | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    n_boot: int = 200,
    quiet: bool = False,
    at_model_resolution: bool = True,
) -> EdgesResult:
    """Compute ``edges.csv`` and ``correlation.csv`` for a finished run (resumable).

    Args:
        config: Canny and metric settings (default: EdgeConfig's defaults).
        at_model_resolution: compute the edge maps at the model's input size (overrides
            ``config.resolution``); False keeps ``config.resolution`` (None = sign size).
        n_boot: bootstrap replicates of the AUC intervals.

    Raises:
        LeafattackError: not a run directory, an unfinished run, no trials, missing columns,
            or signs/leaves/model on disk that no longer match the run's fingerprints.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").exists():
        raise LeafattackError(f"{run_dir}: not a run directory (expected config.toml)")
    trials = _read_trials_for_edges(run_dir)
    if prep is None or plan is None:
        prep, plan = open_run(run_dir, device=device)
    if len(trials) != plan.total_active:
        raise LeafattackError(
            f"{run_dir / 'trials.csv'}: has {len(trials)} rows, but the run's config gives "
            f"{plan.total_active} trials (edited or truncated file?)"
        )
    cfg = config or EdgeConfig()
    if at_model_resolution:
        cfg = dataclasses.replace(cfg, resolution=prep.classifier.preprocess.input_size)
    cfg_doc = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    names = list(EDGE_METRICS)
    edges_path = run_dir / "edges.csv"
    progress_path = run_dir / EDGES_PROGRESS
    with run_lock(run_dir):
        progress: dict[str, Any] = _valid_progress(progress_path)
        if progress.get("config") != cfg_doc or not _progress_fits(
            edges_path, progress, plan.total_active
        ):
            progress = {}  # missing, damaged or not describing edges.csv: start over
        done = int(progress.get("rows", 0))
        try:
            if not progress:
                _write_atomic(edges_path, (",".join(["trial_id", *names]) + "\n").encode())
                progress = {"rows": 0, "bytes": edges_path.stat().st_size, "config": cfg_doc}
                _write_atomic(progress_path, json.dumps(progress).encode())
            # Clean edges and masks once per sign.
            clean_imgs = prep.sign_images.permute(0, 2, 3, 1).cpu().numpy()
            clean_edges = canny_batch(clean_imgs, cfg)
            sign_masks = resize_masks(prep.sign_masks.cpu().numpy(), cfg.resolution)
            trial_ids = trials["trial_id"].to_numpy()
            with open(edges_path, "r+b") as f:
                f.truncate(int(progress["bytes"]))
                f.seek(0, os.SEEK_END)
                total = plan.total_active
                with tqdm(
                    total=total,
                    initial=done,
                    unit="trial",
                    unit_scale=True,
                    disable=quiet,
                    desc="edges",
                    dynamic_ncols=True,
                ) as bar:
                    for k0, k1 in batch_bounds(done, total, batch_size):
                        d, attacked, leaf = _edge_images(prep, plan, k0, k1, cfg)
                        if not np.array_equal(d["trial_id"], trial_ids[k0:k1]):
                            raise LeafattackError(
                                f"{run_dir / 'trials.csv'}: trial ids do not follow the "
                                f"run's grid (edited file?)"
                            )
                        s = d["sign"]
                        vals = edge_metrics(
                            clean_edges[s], attacked, leaf, sign_masks[s], names, config=cfg
                        )
                        block = pd.DataFrame({"trial_id": d["trial_id"], **vals})
                        f.write(_csv_bytes(block, header=False))
                        f.flush()
                        os.fsync(f.fileno())
                        _write_atomic(
                            progress_path,
                            json.dumps(
                                {
                                    "rows": k1,
                                    "bytes": f.tell(),
                                    "config": cfg_doc,
                                    "complete": k1 == total,
                                }
                            ).encode(),
                        )
                        bar.update(k1 - bar.n)
        except OSError as exc:
            raise _disk_error(run_dir, exc) from None
        edges = pd.read_csv(edges_path)
        clean = pd.read_csv(run_dir / "clean.csv")
        joined = trials.merge(edges, on="trial_id", how="inner", validate="one_to_one")
        clean_conf = clean.set_index("sign_id")["true_conf"]
        joined["conf_drop"] = joined["sign_id"].map(clean_conf) - joined["true_conf"]
        corr = correlation_table(
            joined, names, by=("species", "size"), n_boot=n_boot, seed=prep.config.seed
        )
        corr_path = run_dir / "correlation.csv"
        try:
            _write_atomic(corr_path, _csv_bytes(corr, header=True))
        except OSError as exc:
            raise _disk_error(run_dir, exc) from None
    text = format_correlation_table(corr, "all")
    return EdgesResult(edges_path, corr_path, edges, corr, text)
