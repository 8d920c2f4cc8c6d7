"""The run directory: lock, atomic writes, progress, the resumable append-log, the trials reader."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import shutil
import socket
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from leafattack import schema
from leafattack.config import IDENTITY_KEYS, RunConfig, absolute_paths
from leafattack.errors import LeafattackError, RunLockedError
from leafattack.version import __version__

log = logging.getLogger(__name__)

FLOAT_FORMAT = "%.6g"
"""How every float in a run's CSV tables is written."""


PROGRESS_FILE = "progress.json"
"""Progress of trials.csv (see :class:`AppendLog`)."""


LOCK_FILE = "run.lock"


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


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def disk_error(path: Path, exc: OSError) -> LeafattackError:
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
    """The resolved config as written to ``config.toml``: absolute paths (a run directory
    can be re-opened from any working directory), fingerprints and versions."""
    doc = absolute_paths(config).to_flat()
    doc.pop("out", None)
    doc["fingerprints"] = dict(fingerprints)
    doc["versions"] = {
        "leafattack": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    return doc


def check_resumable(run_dir: Path, doc: Mapping[str, Any], overwrite: bool) -> None:
    """Refuse a run directory that holds another config (unless ``overwrite``, which
    removes its results); a directory with the same config is resumed."""
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
            "signs.csv",
            "summary.csv",
            "best.csv",
            "edges.csv",
            "edges_progress.json",
            "leaves.csv",
            "correlation.csv",
            "controls.csv",
            "controls_progress.json",
            "controls_summary.csv",
            "report.html",
        ):
            (run_dir / name).unlink(missing_ok=True)
        for sub in ("best", "figures"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)


def check_attacked_set(run_dir: Path, attacked: list[int]) -> None:
    """Refuse, before anything is written, a resume that would attack other signs than
    the rows in ``trials.csv`` were made for (clean predictions that changed with another
    device or torch version).

    Raises:
        ResumeMismatch: ``progress.json`` records rows and another attacked set.
    """
    progress = read_progress(run_dir / PROGRESS_FILE)
    if progress["rows"] and "attacked" in progress and progress["attacked"] != attacked:
        raise ResumeMismatch(
            f"{run_dir}: resuming would change the attacked signs recorded in "
            f"{PROGRESS_FILE} (clean predictions differ from the first run's); "
            f"rerun with --overwrite"
        )


def read_progress(path: Path) -> dict[str, Any]:
    """A progress file's content; no progress when it is missing, damaged, or its ``rows``
    and ``bytes`` are not non-negative integers."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # ValueError: bad JSON or UTF-8
        data = None
    except OSError as exc:
        raise LeafattackError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or not all(
        type(data.get(k)) is int and data[k] >= 0 for k in ("rows", "bytes")
    ):
        return {"rows": 0, "bytes": 0, "complete": False}
    return data


def progress_fits(csv_path: Path, progress: Mapping[str, Any], total: int) -> bool:
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


def csv_bytes(df: pd.DataFrame, header: bool) -> bytes:
    """``df`` as CSV bytes in the project's format (``%.6g`` floats, ``\\n`` line ends)."""
    buf = io.StringIO()
    df.to_csv(buf, index=False, header=header, float_format=FLOAT_FORMAT, lineterminator="\n")
    return buf.getvalue().encode()


class ResumeMismatch(LeafattackError):
    """A progress file's recorded facts (``meta``) differ from the resuming process's."""


