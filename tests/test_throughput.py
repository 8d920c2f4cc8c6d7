"""Issue 17's bookkeeping: CSV-exact float rounding, streaming summaries, the background
writer, and Parquet trials that every reader reads like the CSV.

Speed itself is measured in benchmarks/bench_attack.py, never here."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import leafattack
from leafattack.analysis.cluster import BootSpec
from leafattack.analysis.summary import strongest, summarise
from leafattack.api import run
from leafattack.config import RunConfig, SearchConfig, config_from_mapping
from leafattack.engine.evaluate import BatchEvaluator, resolve_streams
from leafattack.errors import LeafattackError
from leafattack.grid import GridSpec
from leafattack.rundir import (
    TRIALS_PARQUET,
    AppendLog,
    BackgroundWriter,
    columns_csv_bytes,
    iter_trials,
    read_trials,
    round_like_csv,
)

SMALL = GridSpec(species=("maple", "oak"), sizes=(0.35, 0.6), angles=(0.0, 90.0), positions=(3, 3))


def config(out: Path, signs: Path, **kw: object) -> RunConfig:
    base = dict(model="fixture_models:template", out=str(out), grid=SMALL, signs=str(signs),
                quiet=True, batch_size=64, device="cpu")
    base.update(kw)
    return RunConfig(**base)  # type: ignore[arg-type]


def python_rounding(x: np.ndarray) -> np.ndarray:
    """The reference: what a CSV reader gets back from ``"%.6g" % v``, one value at a time."""
    return np.array([float(format(v, ".6g")) for v in x.tolist()], dtype=np.float64)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(lambda r: r.random(20_000).astype(np.float32).astype(np.float64), id="f32"),
        pytest.param(lambda r: r.random(20_000), id="f64"),
        pytest.param(lambda r: -(10.0 ** r.uniform(-45, 12, 20_000)), id="magnitudes"),
        pytest.param(lambda r: np.arange(1, 20_000) * 2.0**-r.integers(8, 30), id="dyadic-ties"),
        pytest.param(
            lambda r: np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e5, 99999.95, 999999.5,
                                9.999995e-6, 2.0**-9, 1.0, 1e22, 1e23]),
            id="edges",
        ),
    ],
)
def test_round_like_csv_is_bit_identical_to_formatting(values: object) -> None:
    x = values(np.random.default_rng(3))  # type: ignore[operator]
    got, want = round_like_csv(x), python_rounding(x)
    same = (got.view(np.int64) == want.view(np.int64)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), x[~same][:5]


@pytest.fixture(scope="module")
def runs(signs4: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, leafattack.RunResult]:
    base = tmp_path_factory.mktemp("fmt")
    return {
        fmt: run(config(base / fmt, signs4, trials_format=fmt)) for fmt in ("csv", "parquet")
    } if _has_pyarrow() else {"csv": run(config(base / "csv", signs4))}


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def test_streaming_summary_and_best_equal_the_full_table_path(
    runs: dict[str, leafattack.RunResult],
) -> None:
    res = runs["csv"]
    trials = read_trials(res.run_dir)
    assert len(trials) == res.n_trials > 0 and trials["success"].any()
    pd.testing.assert_frame_equal(res.summary, summarise(trials, BootSpec(seed=0)))
    pd.testing.assert_frame_equal(res.best.drop(columns="image"), strongest(trials))
    written = pd.read_csv(res.run_dir / "summary.csv")
    assert len(written) == len(res.summary)


def test_streaming_summary_of_a_targeted_run(signs4: Path, tmp_path: Path) -> None:
    res = run(config(tmp_path / "t", signs4, target="stop"))
    trials = read_trials(res.run_dir)
    pd.testing.assert_frame_equal(res.summary, summarise(trials, BootSpec(seed=0)))
    pd.testing.assert_frame_equal(res.best.drop(columns="image"), strongest(trials))


def test_resumed_run_seeds_the_counters_from_the_written_rows(
    runs: dict[str, leafattack.RunResult], signs4: Path, tmp_path: Path
) -> None:
    """A run resumed half-way reads its complete rows back (in chunks) into the counters:
    summary.csv and best.csv equal the uninterrupted run's, byte for byte."""
    ref = runs["csv"].run_dir
    out = tmp_path / "half"
    cfg = config(out, signs4)
    run(cfg)
    data = (out / "trials.csv").read_bytes()
    keep = data.index(b"\n") + 1
    for _ in range(100):  # header plus the first 100 rows, as a kill would leave them
        keep = data.index(b"\n", keep) + 1
    (out / "trials.csv").write_bytes(data[:keep] + b"17,3,torn")
    progress = json.loads((out / "progress.json").read_text())
    progress.update(rows=100, bytes=keep, complete=False)
    (out / "progress.json").write_text(json.dumps(progress))
    res = run(cfg)
    assert res.resumed_from == 100
    for name in ("trials.csv", "summary.csv", "best.csv"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


@pytest.mark.skipif(not _has_pyarrow(), reason="pyarrow not installed")
def test_parquet_and_csv_runs_give_identical_frames(
    runs: dict[str, leafattack.RunResult],
) -> None:
    csv, pq = runs["csv"], runs["parquet"]
    assert (pq.run_dir / TRIALS_PARQUET).is_dir() and not (pq.run_dir / "trials.csv").exists()
    assert not (csv.run_dir / TRIALS_PARQUET).exists()
    pd.testing.assert_frame_equal(read_trials(pq.run_dir), read_trials(csv.run_dir))
    cols = ["trial_id", "true_conf", "leaf_id"]
    pd.testing.assert_frame_equal(read_trials(pq.run_dir, cols), read_trials(csv.run_dir, cols))
    for name in ("summary.csv", "best.csv", "clean.csv"):
        assert (pq.run_dir / name).read_bytes() == (csv.run_dir / name).read_bytes(), name
    chunks = list(iter_trials(pq.run_dir, chunk_rows=100))
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), read_trials(csv.run_dir))


