"""Untrusted model files: pickles that would run code are refused without running it,
TorchScript only on explicit trust, non-finite weights or outputs are clear errors and
never rows of NaN."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from rel_support import Reference, assert_one_error_line, run_args

from leafattack.cli import main
from leafattack.data.signset import LISA_CLASSES
from leafattack.errors import LeafattackError
from leafattack.models.architectures import build_model
from leafattack.models.classifier import Classifier, Preprocess
from leafattack.models.loading import load_checkpoint, load_model, save_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


class _MakesMarker:
    """Unpickling this calls ``os.mkdir(marker)``: code execution on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def _hostile(kind: str, path: Path, marker: Path) -> Path:
    payload = _MakesMarker(marker)
    if kind == "torch_zip":  # what torch.save writes, with the payload inside a checkpoint
        torch.save({"format": "leafattack-checkpoint", "arch": "lisacnn",
                    "class_names": list(LISA_CLASSES), "state_dict": {"w": payload}}, path)
    elif kind == "torch_legacy":
        torch.save({"state_dict": payload}, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


def _run(tmp_path: Path, signs: Path, *extra: str) -> int:
    return main(run_args(tmp_path / "run", signs, 32, *extra))


def _no_trial_rows(run_dir: Path) -> None:
    trials = run_dir / "trials.csv"
    assert not trials.exists() or len(pd.read_csv(trials)) == 0


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("kind", ["torch_zip", "torch_legacy", "raw_pickle"])
@pytest.mark.parametrize("trust", [False, True], ids=["plain", "trust_torchscript"])
@pytest.mark.parametrize("command", ["run", "evaluate"])
def test_code_running_pickle_is_refused_and_never_runs(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str], kind: str, trust: bool,
    command: str,
) -> None:
    """The one test of hostile pickles: refused by the loader (``load_checkpoint``,
    ``load_model``) and by ``run`` / ``evaluate`` (with or without ``--trust-torchscript``,
    which trusts TorchScript archives, never pickles) with one ``error:`` line naming the
    file; the payload never runs; and an unsafe load afterwards shows that it would have."""
    marker = tmp_path / "pwned"
    model = _hostile(kind, tmp_path / "model.pt", marker)
    with pytest.raises(LeafattackError, match="refused"):
        load_checkpoint(model)
    with pytest.raises(LeafattackError, match="refused"):
        load_model(str(model), "cpu", trust_torchscript=trust)
    flags = ["--model", str(model), *(["--trust-torchscript"] if trust else [])]
    if command == "run":
        code = _run(tmp_path, signs4, *flags)
    else:
        code = main(["evaluate", *flags, "--signs", str(signs4), "--device", "cpu"])
    assert_one_error_line(code, capsys.readouterr().err, str(model), "refused")
    assert not marker.exists()
    _no_trial_rows(tmp_path / "run")
    # The payload is live: an unsafe load would have run it.
    if kind == "raw_pickle":
        pickle.loads(model.read_bytes())  # noqa: S301 - deliberately unsafe
    else:
        torch.load(model, weights_only=False)
    assert marker.is_dir()


def _scripted(path: Path, meta: Any) -> Path:
    from fixture_models import template

    module, _ = template()
    extra = {"leafattack.json": meta if isinstance(meta, str) else json.dumps(meta)}
    torch.jit.save(torch.jit.script(module), str(path), _extra_files=extra)
    return path


def test_torchscript_needs_explicit_trust(
    tmp_path: Path, signs4: Path, reference: Reference, capsys: pytest.CaptureFixture[str]
) -> None:
    from fixture_models import META

    ts = _scripted(tmp_path / "scripted.pt", META)
    code = _run(tmp_path, signs4, "--model", str(ts))
    assert_one_error_line(code, capsys.readouterr().err, str(ts), "TorchScript",
                          "--trust-torchscript", f"torchscript:{ts}")
    _no_trial_rows(tmp_path / "run")
    for name, how in (("trusted", ["--model", str(ts), "--trust-torchscript"]),
                      ("spec", ["--model", f"torchscript:{ts}"])):
        out = tmp_path / name
        assert main(run_args(out, signs4, 8, *how)) == 0, capsys.readouterr().err
        # The scripted template model gives the trials of the Python one.
        assert (out / "trials.csv").read_bytes() == reference.bytes("trials.csv")


