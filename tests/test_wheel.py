"""A built wheel ships the built-in assets and runs the default attack outside the repository.

The test builds the wheel with ``uv build``, checks that it holds every file under
``leafattack/assets/`` and ``leafattack/models/weights/`` (byte for byte), installs it into
a fresh virtual environment in ``tmp_path`` and runs ``leafattack run --limit-signs 1`` on
a tiny grid from an empty directory with that environment's console script.

Dependencies without a download: the wheel is installed with ``--no-deps`` and a ``.pth``
file in the fresh environment's site-packages holds one plain line, the project venv's
site-packages directory (``sysconfig`` of the interpreter running the tests). A plain path
line only appends that directory to ``sys.path``, after the fresh site-packages; unlike a
site directory it does not have its own ``.pth`` files run, so the project's editable hook
(``_editable_impl_leafattack.pth`` -> the repository root) never takes effect, and a
``leafattack`` package installed there would be shadowed by the wheel's copy, which comes
first. The test checks this from the fresh interpreter: ``leafattack.__file__`` lies in the
fresh environment and the repository root is not on ``sys.path``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "leafattack"
ASSET_DIRS = ("assets/leaves", "assets/signs", "models/weights")


def _shipped_files() -> list[str]:
    """Wheel paths of every asset file the repository's package holds."""
    names = []
    for sub in ASSET_DIRS:
        for p in sorted((PACKAGE / sub).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                names.append(p.relative_to(REPO).as_posix())
    return names


def _clean_env() -> dict[str, str]:
    """The environment without anything that points Python at the repository or its venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(cmd: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc


def test_wheel_installs_and_runs_the_default_from_an_empty_directory(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (needed to build and install the wheel)")
    if sys.platform == "win32":
        pytest.skip("the venv layout below (bin/) is POSIX")
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip("not a source checkout: no pyproject.toml next to tests/")

    # 1. Build the wheel from the repository.
    dist = tmp_path / "dist"
    _run([uv, "build", "--wheel", "--out-dir", str(dist), str(REPO)], cwd=REPO, timeout=300)
    wheels = sorted(dist.glob("leafattack-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]

    # 2. The wheel holds the built-in leaves, signs and default weights, byte for byte.
    shipped = _shipped_files()
    for required in (
        "leafattack/assets/leaves/manifest.csv",
        "leafattack/assets/signs/manifest.csv",
        "leafattack/models/weights/lisacnn_default.pt",
    ):
        assert required in shipped, f"{required} missing from the repository"
    assert any(n.startswith("leafattack/assets/leaves/") and n.endswith(".png") for n in shipped)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        missing = [n for n in shipped if n not in names]
        assert not missing, f"the wheel lacks {missing}"
        for n in shipped:
            assert z.read(n) == (REPO / n).read_bytes(), f"{n} differs in the wheel"

    # 3. A fresh venv outside the repository; the wheel without deps, deps via a .pth line.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, timeout=120)
    py = venv / "bin" / "python"
    _run(
        [uv, "pip", "install", "--python", str(py), "--no-deps", "--offline", str(wheel)],
        cwd=tmp_path,
        timeout=120,
    )
    probe = "import json, sysconfig; print(json.dumps(sysconfig.get_paths()['purelib']))"
    fresh_site = Path(json.loads(_run([str(py), "-c", probe], cwd=tmp_path, timeout=60).stdout))
    assert fresh_site.is_relative_to(venv)
    deps_site = sysconfig.get_paths()["purelib"]
    (fresh_site / "_leafattack_test_deps.pth").write_text(deps_site + "\n")

    check = (
        "import json, sys, leafattack; "
        "print(json.dumps({'file': leafattack.__file__, 'path': sys.path}))"
    )
    info = json.loads(_run([str(py), "-c", check], cwd=tmp_path, timeout=120).stdout)
    assert Path(info["file"]).resolve().is_relative_to(fresh_site.resolve()), info["file"]
    assert str(REPO) not in info["path"], "the repository (editable hook) is on sys.path"

    # 4. The console script runs the default on a tiny grid from an empty directory.
    work = tmp_path / "empty"
    work.mkdir()
    script = venv / "bin" / "leafattack"
    assert script.is_file()
    _run(
        [
            str(script), "run", "--limit-signs", "1", "--species", "maple",
            "--sizes", "0.4", "--angles", "0", "--positions", "2x2", "--quiet", "--out", "out",
        ],
        cwd=work,
        timeout=600,
    )  # fmt: skip
    assert [p.name for p in work.iterdir()] == ["out"]
    out = work / "out"

    with open(PACKAGE / "assets" / "leaves" / "manifest.csv", newline="") as f:
        maple = sorted(Path(r["file"]).stem for r in csv.DictReader(f) if r["species"] == "maple")
    assert maple, "the shipped leaf library has no maple leaf"
    # colour "natural" keeps every maple leaf as shipped: leaves × 1 size × 1 angle × 2x2.
    expected = len(maple) * 1 * 1 * 4

    with open(out / "clean.csv", newline="") as f:
        clean = list(csv.DictReader(f))
    assert len(clean) == 1
    assert clean[0]["correct"] == "True"  # an attacked sign: its trials are all written
    with open(out / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == expected
    assert sorted({r["leaf_id"] for r in trials}) == maple
