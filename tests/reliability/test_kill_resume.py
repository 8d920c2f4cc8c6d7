"""SIGKILL at random moments, deaths in the middle of a CSV write, and garbage after the last
complete batch: a resumed run (and a resumed edge analysis) ends byte-identical to an
uninterrupted one, and every intermediate state is a valid prefix of it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rel_support import (
    DIED_IN_HOOK,
    N_TRIALS,
    ROOT,
    Reference,
    Zygote,
    assert_same_run,
    check_prefix,
    child_env,
    edges_args,
    read_json,
    run_args,
    wait_for_rows,
)

BATCH = 8
EDGE_BATCH = 16


@pytest.mark.slow
def test_twenty_sigkills_then_resume_is_byte_identical(
    zygote: Zygote, reference: Reference, signs4: Path, tmp_path: Path
) -> None:
    """20 SIGKILLs at seeded random points (progress thresholds plus random delays, some
    during start-up), each followed by a resume; then a fresh ``python -m leafattack run``."""
    out = tmp_path / "killed"
    args = run_args(out, signs4, BATCH)
    ref = reference.bytes("trials.csv")
    rng = np.random.default_rng(7)
    n_batches = N_TRIALS // BATCH
    thresholds = np.sort(rng.choice(np.arange(1, n_batches - 8), size=20, replace=False))
    kinds = []
    for threshold in thresholds * BATCH:
        before = check_prefix(out, ref, "trials.csv", "progress.json")
        child = zygote.spawn(args)
        # A run that already passed this threshold (a fast machine overshoots while the
        # previous kill was on its way) is killed a batch past where it resumes instead.
        target = max(int(threshold), before + BATCH)
        if rng.random() < 0.2 or target > (n_batches - 8) * BATCH:
            # A random moment, mostly start-up or clean predictions; on a fast machine the
            # kill comes early enough that the run never jumps far (or finishes).
            wait_for_rows(out / "progress.json", max(int(threshold), before + BATCH),
                          child.alive, timeout=rng.uniform(0.0, 0.6))
            kinds.append("delay")
        else:
            wait_for_rows(out / "progress.json", target, child.alive, timeout=120)
            time.sleep(rng.uniform(0.0, 0.012))  # anywhere in the next batch: write, fsync
            kinds.append("rows")
        assert child.kill() == -signal.SIGKILL, child.stderr
        check_prefix(out, ref, "trials.csv", "progress.json")
    assert len(kinds) == 20 and kinds.count("rows") >= 10
    done = check_prefix(out, ref, "trials.csv", "progress.json")
    assert 0 < done < N_TRIALS
    res = subprocess.run([sys.executable, "-m", "leafattack", *args], cwd=ROOT, env=child_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"resumed after {done} of {N_TRIALS} trials" in res.stdout
    assert_same_run(out, reference)


@pytest.mark.parametrize(("nth", "fraction"), [(1, 0.5), (6, 0.03), (13, 0.97)])
def test_death_half_way_through_a_trials_write(
    zygote: Zygote, reference: Reference, signs4: Path, tmp_path: Path, nth: int,
    fraction: float
) -> None:
    """The process dies after writing part of a batch's bytes, before progress.json moves."""
    out = tmp_path / "torn"
    args = run_args(out, signs4, BATCH)
    child = zygote.spawn(args, hooks=[("die_in_write", "leafattack.rundir", "trials.csv", nth,
                                       fraction)])
    assert child.wait() == DIED_IN_HOOK, child.stderr
    progress = read_json(out / "progress.json")
    assert progress is not None and progress["rows"] == (nth - 1) * BATCH
    data = (out / "trials.csv").read_bytes()
    assert len(data) > progress["bytes"]  # a torn batch follows the recorded rows
    check_prefix(out, reference.bytes("trials.csv"), "trials.csv", "progress.json")
    again = zygote.spawn(args)
    assert again.wait() == 0, again.stderr
    if nth > 1:
        assert f"resumed after {(nth - 1) * BATCH} of" in again.stdout
    assert_same_run(out, reference)


