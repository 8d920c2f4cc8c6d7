"""The Ray executor: same bytes as the local executor, on one node, on two nodes, with a
worker killed mid-run, and with the driver killed and resumed.

Every Ray process a test starts is stopped by the fixture that started it: the in-process
local instance with ``ray.shutdown()``, the two-node CLI cluster by terminating the
``ray start --block`` processes this module spawned (and killing, by pid, any of their
descendants still alive afterwards). ``ray stop`` is not used: it kills every Ray process
on the machine, including other people's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (uv sync --extra ray)")

pytestmark = pytest.mark.slow  # Ray clusters take tens of seconds to start and stop

from leafattack.api import run  # noqa: E402
from leafattack.config import (  # noqa: E402
    RunConfig,  # noqa: E402
    absolute_spec,  # noqa: E402
)
from leafattack.engine.distributed import CRASH_FLAG_ENV, chunk_bounds, ray_batches  # noqa: E402
from leafattack.engine.preparation import open_run  # noqa: E402
from leafattack.errors import LeafattackError  # noqa: E402
from leafattack.grid import GridSpec  # noqa: E402

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))

SMALL = GridSpec(species=("maple", "oak"), sizes=(0.3, 0.5), angles=(0.0, 90.0), positions=(3, 3))
CLI_GRID = ["--model", "fixture_models:template", "--species", "maple,oak", "--sizes", "0.3,0.5",
            "--angles", "0,90", "--positions", "3x3", "--limit-signs", "4", "--batch-size", "8",
            "--device", "cpu", "--quiet"]
OUTPUTS = ("trials.csv", "summary.csv", "clean.csv", "best.csv")
HEADER_ROWS = 1
TOTAL = 864  # 4 signs x 6 leaves x 2 sizes x 2 angles x 9 positions


def small_config(out: Path, **kw: object) -> RunConfig:
    base = dict(model="fixture_models:template", out=str(out), grid=SMALL, limit_signs=4,
                quiet=True, batch_size=8, device="cpu")
    base.update(kw)
    return RunConfig(**base)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_same_outputs(got: Path, expected: Path) -> None:
    for name in OUTPUTS:
        assert (got / name).read_bytes() == (expected / name).read_bytes(), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run on the local executor."""
    res = run(small_config(tmp_path_factory.mktemp("reference") / "local"))
    assert res.n_trials == TOTAL
    return res.run_dir


def test_import_attack_does_not_import_ray() -> None:
    code = "import sys, leafattack.api, leafattack.cli; assert 'ray' not in sys.modules"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_chunks_are_aligned_batches() -> None:
    assert chunk_bounds(0, 100, 8, 32) == [(0, 32), (32, 64), (64, 96), (96, 100)]
    # A resumed run starts at a batch boundary; the first chunk ends at a chunk boundary.
    assert chunk_bounds(40, 100, 8, 32) == [(40, 64), (64, 96), (96, 100)]
    assert chunk_bounds(100, 100, 8, 32) == []
    with pytest.raises(ValueError):
        chunk_bounds(0, 100, 8, 12)
    with pytest.raises(ValueError):
        chunk_bounds(3, 100, 8, 32)


def test_paths_in_specs_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "signs").mkdir()
    (tmp_path / "m.pt").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    prefixes = ("folder", "gtsrb", "lisa")
    assert absolute_spec("gtsrb:signs", prefixes, ("builtin",)) == f"gtsrb:{tmp_path}/signs"
    assert absolute_spec("signs", prefixes, ("builtin",)) == f"{tmp_path}/signs"
    ts = absolute_spec("torchscript:m.pt", ("torchscript",), ())
    assert ts == f"torchscript:{tmp_path}/m.pt"
    assert absolute_spec("builtin", prefixes, ("builtin",)) == "builtin"
    assert absolute_spec("fixture_models:template", (), ()) == "fixture_models:template"


