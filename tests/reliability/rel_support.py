"""Helpers shared by the reliability tests (imported by them; not a test module).

The expensive part of killing a CLI run twenty times is starting Python and importing torch
(seconds per start on a busy machine). :class:`Zygote` pays that once: it is a Python process
that imports leafattack and then forks one child per command; each child runs
``python -m leafattack ARGS`` (``runpy`` on ``leafattack.__main__``) with its stdout and
stderr in files, and can be SIGKILLed by pid like any process. Children can install test
hooks first (see ``HOOKS``): a write that dies half way, a file-size limit, a pause.
"""

from __future__ import annotations

import builtins
import importlib
import io
import json
import os
import resource
import runpy
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REL = Path(__file__).resolve().parent
TESTS = REL.parent
ROOT = TESTS.parent

GRID_ARGS = ("--species", "maple,oak", "--sizes", "0.3,0.5", "--angles", "0,90",
             "--positions", "3x3")
"""4 signs x 6 leaves x 2 sizes x 2 angles x 9 positions = 864 trials."""
N_TRIALS = 864
DIED_IN_HOOK = 86
"""Exit status of a child that a hook made die in the middle of a write."""


@dataclass(frozen=True)
class Reference:
    """An uninterrupted CLI run (``run_args``, batch size 8) in ``run_dir``, and an edge
    analysis (``edges_args``) of a copy of it in ``edges_dir``."""

    run_dir: Path
    edges_dir: Path

    def bytes(self, name: str) -> bytes:
        return (self.run_dir / name).read_bytes()

    def edges_bytes(self, name: str) -> bytes:
        return (self.edges_dir / name).read_bytes()


RUN_FILES = ("trials.csv", "clean.csv", "summary.csv", "best.csv", "config.toml")


def assert_same_run(run_dir: Path, reference: Reference) -> None:
    """``run_dir`` holds a complete run, byte-identical to the reference run."""
    for name in RUN_FILES:
        assert (run_dir / name).read_bytes() == reference.bytes(name), name
    progress = read_json(run_dir / "progress.json")
    assert progress is not None and progress["complete"] and progress["rows"] == N_TRIALS
    for png in (reference.run_dir / "best").iterdir():
        assert (run_dir / "best" / png.name).read_bytes() == png.read_bytes(), png.name