@pytest.mark.skipif(not _has_pyarrow(), reason="pyarrow not installed")
def test_parquet_parts_are_typed_and_dictionary_encoded(
    runs: dict[str, leafattack.RunResult],
) -> None:
    import pyarrow.parquet as pq

    parts = sorted((runs["parquet"].run_dir / TRIALS_PARQUET).iterdir())
    meta = pq.ParquetFile(parts[0]).metadata
    assert meta.num_row_groups == 1
    sch = pq.read_schema(parts[0])
    assert str(sch.field("trial_id").type) == "int64"
    assert str(sch.field("true_conf").type) == "double"
    assert str(sch.field("success").type) == "bool"
    col = list(sch.names).index("leaf_id")
    assert "DICTIONARY" in str(meta.row_group(0).column(col).encodings).upper()


@pytest.mark.skipif(not _has_pyarrow(), reason="pyarrow not installed")
def test_readers_work_on_parquet_runs(runs: dict[str, leafattack.RunResult]) -> None:
    """The report's data and the controls' comparison read a Parquet run like a CSV one."""
    from leafattack.report.data import load_run

    a = load_run(runs["csv"].run_dir)
    b = load_run(runs["parquet"].run_dir)
    pd.testing.assert_frame_equal(a.trials, b.trials)


def test_writer_errors_surface_in_the_callers_thread(tmp_path: Path) -> None:
    """An exception on the writer thread is raised again, as the same object, by put or
    close; rows before it stay committed."""
    dtypes = {"trial_id": "int64", "success": "bool"}
    table = AppendLog(tmp_path / "t.csv", tmp_path / "p.json", header=b"trial_id,success\n",
                      total=6)
    boom = OSError(28, "No space left on device")
    seen: list[int] = []

    def observe(frame: pd.DataFrame) -> None:
        seen.extend(frame["trial_id"].tolist())
        if len(seen) > 2:
            raise boom

    with table:
        writer = BackgroundWriter(table, dtypes=dtypes, commit_rows=2, observe=observe,
                                  observe_rows=1)
        writer.put(2, {"trial_id": np.array([0, 1]), "success": np.array([True, False])})
        with pytest.raises(OSError) as info:
            for k in range(2, 6, 2):
                writer.put(k + 2, {"trial_id": np.array([k, k + 1]),
                                   "success": np.array([False, False])})
            writer.close()
        assert info.value is boom
    assert table.rows == 2
    assert (tmp_path / "t.csv").read_bytes().startswith(b"trial_id,success\n0,True\n1,False\n")


