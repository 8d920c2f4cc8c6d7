"""Tests of the ``train`` and ``evaluate`` commands through a real subprocess.

Every user-caused failure must end with exit status 2 and exactly one ``error:`` line on
stderr, without a traceback. ``fixture_models`` is importable in the child because
``tests/`` is put on its PYTHONPATH.

Each child spends seconds importing torch, so the commands of this module are prepared and
run together, two at a time, by one fixture; each test then checks its own command.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from leafattack.data import LISA_CLASSES
from leafattack.data.sources import load_signs
from leafattack.imageio import write_png
from leafattack.models.architectures import build_model
from leafattack.models.classifier import Classifier
from leafattack.models.loading import load_model, save_checkpoint
from leafattack.training.trainer import evaluate

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

pytestmark = pytest.mark.slow  # one fixture runs train/evaluate CLI processes (~25 s)
sys.path.insert(0, str(TESTS))


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TESTS), str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, "-m", "leafattack", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# Each preparer writes its inputs into an empty folder and returns the command's arguments.


def _unknown_arch(d: Path) -> list[str]:
    return ["train", "--arch", "lisacnn_v2", "--out", str(d / "m.pt"), "--epochs", "1", "--quiet"]


def _not_leafattack(d: Path) -> list[str]:
    torch.save({"model": build_model("lisacnn", 16).state_dict(), "epoch": 9}, d / "other.pt")
    return ["evaluate", "--model", str(d / "other.pt"), "--device", "cpu", "--variants", "1"]


def _corrupt(d: Path) -> list[str]:
    torch.manual_seed(0)
    clf = Classifier(build_model("lisacnn", 16), LISA_CLASSES, arch="lisacnn")
    good = save_checkpoint(d / "good.pt", clf).read_bytes()
    (d / "corrupt.pt").write_bytes(good[: len(good) * 2 // 3])
    return ["evaluate", "--model", str(d / "corrupt.pt"), "--device", "cpu", "--variants", "1"]


def _unknown_class(d: Path) -> list[str]:
    signs = load_signs("builtin")
    write_png(d / "signs" / "stop" / "a.png", signs.images[LISA_CLASSES.index("stop")])
    write_png(d / "signs" / "unicorn" / "b.png", signs.images[0])
    return [
        "evaluate",
        "--model",
        "fixture_models:template",
        "--signs",
        str(d / "signs"),
        "--device",
        "cpu",
    ]


def _fixture_model(d: Path) -> list[str]:
    return [
        "evaluate",
        "--model",
        "fixture_models:template",
        "--signs",
        "builtin",
        "--variants",
        "2",
        "--device",
        "cpu",
        "--out",
        str(d / "eval"),
    ]


PREPARERS: dict[str, Callable[[Path], list[str]]] = {
    "unknown_arch": _unknown_arch,  # first: it also imports torchvision
    "not_leafattack": _not_leafattack,
    "corrupt": _corrupt,
    "unknown_class": _unknown_class,
    "fixture_model": _fixture_model,
}


@dataclass(frozen=True)
class Outcome:
    folder: Path
    res: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    folders = {name: tmp_path_factory.mktemp(name) for name in PREPARERS}
    commands = {name: prep(folders[name]) for name, prep in PREPARERS.items()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {n: pool.submit(_cli, args, folders[n]) for n, args in commands.items()}
        return {n: Outcome(folders[n], f.result()) for n, f in futures.items()}


def _assert_user_error(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_train_with_unknown_arch(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["unknown_arch"]
    _assert_user_error(out.res, "unknown architecture", "lisacnn_v2")
    assert not (out.folder / "m.pt").exists()


def test_evaluate_with_a_checkpoint_that_is_not_leafattacks(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["not_leafattack"]
    _assert_user_error(out.res, "not a leafattack checkpoint", str(out.folder / "other.pt"))


def test_evaluate_with_a_corrupt_checkpoint(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["corrupt"]
    _assert_user_error(out.res, str(out.folder / "corrupt.pt"))


def test_evaluate_with_sign_classes_the_model_does_not_know(outcomes: dict[str, Outcome]) -> None:
    line = _assert_user_error(outcomes["unknown_class"].res, "unicorn")
    assert "sign classes unicorn are not" in line


def test_evaluate_fixture_model_on_builtin_variants(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["fixture_model"]
    assert out.res.returncode == 0, out.res.stderr
    assert "Traceback" not in out.res.stderr
    match = re.search(
        r"^accuracy: (\d+\.\d\d)% on 32 images \(2 fresh variants per sign\)$",
        out.res.stdout,
        re.MULTILINE,
    )
    assert match, out.res.stdout
    # The same numbers in process (seed 0 is the CLI's default).
    expected = evaluate(
        load_model("fixture_models:template"), load_signs("builtin"), variants=2, seed=0
    )
    assert match.group(1) == f"{100 * expected.accuracy:.2f}"
    table = np.loadtxt(out.folder / "eval" / "confusion.csv", delimiter=",", skiprows=1, dtype=str)
    assert table.shape == (16, 17)
    assert table[:, 0].tolist() == list(LISA_CLASSES)
    counts = table[:, 1:].astype(int)
    assert counts.sum() == 32
    np.testing.assert_array_equal(counts, expected.confusion.to_numpy())
