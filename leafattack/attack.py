"""Grid-search leaf attacks: configuration, the streaming engine and run directories.

``run(config) -> RunResult`` is the public entry point; the CLI is a thin shell over it.

The hot path is batched end to end: a batch of trial ids is decoded into parameter
arrays (:class:`~leafattack.grid.TrialPlan`), composited on the device
(:func:`~leafattack.compose.composite`), classified, judged by the criterion, and appended
to ``trials.csv``. A small ``progress.json`` records how many rows and bytes of
``trials.csv`` are complete, so a run killed at any moment resumes exactly where the last
complete batch ended and produces the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import shutil
import socket
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import tomli_w
import torch
from tqdm.auto import tqdm

from leafattack import schema
from leafattack.compose import (
    LeafBank,
    SignStack,
    build_leaf_bank,
    build_sign_stack,
    composite,
    composite_pooled,
    to_uint8_hwc,
)
from leafattack.criteria import Criterion, build_criterion
from leafattack.datasets import SignSet, fingerprint, load_signs
from leafattack.errors import LeafattackError, RunLockedError
from leafattack.grid import (
    NATURAL,
    GridSpec,
    TrialPlan,
    parse_angles,
    parse_float_list,
    parse_names,
    parse_positions,
    sign_positions,
)
from leafattack.models import Classifier, load_model, match_classes, resolve_device

log = logging.getLogger(__name__)

FLOAT_FORMAT = "%.6g"
PROGRESS_FILE = "progress.json"
LOCK_FILE = "run.lock"
IDENTITY_KEYS = (
    "signs",
    "leaves",
    "model",
    "target",
    "min_confidence",
    "limit_signs",
    "seed",
    "sign_size",
    "batch_size",
    "leaf_ids",
    "species",
    "colours",
    "sizes",
    "angles",
    "positions",
    "on_sign_only",
)
"""Config keys that must match for a run directory to be resumed."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything that defines a run. The TOML config file uses the same names.

    Attributes:
        signs: sign source spec (``builtin``, ``PATH``, ``gtsrb:PATH``, ``lisa:PATH``).
        leaves: leaf library folder, or ``builtin``.
        model: model spec (``default``, checkpoint path, ``torchscript:PATH``, ``pkg.mod:fn``).
        out: run directory; None = ``results/<model>-<config hash>``.
        grid: the attack grid.
        target: class name for a targeted attack (None = untargeted).
        min_confidence: minimum top-1 probability for a success (None = any).
        limit_signs: attack only this many signs, spread over the classes (None = all).
        batch_size: trials per batch.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: seed of every random choice (sign subset).
        sign_size: side length in pixels that every sign is resized to for compositing.
    """

    signs: str = "builtin"
    leaves: str = "builtin"
    model: str = "default"
    out: str | None = None
    grid: GridSpec = field(default_factory=GridSpec)
    target: str | None = None
    min_confidence: float | None = None
    limit_signs: int | None = None
    batch_size: int = 512
    device: str = "auto"
    seed: int = 0
    sign_size: int = 128
    quiet: bool = False
    overwrite: bool = False
    trust_torchscript: bool = False
    edges: bool = False
    report: bool = False
    executor: str = "local"
    address: str | None = None
    workers: int = 2
    gpus_per_worker: float = 0.0
    chunk_size: int = 0

    def __post_init__(self) -> None:
        if self.executor not in ("local", "ray"):
            raise LeafattackError(f"executor={self.executor!r}: expected local or ray")
        if self.workers < 1:
            raise LeafattackError(f"workers={self.workers}: expected at least 1")
        if not 0.0 <= self.gpus_per_worker <= 64:
            raise LeafattackError(f"gpus_per_worker={self.gpus_per_worker}: expected 0..64")
        if self.chunk_size < 0 or (self.chunk_size and self.chunk_size % self.batch_size):
            raise LeafattackError(
                f"chunk_size={self.chunk_size}: expected 0 (auto) or a multiple of "
                f"batch_size={self.batch_size}"
            )
        if not 1 <= self.batch_size <= 1_000_000:
            raise LeafattackError(f"batch_size={self.batch_size}: expected 1..1000000")
        if not 16 <= self.sign_size <= 1024:
            raise LeafattackError(f"sign_size={self.sign_size}: expected 16..1024 pixels")
        if self.limit_signs is not None and self.limit_signs < 1:
            raise LeafattackError(f"limit_signs={self.limit_signs}: expected a positive count")
        if self.min_confidence is not None and not (
            math.isfinite(self.min_confidence) and 0.0 <= self.min_confidence <= 1.0
        ):
            raise LeafattackError(
                f"min_confidence={self.min_confidence}: expected a probability in [0, 1]"
            )
        if self.seed < 0:
            raise LeafattackError(f"seed={self.seed}: expected a non-negative integer")

    def to_flat(self) -> dict[str, Any]:
        """Flat mapping with the TOML/CLI names (None values omitted)."""
        g = self.grid
        flat: dict[str, Any] = {
            "signs": self.signs,
            "leaves": self.leaves,
            "model": self.model,
            "out": self.out,
            "leaf_ids": list(g.leaf_ids),
            "species": list(g.species),
            "colours": list(g.colours),
            "sizes": list(g.sizes),
            "angles": list(g.angles),
            "positions": f"{g.positions[0]}x{g.positions[1]}",
            "on_sign_only": g.on_sign_only,
            "target": self.target,
            "min_confidence": self.min_confidence,
            "limit_signs": self.limit_signs,
            "batch_size": self.batch_size,
            "device": self.device,
            "seed": self.seed,
            "sign_size": self.sign_size,
            "executor": self.executor,
            "address": self.address,
            "workers": self.workers,
            "gpus_per_worker": self.gpus_per_worker,
            "chunk_size": self.chunk_size,
        }
        return {k: v for k, v in flat.items() if v is not None}


_GRID_KEYS = {"leaf_ids", "species", "colours", "sizes", "angles", "positions", "on_sign_only"}
_RUN_KEYS = {f.name for f in dataclasses.fields(RunConfig)} - {"grid"}
CONFIG_KEYS: tuple[str, ...] = tuple(sorted(_GRID_KEYS | _RUN_KEYS))
"""The names a TOML config (and the ``run`` command's flags) may set."""


def _as_list(value: Any, key: str) -> list[Any]:
    if isinstance(value, str):
        return list(parse_names(value))
    if isinstance(value, list | tuple):
        return list(value)
    raise LeafattackError(f"config key {key!r}: expected a list or a comma-separated string")


def config_from_mapping(values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Build a RunConfig from TOML/CLI values (same names), on top of ``base``.

    Unknown keys and values of the wrong type give a one-line LeafattackError.
    """
    base = base or RunConfig()
    grid_kw: dict[str, Any] = {}
    run_kw: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("run", "fingerprints", "versions"):
            continue  # informational tables written into a run's config.toml
        if key not in _GRID_KEYS and key not in _RUN_KEYS:
            raise LeafattackError(
                f"unknown config key {key!r} (expected one of {', '.join(CONFIG_KEYS)})"
            )
        if key in ("leaf_ids", "species", "colours"):
            grid_kw[key] = tuple(str(v) for v in _as_list(value, key))
        elif key == "sizes":
            grid_kw[key] = (
                parse_float_list(value, "sizes")
                if isinstance(value, str)
                else tuple(_number(v, key) for v in _as_list(value, key))
            )
        elif key == "angles":
            grid_kw[key] = (
                parse_angles(value)
                if isinstance(value, str)
                else tuple(_number(v, key) for v in _as_list(value, key))
            )
        elif key == "positions":
            if isinstance(value, str):
                grid_kw[key] = parse_positions(value)
            elif isinstance(value, list | tuple) and len(value) == 2:
                grid_kw[key] = (_integer(value[0], key), _integer(value[1], key))
            else:
                raise LeafattackError(f"positions {value!r}: expected NxM, e.g. 5x5")
        elif key == "on_sign_only":
            grid_kw[key] = _boolean(value, key)
        elif key in ("signs", "leaves", "model", "out", "device", "target", "executor", "address"):
            if not isinstance(value, str):
                raise LeafattackError(f"config key {key!r}: expected a string, got {value!r}")
            if "\0" in value:  # no path or name can hold one; os calls would raise ValueError
                raise LeafattackError(
                    f"config key {key!r}: {value!r} contains a NUL character (expected text)"
                )
            run_kw[key] = value
        elif key in ("limit_signs", "batch_size", "seed", "sign_size", "workers", "chunk_size"):
            run_kw[key] = _integer(value, key)
        elif key in ("min_confidence", "gpus_per_worker"):
            run_kw[key] = _number(value, key)
        else:
            run_kw[key] = _boolean(value, key)
    grid = dataclasses.replace(base.grid, **grid_kw)
    return dataclasses.replace(base, grid=grid, **run_kw)


def _number(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        try:
            return float(str(v))
        except ValueError:
            raise LeafattackError(f"config key {key!r}: {v!r} is not a number") from None
    try:
        return float(v)
    except OverflowError:  # an integer beyond the float range
        raise LeafattackError(f"config key {key!r}: integer out of range") from None


def _integer(v: Any, key: str) -> int:
    if isinstance(v, bool):
        raise LeafattackError(f"config key {key!r}: {v!r} is not an integer")
    if isinstance(v, int):  # exact: through float, 2**53 + 1 would become 2**53
        return v
    if isinstance(v, str):
        with contextlib.suppress(ValueError):
            return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise LeafattackError(f"config key {key!r}: {v!r} is not an integer") from None
    if not f.is_integer():
        raise LeafattackError(f"config key {key!r}: {v!r} is not an integer")
    return int(f)


def _boolean(v: Any, key: str) -> bool:
    if isinstance(v, bool):
        return v
    raise LeafattackError(f"config key {key!r}: expected true or false, got {v!r}")


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config file into a flat mapping (validated by :func:`config_from_mapping`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LeafattackError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LeafattackError(f"{p}: cannot read config ({type(exc).__name__})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LeafattackError(f"{p}: invalid TOML ({exc})") from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise LeafattackError(f"{p}: invalid TOML (nested too deeply)") from None
    except ValueError:  # tomllib: an integer of more than 4300 digits
        raise LeafattackError(f"{p}: invalid TOML (a number is too long)") from None
    stack: list[Any] = [data]
    while stack:  # TOML integers are 64-bit; tomllib accepts any size
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not -(2**63) <= item < 2**63:
            raise LeafattackError(f"{p}: invalid TOML (an integer exceeds the 64-bit range)")
    try:
        config_from_mapping(data)  # validate early, naming the file
    except LeafattackError as exc:
        raise LeafattackError(f"{p}: {exc}") from None
    return data


# ----------------------------------------------------------------------------- preparation


@dataclass(frozen=True, slots=True)
class LeafVariant:
    """One entry of the leaf axis: a leaf in one colour."""

    leaf_id: str
    species: str
    colour: str
    rgba: np.ndarray


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything a run needs in memory, resolved and validated before any work starts."""

    config: RunConfig
    classifier: Classifier
    signs: SignSet
    sign_ids: np.ndarray  # int64 (S,): index of each used sign in the loaded set
    true_labels: np.ndarray  # int64 (S,): model class index of each used sign
    sign_images: torch.Tensor  # uint8 (S, 3, H, W) on device
    sign_masks: torch.Tensor  # bool (S, H, W) on device
    variants: tuple[LeafVariant, ...]
    bank: LeafBank
    stack: SignStack | None  # set when the pooled fast path applies (area-resizing models)
    criterion: Criterion
    target_index: int | None
    fingerprints: dict[str, str]


def select_signs(signs: SignSet, limit: int | None, seed: int) -> np.ndarray:
    """Indices of the signs to attack: all, or ``limit`` spread round-robin over classes.

    The choice within each class is random with ``seed``; the result is sorted.
    """
    n = len(signs)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    labels = np.asarray(signs.labels)[perm]
    rank = np.empty(n, dtype=np.int64)
    for c in np.unique(labels):
        sel = labels == c
        rank[sel] = np.arange(sel.sum())
    order = np.lexsort((labels, rank))
    return np.sort(perm[order[:limit]])


def load_leaf_variants(config: RunConfig) -> tuple[LeafVariant, ...]:
    """Load the leaf library, select leaves, and expand the colour axis."""
    from leafattack import leaves as leaves_mod

    folder = leaves_mod.builtin_leaves_dir() if config.leaves == "builtin" else Path(config.leaves)
    library = leaves_mod.load_leaves(folder)
    g = config.grid
    chosen = leaves_mod.select_leaves(library, ids=g.leaf_ids or None, species=g.species or None)
    if not chosen:
        raise LeafattackError(f"{folder}: the grid selects no leaves (check species and leaf ids)")
    for c in g.colours:
        if c != NATURAL and c not in leaves_mod.FALL_COLOURS:
            raise LeafattackError(
                f"unknown colour {c!r} (expected {NATURAL} or one of "
                f"{', '.join(leaves_mod.FALL_COLOURS)})"
            )
    out = []
    for leaf in chosen:
        for c in g.colours:
            if c == NATURAL or c == leaf.colour:
                out.append(LeafVariant(leaf.leaf_id, leaf.species, leaf.colour, leaf.rgba))
            else:
                rc = leaves_mod.recolour(leaf, c)
                out.append(LeafVariant(leaf.leaf_id, leaf.species, c, rc.rgba))
    return tuple(out)


def resize_signs(signs: SignSet, idx: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize the chosen signs to ``size``×``size``.

    Returns:
        uint8 (S, size, size, 3) images (area interpolation when shrinking) and bool
        (S, size, size) masks (nearest neighbour).
    """
    imgs = np.empty((len(idx), size, size, 3), dtype=np.uint8)
    masks = np.empty((len(idx), size, size), dtype=bool)
    for j, i in enumerate(idx):
        img = signs.images[i]
        interp = cv2.INTER_AREA if img.shape[0] > size or img.shape[1] > size else cv2.INTER_LINEAR
        imgs[j] = cv2.resize(img, (size, size), interpolation=interp)
        m = signs.mask(int(i)).astype(np.uint8)
        masks[j] = cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) > 0
    return imgs, masks


def _hash_arrays(parts: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def pooled_stack(clf: Classifier, images: torch.Tensor, masks: torch.Tensor) -> SignStack | None:
    """The pooled fast path's sign stack, when the model resizes by area averaging with an
    integer factor (exactly what :func:`~leafattack.compose.composite_pooled` computes)."""
    pp = clf.preprocess
    size = images.shape[-1]
    if pp.resize != "area" or size % pp.input_size or images.shape[-2] != size:
        return None
    return build_sign_stack(images, masks, size // pp.input_size)


def prepare(config: RunConfig) -> Prepared:
    """Load and validate model, signs and leaves; fail before any work with one-line errors."""
    device = resolve_device(config.device)
    clf = load_model(config.model, device, trust_torchscript=config.trust_torchscript)
    signs = load_signs(config.signs)
    if len(signs) == 0:
        raise LeafattackError(f"sign source {config.signs!r} holds no signs")
    idx = select_signs(signs, config.limit_signs, config.seed)
    labels = np.asarray(signs.labels)[idx]
    mapping = match_classes(signs.class_names, clf.class_names, used_labels=labels.tolist())
    true_labels = np.asarray(mapping, dtype=np.int64)[labels]
    target_index = None if config.target is None else clf.class_index(config.target)
    criterion = build_criterion(target_index, config.min_confidence)
    variants = load_leaf_variants(config)
    imgs, masks = resize_signs(signs, idx, config.sign_size)
    bank = build_leaf_bank([v.rgba for v in variants], config.grid.sizes, config.sign_size, device)
    fps = {
        "signs": fingerprint(signs),
        "leaves": _hash_arrays(
            [f"{v.leaf_id}|{v.species}|{v.colour}".encode() + v.rgba.tobytes() for v in variants]
        ),
        "model": clf.fingerprint,
    }
    images_t = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous().to(device)
    masks_t = torch.from_numpy(masks).to(device)
    stack = pooled_stack(clf, images_t, masks_t)
    return Prepared(
        config=config,
        classifier=clf,
        signs=signs,
        sign_ids=idx,
        true_labels=true_labels,
        sign_images=images_t,
        sign_masks=masks_t,
        variants=variants,
        bank=bank,
        stack=stack,
        criterion=criterion,
        target_index=target_index,
        fingerprints=fps,
    )


# ----------------------------------------------------------------------------- run directory


def default_out(config: RunConfig) -> Path:
    """``results/<model>-<hash of the identity keys>``: the same command finds the same dir."""
    flat = config.to_flat()
    ident = {k: flat.get(k) for k in IDENTITY_KEYS}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
    stem = "default" if config.model == "default" else Path(config.model.split(":")[-1]).stem
    return Path("results") / f"{stem or 'model'}-{digest}"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``RUN_DIR/run.lock`` (released by the kernel on death)."""
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            for _ in range(50):  # the holder writes its pid just after taking the lock
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                if holder:
                    break
                time.sleep(0.01)
            holder = holder or "unknown"
            raise RunLockedError(
                f"{run_dir}: another leafattack process is writing this run ({holder}); "
                f"wait for it or use another --out"
            ) from None
        holder_line = f"pid {os.getpid()} on {socket.gethostname()}\n".encode()
        os.pwrite(fd, holder_line, 0)  # overwrite, then cut: the file is never seen empty
        os.ftruncate(fd, len(holder_line))
        held = True
        yield
    finally:
        if held:  # a finished holder leaves no pid behind (a killed one does: it is stale)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _disk_error(path: Path, exc: OSError) -> LeafattackError:
    what = {
        errno.ENOSPC: "disk full",
        errno.EACCES: "permission denied",
        errno.EROFS: "read-only file system",
        errno.EDQUOT: "disk quota exceeded",
    }
    reason = what.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    return LeafattackError(
        f"{path}: {reason} while writing; results written so far are kept, rerun to resume"
    )


def run_config_document(config: RunConfig, fingerprints: Mapping[str, str]) -> dict[str, Any]:
    """The resolved config as written to ``config.toml``."""
    import leafattack

    doc = config.to_flat()
    doc.pop("out", None)
    doc["fingerprints"] = dict(fingerprints)
    doc["versions"] = {
        "leafattack": leafattack.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    return doc


def _check_resumable(run_dir: Path, doc: Mapping[str, Any], overwrite: bool) -> None:
    cfg_path = run_dir / "config.toml"
    if not cfg_path.exists():
        return
    try:
        old = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
        old = {}
    diffs = [k for k in IDENTITY_KEYS if old.get(k) != doc.get(k)]
    diffs += [
        f"{k} fingerprint"
        for k in ("signs", "leaves", "model")
        if old.get("fingerprints", {}).get(k) != doc["fingerprints"][k]
    ]
    if diffs and not overwrite:
        raise LeafattackError(
            f"{run_dir}: holds a run with a different config ({', '.join(diffs)}); "
            f"use another --out, or --overwrite to discard it"
        )
    if diffs or overwrite:
        for name in (
            "trials.csv",
            PROGRESS_FILE,
            "clean.csv",
            "summary.csv",
            "best.csv",
            "edges.csv",
            "edges_progress.json",
            "correlation.csv",
            "report.html",
        ):
            (run_dir / name).unlink(missing_ok=True)
        for sub in ("best", "figures"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)


def _read_progress(run_dir: Path) -> dict[str, Any]:
    return _valid_progress(run_dir / PROGRESS_FILE)


def _valid_progress(path: Path) -> dict[str, Any]:
    """A progress file's content; no progress when it is missing, damaged, or its ``rows``
    and ``bytes`` are not non-negative integers."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # ValueError: bad JSON or UTF-8
        data = None
    if not isinstance(data, dict) or not all(
        type(data.get(k)) is int and data[k] >= 0 for k in ("rows", "bytes")
    ):
        return {"rows": 0, "bytes": 0, "complete": False}
    return data


def _progress_fits(csv_path: Path, progress: Mapping[str, Any], total: int) -> bool:
    """Whether ``progress`` can describe ``csv_path``: at most ``total`` rows, and its byte
    count ends a line of the file (a CSV that is shorter, or another file, fails)."""
    n = progress["bytes"]
    if progress["rows"] > total or n < 1:
        return False
    try:
        with open(csv_path, "rb") as f:
            f.seek(n - 1)
            return f.read(1) == b"\n"
    except FileNotFoundError:
        return False


# ----------------------------------------------------------------------------- the engine


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run produced. DataFrames follow :mod:`leafattack.schema`."""

    run_dir: Path
    clean: pd.DataFrame
    trials: pd.DataFrame
    summary: pd.DataFrame
    best: pd.DataFrame
    n_trials: int
    seconds: float
    resumed_from: int
    edges: Any = None  # leafattack.analysis.EdgesResult when the run computed edges

    @property
    def trials_per_second(self) -> float:
        done = self.n_trials - self.resumed_from
        return done / self.seconds if self.seconds > 0 else float("nan")


def clean_predictions(prep: Prepared) -> pd.DataFrame:
    """Classify every chosen sign once, without leaves (CLEAN_COLUMNS)."""
    clf = prep.classifier
    probs_l = []
    for i in range(0, len(prep.sign_ids), prep.config.batch_size):
        probs_l.append(clf.predict_proba(prep.sign_images[i : i + prep.config.batch_size]).cpu())
    probs = torch.cat(probs_l) if probs_l else torch.zeros((0, clf.num_classes))
    pred = probs.argmax(1).numpy()
    true = prep.true_labels
    names = np.array(clf.class_names, dtype=object)
    return pd.DataFrame(
        {
            "sign_id": prep.sign_ids,
            "sign_file": [prep.signs.files[i] for i in prep.sign_ids],
            "true_label": true,
            "true_name": names[true],
            "pred_label": pred,
            "pred_name": names[pred],
            "pred_conf": probs.max(1).values.numpy().astype(np.float64),
            "true_conf": probs[np.arange(len(true)), torch.from_numpy(true)]
            .numpy()
            .astype(np.float64),
            "correct": pred == true,
        }
    )


def build_plan(prep: Prepared, active: np.ndarray) -> TrialPlan:
    """The trial space of a prepared run; inactive signs keep their trial ids but are skipped."""
    masks = prep.sign_masks.cpu().numpy()
    positions = []
    for m in masks:
        xy, index = sign_positions(prep.config.grid, m)
        positions.append(np.column_stack([xy, index.astype(np.float64)]))
    return TrialPlan(
        n_variants=len(prep.variants),
        sizes=prep.config.grid.sizes,
        angles=prep.config.grid.angles,
        positions=tuple(positions),
        active=active,
    )


def _fmt(values: Sequence[float]) -> np.ndarray:
    return np.array([FLOAT_FORMAT % v for v in values], dtype=object)


def placement_tensors(
    prep: Prepared, d: dict[str, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoded trials → (sign, bank entry, x, y, angle) tensors on the run's device."""
    dev = prep.sign_images.device
    angles = torch.tensor(prep.config.grid.angles, dtype=torch.float32, device=dev)
    return (
        torch.from_numpy(d["sign"]).to(dev),
        torch.from_numpy(d["variant"] * prep.bank.n_sizes + d["size_idx"]).to(dev),
        torch.from_numpy(d["x"]).float().to(dev),
        torch.from_numpy(d["y"]).float().to(dev),
        angles[torch.from_numpy(d["angle_idx"]).to(dev)],
    )


def composite_trials(
    prep: Prepared, d: dict[str, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-resolution composites of decoded trials: images (N, 3, H, W), occluded (N,),
    leaf alpha (N, H, W), as :func:`~leafattack.compose.composite` returns them."""
    sign, entry, x, y, angle = placement_tensors(prep, d)
    with torch.inference_mode():
        return composite(
            prep.sign_images[sign], prep.sign_masks[sign], prep.bank, entry, x, y, angle
        )


@dataclass
class BatchEvaluator:
    """Decode → composite → classify → judge, for one batch of active trials."""

    prep: Prepared
    plan: TrialPlan
    size_str: np.ndarray = field(init=False)
    angle_str: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.size_str = _fmt(self.prep.config.grid.sizes)
        self.angle_str = _fmt(self.prep.config.grid.angles)

    def evaluate(self, k0: int, k1: int) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        """Run active trials ``k0..k1``; returns decoded params and (N, K) probabilities."""
        prep = self.prep
        d = self.plan.decode(k0, k1)
        if prep.stack is not None:
            sign, entry, x, y, angle = placement_tensors(prep, d)
            with torch.inference_mode():
                images, occ = composite_pooled(prep.stack, prep.bank, sign, entry, x, y, angle)
        else:
            images, occ, _ = composite_trials(prep, d)
        probs = prep.classifier.predict_proba(images)
        d["occluded_frac"] = occ.double().cpu().numpy()
        return d, probs

    def rows(self, d: dict[str, np.ndarray], probs: torch.Tensor) -> pd.DataFrame:
        """Turn a batch's results into TRIAL_COLUMNS rows."""
        prep = self.prep
        true = torch.from_numpy(prep.true_labels[d["sign"]]).to(probs.device)
        success = prep.criterion(probs, true)
        pred = probs.argmax(1)
        pred_conf = probs.gather(1, pred[:, None])[:, 0]
        true_conf = probs.gather(1, true[:, None])[:, 0]
        names = np.array(prep.classifier.class_names, dtype=object)
        v = d["variant"]
        leaf_id = np.array([x.leaf_id for x in prep.variants], dtype=object)
        species = np.array([x.species for x in prep.variants], dtype=object)
        colour = np.array([x.colour for x in prep.variants], dtype=object)
        files = np.array(prep.signs.files, dtype=object)
        sign_ids = prep.sign_ids[d["sign"]]
        true_np = prep.true_labels[d["sign"]]
        pred_np = pred.cpu().numpy()
        return pd.DataFrame(
            {
                "trial_id": d["trial_id"],
                "sign_id": sign_ids,
                "sign_file": files[sign_ids],
                "true_label": true_np,
                "true_name": names[true_np],
                "leaf_id": leaf_id[v],
                "species": species[v],
                "colour": colour[v],
                "size": self.size_str[d["size_idx"]],
                "angle": self.angle_str[d["angle_idx"]],
                "x": _fmt_array(d["x"]),
                "y": _fmt_array(d["y"]),
                "position": d["position"],
                "occluded_frac": d["occluded_frac"],
                "pred_label": pred_np,
                "pred_name": names[pred_np],
                "pred_conf": pred_conf.double().cpu().numpy(),
                "true_conf": true_conf.double().cpu().numpy(),
                "success": success.cpu().numpy(),
            }
        )


def _fmt_array(a: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(a, return_inverse=True)
    return _fmt(uniq.tolist())[inv]


def _csv_bytes(df: pd.DataFrame, header: bool) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, header=header, float_format=FLOAT_FORMAT, lineterminator="\n")
    return buf.getvalue().encode()


def read_trials(run_dir: Path, usecols: Sequence[str] | None = None) -> pd.DataFrame:
    """Read ``trials.csv`` with the schema's dtypes (only the complete rows)."""
    path = run_dir / "trials.csv"
    dtypes = {k: v for k, v in schema.TRIAL_COLUMNS.items() if usecols is None or k in usecols}
    if not path.exists():
        return pd.DataFrame({k: pd.Series(dtype=v) for k, v in dtypes.items()})
    df = pd.read_csv(path, usecols=list(usecols) if usecols else None, dtype=dtypes)
    return df


def summarise(trials: pd.DataFrame) -> pd.DataFrame:
    """Success rates with 95% Wilson intervals by each factor (SUMMARY_COLUMNS)."""
    from leafattack.stats import wilson_interval

    t = trials.rename(columns={"true_name": "sign_class"})
    parts = []

    def add(factor: str, keys: pd.Series, frame: pd.DataFrame = t) -> None:
        g = frame["success"].astype(bool).groupby(keys, sort=True)
        n = g.size()
        s = g.sum()
        lo, hi = wilson_interval(s.to_numpy(), n.to_numpy())
        parts.append(
            pd.DataFrame(
                {
                    "factor": factor,
                    "level": [str(i) for i in n.index],
                    "trials": n.to_numpy(),
                    "successes": s.to_numpy(),
                    "rate": s.to_numpy() / np.maximum(n.to_numpy(), 1),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
        )

    if len(t):
        add("overall", pd.Series("all", index=t.index))
        for f in schema.SUMMARY_FACTORS:
            add(f, t[f])
        add("sign_class x species", t["sign_class"].astype(str) + " | " + t["species"].astype(str))
        # Per sign, as attack papers report it: a sign counts as fooled when any trial succeeds.
        per_sign = t.groupby("sign_id", sort=True).agg(
            success=("success", "any"), sign_class=("sign_class", "first")
        )
        add("signs_fooled", pd.Series("all", index=per_sign.index), per_sign)
        add("signs_fooled by sign_class", per_sign["sign_class"], per_sign)
    if not parts:
        return pd.DataFrame({k: pd.Series(dtype=v) for k, v in schema.SUMMARY_COLUMNS.items()})
    out = pd.concat(parts, ignore_index=True)
    return out[list(schema.SUMMARY_COLUMNS)]


def strongest(trials: pd.DataFrame) -> pd.DataFrame:
    """The strongest trial per sign: lowest true-class probability (ties: lowest trial_id)."""
    if trials.empty:
        return trials.copy()
    order = trials.sort_values(["sign_id", "true_conf", "trial_id"], kind="mergesort")
    return order.drop_duplicates("sign_id", keep="first").reset_index(drop=True)


def recompose(prep: Prepared, plan: TrialPlan, trial_ids: np.ndarray) -> np.ndarray:
    """Recreate the attacked images of given trial ids.

    Returns:
        uint8 (N, H, W, 3) composites at the sign resolution.
    """
    if len(trial_ids) == 0:
        return np.zeros((0, prep.config.sign_size, prep.config.sign_size, 3), np.uint8)
    d = decode_trial_ids(plan, np.asarray(trial_ids, dtype=np.int64))
    images, _, _ = composite_trials(prep, d)
    return to_uint8_hwc(images)


def decode_trial_ids(plan: TrialPlan, trial_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Decode arbitrary trial ids (of attacked signs) into per-trial parameters."""
    return plan.decode_active(plan.active_index(trial_ids))


def write_best(prep: Prepared, plan: TrialPlan, best: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """Write ``best/*.png`` (clean | attacked) and return best with an ``image`` column."""
    from leafattack.imageio import write_png

    out_dir = run_dir / "best"
    out_dir.mkdir(exist_ok=True)
    best = best.copy()
    if best.empty:
        best["image"] = pd.Series(dtype="string")
        return best
    attacked = recompose(prep, plan, best["trial_id"].to_numpy())
    pos = {int(s): j for j, s in enumerate(prep.sign_ids)}
    clean = prep.sign_images.permute(0, 2, 3, 1).cpu().numpy()
    names = []
    sign_ids = best["sign_id"].to_numpy(dtype=np.int64)
    true_names = best["true_name"].astype(str).to_numpy()
    for i, (sid, tname) in enumerate(zip(sign_ids, true_names, strict=True)):
        j = pos[int(sid)]
        gap = np.full((clean.shape[1], 4, 3), 255, np.uint8)
        pair = np.concatenate([clean[j], gap, attacked[i]], axis=1)
        name = f"best/{int(sid):05d}_{tname}.png"
        write_png(run_dir / name, pair)
        names.append(name)
    best["image"] = names
    return best


def batch_bounds(start: int, total: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch ranges ``[k0, k1)`` of active trials from ``start``, aligned to ``batch_size``.

    Alignment makes a resumed run compute exactly the batches of an uninterrupted one.
    """
    out = []
    k0 = start
    while k0 < total:
        k1 = min(total, (k0 // batch_size + 1) * batch_size)
        out.append((k0, k1))
        k0 = k1
    return out


def evaluate_range(prep: Prepared, plan: TrialPlan, k0: int, k1: int) -> bytes:
    """CSV rows (no header) of active trials ``k0..k1``, batch by batch as a local run does.

    Executors (local, Ray) call this on aligned ranges; its bytes are independent of which
    process computes them.
    """
    ev = BatchEvaluator(prep, plan)
    parts = []
    for a, b in batch_bounds(k0, k1, prep.config.batch_size):
        d, probs = ev.evaluate(a, b)
        parts.append(_csv_bytes(ev.rows(d, probs), header=False))
    return b"".join(parts)


def local_batches(prep: Prepared, plan: TrialPlan, start: int) -> Iterator[tuple[int, bytes]]:
    """The local executor: yields ``(k1, csv_bytes)`` per batch, in trial order."""
    ev = BatchEvaluator(prep, plan)
    for k0, k1 in batch_bounds(start, plan.total_active, prep.config.batch_size):
        d, probs = ev.evaluate(k0, k1)
        yield k1, _csv_bytes(ev.rows(d, probs), header=False)


def _ray_batches(prep: Prepared, plan: TrialPlan, start: int) -> Iterator[tuple[int, bytes]]:
    try:
        from leafattack.distributed import ray_batches
    except ImportError:
        raise LeafattackError(
            "--executor ray needs Ray: install it with  uv sync --extra ray  "
            "(or pip install 'leafattack[ray]')"
        ) from None
    return ray_batches(prep, plan, start)


def run(config: RunConfig) -> RunResult:
    """Run (or resume) a grid-search leaf attack and write its run directory.

    Returns:
        RunResult with the clean, trials, summary and best DataFrames.

    Raises:
        LeafattackError: bad input (before any work starts), a locked or mismatching run
            directory, or a write failure (results so far stay resumable).
    """
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
        from leafattack.analysis import run_edges

        result = dataclasses.replace(
            result, edges=run_edges(run_dir, prep=prep, plan=plan, quiet=config.quiet)
        )
    if config.report:
        from leafattack.report import write_report

        write_report(run_dir)
    return result


def _run_locked(prep: Prepared, run_dir: Path) -> tuple[RunResult, TrialPlan]:
    config = prep.config
    doc = run_config_document(config, prep.fingerprints)
    _check_resumable(run_dir, doc, config.overwrite)
    try:
        _write_atomic(run_dir / "config.toml", tomli_w.dumps(doc).encode())
        clean = clean_predictions(prep)
        _write_atomic(run_dir / "clean.csv", _csv_bytes(clean, header=True))
    except OSError as exc:
        raise _disk_error(run_dir, exc) from None
    wrong = clean.loc[~clean["correct"]]
    if len(wrong):
        log.info(
            "%d of %d signs are misclassified when clean and are not attacked: %s",
            len(wrong),
            len(clean),
            ", ".join(wrong["sign_file"].astype(str).head(10)),
        )
    plan = build_plan(prep, clean["correct"].to_numpy())
    total = plan.total_active
    trials_path = run_dir / "trials.csv"
    progress = _read_progress(run_dir)
    done = int(progress.get("rows", 0))
    if done and not _progress_fits(trials_path, progress, total):
        log.warning("%s does not describe trials.csv; the trials start over", PROGRESS_FILE)
        done = 0
    start_rows = done
    t0 = time.perf_counter()
    try:
        if done == 0 or not trials_path.exists():
            done = 0
            start_rows = 0
            _write_atomic(trials_path, ",".join(schema.TRIAL_COLUMNS).encode() + b"\n")
            _write_atomic(
                run_dir / PROGRESS_FILE,
                json.dumps(
                    {"rows": 0, "bytes": trials_path.stat().st_size, "complete": False}
                ).encode(),
            )
            progress = _read_progress(run_dir)
        with open(trials_path, "r+b") as f:
            f.truncate(int(progress["bytes"]))
            f.seek(0, os.SEEK_END)
            batches = (
                local_batches(prep, plan, done)
                if config.executor == "local"
                else _ray_batches(prep, plan, done)
            )
            with tqdm(
                total=total,
                initial=done,
                unit="trial",
                unit_scale=True,
                disable=config.quiet,
                desc="attack",
                dynamic_ncols=True,
            ) as bar:
                for k1, data in batches:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                    done = k1
                    _write_atomic(
                        run_dir / PROGRESS_FILE,
                        json.dumps(
                            {"rows": done, "bytes": f.tell(), "complete": done == total}
                        ).encode(),
                    )
                    bar.update(k1 - bar.n)
        seconds = time.perf_counter() - t0
        trials = read_trials(run_dir)
        summary = summarise(trials)
        _write_atomic(run_dir / "summary.csv", _csv_bytes(summary, header=True))
        best = write_best(prep, plan, strongest(trials), run_dir)
        _write_atomic(run_dir / "best.csv", _csv_bytes(best, header=True))
    except OSError as exc:
        raise _disk_error(run_dir, exc) from None
    return RunResult(run_dir, clean, trials, summary, best, total, seconds, start_rows), plan


def open_run(
    run_dir: str | os.PathLike[str], *, device: str = "auto"
) -> tuple[Prepared, TrialPlan]:
    """Re-create the prepared state and trial plan of an existing run directory.

    Checks that the leaves, signs and model on disk still match the fingerprints stored
    in ``config.toml``.
    """
    rd = Path(run_dir)
    cfg_path = rd / "config.toml"
    if not cfg_path.exists():
        raise LeafattackError(f"{rd}: not a run directory (expected config.toml, trials.csv)")
    data = load_config(cfg_path)
    config = config_from_mapping({**data, "device": device, "out": str(rd)})
    prep = prepare(config)
    stored = data.get("fingerprints", {})
    stale = [k for k, v in prep.fingerprints.items() if stored.get(k) != v]
    if stale:
        raise LeafattackError(
            f"{rd}: {', '.join(stale)} on disk no longer match the fingerprints in "
            f"config.toml; rerun the attack with --overwrite"
        )
    clean_path = rd / "clean.csv"
    if not clean_path.exists():
        raise LeafattackError(f"{rd}: clean.csv is missing (the run never started)")
    clean = pd.read_csv(clean_path)
    if "correct" not in clean.columns:
        raise LeafattackError(f"{clean_path}: missing column correct")
    return prep, build_plan(prep, clean["correct"].to_numpy(dtype=bool))