def test_columns_csv_bytes_equal_pandas_to_csv() -> None:
    """The writer's direct CSV formatting gives pandas' bytes, tricky cells included."""
    rng = np.random.default_rng(5)
    n = 300
    floats = rng.standard_normal(n) * 10.0 ** rng.integers(-12, 12, n)
    floats[:8] = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, 123456789.0, 1e-300]
    words = np.array(["stop", "a,b", 'say "hi"', "line\nbreak", "", " pad ", "yield"], object)
    text = words[rng.integers(0, len(words), n)]
    text[3] = None
    text[4] = np.nan
    columns = {
        "trial_id": np.arange(n, dtype=np.int64) * 7 - 50,
        "name": text,
        "conf": floats,
        "ok": rng.random(n) > 0.5,
        "frac": rng.random(n),
    }
    dtypes = {"trial_id": "int64", "name": "string", "conf": "float64", "ok": "bool",
              "frac": "float64"}
    frame = pd.DataFrame({k: pd.Series(v).astype(dtypes[k]) for k, v in columns.items()})
    expect = frame.to_csv(index=False, header=False, float_format="%.6g", lineterminator="\n")
    assert columns_csv_bytes(columns, dtypes) == expect.encode()


def test_writer_observes_every_row_in_order_in_blocks(tmp_path: Path) -> None:
    """Column batches reach the observer merged into blocks of about observe_rows rows, in
    order, typed; the last partial block at close."""
    dtypes = {"trial_id": "int64", "name": "string", "p": "float64"}
    table = AppendLog(tmp_path / "t.csv", tmp_path / "p.json", header=b"trial_id,name,p\n",
                      total=10)
    blocks: list[pd.DataFrame] = []
    with table:
        writer = BackgroundWriter(table, dtypes=dtypes, commit_rows=2, observe=blocks.append,
                                  observe_rows=4)
        for k in range(0, 10, 2):
            writer.put(k + 2, {"trial_id": np.array([k, k + 1]),
                               "name": np.array([f"s{k}", f"s{k + 1}"], object),
                               "p": np.array([0.1234567, 1 / 3])})
        writer.close()
    assert [len(b) for b in blocks] == [4, 4, 2]
    seen = pd.concat(blocks, ignore_index=True)
    assert seen["trial_id"].tolist() == list(range(10))
    assert str(seen["name"].dtype) == "string" and seen["p"].iloc[0] == 0.123457
    assert table.rows == 10
    assert len(pd.read_csv(tmp_path / "t.csv")) == 10


def test_parquet_without_pyarrow_is_one_line(monkeypatch: pytest.MonkeyPatch, signs4: Path,
                                             tmp_path: Path) -> None:
    import leafattack.engine.execute as execute

    monkeypatch.setattr(execute, "parquet_available", lambda: False)
    with pytest.raises(LeafattackError, match="pyarrow"):
        run(config(tmp_path / "x", signs4, trials_format="parquet"))


def test_bad_format_is_refused() -> None:
    with pytest.raises(LeafattackError, match="trials_format"):
        RunConfig(trials_format="xlsx")
    assert os.path.basename(TRIALS_PARQUET) == "trials.parquet"


@pytest.mark.parametrize("model", ["fixture_models:template", "default"])
def test_streams_give_the_bytes_of_one_stream(model: str, signs4: Path, tmp_path: Path) -> None:
    """Batches computed by several streams at once are written in trial order, and each
    is computed whole: the table, summaries and best rows equal a one-stream run's (for
    the built-in LISA-CNN too, whose outputs do not depend on the thread count)."""
    one = run(config(tmp_path / "one", signs4, streams=1, model=model))
    three = run(config(tmp_path / "three", signs4, streams=3, model=model))
    assert one.n_trials > 0
    for name in ("trials.csv", "summary.csv", "best.csv"):
        assert (three.run_dir / name).read_bytes() == (one.run_dir / name).read_bytes(), name


