"""Fixtures of the reliability suite: test models on the path, one torch thread, a zygote
that forks CLI runs, and the uninterrupted reference run that killed runs must reproduce."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REL = Path(__file__).resolve().parent
for _p in (REL, REL.parent):  # rel_support, rel_models; fixture_models
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from rel_support import N_TRIALS, Reference, Zygote, edges_args, run_args  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """In-process runs use one thread, like the CLI children (a shared 2-core machine
    is many times faster that way; the bytes are the same)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


@pytest.fixture(scope="session")
def reference(
    zygote: Zygote, signs4: Path, tmp_path_factory: pytest.TempPathFactory
) -> Reference:
    base = tmp_path_factory.mktemp("reference")
    run_dir = base / "run"
    child = zygote.spawn(run_args(run_dir, signs4))
    assert child.wait() == 0, child.stderr
    trials = (run_dir / "trials.csv").read_bytes()
    assert trials.count(b"\n") == N_TRIALS + 1
    edges_dir = base / "edges"
    shutil.copytree(run_dir, edges_dir)
    child = zygote.spawn(edges_args(edges_dir))
    assert child.wait() == 0, child.stderr
    return Reference(run_dir, edges_dir)


@pytest.fixture
def finished_run_copy(reference: Reference, tmp_path: Path) -> Path:
    """A finished run directory as the attack left it (no edge analysis yet)."""
    return Path(shutil.copytree(reference.run_dir, tmp_path / "run"))
