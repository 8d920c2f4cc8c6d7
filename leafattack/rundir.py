"""The run directory: lock, atomic writes, progress, the resumable append-log, the trials reader."""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import logging
import os
import queue
import shutil
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

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
"""Progress of trials.csv (see :class:`AppendLog`), or of trials.parquet (:class:`PartsLog`)."""

TRIALS_CSV = "trials.csv"
TRIALS_PARQUET = "trials.parquet"
"""A folder of Parquet part files ``part-000000.parquet``, ..., one row group each, in
trial order (see :class:`PartsLog`)."""

FORMATS: tuple[str, ...] = ("auto", "csv", "parquet")
"""Values of ``RunConfig.trials_format``."""

PARQUET_FROM_TRIALS = 1_000_000
"""``trials_format = "auto"`` writes trials.parquet from this many trials on (when pyarrow
is installed), else trials.csv. Chosen from the measurements in docs/performance.md: a
trials.csv row is about 148 bytes and costs about 25 us of CPU to format, a Parquet row
about 25 bytes and 3-12 us; from a million trials on, the CSV passes 140 MB and
its formatting and reading back (tens of seconds) are no longer small next to the run."""

_POW10 = 10.0 ** np.arange(23)


def round_like_csv(values: np.ndarray) -> np.ndarray:
    """The float64 values a CSV reader gets back from ``FLOAT_FORMAT % v`` (``%.6g``).

    Bit-identical to ``float("%.6g" % v)`` for every value (NaN and infinities included):
    values whose 6-digit scaling is exact, or provably rounds the right way, are rounded
    with numpy; the rest (very small or large magnitudes) are formatted one by one.

    Shape:
        values: float (N,) (any shape). Returns float64 of the same shape.

    Example:
        >>> round_like_csv(np.array([0.123456789, 2.0**-9]))
        array([0.123457  , 0.00195312])
    """
    x = np.asarray(values, dtype=np.float64)
    ax = np.abs(x)
    finite = np.isfinite(x) & (ax > 0)
    safe = np.where(finite, ax, 1.0)
    p = 5 - np.floor(np.log10(safe)).astype(np.int64)
    scale = _POW10[np.clip(p, 0, 22)]
    prod = safe * scale
    # the exact error of the product (Dekker's two-product with Veltkamp splitting)
    ca, cb = 134217729.0 * safe, 134217729.0 * scale
    a_hi = ca - (ca - safe)
    b_hi = cb - (cb - scale)
    a_lo, b_lo = safe - a_hi, scale - b_hi
    err = ((a_hi * b_hi - prod) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    n = np.rint(prod)
    floor = np.floor(prod)
    tie = (prod - floor == 0.5) & (err != 0)  # a computed tie whose exact value is not
    n = np.where(tie, floor + (err > 0), n)
    fast = finite & (p >= 0) & (p <= 22) & (prod >= 1e5) & (prod < 1e6)
    out = np.where(fast, np.copysign(n / scale, x), x)
    slow = finite & ~fast
    if slow.any():
        out[slow] = [float(FLOAT_FORMAT % v) for v in x[slow].tolist()]
    return out


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
        shutil.rmtree(run_dir / TRIALS_PARQUET, ignore_errors=True)
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


def _text_cells(values: Any) -> list[Any]:
    """Strings of a ``string`` column as CSV cells: missing values (None, NaN, pd.NA) as
    empty cells, as pandas writes them."""
    arr = np.asarray(values, dtype=object)
    cells = arr.tolist()
    missing = pd.isna(arr)
    if missing.any():
        for i in np.flatnonzero(missing).tolist():
            cells[i] = ""
    return cells


def columns_csv_bytes(columns: Mapping[str, Any], dtypes: Mapping[str, str]) -> bytes:
    """A batch of trial columns as headerless CSV bytes, without building a DataFrame.

    Byte-identical to ``csv_bytes(typed_trials(columns, dtypes), header=False)`` (tested
    against it): floats as ``FLOAT_FORMAT`` text and NaN as an empty cell, integers and
    booleans as Python writes them, strings quoted where the ``csv`` module's minimal
    quoting (which pandas uses) quotes them. About 4x faster than going through pandas, which
    formats every float cell through several Python calls.

    Args:
        columns: name -> (N,) values (floats as numbers, strings as str objects).
        dtypes: the table's columns in order (``int64``, ``float64``, ``bool`` or
            ``string``).
    """
    cells: list[list[Any]] = []
    for name, dtype in dtypes.items():
        v = columns[name]
        if dtype == "float64":
            fmt = FLOAT_FORMAT
            cells.append([fmt % x if x == x else "" for x in np.asarray(v, np.float64).tolist()])
        elif dtype == "int64":
            cells.append(np.asarray(v, dtype=np.int64).tolist())
        elif dtype == "bool":
            cells.append(np.asarray(v, dtype=bool).tolist())
        else:
            cells.append(_text_cells(v))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(zip(*cells, strict=True))
    return buf.getvalue().encode()


class ResumeMismatch(LeafattackError):
    """A progress file's recorded facts (``meta``) differ from the resuming process's."""


def _resumable_rows(
    table: AppendLog | PartsLog, progress: Mapping[str, Any], intact: Callable[[], bool]
) -> int:
    """The complete rows ``table`` can continue from, per its ``progress``: 0 (with a
    warning) when the recorded facts differ from ``table.meta`` or ``intact()`` says the
    files do not hold what progress records.

    Raises:
        ResumeMismatch: resuming would change one of the table's ``strict_meta`` facts.
    """
    done = int(progress["rows"])
    if not done:
        return 0
    for key in table.strict_meta:
        if key in progress and progress[key] != table.meta.get(key):
            raise ResumeMismatch(
                f"{table.path.parent}: resuming would change the {key.replace('_', ' ')} "
                f"recorded in {table.progress_path.name}; rerun with --overwrite"
            )
    stale = any(progress.get(k) != v for k, v in table.meta.items())
    if stale or not intact():
        log.warning(
            "%s does not describe %s; it starts over", table.progress_path.name, table.path.name
        )
        return 0
    return done


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
        done = _resumable_rows(
            self, progress, lambda: progress_fits(self.path, progress, self.total)
        )
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
        self.write(data)
        self.commit(rows)

    def write(self, data: bytes) -> None:
        """Write complete CSV rows (no header), not yet recorded as complete."""
        self._file.write(data)

    def commit(self, rows: int) -> None:
        """Make everything written durable (fsync), then record ``rows`` complete rows."""
        f = self._file
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


class PartsLog:
    """A table written in Parquet part files that resumes exactly after SIGKILL.

    ``path`` is a folder of ``part-000000.parquet``, ``part-000001.parquet``, ...: each
    committed chunk of rows is one file holding one row group (typed columns, strings
    dictionary-encoded), written to a temporary name, fsynced and renamed, before the
    progress file records it. :meth:`open` deletes parts past the recorded count. Same
    interface as :class:`AppendLog`, with DataFrames instead of CSV bytes.
    """

    def __init__(
        self,
        path: Path,
        progress_path: Path,
        *,
        columns: Mapping[str, str],
        total: int,
        meta: Mapping[str, Any] | None = None,
        strict_meta: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.progress_path = progress_path
        self.columns = dict(columns)
        self.total = total
        self.meta = dict(meta or {})
        self.strict_meta = tuple(strict_meta)
        self.rows = 0
        self.started_from = 0
        self.parts = 0
        self.bytes = 0
        self._pending: list[pd.DataFrame] = []

    def _progress_doc(self) -> bytes:
        doc = {
            "rows": self.rows,
            "bytes": self.bytes,
            "parts": self.parts,
            "complete": self.rows == self.total,
        }
        return json.dumps({**doc, **self.meta}).encode()

    def _part(self, i: int) -> Path:
        return self.path / f"part-{i:06d}.parquet"

    def open(self) -> int:
        progress = read_progress(self.progress_path)
        parts = progress.get("parts")
        done = _resumable_rows(
            self,
            progress,
            lambda: (
                type(parts) is int
                and 0 < parts
                and int(progress["rows"]) <= self.total
                and all(self._part(i).exists() for i in range(parts))
            ),
        )
        if done == 0:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir()
            self.rows = self.parts = self.bytes = 0
            write_atomic(self.progress_path, self._progress_doc())
        else:
            self.parts, self.bytes = int(progress["parts"]), int(progress["bytes"])
            keep = {self._part(i).name for i in range(self.parts)}
            for extra in self.path.iterdir():
                if extra.name not in keep:  # uncommitted parts, temporary files
                    extra.unlink()
        self.rows = self.started_from = done
        return done

    def write(self, frame: pd.DataFrame) -> None:
        """Hold typed rows (:func:`typed_trials`) until the next :meth:`commit`."""
        self._pending.append(frame)

    def commit(self, rows: int) -> None:
        """Write the held rows as one part (one row group), then record ``rows``."""
        if not self._pending:
            return
        frame = pd.concat(self._pending, ignore_index=True) if len(self._pending) > 1 else (
            self._pending[0]
        )
        self._pending = []
        path = self._part(self.parts)
        write_atomic(path, parquet_bytes(frame, self.columns))
        self.parts += 1
        self.bytes += path.stat().st_size
        self.rows = rows
        write_atomic(self.progress_path, self._progress_doc())

    def append(self, rows: int, frame: pd.DataFrame) -> None:
        self.write(frame)
        self.commit(rows)

    def close(self) -> None:
        self._pending = []

    def __enter__(self) -> int:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise LeafattackError(
            "Parquet trials need pyarrow (a dependency of leafattack): reinstall with  uv sync"
        ) from None
    return pa, pq


def parquet_available() -> bool:
    """Whether pyarrow can be imported (Parquet trials can be written and read)."""
    try:
        _pyarrow()
    except LeafattackError:
        return False
    return True


def parquet_bytes(frame: pd.DataFrame, columns: Mapping[str, str]) -> bytes:
    """One Parquet file of one row group: int64, float64 and bool columns, strings
    dictionary-encoded; ``columns`` (name -> schema dtype) fixes their order and types."""
    pa, pq = _pyarrow()
    types = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
             "string": pa.string()}
    arrays = []
    for name, dtype in columns.items():
        col = frame[name]
        if dtype == "string":
            values = col.astype(object).to_numpy()
            arrays.append(pa.array(values, type=pa.string()))
        else:
            arrays.append(pa.array(col.to_numpy(dtype=dtype), type=types[dtype]))
    table = pa.Table.from_arrays(arrays, names=list(columns))
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        row_group_size=max(1, len(frame)),
        use_dictionary=[n for n, d in columns.items() if d == "string"],
        compression="zstd",
    )
    return bytes(sink.getvalue().to_pybytes())


