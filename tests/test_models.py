"""Tests of leafattack.models: architectures, the Classifier wrapper, checkpoints, specs.

Checkpoint safety is tested with damaged archives, NaN weights and weights of the wrong
shape; pickles whose ``__reduce__`` would run code are tested once, through the API and the
CLI, in ``tests/reliability/test_untrusted_models.py``. Model specs ``fixture_models:NAME``
come from the weight-free models in ``tests/fixture_models.py``.
"""

from __future__ import annotations

import copy
import io
import json
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leafattack.data.signset import LISA_CLASSES
from leafattack.data.sources import load_builtin
from leafattack.errors import LeafattackError
from leafattack.models.architectures import (
    ARCHITECTURES,
    TORCHVISION_INPUT_SIZE,
    LisaCNN,
    build_model,
    default_input_size,
)
from leafattack.models.classifier import (
    Classifier,
    Preprocess,
    match_classes,
    module_fingerprint,
    resize_batch,
    resolve_device,
)
from leafattack.models.loading import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    load_model,
    load_torchscript,
    save_checkpoint,
)

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

STOP = LISA_CLASSES.index("stop")


def _seeded_lisacnn(num_classes: int = 16, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("lisacnn", num_classes)


def _classifier(num_classes: int = 16, seed: int = 0, **pp: Any) -> Classifier:
    names = list(LISA_CLASSES) if num_classes == 16 else [f"class{i}" for i in range(num_classes)]
    preprocess = Preprocess(**pp) if pp else Preprocess()
    return Classifier(_seeded_lisacnn(num_classes, seed), names, preprocess, arch="lisacnn")


def _batch(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=gen, dtype=torch.uint8)


# ---------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("num_classes", [16, 43])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_registered_architecture_maps_batch_to_logits(arch: str, num_classes: int) -> None:
    torch.manual_seed(0)
    module = build_model(arch, num_classes).eval()
    assert default_input_size(arch) == ARCHITECTURES[arch].input_size == 32
    with torch.no_grad():
        out = module(torch.randn(5, 3, 32, 32))
    assert out.shape == (5, num_classes)
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    # Distinct inputs give distinct logits: the output depends on the image.
    assert not torch.allclose(out[0], out[1])


def test_lisacnn_has_the_paper_layers_and_feature_map_sizes() -> None:
    model = LisaCNN(16)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    got = [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs]
    assert got == [
        (3, 64, (8, 8), (2, 2), (3, 3)),
        (64, 128, (6, 6), (2, 2), (0, 0)),
        (128, 128, (5, 5), (1, 1), (0, 0)),
    ]
    assert len(linears) == 1 and (linears[0].in_features, linears[0].out_features) == (512, 16)

    # Feature map sides from the convolution arithmetic, floor((n + 2p - k) / s) + 1.
    side, expected = 32, []
    for conv in convs:
        assert isinstance(conv.padding, tuple)
        side = (side + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        expected.append((conv.out_channels, side, side))
    assert [s[1] for s in expected] == [16, 6, 2]

    seen: list[tuple[int, ...]] = []
    hooks = [c.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape))) for c in convs]
    try:
        with torch.no_grad():
            model(torch.zeros(3, 3, 32, 32))
    finally:
        for h in hooks:
            h.remove()
    assert seen == [(3, *e) for e in expected]
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == (3 * 64 * 64 + 64) + (64 * 128 * 36 + 128) + (128 * 128 * 25 + 128) + (
        512 * 16 + 16
    )


