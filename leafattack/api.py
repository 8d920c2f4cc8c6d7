"""The public API: ``run(config) -> RunResult`` runs (or resumes) a grid-search leaf attack.

The CLI is a thin shell over these functions. The hot path is batched end to end: a batch
of trial ids is decoded into parameter
arrays (:class:`~leafattack.grid.TrialPlan`), composited on the device
(:func:`~leafattack.compose.composite`), classified, judged by the criterion, and appended
to ``trials.csv``. A small ``progress.json`` records how many rows and bytes of
``trials.csv`` are complete, so a run killed at any moment resumes exactly where the last
complete batch ended and produces the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from leafattack import schema
from leafattack.adaptive.eot import parse_view_spec
from leafattack.analysis.best import write_best
from leafattack.analysis.cluster import BootSpec
from leafattack.analysis.controls import write_controls_summary
from leafattack.analysis.edge_analysis import EdgesResult, compute_edges
from leafattack.analysis.robustness import survival_summary, transfer_summary
from leafattack.analysis.streaming import SummaryAccumulator
from leafattack.compose.controls import parse_kinds
from leafattack.compose.views import ViewSpec
from leafattack.config import APPEARANCES, RunConfig, SearchConfig, default_out
from leafattack.data import load_signs
from leafattack.engine.controls import check_run_complete
from leafattack.engine.controls import run_controls as execute_controls
from leafattack.engine.evaluate import clean_predictions, sign_records
from leafattack.engine.execute import execute_trials
from leafattack.engine.found import (
    chosen_queries,
    found_plan,
    found_trials,
    is_search_dir,
    open_scenes,
    open_search,
)
from leafattack.engine.preparation import (
    SPLIT_FILE,
    Prepared,
    attack_mask,
    build_plan,
    open_run,
    prepare,
    split_json,
)
from leafattack.engine.robustness import survival_rows, transfer_rows
from leafattack.engine.scenes import read_scenes, render_scene_table
from leafattack.errors import LeafattackError
from leafattack.grid import SIZE_UNITS, Plan, ScenePlan
from leafattack.leaves import builtin_leaves_dir, load_leaves
from leafattack.models import resolve_device
from leafattack.models.loading import load_model
from leafattack.report.figures import fig_transfer, save_figure
from leafattack.report.html import write_report
from leafattack.rundir import (
    check_attacked_set,
    check_resumable,
    csv_bytes,
    disk_error,
    read_trials,
    run_config_document,
    run_lock,
    write_atomic,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run produced. DataFrames follow :mod:`leafattack.schema`."""

    run_dir: Path
    clean: pd.DataFrame
    summary: pd.DataFrame
    best: pd.DataFrame
    n_trials: int
    seconds: float
    resumed_from: int
    edges: EdgesResult | None = None  # when the run computed edges

    @property
    def trials(self) -> pd.DataFrame:
        """The run's whole trials table, read from the run directory on each access (a
        run never holds it in memory: summaries are accumulated while it goes)."""
        return read_trials(self.run_dir)

    @property
    def trials_per_second(self) -> float:
        done = self.n_trials - self.resumed_from
        return done / self.seconds if self.seconds > 0 else float("nan")


def run(config: RunConfig, *, controls: Sequence[str] = ()) -> RunResult:
    """Run (or resume) a grid-search leaf attack and write its run directory.

    ``controls`` names neutral-occluder control kinds to run after the attack (see
    :func:`run_controls`), before the report.

    The run is prepared once (model, signs, leaves) and the run directory stays locked
    from the first write to the last, edges and report included.

    Returns:
        RunResult with the clean, trials, summary and best DataFrames.

    Raises:
        LeafattackError: bad input (before any work starts), a locked or mismatching run
            directory, or a write failure (results so far stay resumable).
    """
    kinds = _control_kinds(",".join(controls)) if controls else ()
    prep = prepare(config)
    run_dir = Path(config.out) if config.out else default_out(config)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"  # per process: runs may start together
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LeafattackError(
            f"{run_dir}: output directory cannot be written ({exc.strerror or exc})"
        ) from None
    with run_lock(run_dir):
        result, plan = _run_locked(prep, run_dir)
        if config.edges:
            edges = compute_edges(run_dir, prep, plan, quiet=config.quiet)
            result = dataclasses.replace(result, edges=edges)
        if kinds:
            _controls_locked(prep, plan, run_dir, kinds, quiet=config.quiet)
        if config.report:
            write_report(run_dir, prepared=(prep, plan))
    return result