def typed_trials(columns: Mapping[str, Any], dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A batch of trial columns as :func:`read_trials` returns those rows: floats rounded
    as the CSV writes them (:func:`round_like_csv`), schema dtypes, columns in order.

    Args:
        columns: name -> (N,) values (floats as numbers, strings as str objects).
        dtypes: the schema of the table (:func:`leafattack.schema.trial_columns`).
    """
    out = {}
    for name, dtype in dtypes.items():
        v = columns[name]
        if dtype == "float64":
            out[name] = pd.Series(round_like_csv(np.asarray(v, dtype=np.float64)), dtype=dtype)
        else:
            out[name] = pd.Series(v).astype(cast(Any, dtype))
    return pd.DataFrame(out)


class BackgroundWriter:
    """Writes a table's batches on a background thread, through a bounded queue.

    The caller :meth:`put` s each batch (column arrays, or CSV bytes from a remote
    executor) with the row count after it, and goes on computing. The thread
    encodes and writes each batch and, every ``commit_rows`` rows (and at the end),
    commits: data made durable first, then progress recorded; so a kill leaves only
    durable rows recorded. ``observe`` (if given) sees every batch's typed rows, in order.

    An exception on the thread (a full disk, a failing observer) is raised again, as the
    same object, by the next :meth:`put` or by :meth:`close`.
    """

    def __init__(
        self,
        table: AppendLog | PartsLog,
        *,
        dtypes: Mapping[str, str],
        commit_rows: int,
        observe: Callable[[pd.DataFrame], None] | None = None,
        max_queue: int = 4,
        observe_rows: int = 65_536,
    ) -> None:
        """``observe_rows``: column batches are handed to ``observe`` in blocks of about
        this many rows (one typed DataFrame per block instead of per batch: pandas' fixed
        cost per frame dominates a small batch); CSV-bytes batches are observed one by
        one. Order is kept either way."""
        self.table = table
        self.dtypes = dict(dtypes)
        self.commit_rows = max(1, commit_rows)
        self.observe = observe
        self.observe_rows = max(1, observe_rows)
        self._unobserved: list[Mapping[str, Any]] = []
        self._unobserved_rows = 0
        self._queue: queue.Queue[tuple[int, Any] | None] = queue.Queue(maxsize=max_queue)
        self._error: BaseException | None = None
        self._last = table.rows
        self._thread = threading.Thread(target=self._loop, name="leafattack-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        pending = False
        while True:
            item = self._queue.get()
            if item is None or self._error is not None:
                if item is None:
                    break
                continue  # drain after an error; nothing more is written
            rows, payload = item
            try:
                self._write(payload)
                pending = True
                if rows % self.commit_rows == 0 or rows == self.table.total:
                    self.table.commit(rows)
                    pending = False
            except BaseException as exc:  # handed to the caller's thread
                self._error = exc
            self._last = rows
        if self._error is None:
            try:
                self._observe_pending()
            except BaseException as exc:
                self._error = exc
        if pending and self._error is None:
            try:
                self.table.commit(self._last)
            except BaseException as exc:
                self._error = exc

    def _write(self, payload: Mapping[str, Any] | bytes) -> None:
        if isinstance(payload, bytes):
            frame = None
            if isinstance(self.table, AppendLog):
                self.table.write(payload)
            if isinstance(self.table, PartsLog) or self.observe is not None:
                frame = read_csv_rows(payload, self.dtypes)
            if isinstance(self.table, PartsLog):
                assert frame is not None
                self.table.write(frame)
            if self.observe is not None:
                assert frame is not None
                self._observe_pending()
                self.observe(frame)
            return
        if isinstance(self.table, AppendLog):
            self.table.write(columns_csv_bytes(payload, self.dtypes))
        else:
            self.table.write(typed_trials(payload, self.dtypes))
        if self.observe is not None:
            self._unobserved.append(payload)
            self._unobserved_rows += len(payload[next(iter(self.dtypes))])
            if self._unobserved_rows >= self.observe_rows:
                self._observe_pending()

    def _observe_pending(self) -> None:
        """Hand the buffered column batches to ``observe`` as one typed frame."""
        if not self._unobserved or self.observe is None:
            return
        parts, self._unobserved, self._unobserved_rows = self._unobserved, [], 0
        merged = {
            name: np.concatenate([np.asarray(p[name]) for p in parts]) for name in self.dtypes
        }
        self.observe(typed_trials(merged, self.dtypes))

    def put(self, rows: int, payload: Mapping[str, Any] | bytes) -> None:
        """Queue a batch, as column arrays (:func:`typed_trials` input) or headerless CSV
        rows; ``rows``: the table's row count after it."""
        if self._error is not None:
            self._finish()
        self._queue.put((rows, payload))

    def _finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Write and commit what was queued; raise the thread's error, if any."""
        if self._thread.is_alive():
            self._finish()
        elif self._error is not None:
            raise self._error


def read_csv_rows(data: bytes, dtypes: Mapping[str, str]) -> pd.DataFrame:
    """Headerless CSV trial rows -> the typed DataFrame :func:`read_trials` would give."""
    if not data:
        return pd.DataFrame({k: pd.Series(dtype=v) for k, v in dtypes.items()})
    return pd.read_csv(io.BytesIO(data), header=None, names=list(dtypes), dtype=dict(dtypes))


def trials_format(run_dir: Path) -> str:
    """``parquet`` when the run directory holds trials.parquet, else ``csv``."""
    return "parquet" if (run_dir / TRIALS_PARQUET).is_dir() else "csv"


def read_trials(
    run_dir: Path, columns: Sequence[str] | None = None, *, require: bool = False
) -> pd.DataFrame:
    """The complete rows of the run's trials (trials.csv or trials.parquet), typed by
    :func:`leafattack.schema.trial_columns` (with ``target_conf`` when the run is targeted).

    The one reader of trials tables: every summary, edge, control, robustness and report
    reader calls it, and gets identical DataFrames from either format. Rows past the
    progress recorded in ``progress.json`` (a batch being written, or cut by a kill) are
    not read; without a progress file the whole table is read.

    Args:
        columns: read only these columns (they must exist).
        require: raise instead of returning an empty table when the file is missing.

    Raises:
        LeafattackError: an unreadable file or missing columns (one line).
    """
    frames = list(iter_trials(run_dir, columns, require=require, chunk_rows=None))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def iter_trials(
    run_dir: Path,
    columns: Sequence[str] | None = None,
    *,
    require: bool = False,
    chunk_rows: int | None = 1_000_000,
    limit: int | None = None,
) -> Iterator[pd.DataFrame]:
    """:func:`read_trials` in chunks of at most ``chunk_rows`` rows (None: one chunk), and
    at most ``limit`` rows in all. Always yields at least one (possibly empty) frame."""
    known = {
        **schema.trial_columns(targeted=True, scenes=True),
        **schema.trial_columns(targeted=True),
    }
    wanted = list(columns) if columns is not None else list(schema.TRIAL_COLUMNS)
    empty = pd.DataFrame({k: pd.Series(dtype=known[k]) for k in wanted})
    if trials_format(run_dir) == "parquet":
        yield from _iter_parquet(run_dir, columns, chunk_rows, limit, empty)
        return
    path = run_dir / TRIALS_CSV
    if not path.exists():
        if require:
            raise LeafattackError(f"{path}: missing (expected the trials of a run)")
        yield empty
        return
    progress = read_progress(run_dir / PROGRESS_FILE)
    done = progress["bytes"]
    try:
        head = pd.read_csv(path, nrows=0)
    except pd.errors.EmptyDataError:
        yield empty
        return
    except (pd.errors.ParserError, UnicodeDecodeError):
        raise LeafattackError(f"{path}: not a readable trials CSV") from None
    except OSError as exc:
        raise LeafattackError(f"{path}: cannot read ({exc.strerror or exc})") from None
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
        size = path.stat().st_size
        with open(path, "rb") as f:
            # a batch being written (or killed mid-write) is not read
            source: Any = f if not 0 < done < size else io.BytesIO(f.read(done))
            reader: Any = pd.read_csv(
                source, usecols=wanted, dtype=dtypes, chunksize=chunk_rows, nrows=limit
            )
            if chunk_rows is None:
                yield reader[wanted]
                return
            any_chunk = False
            for chunk in reader:
                any_chunk = True
                yield chunk[wanted].reset_index(drop=True)
            if not any_chunk:
                yield empty[wanted]
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeafattackError(f"{path}: not a valid trials table ({first})") from None
    except OSError as exc:
        raise LeafattackError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _iter_parquet(
    run_dir: Path,
    columns: Sequence[str] | None,
    chunk_rows: int | None,
    limit: int | None,
    empty: pd.DataFrame,
) -> Iterator[pd.DataFrame]:
    """The committed parts of trials.parquet, typed as the CSV reader types them."""
    pa, pq = _pyarrow()
    folder = run_dir / TRIALS_PARQUET
    progress = read_progress(run_dir / PROGRESS_FILE)
    parts = progress.get("parts")
    n_parts = parts if type(parts) is int else len(list(folder.glob("part-*.parquet")))
    files = [folder / f"part-{i:06d}.parquet" for i in range(n_parts)]
    known = {
        **schema.trial_columns(targeted=True, scenes=True),
        **schema.trial_columns(targeted=True),
    }
    left = limit
    buffer: list[pd.DataFrame] = []
    buffered = 0
    any_chunk = False
    for path in files:
        if left is not None and left <= 0:
            break
        try:
            names = pq.read_schema(path).names
            if columns is None:
                wanted = list(
                    schema.trial_columns(schema.TARGET_CONF in names, "n_leaves" in names)
                )
            else:
                wanted = list(columns)
            missing = [c for c in wanted if c not in names]
            if missing:
                raise LeafattackError(
                    f"{path}: missing columns {', '.join(missing)} (expected leafattack's trials)"
                )
            table = pq.read_table(path, columns=wanted)
        except (OSError, pa.ArrowException) as exc:
            raise LeafattackError(f"{path}: not a readable Parquet part ({exc})") from None
        frame = table.to_pandas()
        for name in wanted:
            frame[name] = frame[name].astype(known[name])
        if left is not None:
            frame = frame.iloc[:left]
            left -= len(frame)
        buffer.append(frame)
        buffered += len(frame)
        if chunk_rows is not None and buffered >= chunk_rows:
            any_chunk = True
            yield pd.concat(buffer, ignore_index=True)
            buffer, buffered = [], 0
    if buffer:
        any_chunk = True
        yield pd.concat(buffer, ignore_index=True)
    if not any_chunk:
        yield empty
