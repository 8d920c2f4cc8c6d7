"""Edge analysis of a run directory: recompose, Canny, metrics, statistics.

``run_edges(RUN_DIR)`` re-creates every trial's attacked image deterministically from the
run's ``config.toml`` (after checking that signs, leaves and model still match the stored
fingerprints), computes the :data:`~leafattack.analysis.edges.EDGE_METRICS` in batches, and appends
them to ``edges.csv`` (joined to ``trials.csv`` by ``trial_id``). Like ``run`` it is
resumable: ``edges_progress.json`` records the complete rows and bytes. Finally it writes
``correlation.csv`` (:func:`~leafattack.analysis.stats.correlation_table`) and returns a text table.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from leafattack.analysis.edges import (
    EDGE_METRICS,
    EdgeConfig,
    canny_batch,
    describe_thresholds,
    edge_metrics,
    resize_masks,
    thresholds_for,
)
from leafattack.analysis.stats import correlation_table, format_correlation_table
from leafattack.compose.functional import to_uint8_hwc
from leafattack.engine.evaluate import batch_bounds, composite_scenes_covered, composite_trials
from leafattack.engine.preparation import Prepared, open_run
from leafattack.errors import LeafattackError
from leafattack.grid import Plan, ScenePlan
from leafattack.rundir import (
    PROGRESS_FILE,
    AppendLog,
    csv_bytes,
    disk_error,
    read_progress,
    read_trials,
    run_lock,
    write_atomic,
)

log = logging.getLogger(__name__)


EDGES_PROGRESS = "edges_progress.json"


NEEDED_TRIAL_COLUMNS = ("trial_id", "sign_id", "species", "size", "true_conf", "success")
NEEDED_SCENE_COLUMNS = ("trial_id", "sign_id", "n_leaves", "true_conf", "success")
"""Columns of a multi-leaf scene run's trials.csv that the edge analysis reads; its
correlations are broken down by the number of leaves instead of species and size."""


@dataclass(frozen=True, slots=True)
class EdgesResult:
    """Outcome of an edge analysis."""

    edges_path: Path
    correlation_path: Path
    edges: pd.DataFrame
    correlation: pd.DataFrame
    table_text: str


def _finished_trials(run_dir: Path, scenes: bool = False) -> pd.DataFrame:
    needed = NEEDED_SCENE_COLUMNS if scenes else NEEDED_TRIAL_COLUMNS
    trials = read_trials(run_dir, needed, require=True)
    if trials.empty:
        raise LeafattackError(f"{run_dir / 'trials.csv'}: holds no trials (nothing to analyse)")
    if not read_progress(run_dir / PROGRESS_FILE).get("complete", False):
        raise LeafattackError(
            f"{run_dir}: the run is not finished; complete it with 'leafattack run' first"
        )
    return trials


def _edge_images(
    prep: Prepared, plan: Plan, k0: int, k1: int, cfg: EdgeConfig
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Recompose active trials k0..k1; return decoded params, attacked edges and leaf alpha."""
    d = plan.decode(k0, k1)
    if isinstance(plan, ScenePlan):  # the leaf region is the union of the scene's leaves
        images, _, alpha = composite_scenes_covered(prep, d)
    else:
        images, _, alpha = composite_trials(prep, d)
    attacked = canny_batch(to_uint8_hwc(images), cfg)
    leaf = resize_masks(alpha.cpu().numpy(), cfg.resolution)
    return d, attacked, leaf


def warn_edgeless(
    prep: Prepared, plan: Plan, clean_edges: np.ndarray, masks: np.ndarray, cfg: EdgeConfig
) -> int:
    """Log a warning naming how many attacked signs have no clean Canny edge on their face
    (their edge metrics come out empty); returns that number."""
    active = np.asarray(plan.active, dtype=bool)
    on_face = (np.asarray(clean_edges, bool) & np.asarray(masks, bool)).reshape(len(masks), -1)
    edgeless = active & ~on_face.any(axis=1)
    n = int(edgeless.sum())
    if n:
        files = [str(prep.signs.files[int(i)]) for i in np.asarray(prep.sign_ids)[edgeless][:5]]
        log.warning(
            "%d of %d attacked signs have no clean Canny edges on their face at %s px "
            "(thresholds %s); their edge metrics are empty: %s%s. Try leafattack edges --auto "
            "or --resolution sign",
            n, int(active.sum()), cfg.resolution or "sign",
            "automatic" if cfg.auto else f"{cfg.low:g}/{cfg.high:g}",
            ", ".join(files), ", ..." if n > 5 else "",
        )
    return n