def _run_locked(prep: Prepared, run_dir: Path) -> tuple[RunResult, Plan]:
    config = prep.config
    doc = run_config_document(config, prep.fingerprints)
    check_resumable(run_dir, doc, config.overwrite)
    clean = clean_predictions(prep)
    attackable = attack_mask(clean, prep.target_index)
    clean["attacked"] = attackable
    check_attacked_set(run_dir, [int(s) for s in prep.sign_ids[attackable]])
    try:
        write_atomic(run_dir / "config.toml", tomli_w.dumps(doc).encode())
        write_atomic(run_dir / "clean.csv", csv_bytes(clean, header=True))
        write_atomic(run_dir / "signs.csv", csv_bytes(sign_records(prep), header=True))
        write_atomic(run_dir / SPLIT_FILE, split_json(prep))  # which split (issue 14)
    except OSError as exc:
        raise disk_error(run_dir, exc) from None
    skipped = clean.loc[~attackable]
    if len(skipped):
        log.info(
            "%d of %d signs are not attacked (misclassified when clean%s): %s",
            len(skipped),
            len(clean),
            ", or already of the target class" if prep.target_index is not None else "",
            ", ".join(skipped["sign_file"].astype(str).head(10)),
        )
    plan = build_plan(prep, attackable)
    try:
        counters = SummaryAccumulator(
            schema.trial_columns(prep.target_index is not None, isinstance(plan, ScenePlan))
        )
        start_rows, seconds = execute_trials(prep, plan, run_dir, observe=counters.add)
        summary = counters.summary(BootSpec(seed=config.seed))
        write_atomic(run_dir / "summary.csv", csv_bytes(summary, header=True))
        best = write_best(prep, plan, counters.best(), run_dir)
        write_atomic(run_dir / "best.csv", csv_bytes(best, header=True))
    except OSError as exc:
        raise disk_error(run_dir, exc) from None
    total = plan.total_active
    result = RunResult(run_dir, clean, summary, best, total, seconds, start_rows)
    return result, plan


def render(
    scenes: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    signs: str = "builtin",
    leaves: str = "builtin",
    sign_size: int = 128,
    device: str = "auto",
    quiet: bool = False,
    views: str | None = None,
    seed: int = 0,
    size_unit: str = "face",
    appearance: str = "auto",
    shadow: bool = False,
) -> list[Path]:
    """Render the scenes of a scenes CSV to ``OUT/<scene_id>.png`` without any attack.

    Signs and leaves are prepared as a run with the same ``seed``, ``size_unit``,
    ``appearance`` and ``shadow`` prepares them (faces, padding, matched leaves), so a
    run's ``best.csv`` renders to its ``best/*.png``.

    ``views`` is a :class:`~leafattack.compose.views.ViewSpec` text (``"yaw=-30:30,
    distance=1:4"``, or ``approach``): each scene is then seen under one seeded viewing
    transform, recorded in ``OUT/views.csv``.

    See :mod:`leafattack.engine.scenes` for the file format (one row per leaf; the leaf ids,
    sizes, angles and positions of ``trials.csv``).

    Returns:
        The written PNG paths, in scene order.

    Raises:
        LeafattackError: a bad scenes file (one line naming the row), unknown signs or
            leaves, or an output folder that cannot be written.
    """
    if not 16 <= sign_size <= 1024:
        raise LeafattackError(f"sign_size={sign_size}: expected 16..1024 pixels")
    if seed < 0:
        raise LeafattackError(f"seed={seed}: expected a non-negative integer")
    if size_unit not in SIZE_UNITS:
        raise LeafattackError(f"size_unit={size_unit!r}: expected one of {', '.join(SIZE_UNITS)}")
    if appearance not in APPEARANCES:
        raise LeafattackError(
            f"appearance={appearance!r}: expected one of {', '.join(APPEARANCES)}"
        )
    sign_set = load_signs(signs)
    folder = builtin_leaves_dir() if leaves == "builtin" else Path(leaves)
    library = {leaf.leaf_id: leaf for leaf in load_leaves(folder)}
    spec = None
    if views is not None:
        spec = ViewSpec.approach() if views == "approach" else ViewSpec.parse(views)
    table = read_scenes(scenes, len(sign_set), library)
    try:
        return render_scene_table(
            table,
            sign_set,
            library,
            Path(out),
            sign_size=sign_size,
            device=resolve_device(device),
            quiet=quiet,
            views=spec,
            seed=seed,
            size_unit=size_unit,
            appearance=appearance,
            shadow=shadow,
        )
    except OSError as exc:
        raise disk_error(Path(out), exc) from None


@dataclass(frozen=True, slots=True)
class RobustnessResult:
    """What ``robustness`` wrote: one row per (scene, view), and the sign-level summary."""

    rows_path: Path
    summary_path: Path
    rows: pd.DataFrame
    summary: pd.DataFrame