@pytest.mark.parametrize(
    ("arch", "num_classes", "head"),
    [
        ("mobilenet_v3_small", 16, lambda m: m.classifier[-1]),
        ("resnet18", 43, lambda m: m.fc),
    ],
)
def test_torchvision_model_by_name_gets_its_head_resized(
    arch: str, num_classes: int, head: Callable[[nn.Module], nn.Linear]
) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes).eval()
    assert isinstance(head(model), nn.Linear)
    assert head(model).out_features == num_classes
    assert default_input_size(arch) == TORCHVISION_INPUT_SIZE
    clf = Classifier(model, [f"c{i}" for i in range(num_classes)], arch=arch)
    probs = clf.predict_proba(_batch(2, 40, 40))
    assert probs.shape == (2, num_classes)
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("arch", ["lisa_cnn", "resnet-18", "", "transformer"])
def test_unknown_architecture_is_refused(arch: str) -> None:
    with pytest.raises(LeafattackError, match="unknown architecture"):
        build_model(arch, 16)


def test_fewer_than_two_classes_is_refused() -> None:
    with pytest.raises(LeafattackError, match="at least 2"):
        build_model("lisacnn", 1)


# ---------------------------------------------------------------------------- Classifier


class _DropoutBatchNormNet(nn.Module):
    """Conv, batchnorm and dropout: train and eval mode give different outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.bn(self.conv(x))))
        return self.fc(h.mean(dim=(2, 3)))


def _bn_net_with_running_stats() -> nn.Module:
    torch.manual_seed(0)
    net = _DropoutBatchNormNet().train()
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from 0/1
            net(torch.rand(8, 3, 16, 16) * 3 + 1)
    return net


def test_predict_proba_runs_in_eval_mode_even_if_module_left_in_train_mode() -> None:
    net = _bn_net_with_running_stats()
    reference = copy.deepcopy(net).eval()
    pp = Preprocess(input_size=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4), resize="area")
    clf = Classifier(net, [f"c{i}" for i in range(5)], pp)
    net.train()  # someone left it in training mode
    x = _batch(4, 32, 32, seed=1)
    p1 = clf.predict_proba(x)
    p2 = clf.predict_proba(x)
    assert torch.equal(p1, p2)

    # Independent expectation: eval-mode module on the input pooled 2x2 and normalised by hand.
    xf = x.double() / 255.0
    pooled = xf.reshape(4, 3, 16, 2, 16, 2).mean(dim=(3, 5))
    mean = torch.tensor(pp.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(pp.std, dtype=torch.float64).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.softmax(reference(((pooled - mean) / std).float()), dim=1)
    assert torch.allclose(p1, expected, atol=1e-5)

    # In train mode the same module is stochastic and uses batch statistics: a real difference.
    net.train()
    with torch.no_grad():
        train_out = torch.softmax(net(clf.prepare(x)), dim=1)
    assert not torch.allclose(train_out, expected, atol=1e-3)


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (96, 128), (20, 20), (57, 41)])
def test_predict_proba_rows_sum_to_one_for_uint8_and_float(size: tuple[int, int]) -> None:
    clf = _classifier(resize="bilinear")
    x8 = _batch(3, *size, seed=2)
    p8 = clf.predict_proba(x8)
    pf = clf.predict_proba(x8.float() / 255.0)
    assert p8.shape == pf.shape == (3, 16)
    assert p8.dtype == torch.float32
    assert torch.allclose(p8.sum(1), torch.ones(3), atol=1e-5)
    assert bool(((p8 >= 0) & (p8 <= 1)).all())
    # uint8 0..255 and float 0..1 mean the same image.
    assert torch.allclose(p8, pf, atol=1e-6)
    assert p8.device == clf.device


def test_prepare_output_is_on_model_device_with_model_input_size() -> None:
    clf = _classifier()
    out = clf.prepare(_batch(2, 70, 50))
    assert out.shape == (2, 3, 32, 32)
    assert out.device == clf.device and out.dtype == torch.float32


@pytest.mark.parametrize("mode", ["area", "bilinear", "nearest", "bicubic"])
def test_prepare_resizes_on_the_model_device(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model on the shape-only ``meta`` device stands in for a GPU: the CPU batch must be
    moved there before it is resized (a spy on F.interpolate records the device)."""
    seen: list[str] = []
    original = F.interpolate

    def spy(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(x.device.type)
        return original(x, *args, **kwargs)

    monkeypatch.setattr(F, "interpolate", spy)
    clf = _classifier(resize=mode).to("meta")
    assert clf.device.type == "meta"
    out = clf.prepare(_batch(2, 64, 48))
    assert seen == ["meta"]
    assert out.device.type == "meta"
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_predict_proba_resizes_on_the_cuda_device() -> None:
    clf_cpu = _classifier(resize="bilinear")
    clf_gpu = _classifier(resize="bilinear").to("cuda")
    x = _batch(4, 96, 96)
    prepared = clf_gpu.prepare(x)
    assert prepared.device.type == "cuda"
    p_gpu = clf_gpu.predict_proba(x)
    assert p_gpu.device.type == "cuda"
    assert torch.allclose(p_gpu.cpu(), clf_cpu.predict_proba(x), atol=1e-4)


def test_prepare_rejects_non_rgb_batches() -> None:
    clf = _classifier()
    with pytest.raises(LeafattackError, match="expected"):
        clf.prepare(torch.zeros(2, 1, 32, 32))
    with pytest.raises(LeafattackError, match="expected"):
        clf.prepare(torch.zeros(3, 32, 32))


@pytest.mark.parametrize(("h", "w", "kh", "kw"), [(128, 128, 4, 4), (64, 96, 2, 3), (32, 64, 1, 2)])
def test_area_resize_equals_average_pooling_for_integer_factors(
    h: int, w: int, kh: int, kw: int
) -> None:
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(3))
    got = resize_batch(x, 32, "area")
    assert got.shape == (2, 3, 32, 32)
    assert torch.allclose(got, F.avg_pool2d(x, (kh, kw)), atol=1e-6)
    # and by plain block means, without torch pooling at all
    blocks = x.numpy().reshape(2, 3, 32, kh, 32, kw).mean(axis=(3, 5))
    np.testing.assert_allclose(got.numpy(), blocks, atol=1e-6)
    # through the Classifier with identity normalisation
    clf = Classifier(
        build_model("lisacnn", 2), ["a", "b"], Preprocess(32, (0.0,) * 3, (1.0,) * 3, "area")
    )
    assert torch.allclose(clf.prepare(x), got, atol=1e-6)