def test_unreachable_address_fails_fast(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(LeafattackError, match="cannot reach the Ray cluster"):
        run(small_config(tmp_path / "x", executor="ray", address=f"127.0.0.1:{port}"))
    assert time.monotonic() - t0 < 60


# ----------------------------------------------------------------------------- local Ray


@pytest.fixture(scope="class")
def local_ray() -> Iterator[Path]:
    """A small local Ray instance in this process; yields the crash-once flag path.

    Workers inherit this environment: ``tests/`` on PYTHONPATH (for the fixture model),
    the crash hook's flag path, and a private auth token.
    """
    temp = Path(tempfile.mkdtemp(prefix="la-ray-", dir="/tmp"))
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p),
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        CRASH_FLAG_ENV: str(temp / "crash-once"),
        # RAY_AUTH_MODE stays unset: ray.init then turns token mode on for the new instance
        # (setting it here would be too late for Ray's cached config in this process).
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
                 _temp_dir=str(temp), log_to_driver=False)
        yield temp / "crash-once"
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.usefixtures("local_ray")
class TestLocalRay:
    def test_same_bytes_as_local_executor(self, reference: Path, tmp_path: Path) -> None:
        res = run(small_config(tmp_path / "ray", executor="ray", workers=2, chunk_size=32))
        assert res.n_trials == TOTAL  # 27 chunks of 4 batches
        assert_same_outputs(res.run_dir, reference)

    def test_worker_killed_mid_run(self, local_ray: Path, reference: Path, tmp_path: Path) -> None:
        local_ray.write_bytes(b"")  # the first actor to finish a chunk dies before returning it
        res = run(small_config(tmp_path / "crash", executor="ray", workers=2, chunk_size=16))
        assert not local_ray.exists(), "the crash hook did not fire"
        trials = (res.run_dir / "trials.csv").read_bytes()
        ids = [int(line.split(b",", 1)[0]) for line in trials.splitlines()[HEADER_ROWS:]]
        assert len(ids) == len(set(ids)) == TOTAL
        assert_same_outputs(res.run_dir, reference)

    def test_resume_from_a_batch_boundary(self, reference: Path) -> None:
        prep, plan = open_run(reference, device="cpu")
        prep = dataclasses.replace(
            prep, config=dataclasses.replace(prep.config, executor="ray", workers=1, chunk_size=24)
        )
        pieces = list(ray_batches(prep, plan, 40))
        assert [k1 for k1, _ in pieces][:3] == [48, 72, 96] and pieces[-1][0] == TOTAL
        rows = (reference / "trials.csv").read_bytes().splitlines(keepends=True)
        assert b"".join(data for _, data in pieces) == b"".join(rows[HEADER_ROWS + 40 :])

    def test_worker_with_other_inputs_is_refused(self, reference: Path) -> None:
        prep, plan = open_run(reference, device="cpu")
        prep = dataclasses.replace(
            prep,
            config=dataclasses.replace(prep.config, executor="ray", workers=1),
            fingerprints={**prep.fingerprints, "model": "0" * 16},
        )
        with pytest.raises(LeafattackError, match="model seen by the Ray worker") as info:
            list(ray_batches(prep, plan, 0))
        assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- two nodes


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text(errors="replace") if path.exists() else ""
        if text in log:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"ray start did not print {text!r} within {timeout:.0f} s")


@pytest.fixture(scope="class")
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """Two Ray nodes on this machine, started with the ``ray`` CLI: a head without CPUs
    (GCS, and the node a driver attaches to) and a worker node with 2 CPUs.

    Yields the head address and the environment a driver needs (PYTHONPATH, token).
    """
    temp = Path(tempfile.mkdtemp(prefix="la-rc-", dir="/tmp"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p),
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        **{"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)},
    }
    env.pop(CRASH_FLAG_ENV, None)
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"

    def node_args(cpus: int) -> list[str]:
        return [
            f"--num-cpus={cpus}", "--num-gpus=0", f"--object-store-memory={100 * 2**20}",
            "--disable-usage-stats", "--node-ip-address=127.0.0.1", "--block",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}",
        ]

    procs: list[subprocess.Popen[bytes]] = []
    try:
        head_log = temp / "head.log"
        with open(head_log, "wb") as out:
            procs.append(subprocess.Popen(
                [ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false",
                 f"--dashboard-port={_free_port()}", f"--temp-dir={temp}", *node_args(0)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            ))
        _wait_for_text(head_log, "Ray runtime started", procs[0], 180)
        worker_log = temp / "worker.log"
        with open(worker_log, "wb") as out:
            procs.append(subprocess.Popen(
                [ray_cli, "start", f"--address={address}", *node_args(2)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            ))
        _wait_for_text(worker_log, "Ray runtime started", procs[1], 180)
        yield address, env
    finally:
        tree = [pid for p in procs for pid in _descendants(p.pid)]
        for p in reversed(procs):  # worker node first, then the head
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        time.sleep(1.0)
        for pid in tree:  # anything of ours that outlived its `ray start` parent
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(temp, ignore_errors=True)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leafattack", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _rows_done(out: Path) -> int:
    try:
        return int(json.loads((out / "progress.json").read_text())["rows"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


class TestTwoNodeCluster:
    def test_same_bytes_on_two_nodes(
        self, cluster: tuple[str, dict[str, str]], reference: Path, tmp_path: Path
    ) -> None:
        address, env = cluster
        out = tmp_path / "two"
        res = _cli(["run", "--out", str(out), *CLI_GRID, "--executor", "ray",
                    "--address", address, "--workers", "2", "--chunk-size", "32"], env)
        assert res.returncode == 0, res.stderr[-3000:]
        # The driver attaches to the head, which has no CPU: the workers run on the other
        # node and every chunk crosses from its object store to the driver's.
        driver = re.findall(r"driver on node (\w+)", res.stderr)
        workers = set(re.findall(r"Ray worker \d+ ready: .* \(node (\w+)\)", res.stderr))
        assert len(driver) == 1 and len(workers) == 1, res.stderr[-3000:]
        assert driver[0] not in workers
        assert_same_outputs(out, reference)

    def test_driver_killed_and_resumed(
        self, cluster: tuple[str, dict[str, str]], reference: Path, tmp_path: Path
    ) -> None:
        address, env = cluster
        out = tmp_path / "killed"
        args = ["run", "--out", str(out), *CLI_GRID, "--executor", "ray", "--address", address,
                "--workers", "2", "--chunk-size", "8"]
        proc = subprocess.Popen([sys.executable, "-m", "leafattack", *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and proc.poll() is None:
                if _rows_done(out) >= 24:
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.005)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert 24 <= _rows_done(out) < TOTAL
        res = _cli(args, env)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "resumed after" in res.stdout
        assert_same_outputs(out, reference)