def robustness(
    run_dir: str | os.PathLike[str],
    *,
    views: int = 100,
    view_spec: str | None = None,
    seed: int = 0,
    all_successes: bool = False,
    device: str = "auto",
    quiet: bool = False,
) -> RobustnessResult:
    """Re-evaluate a finished run's (or search directory's) successful scenes under
    ``views`` seeded viewing transforms each (default spec: :meth:`ViewSpec.approach`, what
    a car sees approaching a sign) and write ``robustness.csv`` and
    ``robustness_summary.csv``.

    A search directory contributes each sign's best query when it succeeded (with
    ``all_successes`` every successful query), re-rendered with the same leaves and
    placements (:mod:`leafattack.engine.found`; ``trial_id`` = sign x queries + query - 1).

    Raises:
        LeafattackError: not a run directory, no successful scene, ``views < 1``, an
            invalid view spec (all before any work).
    """
    rd = Path(run_dir)
    if views < 1:
        raise LeafattackError(f"--views {views}: expected at least 1 view per scene")
    if seed < 0:
        raise LeafattackError(f"seed={seed}: expected a non-negative integer")
    spec = parse_view_spec(view_spec)  # approach (default), identity, or ranges
    prep, plan, scenes = open_scenes(rd, device=device, all_successes=all_successes)
    with run_lock(rd):
        rows = survival_rows(prep, plan, scenes, spec, views, seed=seed, quiet=quiet)
        summary = survival_summary(rows, seed, spec.ranges())
        try:
            write_atomic(rd / "robustness.csv", csv_bytes(rows, header=True))
            write_atomic(rd / "robustness_summary.csv", csv_bytes(summary, header=True))
        except OSError as exc:
            raise disk_error(rd, exc) from None
    return RobustnessResult(rd / "robustness.csv", rd / "robustness_summary.csv", rows, summary)


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What ``transfer`` wrote: one row per (model, scene), and a row per model."""

    rows_path: Path
    summary_path: Path
    rows: pd.DataFrame
    summary: pd.DataFrame


def transfer(
    run_dir: str | os.PathLike[str],
    models: list[str],
    *,
    all_successes: bool = False,
    device: str = "auto",
    trust_torchscript: bool = False,
    quiet: bool = False,
) -> TransferResult:
    """Evaluate a finished run's (or search directory's) successful scenes, found
    against its model, on other models; write ``transfer.csv``, ``transfer_summary.csv``
    and ``figures/transfer.png``.

    Raises:
        LeafattackError: not a run directory, no successful scene, no models, a model that
            cannot be loaded or does not know the attacked classes.
    """
    rd = Path(run_dir)
    if not models:
        raise LeafattackError("transfer: no models given (expected --models SPEC,SPEC,...)")
    prep, plan, scenes = open_scenes(rd, device=device, all_successes=all_successes)
    targets = [
        load_model(m, resolve_device(device), trust_torchscript=trust_torchscript)
        for m in models
    ]
    with run_lock(rd):
        parts = [
            transfer_rows(prep, plan, scenes, clf, spec, batch_size=prep.config.batch_size)
            for spec, clf in zip(models, targets, strict=True)
        ]
        rows = pd.concat(parts, ignore_index=True)
        summary = transfer_summary(rows, prep.config.model, prep.config.seed)
        try:
            write_atomic(rd / "transfer.csv", csv_bytes(rows, header=True))
            write_atomic(rd / "transfer_summary.csv", csv_bytes(summary, header=True))
            (rd / "figures").mkdir(exist_ok=True)
            save_figure(fig_transfer(summary), rd / "figures" / "transfer.png")
        except OSError as exc:
            raise disk_error(rd, exc) from None
    return TransferResult(rd / "transfer.csv", rd / "transfer_summary.csv", rows, summary)


# --- neutral-occluder controls (issue 14) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControlsResult:
    """What :func:`run_controls` produced: ``controls.csv`` rows written and the paired
    comparison (CONTROLS_SUMMARY_COLUMNS, also in ``controls_summary.csv``)."""

    run_dir: Path
    kinds: tuple[str, ...]
    summary: pd.DataFrame
    n_rows: int
    resumed_from: int
    seconds: float


def _control_kinds(text: str | None) -> tuple[str, ...]:
    try:
        return parse_kinds(text)
    except ValueError as exc:
        raise LeafattackError(str(exc)) from None


def _controls_locked(
    prep: Prepared, plan: Plan, run_dir: Path, kinds: tuple[str, ...], *, quiet: bool,
    n_boot: int = 1000,
) -> ControlsResult:
    try:
        start, seconds = execute_controls(prep, plan, run_dir, kinds, quiet=quiet)
        summary = write_controls_summary(run_dir, BootSpec(n_boot=n_boot, seed=prep.config.seed))
    except OSError as exc:
        raise disk_error(run_dir, exc) from None
    n_rows = len(kinds) * plan.total_active
    return ControlsResult(run_dir, kinds, summary, n_rows, start, seconds)


def run_controls(
    run_dir: str | os.PathLike[str],
    kinds: str | Sequence[str] | None = None,
    *,
    device: str = "auto",
    quiet: bool = False,
    n_boot: int = 1000,
    report: bool = False,
) -> ControlsResult:
    """Re-render every attacked trial of a finished run under neutral-occluder controls.

    Same signs, leaves' alpha masks, sizes, angles and positions; the leaves' colours
    replaced by each kind of :data:`~leafattack.compose.controls.CONTROLS` (``grey``,
    ``mean``, ``black``, ``shuffled``, ``noise``; None = all). Writes ``controls.csv``
    (resumable, like ``trials.csv``) and ``controls_summary.csv`` (the leaf against each
    control with sign-level intervals and McNemar's test); ``report`` rewrites report.html.

    Raises:
        LeafattackError: not a (finished) run directory, an unknown kind, changed inputs,
            or a write failure (results so far stay resumable).
    """
    names = kinds if kinds is None or isinstance(kinds, str) else ",".join(kinds)
    chosen = _control_kinds(names)
    if isinstance(n_boot, bool) or n_boot < 1:
        raise LeafattackError(f"n_boot={n_boot}: expected a positive number of resamples")
    rd = Path(run_dir)
    if not rd.is_dir():
        raise LeafattackError(f"{rd}: not a run directory (no such folder)")
    if is_search_dir(rd):
        return _search_controls(rd, chosen, device=device, quiet=quiet, n_boot=n_boot)
    check_run_complete(rd)
    prep, plan = open_run(rd, device=device)
    prep = dataclasses.replace(prep, config=dataclasses.replace(prep.config, quiet=quiet))
    with run_lock(rd):
        result = _controls_locked(prep, plan, rd, chosen, quiet=quiet, n_boot=n_boot)
        if report:
            write_report(rd, prepared=(prep, plan))
    return result


def _search_controls(
    rd: Path, kinds: tuple[str, ...], *, device: str, quiet: bool, n_boot: int
) -> ControlsResult:
    """Controls of a search directory: each searched sign's best query (successful or
    not), re-rendered with the same leaves and placements under every kind."""
    chosen = chosen_queries(rd, "best")
    prep, config = open_search(rd, device=device)
    prep = dataclasses.replace(prep, config=dataclasses.replace(prep.config, quiet=quiet))
    plan, scenes = found_plan(prep, config, rd, chosen)
    with run_lock(rd):
        try:
            start, seconds = execute_controls(prep, plan, rd, kinds, quiet=quiet)
            summary = write_controls_summary(
                rd, BootSpec(n_boot=n_boot, seed=prep.config.seed),
                trials=found_trials(prep, plan, scenes),
            )
        except OSError as exc:
            raise disk_error(rd, exc) from None
    return ControlsResult(rd, kinds, summary, len(kinds) * plan.total_active, start, seconds)


# --- Adaptive search (issue 13) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What a search produced. DataFrames follow :mod:`leafattack.schema` and
    :data:`leafattack.adaptive.CURVE_COLUMNS`."""

    run_dir: Path
    method: str
    budget: int
    clean: pd.DataFrame
    queries: pd.DataFrame
    best: pd.DataFrame
    curve: pd.DataFrame
    evaluated: int  # queries evaluated by this call
    replayed: int  # queries replayed from an earlier, interrupted call
    seconds: float
    eot: int = 1  # views per query (``--eot``); budget // eot queries per sign

    @property
    def queries_per_second(self) -> float:
        return self.evaluated / self.seconds if self.seconds > 0 else float("nan")