def test_streams_run_on_their_own_threads_with_a_share_of_torchs(
    monkeypatch: pytest.MonkeyPatch, signs4: Path, tmp_path: Path
) -> None:
    seen: list[tuple[str, int]] = []
    real = BatchEvaluator.evaluate

    def recording(self: BatchEvaluator, k0: int, k1: int) -> object:
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return real(self, k0, k1)

    monkeypatch.setattr(BatchEvaluator, "evaluate", recording)
    before = torch.get_num_threads()
    res = run(config(tmp_path / "s", signs4, streams=2))
    assert torch.get_num_threads() == before  # restored
    assert len(seen) == -(-res.n_trials // 64)
    names = {name for name, _ in seen}
    assert len(names) == 2 and all(n.startswith("leafattack-stream") for n in names)
    assert {t for _, t in seen} == {max(1, before // 2)}


def test_a_failing_batch_keeps_the_rows_before_it_and_resumes(
    runs: dict[str, leafattack.RunResult], monkeypatch: pytest.MonkeyPatch, signs4: Path,
    tmp_path: Path,
) -> None:
    """A batch that fails on one stream, while the other computes the next, is raised in
    the caller's thread; the batches before it stay committed, and a resume completes the
    table byte for byte."""
    real = BatchEvaluator.evaluate

    def failing(self: BatchEvaluator, k0: int, k1: int) -> object:
        if k0 == 128:
            raise LeafattackError("model 'x' failed on a batch of 64 images: simulated")
        return real(self, k0, k1)

    monkeypatch.setattr(BatchEvaluator, "evaluate", failing)
    cfg = config(tmp_path / "f", signs4, streams=2, trials_format="csv")
    with pytest.raises(LeafattackError, match="simulated"):
        run(cfg)
    progress = json.loads((tmp_path / "f" / "progress.json").read_text())
    assert progress["rows"] == 128
    ref = (runs["csv"].run_dir / "trials.csv").read_bytes()
    cut = 0
    for _ in range(129):  # the header and 128 rows
        cut = ref.index(b"\n", cut) + 1
    assert (tmp_path / "f" / "trials.csv").read_bytes()[: progress["bytes"]] == ref[:cut]
    monkeypatch.setattr(BatchEvaluator, "evaluate", real)
    assert run(cfg).resumed_from == 128
    assert (tmp_path / "f" / "trials.csv").read_bytes() == ref


def test_bad_stream_counts_are_refused() -> None:
    for bad in (-1, 257):
        with pytest.raises(LeafattackError, match="streams"):
            RunConfig(streams=bad)
    assert config_from_mapping({"streams": 3}).streams == 3
    with pytest.raises(LeafattackError, match="streams"):
        config_from_mapping({"streams": "two"})
    with pytest.raises(LeafattackError, match="streams"):
        RunConfig(streams=1.5)  # type: ignore[arg-type]
    with pytest.raises(LeafattackError, match="streams"):
        RunConfig(streams=True)
    with pytest.raises(LeafattackError, match="streams"):  # a search runs one stream
        SearchConfig(run=RunConfig(streams=2))


def test_stream_resolution_shares_the_threads() -> None:
    t = torch.get_num_threads()
    assert resolve_streams(0, torch.device("cuda")) == (1, t)  # a GPU: one stream
    assert resolve_streams(5, torch.device("cuda")) == (1, t)
    assert resolve_streams(0, torch.device("cpu")) == (min(2, t), max(1, t // min(2, t)))
    assert resolve_streams(3, torch.device("cpu")) == (3, max(1, t // 3))
    assert resolve_streams(1, torch.device("cpu")) == (1, t)
    # a model that is not a built-in architecture gets one stream unless asked for more
    assert resolve_streams(0, torch.device("cpu"), builtin=False) == (1, t)
    assert resolve_streams(2, torch.device("cpu"), builtin=False) == (2, max(1, t // 2))