def child_env() -> dict[str, str]:
    """Environment of CLI subprocesses: the test model modules importable, one thread."""
    path = os.pathsep.join([str(TESTS), str(REL), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


def run_args(out: Path, signs: Path, batch_size: int = 8, *extra: str) -> list[str]:
    """``leafattack run`` arguments of the suite's small run (template model, 864 trials)."""
    return ["run", "--model", "fixture_models:template", "--out", str(out), "--quiet",
            *GRID_ARGS, "--signs", str(signs), "--batch-size", str(batch_size),
            "--device", "cpu", *extra]


def edges_args(run_dir: Path, batch_size: int = 16) -> list[str]:
    return ["edges", str(run_dir), "--batch-size", str(batch_size), "--quiet", "--device", "cpu"]


def assert_one_error_line(code: int, stderr: str, *needles: str) -> str:
    """Exit status 2 and stderr ending in exactly one ``error: ...`` line, no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr, stderr
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_prefix(run_dir: Path, reference: bytes, csv_name: str, progress_name: str) -> int:
    """The complete rows recorded by the progress file are a byte prefix of ``reference``.

    Returns the number of recorded rows (0 when nothing is recorded yet).
    """
    progress = read_json(run_dir / progress_name)
    path = run_dir / csv_name
    if progress is None or not path.exists():
        return 0
    n_bytes, rows = int(progress["bytes"]), int(progress["rows"])
    data = path.read_bytes()
    assert len(data) >= n_bytes, (csv_name, len(data), n_bytes)
    assert data[:n_bytes] == reference[:n_bytes], f"{csv_name}: recorded rows differ"
    assert data[:n_bytes].count(b"\n") == rows + 1, (csv_name, rows)
    return rows


def wait_for_rows(path: Path, rows: int, pid_alive: Callable[[], bool], timeout: float) -> int:
    """Poll a progress file until it records at least ``rows`` rows; returns what it records."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline and pid_alive():
        data = read_json(path)
        seen = int(data["rows"]) if data else 0
        if seen >= rows:
            return seen
        time.sleep(0.002)
    return seen


# ----------------------------------------------------------------------------- the zygote

_ZYGOTE_MAIN = r"""
import json, os, sys
import torch
torch.set_num_threads(1)
import cv2, pandas, scipy.stats, tqdm.auto  # noqa: F401  (what the CLI imports lazily)
import leafattack.analysis, leafattack.api, leafattack.cli, leafattack.compose  # noqa: F401
import leafattack.data, leafattack.engine, leafattack.leaves, leafattack.rundir  # noqa: F401
import fixture_models, rel_support
reply = sys.stdout
sys.stdout = sys.stderr
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "spawn":
        pid = os.fork()
        if pid == 0:
            os._exit(rel_support.zygote_child(req))
        ans = {"pid": pid}
    else:
        flags = os.WNOHANG if req["op"] == "poll" else 0
        pid, status = os.waitpid(req["pid"], flags)
        ans = {"code": os.waitstatus_to_exitcode(status) if pid else None}
    reply.write(json.dumps(ans) + "\n")
    reply.flush()
"""


class Zygote:
    """A pre-imported Python that forks ``python -m leafattack`` children on request."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE_MAIN], cwd=ROOT, env=child_env(), text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        self.live: set[int] = set()
        self.count = 0

    def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"zygote died (exit {self.proc.poll()})")
        return dict(json.loads(line))

    def spawn(self, argv: Sequence[str], hooks: Sequence[Sequence[Any]] = ()) -> Child:
        self.count += 1
        out = self.workdir / f"child{self.count}.out"
        err = self.workdir / f"child{self.count}.err"
        pid = int(self._ask({"op": "spawn", "argv": list(argv), "stdout": str(out),
                             "stderr": str(err), "hooks": [list(h) for h in hooks]})["pid"])
        self.live.add(pid)
        return Child(self, pid, out, err)

    def close(self) -> None:
        for pid in list(self.live):
            try:
                os.kill(pid, signal.SIGKILL)
                self._ask({"op": "wait", "pid": pid})
            except (OSError, RuntimeError):
                pass
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Child:
    """One forked ``python -m leafattack`` run."""

    def __init__(self, zygote: Zygote, pid: int, out: Path, err: Path) -> None:
        self.zygote, self.pid, self.out_path, self.err_path = zygote, pid, out, err
        self.code: int | None = None

    def poll(self) -> int | None:
        if self.code is None:
            self.code = self.zygote._ask({"op": "poll", "pid": self.pid})["code"]
            if self.code is not None:
                self.zygote.live.discard(self.pid)
        return self.code

    def alive(self) -> bool:
        return self.poll() is None

    def wait(self, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"child {self.pid} did not finish in {timeout} s")
            time.sleep(0.01)
        assert self.code is not None
        return self.code

    def kill(self) -> int:
        """SIGKILL the child (if still running) and reap it; returns its exit status."""
        if self.code is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.code = self.zygote._ask({"op": "wait", "pid": self.pid})["code"]
            self.zygote.live.discard(self.pid)
        return self.code

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


def zygote_child(req: dict[str, Any]) -> int:
    """Body of a forked child: redirect output, install hooks, run ``python -m leafattack``."""
    code = 70
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        for name, *args in req["hooks"]:
            HOOKS[name](*args)
        sys.argv = ["leafattack", *req["argv"]]
        try:
            runpy.run_module("leafattack", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    return code


# ----------------------------------------------------------------------------- child hooks


class _DyingWriter:
    """A binary file whose ``nth`` write puts ``fraction`` of its bytes on disk and then dies."""

    def __init__(self, f: Any, nth: int, fraction: float) -> None:
        self._f, self._nth, self._fraction, self._writes = f, nth, fraction, 0

    def write(self, data: bytes) -> int:
        self._writes += 1
        if self._writes == self._nth:
            cut = max(1, min(len(data) - 1, int(len(data) * self._fraction)))
            self._f.write(data[:cut])
            self._f.flush()
            os.fsync(self._f.fileno())
            os._exit(DIED_IN_HOOK)
        return int(self._f.write(data))

    def __enter__(self) -> _DyingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _hook_die_in_write(module: str, suffix: str, nth: int, fraction: float) -> None:
    """``module``'s ``open`` of a file ending in ``suffix`` for update dies in its nth write."""
    mod = importlib.import_module(module)
    real_open = builtins.open

    def patched(file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        f = real_open(file, mode, *args, **kw)
        if str(file).endswith(suffix) and "+" in mode:
            return _DyingWriter(f, nth, fraction)
        return f

    mod.open = patched  # type: ignore[attr-defined]  # module global shadows the builtin


def _hook_file_size_limit(limit: int) -> None:
    """Writes that would grow a file beyond ``limit`` bytes fail with EFBIG (Python ignores
    SIGXFSZ): a full disk that needs no root."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def _hook_pause_after(batches: int, go_file: str) -> None:
    """The local executor stops after ``batches`` batches until ``go_file`` exists."""
    from leafattack.engine import execute

    real = execute.local_batches

    def paused(*args: Any) -> Iterator[tuple[int, bytes]]:
        for i, item in enumerate(real(*args)):
            if i == batches:
                while not os.path.exists(go_file):
                    time.sleep(0.005)
            yield item

    execute.local_batches = paused  # type: ignore[assignment]


def _hook_barrier_after_prepare(ready_file: str, go_file: str) -> None:
    """After loading its inputs the run touches ``ready_file`` and waits for ``go_file``, so
    that two runs reach their output directory at the same moment."""
    from leafattack import api

    real = api.prepare

    def synced(config: Any) -> Any:
        prep = real(config)
        Path(ready_file).touch()
        while not os.path.exists(go_file):
            time.sleep(0.0005)
        return prep

    api.prepare = synced  # type: ignore[assignment]


def _hook_slow_fs(seconds: float) -> None:
    """Unlinks and positional writes take ``seconds`` (a slow network file system), which
    widens every window between two processes' file operations."""
    real_unlink, real_pwrite = Path.unlink, os.pwrite

    def unlink(self: Path, missing_ok: bool = False) -> None:
        time.sleep(seconds)
        real_unlink(self, missing_ok=missing_ok)

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        time.sleep(seconds)
        return real_pwrite(fd, data, offset)

    Path.unlink = unlink  # type: ignore[method-assign]
    os.pwrite = pwrite


def _hook_set_attr(module: str, name: str, value: Any) -> None:
    """Set ``module.name = value`` (e.g. a smaller Parquet chunk, so that a small run
    commits several parts)."""
    setattr(importlib.import_module(module), name, value)


HOOKS: dict[str, Callable[..., None]] = {
    "set_attr": _hook_set_attr,
    "slow_fs": _hook_slow_fs,
    "die_in_write": _hook_die_in_write,
    "file_size_limit": _hook_file_size_limit,
    "pause_after": _hook_pause_after,
    "barrier_after_prepare": _hook_barrier_after_prepare,
}


# ----------------------------------------------------------------------------- mounts


def can_mount() -> str | None:
    """None when this process may mount tmpfs file systems, else the reason why not."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount/umount are not installed"
    probe = Path(f"/tmp/leafattack-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            return f"mount is not permitted here ({res.stderr.strip() or res.returncode})"
        subprocess.run(["umount", str(probe)], check=True)
        return None
    finally:
        probe.rmdir()


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)
