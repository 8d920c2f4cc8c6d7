"""Bring your own model (issue 18): the model contract, check-model on every kind of
model spec, torch.export programs behind explicit trust, and the README walk-through."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from leafattack.cli import main
from leafattack.data import LISA_CLASSES
from leafattack.data.builtin import render_sign_set
from leafattack.errors import LeafattackError
from leafattack.leaves import builtin_leaves_dir, load_leaves
from leafattack.models import (
    Classifier,
    Preprocess,
    build_model,
    load_checkpoint,
    load_exported,
    load_model,
    load_torchscript,
)

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
META = {
    "class_names": list(LISA_CLASSES),
    "input_size": 32,
    "mean": [0.4, 0.5, 0.6],
    "std": [0.2, 0.25, 0.3],
    "resize": "bilinear",
}


def _module(seed: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("lisacnn", 16).eval()


def _export(module: torch.nn.Module, path: Path, meta: dict[str, object] | None) -> Path:
    size = int(meta.get("input_size", 32)) if meta else 32  # type: ignore[call-overload]
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(
        module, (torch.rand(2, 3, size, size),), dynamic_shapes=({0: batch},)
    )
    extra = {"leafattack.json": json.dumps(meta)} if meta is not None else {}
    torch.export.save(program, path, extra_files=extra)
    return path


def _script(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(module)
        torch.jit.save(scripted, str(path), _extra_files={"leafattack.json": json.dumps(META)})
    return path


def _expected_logits(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The contract written out: [0, 1], bilinear antialiased resize to 32, then (x-m)/s."""
    y = F.interpolate(x.float() / 255, size=(32, 32), mode="bilinear", antialias=True)
    mean = torch.tensor(META["mean"]).view(1, 3, 1, 1)  # type: ignore[arg-type]
    std = torch.tensor(META["std"]).view(1, 3, 1, 1)  # type: ignore[arg-type]
    with torch.no_grad():
        out: torch.Tensor = module((y - mean) / std)
    return out


def _signs_batch() -> torch.Tensor:
    imgs = np.stack(render_sign_set(96).images)
    return torch.from_numpy(imgs.transpose(0, 3, 1, 2).copy())


# --- torch.export and TorchScript loading -------------------------------------------------


def test_exported_program_needs_trust_and_follows_its_metadata(tmp_path: Path) -> None:
    module = _module()
    path = _export(module, tmp_path / "m.pt2", META)
    with pytest.raises(LeafattackError, match="torch.export program.*export:"):
        load_model(str(path))
    with pytest.raises(LeafattackError, match="torch.export"):
        load_checkpoint(path)
    x = _signs_batch()
    expected = _expected_logits(module, x)
    for clf in (load_model(f"export:{path}"), load_model(str(path), trust_torchscript=True)):
        assert clf.arch == "export" and clf.class_names == LISA_CLASSES
        assert clf.preprocess == Preprocess(32, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), "bilinear")
        assert torch.allclose(clf.logits(x), expected, atol=1e-4)
        assert torch.allclose(clf.logits(x[3:4]), expected[3:4], atol=1e-4)  # batch of one


def test_exported_program_errors(tmp_path: Path) -> None:
    no_meta = _export(_module(), tmp_path / "bare.pt2", None)
    with pytest.raises(LeafattackError, match="lacks class_names"):
        load_exported(no_meta)
    with pytest.raises(LeafattackError, match="not found"):
        load_model(f"export:{tmp_path / 'missing.pt2'}")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip")
    with pytest.raises(LeafattackError, match="not a loadable torch.export"):
        load_exported(junk)


