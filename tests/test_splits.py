"""Held-out signs (issue 14): checkpoints record their training split, ``--split`` selects by
it, ``evaluate`` warns about training photos, fresh renders, and the report says which split
was attacked.

A tiny "photo" source (seeded variants of three built-in signs, five per class, no masks)
trains a LISA-CNN for one epoch of two variants per photo; with ``val_fraction=0.4`` two
photos per class are held out, so the recorded training split holds 9 of the 15 photos.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from leafattack.cli import main
from leafattack.config import RunConfig, default_out
from leafattack.data.builtin import render_sign
from leafattack.data.fresh import write_fresh_signs
from leafattack.data.sources import load_signs
from leafattack.data.splits import TrainingSplit, split_from_metadata, split_indices
from leafattack.data.variations import VariationConfig, make_variants
from leafattack.errors import LeafattackError
from leafattack.imageio import read_rgb, write_png
from leafattack.models.architectures import build_model
from leafattack.models.classifier import Classifier, Preprocess
from leafattack.models.loading import DEFAULT_MODEL_PATH, load_checkpoint, save_checkpoint
from leafattack.report.split import split_text
from leafattack.training.default_split import record_default_split
from leafattack.training.trainer import TrainConfig, evaluate, train

CLASSES = ("stop", "yield", "speedLimit30")
PER_CLASS = 5


def sha16(image: np.ndarray) -> str:
    """The documented content hash, written out here: SHA-256 over the int64 little-endian
    shape and the uint8 bytes, first 16 hex digits."""
    h = hashlib.sha256()
    h.update(np.asarray(image.shape, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class folders ``<class>/<k>.png`` of seeded sign variants (photo-like, no masks)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(123)
    cfg = VariationConfig(out_size=48)
    for name in CLASSES:
        img, mask = render_sign(name, 96)
        x, _ = make_variants([img], [mask], np.zeros(1, np.int64), PER_CLASS, rng, cfg)
        (root / name).mkdir()
        for k in range(PER_CLASS):
            write_png(root / name / f"{k}.png", x[k])
    return root


@pytest.fixture(scope="module")
def model(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    train(
        TrainConfig(
            signs=str(photos), epochs=1, variants=2, batch_size=8, val_fraction=0.4,
            out=str(out), quiet=True,
        )
    )
    return out


@pytest.fixture(scope="module")
def splitless(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint as written before splits were recorded (no ``split`` entry)."""
    torch.manual_seed(0)
    clf = Classifier(
        build_model("lisacnn", len(CLASSES)), sorted(CLASSES), Preprocess(input_size=32),
        arch="lisacnn",
    )
    path = tmp_path_factory.mktemp("old") / "old.pt"
    save_checkpoint(path, clf, seed=0)
    return path


def test_checkpoint_records_the_training_photos_by_file_and_hash(
    photos: Path, model: Path
) -> None:
    split = split_from_metadata(load_checkpoint(model).metadata)
    assert split is not None
    assert split.source == str(photos) and split.n_source == len(CLASSES) * PER_CLASS
    files = {f: read_rgb(photos / f) for c in CLASSES for f in (f"{c}/{k}.png" for k in range(5))}
    assert set(split.files) <= set(files)
    # stratified: round(5 * 0.4) = 2 photos of every class are held out, 3 trained on
    per_class = pd.Series([f.split("/")[0] for f in split.files]).value_counts()
    assert per_class.to_dict() == dict.fromkeys(CLASSES, 3)
    assert sorted(split.hashes) == sorted(sha16(files[f]) for f in split.files)


def test_split_round_trips_through_json() -> None:
    split = TrainingSplit("gtsrb:/x", ("a.png",), ("0123456789abcdef",), 2, "note")
    assert TrainingSplit.from_json(split.to_json()) == split
    with pytest.raises(ValueError):
        TrainingSplit("x", (), ("not-a-hash",))


def test_split_selection_partitions_the_signs(photos: Path, model: Path) -> None:
    signs = load_signs(str(photos))
    split = split_from_metadata(load_checkpoint(model).metadata)
    train_idx = split_indices(signs, split, "train")
    held = split_indices(signs, split, "heldout")
    assert not set(train_idx) & set(held)
    assert sorted({*train_idx, *held}) == list(range(len(signs)))
    assert list(split_indices(signs, split, "all")) == list(range(len(signs)))
    assert split is not None
    assert {signs.files[i] for i in train_idx} == set(split.files)