GARBAGE = {
    "half_row": b"417,2,stop.png,12,stop,maple_gre",
    "binary": bytes(range(256)) * 3,
    "fake_rows": b"9999,0,x.png,1,a,b,c,d,0.3,0,0.5,0.5,1,0.1,1,a,0.5,0.5,True\n" * 5,
    "nul_fill": b"\0" * 4096,
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_garbage_after_the_recorded_rows_is_dropped_on_resume(
    zygote: Zygote, reference: Reference, signs4: Path, tmp_path: Path, garbage: str
) -> None:
    out = tmp_path / "garbage"
    args = run_args(out, signs4, BATCH)
    child = zygote.spawn(args, hooks=[("pause_after", 5, str(tmp_path / "never"))])
    wait_for_rows(out / "progress.json", 5 * BATCH, child.alive, timeout=120)
    assert child.kill() == -signal.SIGKILL
    with open(out / "trials.csv", "ab") as f:
        f.write(GARBAGE[garbage])
    again = zygote.spawn(args)
    assert again.wait() == 0, again.stderr
    assert f"resumed after {5 * BATCH} of" in again.stdout
    assert_same_run(out, reference)


def test_parquet_run_killed_three_times_then_resumed_equals_the_uninterrupted_run(
    zygote: Zygote, reference: Reference, signs4: Path, tmp_path: Path
) -> None:
    """``--format parquet`` with 64-row parts: SIGKILLs after some parts (and at random
    moments after them: mid-part, mid-progress), then a resume. The trials read back equal
    the uninterrupted CSV reference row for row; summary, best and clean are the same bytes."""
    pytest.importorskip("pyarrow")
    import pandas as pd

    from leafattack.rundir import read_trials

    out = tmp_path / "pq"
    args = run_args(out, signs4, BATCH, "--format", "parquet")
    small = [("set_attr", "leafattack.engine.execute", "PARQUET_CHUNK_ROWS", 64)]
    rng = np.random.default_rng(11)
    done = 0
    for threshold in (128, 384, 640):
        child = zygote.spawn(args, hooks=small)
        wait_for_rows(out / "progress.json", threshold, child.alive, timeout=120)
        time.sleep(rng.uniform(0.0, 0.02))
        assert child.kill() == -signal.SIGKILL, child.stderr
        progress = read_json(out / "progress.json")
        assert progress is not None and progress["rows"] % 64 == 0
        assert progress["rows"] >= done
        done = progress["rows"]
        partial = read_trials(out)
        want = read_trials(reference.run_dir).iloc[: len(partial)]
        assert len(partial) == done
        pd.testing.assert_frame_equal(partial, want)
    assert 0 < done < N_TRIALS
    again = zygote.spawn(args, hooks=small)
    assert again.wait() == 0, again.stderr
    assert f"resumed after {done} of {N_TRIALS} trials" in again.stdout
    assert not (out / "trials.csv").exists()
    pd.testing.assert_frame_equal(read_trials(out), read_trials(reference.run_dir))
    for name in ("clean.csv", "summary.csv", "best.csv"):
        assert (out / name).read_bytes() == reference.bytes(name), name
    parts = sorted((out / "trials.parquet").iterdir())
    assert [p.name for p in parts] == [f"part-{i:06d}.parquet" for i in range(N_TRIALS // 64 + 1)]


# ----------------------------------------------------------------------------- edges


def _assert_same_edges(run_dir: Path, reference: Reference) -> None:
    for name in ("edges.csv", "correlation.csv"):
        assert (run_dir / name).read_bytes() == reference.edges_bytes(name), name
    progress = read_json(run_dir / "edges_progress.json")
    assert progress is not None and progress["complete"] and progress["rows"] == N_TRIALS


def test_edges_killed_five_times_then_resumed(
    zygote: Zygote, reference: Reference, finished_run_copy: Path
) -> None:
    rd = finished_run_copy
    ref = reference.edges_bytes("edges.csv")
    rng = np.random.default_rng(11)
    n_batches = N_TRIALS // EDGE_BATCH
    thresholds = np.sort(rng.choice(np.arange(1, n_batches - 6), size=5, replace=False))
    inode = None
    for threshold in thresholds * EDGE_BATCH:
        child = zygote.spawn(edges_args(rd, EDGE_BATCH))
        wait_for_rows(rd / "edges_progress.json", int(threshold), child.alive, timeout=180)
        time.sleep(rng.uniform(0.0, 0.03))
        assert child.kill() == -signal.SIGKILL, child.stderr
        assert check_prefix(rd, ref, "edges.csv", "edges_progress.json") >= threshold
        inode = inode or (rd / "edges.csv").stat().st_ino
    done = check_prefix(rd, ref, "edges.csv", "edges_progress.json")
    assert done < N_TRIALS
    child = zygote.spawn(edges_args(rd, EDGE_BATCH))
    assert child.wait() == 0, child.stderr
    # Resumed in place (the file was appended to, not rewritten from the header).
    assert (rd / "edges.csv").stat().st_ino == inode
    _assert_same_edges(rd, reference)
    # The attack's own files are untouched by the edge analysis.
    assert_same_run(rd, reference)


@pytest.mark.parametrize(("nth", "fraction"), [(1, 0.4), (9, 0.9)])
def test_edges_death_half_way_through_a_write(
    zygote: Zygote, reference: Reference, finished_run_copy: Path, nth: int, fraction: float
) -> None:
    rd = finished_run_copy
    child = zygote.spawn(edges_args(rd, EDGE_BATCH),
                         hooks=[("die_in_write", "leafattack.rundir", "edges.csv", nth,
                                 fraction)])
    assert child.wait() == DIED_IN_HOOK, child.stderr
    progress = read_json(rd / "edges_progress.json")
    assert progress is not None and progress["rows"] == (nth - 1) * EDGE_BATCH
    assert (rd / "edges.csv").stat().st_size > progress["bytes"]
    check_prefix(rd, reference.edges_bytes("edges.csv"), "edges.csv", "edges_progress.json")
    with open(rd / "edges.csv", "ab") as f:  # and more garbage on top of the torn batch
        f.write(GARBAGE["fake_rows"])
    child = zygote.spawn(edges_args(rd, EDGE_BATCH))
    assert child.wait() == 0, child.stderr
    _assert_same_edges(rd, reference)


# ----------------------------------------------------------------------------- damaged progress


def _progress_cases(n_bytes_40: int, size: int, extra: dict) -> dict[str, bytes]:
    """Progress files that cannot be trusted; ``extra`` (the edge analysis's ``config``)
    keeps the well-formed ones otherwise acceptable."""

    def doc(**kw: object) -> bytes:
        return json.dumps({**kw, **extra}).encode()

    return {
        "zeros": b"\0" * 48,  # what a lost write can leave behind
        "truncated_json": b'{"rows": 40, "by',
        "list": b"[40, 5000]",
        "text_values": doc(rows="forty", bytes="many", complete=False),
        "negative": doc(rows=-8, bytes=-1, complete=False),
        "beyond_the_file": doc(rows=40, bytes=size + 4096, complete=False),
        "mid_row": doc(rows=40, bytes=n_bytes_40 - 7, complete=False),
        "more_rows_than_trials": doc(rows=10**6, bytes=n_bytes_40, complete=True),
    }


@pytest.mark.parametrize("case", ["zeros", "truncated_json", "list", "text_values", "negative",
                                  "beyond_the_file", "mid_row", "more_rows_than_trials"])
@pytest.mark.parametrize("target", ["run", "edges"])
def test_damaged_progress_file_never_corrupts_the_results(
    zygote: Zygote, reference: Reference, signs4: Path, tmp_path: Path, case: str, target: str
) -> None:
    """A progress file that cannot be trusted (damaged, or not describing the CSV it sits
    next to) makes the run start that CSV over: same bytes in the end, never padding,
    never a traceback."""
    if target == "run":
        out = tmp_path / "run"
        args, csv_name, progress_name = run_args(out, signs4, BATCH), "trials.csv", "progress.json"
        ref = reference.bytes("trials.csv")
        child = zygote.spawn(args, hooks=[("pause_after", 5, str(tmp_path / "never"))])
    else:
        out = Path(shutil.copytree(reference.run_dir, tmp_path / "run"))
        args, csv_name, progress_name = edges_args(out, 8), "edges.csv", "edges_progress.json"
        ref = reference.edges_bytes("edges.csv")
        child = zygote.spawn(args)
    wait_for_rows(out / progress_name, 40, child.alive, timeout=120)
    assert child.kill() == -signal.SIGKILL
    data = (out / csv_name).read_bytes()
    n_bytes_40 = len(b"".join(ref.splitlines(keepends=True)[:41]))
    assert data[:n_bytes_40] == ref[:n_bytes_40]
    real = read_json(out / progress_name)
    assert real is not None
    extra = {"config": real["config"]} if "config" in real else {}
    (out / progress_name).write_bytes(_progress_cases(n_bytes_40, len(data), extra)[case])
    again = zygote.spawn(args)
    assert again.wait() == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert (out / csv_name).read_bytes() == ref
    if target == "run":
        assert_same_run(out, reference)
    else:
        _assert_same_edges(out, reference)