class AppendLog:
    """A CSV table written batch by batch that resumes exactly after SIGKILL.

    A JSON progress file beside the table records how many rows and bytes of it are
    complete, plus ``meta``: facts that must hold for the rows to be continued (for
    example the attacked signs, or the analysis settings). Every appended batch is
    fsynced before the progress file is atomically replaced, so a process killed at any
    moment leaves a table whose first ``bytes`` bytes are complete rows; :meth:`open`
    truncates to them and says where to continue.

    Example:
        >>> log = AppendLog(run_dir / "edges.csv", run_dir / "edges_progress.json",
        ...                 header=b"trial_id,x\\n", total=100, meta={"config": {...}})
        >>> with log as start:          # rows already complete
        ...     for k1, data in batches(start):
        ...         log.append(k1, data)
    """

    def __init__(
        self,
        path: Path,
        progress_path: Path,
        *,
        header: bytes,
        total: int,
        meta: Mapping[str, Any] | None = None,
        strict_meta: Sequence[str] = (),
    ) -> None:
        """
        Args:
            path: the table; ``progress_path``: its progress file.
            header: the CSV header line (ending in a newline).
            total: the number of rows of the complete table.
            meta: JSON-serialisable facts stored in the progress file. A stored progress
                whose meta differs starts the table over, except for the keys in
                ``strict_meta``, whose difference raises :class:`ResumeMismatch`.
        """
        self.path = path
        self.progress_path = progress_path
        self.header = header
        self.total = total
        self.meta = dict(meta or {})
        self.strict_meta = tuple(strict_meta)
        self.rows = 0
        self.started_from = 0
        self._file: Any = None

    def _progress_doc(self) -> bytes:
        doc = {"rows": self.rows, "bytes": self._size(), "complete": self.rows == self.total}
        return json.dumps({**doc, **self.meta}).encode()

    def _size(self) -> int:
        return int(self._file.tell()) if self._file is not None else self.path.stat().st_size

    def open(self) -> int:
        """Open for appending; returns the number of complete rows to continue from."""
        progress = read_progress(self.progress_path)
        done = int(progress["rows"])
        if done:
            for key in self.strict_meta:
                if key in progress and progress[key] != self.meta.get(key):
                    raise ResumeMismatch(
                        f"{self.path.parent}: resuming would change the {key.replace('_', ' ')} "
                        f"recorded in {self.progress_path.name}; rerun with --overwrite"
                    )
            stale = any(progress.get(k) != v for k, v in self.meta.items())
            if stale or not progress_fits(self.path, progress, self.total):
                log.warning(
                    "%s does not describe %s; it starts over",
                    self.progress_path.name,
                    self.path.name,
                )
                done = 0
        if done == 0:
            write_atomic(self.path, self.header)
            self.rows = 0
            write_atomic(self.progress_path, self._progress_doc())
            progress = read_progress(self.progress_path)
        self._file = open(self.path, "r+b")  # noqa: SIM115 (closed by close())
        self._file.truncate(int(progress["bytes"]))
        self._file.seek(0, os.SEEK_END)
        self.rows = self.started_from = done
        return done

    def append(self, rows: int, data: bytes) -> None:
        """Append complete CSV rows (no header); ``rows`` is the row count after them."""
        f = self._file
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        self.rows = rows
        write_atomic(self.progress_path, self._progress_doc())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> int:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_trials(
    run_dir: Path, columns: Sequence[str] | None = None, *, require: bool = False
) -> pd.DataFrame:
    """The complete rows of ``trials.csv``, typed by :func:`leafattack.schema.trial_columns`
    (with ``target_conf`` when the run is targeted).

    The one reader of trials tables. Rows past the byte count recorded in
    ``progress.json`` (a batch being written, or cut by a kill) are not read; without a
    progress file the whole table is read.

    Args:
        columns: read only these columns (they must exist).
        require: raise instead of returning an empty table when the file is missing.

    Raises:
        LeafattackError: an unreadable file or missing columns (one line).
    """
    path = run_dir / "trials.csv"
    known = {
        **schema.trial_columns(targeted=True, scenes=True),
        **schema.trial_columns(targeted=True),
    }
    wanted = list(columns) if columns is not None else list(schema.TRIAL_COLUMNS)
    empty = pd.DataFrame({k: pd.Series(dtype=known[k]) for k in wanted})
    if not path.exists():
        if require:
            raise LeafattackError(f"{path}: missing (expected the trials of a run)")
        return empty
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LeafattackError(f"{path}: cannot read ({exc.strerror or exc})") from None
    progress = read_progress(run_dir / PROGRESS_FILE)
    done = progress["bytes"]
    if 0 < done < len(raw):
        raw = raw[:done]  # a batch being written (or killed mid-write) is not read
    if not raw.strip():
        return empty
    try:
        head = pd.read_csv(io.BytesIO(raw), nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise LeafattackError(f"{path}: not a readable trials CSV") from None
    scenes = "n_leaves" in head.columns
    if scenes:
        known = {**schema.trial_columns(targeted=True, scenes=True), **known}
    if columns is None:
        wanted = list(schema.trial_columns(schema.TARGET_CONF in head.columns, scenes))
    dtypes = {k: known[k] for k in wanted}
    missing = [c for c in wanted if c not in head.columns]
    if missing:
        raise LeafattackError(
            f"{path}: missing columns {', '.join(missing)} (expected leafattack's trials.csv)"
        )
    try:
        return pd.read_csv(io.BytesIO(raw), usecols=wanted, dtype=dtypes)[wanted]
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeafattackError(f"{path}: not a valid trials table ({first})") from None