def run_edges(
    run_dir: Path,
    *,
    config: EdgeConfig | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    n_boot: int = 200,
    quiet: bool = False,
    at_model_resolution: bool = True,
    overwrite: bool = False,
    thresholds: str | None = None,
) -> EdgesResult:
    """Compute ``edges.csv`` and ``correlation.csv`` for a finished run (resumable).

    Opens the run (checking its fingerprints), holds its lock, and calls
    :func:`compute_edges`.

    Raises:
        LeafattackError: not a run directory, an unfinished run, no trials, missing columns,
            or signs/leaves/model on disk that no longer match the run's fingerprints.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").exists():
        raise LeafattackError(f"{run_dir}: not a run directory (expected config.toml)")
    prep, plan = open_run(run_dir, device=device)
    with run_lock(run_dir):
        return compute_edges(
            run_dir,
            prep,
            plan,
            config=config,
            batch_size=batch_size,
            n_boot=n_boot,
            quiet=quiet,
            at_model_resolution=at_model_resolution,
            overwrite=overwrite,
            thresholds=thresholds,
        )


def compute_edges(
    run_dir: Path,
    prep: Prepared,
    plan: Plan,
    *,
    config: EdgeConfig | None = None,
    batch_size: int = 1024,
    n_boot: int = 200,
    quiet: bool = False,
    at_model_resolution: bool = True,
    overwrite: bool = False,
    thresholds: str | None = None,
) -> EdgesResult:
    """The edge analysis of a finished run whose lock the caller holds.

    Args:
        prep, plan: the run's prepared state and trial plan (as the run used them).
        config: Canny and metric settings (default: EdgeConfig's defaults).
        at_model_resolution: compute the edge maps at the model's input size (overrides
            ``config.resolution``); False keeps ``config.resolution`` (None = sign size).
        n_boot: bootstrap replicates of the AUC intervals.
        overwrite: replace an ``edges.csv`` computed with other settings (otherwise refused).
        thresholds: one of :data:`~leafattack.analysis.edges.THRESHOLD_MODES`; None means
            ``source`` without a ``config`` (automatic per-image thresholds on photo
            sources, fixed 50/150 on rendered signs) and ``config.auto`` with one. The
            mode used is recorded as ``auto`` in ``edges_progress.json``'s config.

    Warns (log) with the number of attacked signs whose clean image has no Canny edge on
    its face at these settings: their metrics are empty.
    """
    scenes = isinstance(plan, ScenePlan)
    trials = _finished_trials(run_dir, scenes)
    if len(trials) != plan.total_active:
        raise LeafattackError(
            f"{run_dir / 'trials.csv'}: has {len(trials)} rows, but the run's config gives "
            f"{plan.total_active} trials (edited or truncated file?)"
        )
    mode = thresholds or ("source" if config is None else "auto" if config.auto else "fixed")
    photo = prep.face_rule != "masks of the source"  # no masks of its own: photos
    try:
        cfg = thresholds_for(config or EdgeConfig(), mode, photo)
    except ValueError as exc:
        raise LeafattackError(str(exc)) from None
    if at_model_resolution:
        cfg = dataclasses.replace(cfg, resolution=prep.classifier.preprocess.input_size)
    cfg_doc = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    names = list(EDGE_METRICS)
    edges_path = run_dir / "edges.csv"
    stored = read_progress(run_dir / EDGES_PROGRESS).get("config")
    if stored is not None and stored != cfg_doc and edges_path.exists() and not overwrite:
        changed = sorted(k for k in cfg_doc if stored.get(k) != cfg_doc[k]) if isinstance(
            stored, dict
        ) else ["config"]
        raise LeafattackError(
            f"{edges_path}: computed with other settings ({', '.join(changed)} differ); "
            f"rerun leafattack edges with --overwrite to replace it"
        )
    table = AppendLog(
        edges_path,
        run_dir / EDGES_PROGRESS,
        header=(",".join(["trial_id", *names]) + "\n").encode(),
        total=plan.total_active,
        meta={"config": cfg_doc},
    )
    try:
        # Clean edges and masks once per sign.
        clean_imgs = prep.sign_images.permute(0, 2, 3, 1).cpu().numpy()
        clean_edges = canny_batch(clean_imgs, cfg)
        sign_masks = resize_masks(prep.sign_masks.cpu().numpy(), cfg.resolution)
        warn_edgeless(prep, plan, clean_edges, sign_masks, cfg)
        trial_ids = trials["trial_id"].to_numpy()
        total = plan.total_active
        with (
            table as done,
            tqdm(
                total=total,
                initial=done,
                unit="trial",
                unit_scale=True,
                disable=quiet,
                desc="edges",
                dynamic_ncols=True,
            ) as bar,
        ):
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
                table.append(k1, csv_bytes(block, header=False))
                bar.update(k1 - bar.n)
    except OSError as exc:
        raise disk_error(run_dir, exc) from None
    edges = pd.read_csv(edges_path)
    clean = pd.read_csv(run_dir / "clean.csv")
    joined = trials.merge(edges, on="trial_id", how="inner", validate="one_to_one")
    clean_conf = clean.set_index("sign_id")["true_conf"]
    joined["conf_drop"] = joined["sign_id"].map(clean_conf) - joined["true_conf"]
    by = ("n_leaves",) if scenes else ("species", "size")
    corr = correlation_table(
        joined, names, by=by, n_boot=n_boot, seed=prep.config.seed, clusters="sign_id"
    )
    corr_path = run_dir / "correlation.csv"
    try:
        write_atomic(corr_path, csv_bytes(corr, header=True))
    except OSError as exc:
        raise disk_error(run_dir, exc) from None
    text = format_correlation_table(corr, "all")
    source = "photo source" if photo else "rendered signs"
    text = f"Canny thresholds: {describe_thresholds(cfg)} ({source}, --thresholds {mode})\n" + text
    return EdgesResult(edges_path, corr_path, edges, corr, text)
