"""A disk that fills up and an output directory that cannot be written: one-line errors,
exit status 2, and whatever was written stays valid and resumes to the uninterrupted run.

Filling a real disk needs a small tmpfs (root and a permitted ``mount``); a file-size limit
(RLIMIT_FSIZE, EFBIG) gives the same failure without root and always runs. A read-only
directory is ``chmod`` for ordinary users and a read-only bind mount for root (whom chmod
does not stop)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from rel_support import (
    N_TRIALS,
    Reference,
    Zygote,
    assert_one_error_line,
    assert_same_run,
    can_mount,
    check_prefix,
    mount,
    read_json,
    run_args,
    umount,
    wait_for_rows,
)

from leafattack.cli import main


@functools.cache
def _mount_problem() -> str | None:
    return can_mount()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An empty folder to mount a tmpfs on (unmounted afterwards); skips without mount."""
    problem = _mount_problem()
    if problem:
        pytest.skip(f"disk-full test on a small tmpfs: {problem}")
    if os.sysconf("SC_PAGE_SIZE") != 4096:
        pytest.skip("the tmpfs sizes below assume 4 KiB pages")
    point = tmp_path / "mnt"
    point.mkdir()
    yield point
    umount(point)


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize(
    ("size", "fix", "stage"),
    [("64k", "remount", "trials"), ("64k", "free", "trials"), ("150k", "remount", "outputs")],
)
def test_disk_full_is_one_line_and_resumes_after_space_returns(
    tmpfs: Path, reference: Reference, signs4: Path, capsys: pytest.CaptureFixture[str],
    size: str, fix: str, stage: str,
) -> None:
    """``stage`` trials: the disk fills while trials are appended; outputs: after the last
    trial, while summary and best images are written."""
    ballast = tmpfs / "ballast"
    if fix == "free":  # a bigger disk that other files have nearly filled
        mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmpfs))
        ballast.write_bytes(b"\0" * (1024 * 1024 - int(size[:-1]) * 1024))
    else:
        mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(tmpfs))
    out = tmpfs / "run"
    code = main(run_args(out, signs4))
    assert_one_error_line(code, capsys.readouterr().err, str(out), "disk full",
                          "rerun to resume")
    rows = check_prefix(out, reference.bytes("trials.csv"), "trials.csv", "progress.json")
    if stage == "trials":
        assert 0 < rows < N_TRIALS
    else:
        assert rows == N_TRIALS
    if fix == "free":
        ballast.unlink()
    else:
        mount("-o", "remount,size=4m", str(tmpfs))
    assert main(run_args(out, signs4)) == 0
    assert f"resumed after {rows} of {N_TRIALS} trials" in capsys.readouterr().out
    assert_same_run(out, reference)


def test_file_size_limit_mid_run_is_one_line_and_resumes(
    zygote: Zygote, reference: Reference, signs4: Path, tmp_path: Path
) -> None:
    """Without root: a file-size limit makes the trials write fail (EFBIG) half way."""
    out = tmp_path / "limited"
    args = run_args(out, signs4)
    child = zygote.spawn(args, hooks=[("file_size_limit", 40_000)])
    assert_one_error_line(child.wait(), child.stderr, str(out), "while writing",
                          "rerun to resume")
    rows = check_prefix(out, reference.bytes("trials.csv"), "trials.csv", "progress.json")
    assert 0 < rows < N_TRIALS
    again = zygote.spawn(args)
    assert again.wait() == 0, again.stderr
    assert f"resumed after {rows} of" in again.stdout
    assert_same_run(out, reference)


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` unwritable for this process: chmod, or for root a read-only bind
    mount of it onto itself (skips when root may not mount)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    problem = _mount_problem()
    if problem:
        pytest.skip(f"read-only directory as root needs a read-only bind mount: {problem}")
    mount("--bind", str(folder), str(folder))
    try:
        mount("-o", "remount,bind,ro", str(folder))
        yield
    finally:
        umount(folder)


def test_read_only_run_directory_keeps_results_and_resumes(
    zygote: Zygote, reference: Reference, signs4: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "ro"
    args = run_args(out, signs4)
    child = zygote.spawn(args, hooks=[("pause_after", 5, str(tmp_path / "never"))])
    wait_for_rows(out / "progress.json", 40, child.alive, timeout=120)
    assert child.kill() == -signal.SIGKILL
    before = _snapshot(out)
    with _read_only(out):
        code = main(args)
        assert_one_error_line(code, capsys.readouterr().err, str(out), "cannot be written")
        assert _snapshot(out) == before
    header_and_40_rows = b"".join(reference.bytes("trials.csv").splitlines(keepends=True)[:41])
    assert read_json(out / "progress.json") == {
        "rows": 40, "bytes": len(header_and_40_rows), "complete": False,
        "attacked": [0, 1, 2, 3], "format": "csv"}
    assert main(args) == 0
    assert "resumed after 40 of" in capsys.readouterr().out
    assert_same_run(out, reference)


def test_new_run_under_a_read_only_folder(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    with _read_only(parent):
        code = main(run_args(parent / "run", signs4))
        assert_one_error_line(code, capsys.readouterr().err, str(parent / "run"),
                              "cannot be written")
    assert list(parent.iterdir()) == []