def test_torchscript_loads_without_deprecation_warnings(tmp_path: Path) -> None:
    path = _script(_module(), tmp_path / "ts.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = load_torchscript(path)
    assert clf.class_names == LISA_CLASSES
    assert not [w for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning)]
    # and on the terminal: the CLI's own output only, no FutureWarning lines
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.run(
        [sys.executable, "-m", "leafattack", "check-model", f"torchscript:{path}",
         "--device", "cpu"],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr


# --- check-model ----------------------------------------------------------------------------


def _check(spec: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["check-model", spec, "--device", "cpu", *extra])
    return code, capsys.readouterr().out


def _accuracy(out: str) -> tuple[int, int]:
    m = re.search(r"accuracy: (\d+)/(\d+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def _reference_correct(clf: Classifier) -> int:
    """Correct builtin signs (128 px renders), classified one by one through the contract
    written out here (no leafattack preprocessing code)."""
    signs = render_sign_set(128)
    correct = 0
    pp = clf.preprocess
    for img, label in zip(signs.images, signs.labels, strict=True):
        x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None].float() / 255
        if pp.resize == "area":
            x = F.interpolate(x, size=(pp.input_size,) * 2, mode="area")
        else:
            x = F.interpolate(x, size=(pp.input_size,) * 2, mode=pp.resize, antialias=True)
        x = (x - torch.tensor(pp.mean).view(1, 3, 1, 1)) / torch.tensor(pp.std).view(1, 3, 1, 1)
        with torch.no_grad():
            pred = int(clf.module(x).argmax())
        correct += clf.class_names[pred] == signs.class_names[int(label)]
    return correct


def test_check_model_on_default_factory_torchscript_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _module(seed=11)
    ts = _script(module, tmp_path / "ts.pt")
    pt2 = _export(module, tmp_path / "m.pt2", META)
    for spec, extra in [
        ("default", ()),
        ("fixture_models:template", ()),
        (str(ts), ("--trust-torchscript",)),
        (f"export:{pt2}", ()),
    ]:
        code, out = _check(spec, capsys, *extra)
        assert code == 0, out
        assert "batch-size independence" in out and out.rstrip().endswith("ok")
        clf = load_model(spec, trust_torchscript=True)
        s = clf.preprocess.input_size
        assert f"receives: float32 (N, 3, {s}, {s})" in out
        assert f"({clf.preprocess.resize})" in out
        assert f"classes (16): {LISA_CLASSES[0]}, " in out
        assert _accuracy(out) == (_reference_correct(clf), 16)
    # the template model classifies every clean sign correctly by construction
    assert _accuracy(_check("fixture_models:template", capsys)[1]) == (16, 16)
    # TorchScript and torch.export copies of one module agree with each other
    assert _accuracy(_check(f"torchscript:{ts}", capsys)[1]) == _accuracy(
        _check(f"export:{pt2}", capsys)[1]
    )


def test_check_model_flags_batch_dependent_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check("fixture_byo:batch_dependent", capsys)
    assert code == 1
    assert "FLAGGED" in out and "batch's composition" in out


def test_check_model_on_other_signs_and_bad_specs(
    signs4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check("fixture_models:template", capsys, "--signs", str(signs4))
    assert code == 0 and _accuracy(out) == (4, 4)
    assert main(["check-model", "no_such_module:make"]) == 2
    assert "error:" in capsys.readouterr().err


def test_info_states_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for phrase in ("RGB in [0, 1]", "(x - mean) / std", "mean 0.5, std 0.25", "default area",
                   "leafattack.json", "export:"):  # fmt: skip
        assert phrase in out, phrase


# --- the README walk-through: torchvision factory -> torch.export file -> run ------------------


@pytest.mark.slow
def test_attack_your_own_model_walkthrough(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    pt2 = tmp_path / "resnet.pt2"
    # step 1: the factory works as a model spec
    from fixture_byo import resnet

    module, meta = resnet()
    # step 2: export it with the script of docs/
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "export_model.py"), "fixture_byo:resnet", str(pt2)],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    clf = load_model(f"export:{pt2}")
    assert clf.preprocess == Preprocess(48, tuple(meta["mean"]), tuple(meta["std"]), "bilinear")
    x = _signs_batch()
    factory = load_model("fixture_byo:resnet")
    assert torch.allclose(clf.logits(x), factory.logits(x), atol=1e-4)
    # step 3: check it and attack it
    out = tmp_path / "run"
    args = ["run", "--model", f"export:{pt2}", "--limit-signs", "2", "--sizes", "0.4"]
    args += ["--angles", "0", "--positions", "2x2", "--out", str(out), "--quiet"]
    assert main(["check-model", f"export:{pt2}", "--device", "cpu"]) == 0
    assert main([*args, "--device", "cpu"]) == 0
    clean = pd.read_csv(out / "clean.csv")
    assert len(clean) == 2
    shipped = load_leaves(builtin_leaves_dir())
    n_leaves = sum(lf.species in ("maple", "oak", "poplar") for lf in shipped)
    expected_trials = n_leaves * 4 * int(clean["correct"].sum())
    assert len(pd.read_csv(out / "trials.csv")) == expected_trials
