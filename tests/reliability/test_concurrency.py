"""Two processes on one run directory: one works, the other stops at once with exit status 2
naming the lock holder; a lock left by a SIGKILLed process is taken over (the kernel drops
a dead process's flock)."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from rel_support import (
    N_TRIALS,
    Reference,
    Zygote,
    assert_one_error_line,
    read_json,
    run_args,
    wait_for_rows,
)

from leafattack.cli import main


def _same_trials(run_dir: Path, reference: Reference) -> bool:
    return (run_dir / "trials.csv").read_bytes() == reference.bytes("trials.csv")


def _try_flock(path: Path) -> bool:
    """Whether this process could take the run's lock right now (released again at once)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the lock when it was taken
    return True


def test_second_process_stops_at_once_naming_the_holder(
    zygote: Zygote, reference: Reference, signs4: Path, tmp_path: Path
) -> None:
    out = tmp_path / "busy"
    go = tmp_path / "go"
    args = run_args(out, signs4)
    first = zygote.spawn(args, hooks=[("pause_after", 3, str(go))])
    assert wait_for_rows(out / "progress.json", 24, first.alive, timeout=120) >= 24
    snapshot = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    second = zygote.spawn(args)
    code = second.wait(timeout=120)
    assert first.alive()  # the second one did not wait for the first to finish
    line = assert_one_error_line(code, second.stderr, f"pid {first.pid} on {socket.gethostname()}",
                                 str(out))
    assert "another leafattack process" in line
    # It changed nothing in the run directory.
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == snapshot
    go.touch()
    assert first.wait() == 0, first.stderr
    assert _same_trials(out, reference)


@pytest.mark.parametrize("slow_fs", [0.0, 0.05])
def test_two_runs_started_together_one_works_one_refuses(
    zygote: Zygote, reference: Reference, signs4: Path, tmp_path: Path, slow_fs: float
) -> None:
    """Both runs reach the output directory at the same instant (a barrier after loading),
    also on a slow file system where their file operations overlap for sure."""
    out = tmp_path / "race"
    go = tmp_path / "go"
    args = run_args(out, signs4)
    ready = [tmp_path / "ready-a", tmp_path / "ready-b"]
    kids = [zygote.spawn(args, hooks=[("slow_fs", slow_fs),
                                      ("barrier_after_prepare", str(r), str(go))])
            for r in ready]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()
    codes = [k.wait() for k in kids]
    assert sorted(codes) == [0, 2], [k.stderr for k in kids]
    winner, loser = (kids[0], kids[1]) if codes[0] == 0 else (kids[1], kids[0])
    assert_one_error_line(2, loser.stderr, f"pid {winner.pid} on", "another leafattack process")
    assert _same_trials(out, reference)


def test_lock_of_a_killed_process_is_taken_over(
    zygote: Zygote, reference: Reference, signs4: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stale"
    args = run_args(out, signs4)
    first = zygote.spawn(args, hooks=[("pause_after", 2, str(tmp_path / "never"))])
    assert wait_for_rows(out / "progress.json", 16, first.alive, timeout=120) >= 16
    lock = out / "run.lock"
    holder = f"pid {first.pid} on {socket.gethostname()}"
    assert lock.read_text().strip() == holder
    assert not _try_flock(lock)  # held while the process lives
    assert first.kill() == -signal.SIGKILL
    assert lock.read_text().strip() == holder  # the dead pid stays in the file ...
    assert _try_flock(lock)  # ... but the kernel has released the flock
    second = zygote.spawn(args)
    assert second.wait() == 0, second.stderr
    assert "resumed after 16 of" in second.stdout
    assert _same_trials(out, reference)
    assert read_json(out / "progress.json") == {"rows": N_TRIALS, "bytes": len(
        reference.bytes("trials.csv")), "complete": True, "attacked": [0, 1, 2, 3],
        "format": "csv"}
    assert lock.read_text() == ""  # a run that ends normally leaves no holder behind


def test_holder_named_even_when_it_writes_its_pid_late(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process that has just taken the lock has not written its pid yet: the refused run
    waits a moment for it instead of reporting an unknown holder."""
    from leafattack import api
    from leafattack.config import RunConfig
    from leafattack.engine.preparation import Prepared

    out = tmp_path / "late"
    out.mkdir()
    fd = os.open(out / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, still empty
    late = threading.Timer(0.15, os.pwrite, (fd, b"pid 4242 on elsewhere\n", 0))
    real_prepare = api.prepare

    def prepare_then_start_the_clock(config: RunConfig) -> Prepared:
        prep = real_prepare(config)
        late.start()  # the holder writes its pid 150 ms after the run reaches its lock
        return prep

    monkeypatch.setattr(api, "prepare", prepare_then_start_the_clock)
    try:
        code = main(run_args(out, signs4))
    finally:
        late.join()
        os.close(fd)
    assert_one_error_line(code, capsys.readouterr().err, "pid 4242 on elsewhere")
    assert not (out / "trials.csv").exists()