def test_classifier_refuses_duplicate_class_names() -> None:
    with pytest.raises(LeafattackError, match="not unique"):
        Classifier(build_model("lisacnn", 3), ["a", "b", "a"])


def test_output_width_different_from_class_count_is_an_error() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5))
    clf = Classifier(module, ["a", "b", "c", "d"])  # 4 names, 5 outputs
    with pytest.raises(LeafattackError, match=r"expected \(N, 4\)"):
        clf.predict_proba(_batch(2, 32, 32))


def test_nan_model_is_an_error() -> None:
    clf = load_model("fixture_models:nan_model")
    with pytest.raises(LeafattackError, match="NaN"):
        clf.predict_proba(_batch(2, 32, 32))


def test_factory_spec_loads_the_fixture_model_and_classifies_clean_signs() -> None:
    clf = load_model("fixture_models:template")
    assert clf.class_names == LISA_CLASSES
    assert clf.arch == "template"
    assert clf.preprocess == Preprocess(32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "area")
    signs = load_builtin()
    x = torch.from_numpy(np.stack(signs.images)).permute(0, 3, 1, 2)
    pred = clf.predict_proba(x).argmax(1).numpy()
    np.testing.assert_array_equal(pred, np.asarray(signs.labels))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("fixture_models:no_such_factory", "no callable"),
        ("no_such_module_xyz:factory", "cannot import"),
        ("missing-file.pt", "no such file"),
        ("fixture_models:META", "no callable"),
    ],
)
def test_bad_model_specs(spec: str, match: str) -> None:
    with pytest.raises(LeafattackError, match=match):
        load_model(spec)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(LeafattackError, match="expected auto, cpu"):
        resolve_device("tpu7")
    if not torch.cuda.is_available():
        with pytest.raises(LeafattackError, match="CUDA is not available"):
            resolve_device("cuda")