SEARCH_FILES: tuple[str, ...] = (
    "config.toml", "clean.csv", "queries.csv", "queries_progress.json", "query_leaves.csv",
    "best.csv", "best_leaves.csv", "curve.csv", "report.html",
    # analyses of the found scenes (robustness, transfer, controls on a search directory)
    "robustness.csv", "robustness_summary.csv", "transfer.csv", "transfer_summary.csv",
    "controls.csv", "controls_progress.json", "controls_summary.csv",
)
"""Files of a search directory (removed by ``overwrite``)."""


def search(config: SearchConfig) -> SearchResult:
    """Search (or resume searching) the worst leaves for each sign within a query budget.

    Writes ``queries.csv``, ``query_leaves.csv``, ``best.csv``, ``best_leaves.csv`` (a
    scenes file: ``leafattack render --scenes`` reproduces ``best/*.png``), ``best/*.png``
    and ``curve.csv`` into the search directory.

    Raises:
        LeafattackError: bad input (before any work starts), a locked or mismatching
            directory, or a write failure (results so far stay resumable).
    """
    from leafattack.adaptive import fooled_curve
    from leafattack.config import absolute_paths, default_search_out
    from leafattack.engine.scenes import read_scenes
    from leafattack.engine.search import best_tables, execute_search, format_floats

    prep = prepare(config.run)
    run_dir = Path(config.run.out) if config.run.out else default_search_out(config)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LeafattackError(
            f"{run_dir}: output directory cannot be written ({exc.strerror or exc})"
        ) from None
    resolved = dataclasses.replace(config, run=absolute_paths(config.run))
    doc = resolved.to_flat()
    doc.pop("out", None)
    doc["fingerprints"] = dict(prep.fingerprints)
    doc["versions"] = run_config_document(config.run, prep.fingerprints)["versions"]
    with run_lock(run_dir):
        _check_search_resumable(run_dir, resolved, doc, config.run.overwrite)
        clean = clean_predictions(prep)
        attackable = attack_mask(clean, prep.target_index)
        clean["attacked"] = attackable
        try:
            write_atomic(run_dir / "config.toml", tomli_w.dumps(doc).encode())
            write_atomic(run_dir / "clean.csv", csv_bytes(clean, header=True))
            write_atomic(run_dir / SPLIT_FILE, split_json(prep))  # which split (issue 14)
            outcome = execute_search(prep, config, np.flatnonzero(attackable), run_dir)
            best, best_leaves = best_tables(prep, outcome, config.method)
            write_atomic(run_dir / "best.csv", format_floats(best))
            write_atomic(run_dir / "best_leaves.csv", format_floats(best_leaves))
            if len(best_leaves):
                folder = builtin_leaves_dir() if config.run.leaves == "builtin" else Path(
                    config.run.leaves
                )
                library = {leaf.leaf_id: leaf for leaf in load_leaves(folder)}
                table = read_scenes(run_dir / "best_leaves.csv", len(prep.signs), library)
                render_scene_table(
                    table, prep.signs, library, run_dir / "best",
                    sign_size=config.run.sign_size, device=prep.sign_images.device, quiet=True,
                    seed=config.run.seed, size_unit=config.run.grid.size_unit,
                    appearance="raw" if prep.appearance is None else "matched",
                    shadow=config.run.shadow,
                )
            first = best["first_success"].to_numpy(np.int64)
            n_correct = int(clean["correct"].sum())
            curve = fooled_curve(config.method, first, len(clean), n_correct, config.queries)
            write_atomic(run_dir / "curve.csv", format_floats(curve))
        except OSError as exc:
            raise disk_error(run_dir, exc) from None
    queries = pd.read_csv(run_dir / "queries.csv", dtype=dict(schema.QUERY_COLUMNS))
    return SearchResult(
        run_dir, config.method, config.budget, clean, queries, best, curve,
        outcome.evaluated, outcome.replayed, outcome.seconds, eot=config.eot,
    )