def test_evaluate_warns_with_the_count_of_training_photos(
    photos: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--model", str(model), "--signs", str(photos), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "warning: 9 of 15 photos were in this model's training split" in err
    assert main(["evaluate", "--model", str(model), "--signs", str(photos), "--device", "cpu",
                 "--split", "heldout"]) == 0
    out, err = capsys.readouterr()
    assert "on 6 images" in out and "warning" not in err
    res = evaluate(load_checkpoint(model), load_signs(str(photos)), split="train")
    assert (res.n, res.trained, res.images) == (9, 9, 9)


def test_old_checkpoint_loads_and_refuses_heldout_with_one_line(
    photos: Path, splitless: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clf = load_checkpoint(splitless)
    assert split_from_metadata(clf.metadata) is None
    assert main(["evaluate", "--model", str(splitless), "--signs", str(photos)]) == 0
    assert "training split" not in capsys.readouterr().err  # unknown: nothing to warn about
    for cmd in (
        ["evaluate", "--model", str(splitless), "--signs", str(photos), "--split", "heldout"],
        ["run", "--model", str(splitless), "--signs", str(photos), "--split", "train",
         "--quiet", "--device", "cpu"],
        ["search", "--model", str(splitless), "--signs", str(photos), "--split", "heldout",
         "--quiet", "--device", "cpu"],
    ):
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --split"), err
        assert "records no training split" in err[0]


def test_run_attacks_only_the_heldout_signs_and_records_it(
    photos: Path, model: Path, tmp_path: Path
) -> None:
    signs = load_signs(str(photos))
    split = split_from_metadata(load_checkpoint(model).metadata)
    assert split is not None
    trained_files = set(split.files)
    dirs = {}
    for which in ("heldout", "train"):
        out = tmp_path / which
        assert main(["run", "--model", str(model), "--signs", str(photos), "--split", which,
                     "--species", "maple", "--sizes", "0.3", "--angles", "0",
                     "--positions", "1x1", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
        dirs[which] = out
        clean = pd.read_csv(out / "clean.csv")
        files = set(clean["sign_file"])
        expected = {f for f in signs.files if (f in trained_files) == (which == "train")}
        assert files == expected
        doc = json.loads((out / "split.json").read_text())
        assert doc["split"] == which and doc["model_split"] == "recorded"
        assert doc["used_in_training"] == (9 if which == "train" else 0)
        assert f'split = "{which}"' in (out / "config.toml").read_text()
        assert f"Split attacked: {which}" in split_text(doc)
    held = set(pd.read_csv(dirs["heldout"] / "clean.csv")["sign_id"])
    trained = set(pd.read_csv(dirs["train"] / "clean.csv")["sign_id"])
    assert not held & trained and held | trained == set(range(len(signs)))


def test_default_run_keeps_its_keys_and_directory() -> None:
    assert "split" not in RunConfig().to_flat()
    assert default_out(RunConfig()) != default_out(RunConfig(split="heldout"))
    with pytest.raises(LeafattackError):
        RunConfig(split="test")


def test_report_says_when_the_models_split_is_unknown() -> None:
    doc = {"split": "all", "signs": 4, "signs_used": 4, "signs_source": "x",
           "model_split": "unknown", "used_in_training": None}
    assert "unknown" in split_text(doc)
    assert "not recorded" in split_text({})


def test_default_model_records_the_builtin_renders_reproducibly(tmp_path: Path) -> None:
    split = split_from_metadata(load_checkpoint(DEFAULT_MODEL_PATH).metadata)
    assert split is not None and split.source == "builtin"
    assert "built-in renders" in split.note
    builtin = load_signs("builtin")
    assert sorted(split.hashes) == sorted(sha16(img) for img in builtin.images)
    again = record_default_split(DEFAULT_MODEL_PATH, tmp_path / "again.pt")
    assert again.read_bytes() == DEFAULT_MODEL_PATH.read_bytes()


def test_fresh_renders_are_reproducible_and_outside_the_default_split(tmp_path: Path) -> None:
    a = write_fresh_signs(tmp_path / "a", variant_seed=3)
    b = write_fresh_signs(tmp_path / "b", variant_seed=3)
    c = write_fresh_signs(tmp_path / "c", variant_seed=4)
    for name in ("stop_0.png", "stop_0_mask.png", "manifest.csv", "variants.csv"):
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes()
    assert (a.parent / "stop_0.png").read_bytes() != (c.parent / "stop_0.png").read_bytes()
    fresh = load_signs(str(a.parent))
    assert len(fresh) == 16 and fresh.masks is not None and all(m.any() for m in fresh.masks)
    split = split_from_metadata(load_checkpoint(DEFAULT_MODEL_PATH).metadata)
    assert list(split_indices(fresh, split, "heldout")) == list(range(16))
    with pytest.raises(LeafattackError, match="fresh renders"):
        split_indices(load_signs("builtin"), split, "heldout")


def test_signs_render_variant_seed_needs_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["signs", "render", "--variant-seed", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: --variant-seed")


def test_train_writes_what_recording_the_split_afterwards_writes(tmp_path: Path) -> None:
    """The shipped model got its split afterwards; retraining must give the same bytes."""
    trained = tmp_path / "trained.pt"
    train(TrainConfig(epochs=1, variants=2, batch_size=16, out=str(trained), quiet=True))
    payload = torch.load(trained, weights_only=True)
    del payload["split"]
    payload["version"] = 1  # as checkpoints were written before splits
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    again = record_default_split(old, tmp_path / "again.pt")
    assert again.read_bytes() == trained.read_bytes()