# ---------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_keeps_outputs_and_metadata(tmp_path: Path) -> None:
    clf = _classifier(input_size=32, mean=(0.4, 0.45, 0.5), std=(0.2, 0.25, 0.3), resize="bilinear")
    path = save_checkpoint(
        tmp_path / "sub" / "m.pt",
        clf,
        seed=7,
        data_fingerprint="0123456789abcdef",
        val_accuracy=0.8125,
        extra={"epochs": 3, "signs": "builtin"},
    )
    assert path == tmp_path / "sub" / "m.pt" and path.is_file()
    assert not (tmp_path / "sub" / "m.pt.tmp").exists()

    loaded = load_checkpoint(path)
    assert loaded.arch == "lisacnn"
    assert loaded.class_names == LISA_CLASSES
    assert loaded.preprocess == clf.preprocess
    assert loaded.metadata["seed"] == 7
    assert loaded.metadata["data_fingerprint"] == "0123456789abcdef"
    assert loaded.metadata["val_accuracy"] == 0.8125
    assert json.loads(loaded.metadata["extra"]) == {"epochs": 3, "signs": "builtin"}
    assert loaded.metadata["path"] == str(path)
    assert loaded.fingerprint == clf.fingerprint == module_fingerprint(clf.module)

    sd_a, sd_b = clf.module.state_dict(), loaded.module.state_dict()
    assert sd_a.keys() == sd_b.keys()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    x = _batch(6, 48, 48, seed=4)
    assert torch.equal(clf.predict_proba(x), loaded.predict_proba(x))

    # The file is plain data: torch's weights-only loader reads it without help.
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and raw["input_size"] == 32
    # Same file through the model spec.
    assert torch.equal(load_model(str(path)).predict_proba(x), loaded.predict_proba(x))


