"""The Ray executor: evaluate chunks of a run's trials on a pool of Ray actors.

:func:`ray_batches` is what :func:`leafattack.engine.execute.execute_trials` calls for
``executor = "ray"``. It has the contract of
:func:`leafattack.engine.evaluate.local_batches`: it yields ``(k1, csv_bytes)`` in trial
order, and the engine appends each piece to ``trials.csv`` and records it in
``progress.json``. So resuming after a crash of the driver works exactly as for a local
run, and the bytes written equal a local run's bytes.

How it works
------------
* The driver connects to Ray: an already initialised Ray is reused, ``config.address``
  is connected to, otherwise a small local Ray instance is started (and shut down again).
* ``config.workers`` actors are created, each reserving one CPU and
  ``config.gpus_per_worker`` GPUs. An actor runs :func:`~leafattack.engine.preparation.prepare` once
  (model, signs, leaves; on ``cuda`` when Ray gave it a GPU, else ``cpu``), checks that
  the fingerprints of its model, signs and leaves equal the driver's, and builds the
  trial plan from the driver's ``active`` array.
* Active trials ``[start, total)`` are cut into chunks aligned to the batch size
  (``chunk_size``, or :data:`AUTO_CHUNK_BATCHES` batches), which actors evaluate with
  :func:`~leafattack.engine.evaluate.evaluate_range` and return as CSV bytes.
* At most :data:`IN_FLIGHT_PER_WORKER` chunks per actor are submitted and not yet
  yielded at any time, so the driver's memory stays bounded however long the run is;
  results are yielded strictly in chunk order.
* Fault tolerance is Ray's: actors restart (``max_restarts``) after their process or node
  dies, and the tasks they held are retried on the restarted actor
  (``max_task_retries``). A driver crash is covered by the run directory's resume.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import numpy as np
import ray
import ray.exceptions

from leafattack.config import RunConfig, absolute_paths
from leafattack.engine.evaluate import batch_bounds, evaluate_range
from leafattack.engine.preparation import Prepared, build_plan, prepare
from leafattack.errors import LeafattackError
from leafattack.grid import Plan

log = logging.getLogger(__name__)

AUTO_CHUNK_BATCHES = 16
"""Chunk size when ``chunk_size = 0``: this many batches per Ray task."""
IN_FLIGHT_PER_WORKER = 2
"""Chunks per actor submitted but not yet yielded (one running, one queued)."""
MAX_RESTARTS = 4
"""How often one actor is restarted after its process or node died before the run fails."""
WAIT_LOG_SECONDS = 60.0
"""Log a warning when no result arrived for this long (e.g. actors waiting for resources)."""
CRASH_FLAG_ENV = "LEAFATTACK_TEST_CRASH_FLAG"
"""Test hook: when this variable names an existing file in an actor's environment, the
first actor to finish a chunk deletes the file and exits hard before returning its result,
which simulates a worker lost mid-run."""

_MiB = 2**20


# ----------------------------------------------------------------------------- chunks


def chunk_rows(config: RunConfig) -> int:
    """Active trials per Ray task: ``chunk_size``, or :data:`AUTO_CHUNK_BATCHES` batches."""
    return config.chunk_size or AUTO_CHUNK_BATCHES * config.batch_size


def chunk_bounds(start: int, total: int, batch_size: int, chunk: int) -> list[tuple[int, int]]:
    """Chunks ``[k0, k1)`` of active trials from ``start``, aligned to multiples of ``chunk``.

    ``chunk`` is a multiple of ``batch_size`` and ``start`` a batch boundary (a resumed run
    restarts at one), so each chunk splits into exactly the batches of a local run.

    Raises:
        ValueError: ``chunk`` is not a positive multiple of ``batch_size``, or ``start`` is
            not aligned to ``batch_size``.
    """
    if chunk < 1 or chunk % batch_size:
        raise ValueError(f"chunk={chunk} is not a positive multiple of batch_size={batch_size}")
    if start % batch_size and start < total:
        raise ValueError(f"start={start} is not aligned to batch_size={batch_size}")
    return batch_bounds(start, total, chunk)


# ----------------------------------------------------------------------------- the actor


class ChunkWorker:
    """A Ray actor that evaluates chunks of active trials of one run.

    The expensive preparation (model, signs, leaves, trial plan) happens once, on the first
    call, so that a restarted actor prepares itself again before its retried task runs.
    """

    def __init__(self, config: RunConfig, active: np.ndarray, fingerprints: dict[str, str]) -> None:
        self._config = config
        self._active = np.asarray(active, dtype=bool)
        self._fingerprints = dict(fingerprints)
        self._state: tuple[Prepared, Plan] | None = None

    def _prepared(self) -> tuple[Prepared, Plan]:
        if self._state is None:
            device = "cuda" if ray.get_gpu_ids() else "cpu"
            config = dataclasses.replace(self._config, device=device)
            prep = prepare(config)
            stale = [k for k, v in self._fingerprints.items() if prep.fingerprints.get(k) != v]
            if stale:
                raise LeafattackError(
                    f"the {', '.join(stale)} seen by the Ray worker on {socket.gethostname()} "
                    f"differ from the driver's (fingerprints differ); every node needs the "
                    f"same files and packages"
                )
            self._state = (prep, build_plan(prep, self._active))
        return self._state

    def describe(self) -> dict[str, Any]:
        """Prepare, then say where this actor runs (node, host, pid, device, plan size)."""
        prep, plan = self._prepared()
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(prep.sign_images.device),
            "total_active": plan.total_active,
        }

    def evaluate(self, k0: int, k1: int) -> bytes:
        """CSV rows (no header) of active trials ``[k0, k1)``."""
        prep, plan = self._prepared()
        data = evaluate_range(prep, plan, k0, k1)
        _crash_if_flagged()
        return data


def _crash_if_flagged() -> None:
    flag = os.environ.get(CRASH_FLAG_ENV)
    if not flag:
        return
    try:
        os.unlink(flag)  # only one process can win this
    except FileNotFoundError:
        return
    log.warning("test hook %s: worker pid %d exits hard", CRASH_FLAG_ENV, os.getpid())
    os._exit(1)


# ----------------------------------------------------------------------------- the driver


def ray_batches(
    prep: Prepared, plan: Plan, start: int
) -> Generator[tuple[int, bytes], None, None]:
    """The Ray executor: yields ``(k1, csv_bytes)`` per chunk of active trials, in order.

    Args:
        prep: the driver's prepared run (its config selects address, workers, GPUs, chunks).
        plan: the trial plan; its ``active`` array is sent to the actors.
        start: first active trial to compute (a batch boundary).

    Raises:
        LeafattackError: Ray cannot be reached, the cluster can never host a worker, a
            worker sees different inputs than the driver, or workers died more often than
            they may be restarted. Chunks yielded before stay written; rerun to resume.
    """
    config = prep.config
    chunk = chunk_rows(config)
    chunks = chunk_bounds(start, plan.total_active, config.batch_size, chunk)
    if not chunks:
        return
    started = _connect(config, chunk)
    actors: list[Any] = []
    try:
        _check_resources(config, local=started and config.address is None)
        actors = _start_actors(prep, plan)
        log.info(
            "Ray executor: %d chunks of up to %d trials on %d workers; driver on node %s",
            len(chunks),
            chunk,
            len(actors),
            ray.get_runtime_context().get_node_id()[:8],
        )
        yield from _stream(actors, chunks, plan.total_active)
    finally:
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # best effort: Ray may be gone already
                log.debug("could not kill a Ray actor", exc_info=True)
        if started:
            ray.shutdown()


def _connect(config: RunConfig, chunk: int) -> bool:
    """Initialise Ray unless it is already; returns whether this call initialised it."""
    if ray.is_initialized():
        if config.address:
            log.info(
                "Ray is already initialised in this process; ignoring address=%s", config.address
            )
        return False
    if config.address:
        _check_reachable(config.address)
    # Workers use the driver's environment; without this, a driver started by `uv run`
    # makes Ray copy the project and build a fresh virtual environment for its workers.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        if config.address:
            ray.init(address=config.address)
        else:
            # Room for 4x the results in flight (IN_FLIGHT_PER_WORKER chunks per worker,
            # CSV rows of ~120-160 bytes), at least 128 MiB, at most 4 GiB.
            need = 4 * IN_FLIGHT_PER_WORKER * config.workers * chunk * 256
            ray.init(
                num_cpus=config.workers,
                include_dashboard=False,
                object_store_memory=int(min(max(need, 128 * _MiB), 4096 * _MiB)),
            )
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        where = f"the Ray cluster at {config.address}" if config.address else "a local Ray"
        if _caused_by_authentication(exc):
            raise LeafattackError(
                f"{where}: authentication failed; set RAY_AUTH_MODE=token and the cluster's "
                f"token (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)"
            ) from None
        raise LeafattackError(f"cannot start or reach {where} ({_first_line(exc)})") from None
    return True


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail in seconds, not minutes, when a ``HOST:PORT`` address does not answer."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "ray://...": left to Ray
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise LeafattackError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or type(exc).__name__}); "
            f"start it with 'ray start --head' or check --address"
        ) from None


def _caused_by_authentication(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if "Authentication" in type(exc).__name__ or "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _check_resources(config: RunConfig, local: bool) -> None:
    """Fail fast when no node can ever host a worker (only certain for a local instance)."""
    have = ray.cluster_resources()
    gpus = float(have.get("GPU", 0.0))
    cpus = float(have.get("CPU", 0.0))
    short = []
    if cpus < 1:
        short.append(f"1 CPU per worker but the cluster has {cpus:g}")
    if gpus < config.gpus_per_worker:
        short.append(f"{config.gpus_per_worker:g} GPUs per worker but the cluster has {gpus:g}")
    if not short:
        wanted = config.workers * config.gpus_per_worker
        if config.gpus_per_worker and gpus < wanted:
            log.warning(
                "%d workers need %g GPUs, the cluster has %g: some workers wait",
                config.workers,
                wanted,
                gpus,
            )
        return
    message = "Ray workers need " + "; ".join(short)
    if local:
        raise LeafattackError(message + " (use --gpus-per-worker 0 on this machine)")
    log.warning("%s; waiting for the cluster to grow (an autoscaler may add nodes)", message)


def _node_config(config: RunConfig) -> RunConfig:
    """The config an actor prepares: local executor, quiet, paths absolute."""
    return dataclasses.replace(
        absolute_paths(config),
        executor="local",
        quiet=True,
        address=None,
        edges=False,
        report=False,
    )


def _start_actors(prep: Prepared, plan: Plan) -> list[Any]:
    config = prep.config
    remote_cls = ray.remote(ChunkWorker).options(
        num_cpus=1,
        num_gpus=config.gpus_per_worker,
        max_restarts=MAX_RESTARTS,
        max_task_retries=-1,  # bounded by max_restarts: retried while the actor restarts
    )
    node_config = _node_config(config)
    active = np.asarray(plan.active, dtype=bool)
    fingerprints = dict(prep.fingerprints)
    return [remote_cls.remote(node_config, active, fingerprints) for _ in range(config.workers)]


def _stream(
    actors: Sequence[Any], chunks: Sequence[tuple[int, int]], total_active: int
) -> Iterator[tuple[int, bytes]]:
    """Dispatch chunks to ready actors, keep a bounded window, yield results in order."""
    n = len(chunks)
    window = IN_FLIGHT_PER_WORKER * len(actors)
    probes: dict[Any, int] = {a.describe.remote(): i for i, a in enumerate(actors)}
    ready: list[int] = []
    load = [0] * len(actors)
    running: dict[Any, tuple[int, int]] = {}  # ref -> (chunk index, actor index)
    results: dict[int, bytes] = {}
    next_submit = 0
    next_yield = 0
    while next_yield < n:
        while next_submit < n and next_submit - next_yield < window:
            free = [a for a in ready if load[a] < IN_FLIGHT_PER_WORKER]
            if not free:
                break
            a = min(free, key=lambda i: load[i])
            k0, k1 = chunks[next_submit]
            running[actors[a].evaluate.remote(k0, k1)] = (next_submit, a)
            load[a] += 1
            next_submit += 1
        done, _ = ray.wait([*running, *probes], num_returns=1, timeout=WAIT_LOG_SECONDS)
        if not done:
            log.warning(
                "no Ray result for %.0f s: %d of %d workers ready, %d chunks running; "
                "cluster resources %s",
                WAIT_LOG_SECONDS,
                len(ready),
                len(actors),
                len(running),
                ray.available_resources(),
            )
            continue
        ref = done[0]
        if ref in probes:
            a = probes.pop(ref)
            info = _fetch(ref)
            if info["total_active"] != total_active:
                raise LeafattackError(
                    f"the Ray worker on {info['host']} plans {info['total_active']} trials, "
                    f"the driver {total_active}; every node needs the same files and packages"
                )
            log.info(
                "Ray worker %d ready: pid %s on %s (node %s), %s",
                a,
                info["pid"],
                info["host"],
                str(info["node"])[:8],
                info["device"],
            )
            ready.append(a)
            continue
        i, a = running.pop(ref)
        load[a] -= 1
        results[i] = _fetch(ref)
        while next_yield in results:
            yield chunks[next_yield][1], results.pop(next_yield)
            next_yield += 1


def _fetch(ref: Any) -> Any:
    """``ray.get`` with Ray's failures turned into one-line errors."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, LeafattackError):
            raise LeafattackError(str(exc.cause)) from None
        raise
    except ray.exceptions.RayActorError as exc:
        raise LeafattackError(
            f"a Ray worker died and was restarted {MAX_RESTARTS} times already "
            f"({_first_line(exc)}); the trials written so far are kept, rerun to resume"
        ) from None
    except ray.exceptions.RayError as exc:
        raise LeafattackError(
            f"Ray failed ({type(exc).__name__}: {_first_line(exc)}); the trials written so "
            f"far are kept, rerun to resume"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