@pytest.mark.parametrize(
    ("meta", "needle"),
    [("not json {", "not JSON"), ({"input_size": 32}, "class_names"),
     ({"class_names": 16}, "class_names"), ([1, 2], "class_names"),
     ({"class_names": list(LISA_CLASSES), "mean": "abc"}, "preprocessing"),
     ({"class_names": list(LISA_CLASSES), "input_size": 32.5}, "preprocessing")],
    ids=["not_json", "no_names", "names_int", "list", "mean_text", "size_float"],
)
def test_torchscript_with_malformed_metadata(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str], meta: Any, needle: str
) -> None:
    ts = _scripted(tmp_path / "scripted.pt", meta)
    code = _run(tmp_path, signs4, "--model", f"torchscript:{ts}")
    assert_one_error_line(code, capsys.readouterr().err, str(ts), needle)


def _checkpoint(path: Path, arch: str, poison: str) -> Path:
    torch.manual_seed(0)
    module = build_model(arch, len(LISA_CLASSES))
    clf = Classifier(module, LISA_CLASSES, Preprocess(input_size=32), arch=arch)
    save_checkpoint(path, clf)
    # Poison one tensor of the saved state after the fact, as a corrupted file would be.
    obj = torch.load(path, weights_only=True)
    obj["state_dict"][poison].view(-1)[3] = float("nan") if "var" not in poison else float("inf")
    buf = io.BytesIO()
    torch.save(obj, buf)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize(("arch", "poison"), [("lisacnn", "features.0.weight"),
                                              ("lisacnn", "classifier.bias"),
                                              ("gtsrbcnn", "stage1.1.running_var")])
def test_checkpoint_with_non_finite_weights_is_refused(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str], arch: str, poison: str
) -> None:
    ckpt = _checkpoint(tmp_path / "poisoned.pt", arch, poison)
    assert zipfile.is_zipfile(ckpt)
    code = _run(tmp_path, signs4, "--model", str(ckpt))
    assert_one_error_line(code, capsys.readouterr().err, str(ckpt), poison, "NaN or infinite")
    _no_trial_rows(tmp_path / "run")


@pytest.mark.parametrize("spec", ["fixture_models:nan_model", "rel_models:inf_model"])
def test_model_with_non_finite_outputs_writes_no_rows(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str], spec: str
) -> None:
    code = _run(tmp_path, signs4, "--model", spec)
    assert_one_error_line(code, capsys.readouterr().err, "NaN or infinite outputs")
    _no_trial_rows(tmp_path / "run")


def test_model_that_turns_nan_only_on_attacked_images(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Clean signs classify fine; the first composite batch is NaN: the run stops there."""
    for _ in range(2):  # and a rerun stops the same way, still without rows
        code = _run(tmp_path, signs4, "--model", "rel_models:nan_on_leaves")
        assert_one_error_line(code, capsys.readouterr().err, "NaN or infinite outputs")
        clean = pd.read_csv(tmp_path / "run" / "clean.csv")
        assert clean["correct"].all() and clean["true_conf"].notna().all()
        _no_trial_rows(tmp_path / "run")
        assert "nan" not in (tmp_path / "run" / "trials.csv").read_text().lower()


@pytest.mark.parametrize(
    ("spec", "needle"),
    [("rel_models:needs_arguments", "needs_arguments() failed"),
     ("fixture_models:TemplateModel", "TemplateModel() failed"),
     ("rel_models:bad_metadata", "class_names"), ("rel_models:text_mean", "preprocessing"),
     ("fixture_models:LISA_CLASSES", "no callable"), ("no_such_module_xyz:f", "cannot import")],
)
def test_factory_specs_that_do_not_build_a_model(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str], spec: str, needle: str
) -> None:
    code = _run(tmp_path, signs4, "--model", spec)
    assert_one_error_line(code, capsys.readouterr().err, spec, needle)