def test_checkpoint_without_seed_or_accuracy_records_placeholders(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", _classifier())
    meta = load_checkpoint(path).metadata
    assert meta["seed"] == -1
    assert np.isnan(meta["val_accuracy"])
    assert meta["data_fingerprint"] == ""


def test_plain_dict_is_not_a_leafattack_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": _seeded_lisacnn().state_dict(), "epoch": 3}, path)
    with pytest.raises(LeafattackError, match="not a leafattack checkpoint"):
        load_checkpoint(path)
    torch.save(_seeded_lisacnn().state_dict(), path)  # a bare state_dict
    with pytest.raises(LeafattackError, match="not a leafattack checkpoint"):
        load_checkpoint(path)
    torch.save({"format": CHECKPOINT_FORMAT, "arch": "lisacnn"}, path)
    with pytest.raises(LeafattackError, match="lacks class_names"):
        load_checkpoint(path)


def _valid_checkpoint_bytes(tmp_path: Path) -> bytes:
    return save_checkpoint(tmp_path / "valid.pt", _classifier()).read_bytes()


def _flip_inside_tensor_data(data: bytes) -> bytes:
    """Flip bytes in the middle of the largest stored tensor of a torch.save zip."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    # Local header: 30 bytes + name + extra field, then the stored (uncompressed) bytes.
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    damaged = bytearray(data)
    for i in range(start, start + 16):
        damaged[i] ^= 0x5A
    return bytes(damaged)


@pytest.mark.parametrize(
    "damage",
    [
        "empty",
        "first-half",
        "first-100-bytes",
        "last-byte-missing",
        "garbage",
        "flipped-weights",
        "directory",
        "missing",
    ],
)
def test_damaged_checkpoint_files_are_errors(tmp_path: Path, damage: str) -> None:
    good = _valid_checkpoint_bytes(tmp_path)
    path = tmp_path / "broken.pt"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "first-half":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "first-100-bytes":
        path.write_bytes(good[:100])
    elif damage == "last-byte-missing":
        path.write_bytes(good[:-1])
    elif damage == "garbage":
        path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8)))
    elif damage == "flipped-weights":
        path.write_bytes(_flip_inside_tensor_data(good))
    elif damage == "directory":
        path.mkdir()
    with pytest.raises(LeafattackError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_random_garbage_never_escapes_as_another_exception(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "junk.pt"
    for n in range(40):
        path.write_bytes(bytes(rng.integers(0, 256, 20 + 7 * n, dtype=np.uint8)))
        with pytest.raises(LeafattackError):
            load_checkpoint(path)


def _rewrite(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    edit(obj)
    torch.save(obj, path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_checkpoint_with_non_finite_weights_is_an_error(tmp_path: Path, bad: float) -> None:
    path = save_checkpoint(tmp_path / "m.pt", _classifier())

    def poison(obj: dict[str, Any]) -> None:
        obj["state_dict"]["features.2.weight"][0, 0, 0, 0] = bad

    _rewrite(path, poison)
    with pytest.raises(LeafattackError, match=r"features\.2\.weight contains NaN or infinite"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda o: o.update(class_names=[f"c{i}" for i in range(43)]), "do not fit"),
        (lambda o: o.update(arch="gtsrbcnn"), "do not fit"),
        (lambda o: o["state_dict"].pop("classifier.bias"), "do not fit"),
        (
            lambda o: o["state_dict"].update({"features.0.weight": torch.zeros(64, 3, 5, 5)}),
            "do not fit",
        ),
        (lambda o: o.update(arch="alexnet_v9"), "unknown architecture"),
        (lambda o: o.update(state_dict=[1, 2, 3]), "malformed"),
        (lambda o: o.update(input_size=None), "bad preprocessing"),
        (lambda o: o.update(std=[0.0, 1.0, 1.0]), "bad preprocessing"),
    ],
)
def test_checkpoint_that_does_not_fit_is_an_error(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], match: str
) -> None:
    path = save_checkpoint(tmp_path / "m.pt", _classifier())
    _rewrite(path, edit)
    with pytest.raises(LeafattackError, match=match):
        load_checkpoint(path)


# ---------------------------------------------------------------------------- TorchScript


def _scripted(tmp_path: Path, meta: dict[str, Any] | None) -> tuple[Path, nn.Module]:
    module = _seeded_lisacnn(16, seed=5).eval()
    path = tmp_path / "scripted.pt"
    extra = {"leafattack.json": json.dumps(meta)} if meta is not None else {}
    torch.jit.save(torch.jit.script(module), str(path), _extra_files=extra)
    return path, module


TS_META = {
    "class_names": list(LISA_CLASSES),
    "input_size": 32,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "resize": "area",
}


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_needs_explicit_trust(tmp_path: Path) -> None:
    path, module = _scripted(tmp_path, TS_META)
    with pytest.raises(LeafattackError, match="TorchScript"):
        load_model(str(path))
    with pytest.raises(LeafattackError, match="TorchScript"):
        load_checkpoint(path)

    x = _batch(3, 64, 64, seed=6)
    expected = torch.softmax(module(Classifier(module, LISA_CLASSES).prepare(x)), 1).detach()
    for clf in (load_model(str(path), trust_torchscript=True), load_model(f"torchscript:{path}")):
        assert clf.arch == "torchscript"
        assert clf.class_names == LISA_CLASSES
        assert clf.preprocess == Preprocess(32, (0.5,) * 3, (0.25,) * 3, "area")
        assert torch.allclose(clf.predict_proba(x), expected, atol=1e-6)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_without_metadata_or_file_is_an_error(tmp_path: Path) -> None:
    path, _ = _scripted(tmp_path, None)
    with pytest.raises(LeafattackError, match="lacks class_names"):
        load_torchscript(path)
    with pytest.raises(LeafattackError, match="not found"):
        load_model(f"torchscript:{tmp_path / 'nothing.pt'}")
    plain = save_checkpoint(tmp_path / "plain.pt", _classifier())
    with pytest.raises(LeafattackError, match="not a loadable TorchScript"):
        load_model(f"torchscript:{plain}")


# ---------------------------------------------------------------------------- match_classes


def test_match_classes_maps_by_name() -> None:
    model = list(LISA_CLASSES)
    signs = list(reversed(LISA_CLASSES))
    mapping = match_classes(signs, model)
    assert mapping == tuple(range(15, -1, -1))
    assert all(model[m] == s for s, m in zip(signs, mapping, strict=True))


def test_match_classes_subset_maps_onto_the_16_class_model() -> None:
    assert match_classes(["stop"], LISA_CLASSES) == (STOP,)
    assert match_classes(["yield", "stop"], LISA_CLASSES) == (
        LISA_CLASSES.index("yield"),
        STOP,
    )
    # An unknown class that no sign uses is allowed and maps to -1.
    assert match_classes(["stop", "unicorn"], LISA_CLASSES, used_labels=[0, 0]) == (STOP, -1)


def test_match_classes_names_the_unknown_used_class() -> None:
    with pytest.raises(LeafattackError, match="unicorn") as info:
        match_classes(["stop", "unicorn"], LISA_CLASSES, used_labels=[0, 1])
    assert str(info.value).startswith("sign classes unicorn are not")
    with pytest.raises(LeafattackError, match="Stop"):
        match_classes(["Stop"], LISA_CLASSES)  # names match exactly, case included


def test_default_robust_is_a_second_shipped_model() -> None:
    """``default-robust`` names its own checkpoint: the default's classes and contract,
    other weights, trained with adversarial leaves, and it classifies the built-in signs."""
    from leafattack.models.loading import BUILTIN_MODELS

    assert set(BUILTIN_MODELS) == {"default", "default-robust"}
    plain, robust = load_model("default"), load_model("default-robust")
    assert list(robust.class_names) == list(plain.class_names) == list(LISA_CLASSES)
    assert robust.preprocess == plain.preprocess and robust.arch == plain.arch == "lisacnn"
    assert robust.fingerprint != plain.fingerprint
    p_state, r_state = plain.module.state_dict(), robust.module.state_dict()
    assert p_state.keys() == r_state.keys()
    assert any(not torch.equal(p_state[k], r_state[k]) for k in p_state)
    extra = json.loads(
        torch.load(BUILTIN_MODELS["default-robust"], map_location="cpu", weights_only=True)[
            "extra"
        ]
    )
    assert extra["adversarial_leaves"] == 4 and extra["leaf_augment"] == 0.0
    signs = load_builtin()
    x = torch.from_numpy(np.stack(signs.images)).permute(0, 3, 1, 2).float().div(255.0)
    pred = robust.logits(x).argmax(1).numpy()
    np.testing.assert_array_equal(pred, signs.labels)


def test_model_input_layout_is_fixed_per_model() -> None:
    """A model of unknown code always gets contiguous NCHW, even from a channels-last
    batch (the pooled compositor's layout), so ``.view`` on its activations works; a
    built-in architecture gets channels-last on a CPU, with the same outputs to 1e-5."""
    seen: list[torch.Tensor] = []

    class Viewing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 30 * 30, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x)
            h = self.conv(x)
            return self.fc(h.view(h.shape[0], -1))

    torch.manual_seed(0)
    batch = torch.rand(5, 32, 32, 3).permute(0, 3, 1, 2)  # channels-last strides
    custom = Classifier(Viewing(), LISA_CLASSES, Preprocess(input_size=32))
    custom.predict_proba(batch)  # would raise in .view on channels-last activations
    assert seen[-1].is_contiguous() and not custom.channels_last

    builtin = _classifier(input_size=32)
    assert builtin.channels_last
    x = builtin.prepare(batch.contiguous())
    assert x.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        plain = torch.softmax(builtin.module(x.contiguous()), 1)
    torch.testing.assert_close(builtin.predict_proba(batch), plain, atol=1e-5, rtol=0)