def _check_search_resumable(
    run_dir: Path, config: SearchConfig, doc: dict[str, object], overwrite: bool
) -> None:
    """Refuse a directory holding another search (or a grid run) unless ``overwrite``."""
    import shutil
    import tomllib

    cfg_path = run_dir / "config.toml"
    if cfg_path.exists():
        try:
            old = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            old = {}
        ident = config.identity()
        diffs = [k for k, v in ident.items() if old.get(k) != _toml_value(v)]
        fps = doc["fingerprints"]
        assert isinstance(fps, dict)
        diffs += [
            f"{k} fingerprint" for k in fps if old.get("fingerprints", {}).get(k) != fps[k]
        ]
        if diffs and not overwrite:
            raise LeafattackError(
                f"{run_dir}: holds a run with a different config ({', '.join(diffs)}); "
                f"use another --out, or --overwrite to discard it"
            )
        if not (diffs or overwrite):
            return
    if overwrite or cfg_path.exists():
        for name in (*SEARCH_FILES, "trials.csv", "progress.json", "summary.csv"):
            (run_dir / name).unlink(missing_ok=True)
        for sub in ("best", "figures"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)


def _toml_value(v: object) -> object:
    """A value as it reads back from TOML (tuples become lists)."""
    return list(v) if isinstance(v, tuple) else v
