"""Classifier architectures, the :class:`Classifier` wrapper, checkpoints and model specs.

Architectures (``ARCHITECTURES``) are plain factories ``f(num_classes) -> nn.Module``:

* ``lisacnn``: the LISA-CNN of the reference study and of the shadow attack:
  conv 8×8/64 stride 2 → conv 6×6/128 stride 2 → conv 5×5/128 → fully connected, on 32×32 RGB.
* ``gtsrbcnn``: a multi-scale CNN of the Sermanet–LeCun kind on 32×32 RGB, whose classifier
  sees the pooled features of every stage.
* any torchvision classification model by name (``resnet18``, ``mobilenet_v3_small``, ...),
  built without weights and with its head sized to the class count.

A *model spec* picks a model:

==========================  ==================================================================
``default``                 the shipped LISA-CNN trained on the 16 built-in signs
``PATH.pt``                 a leafattack checkpoint (loaded with ``weights_only=True``)
``torchscript:PATH``        a TorchScript file (runs code from the file: trusted files only)
``package.module:factory``  ``factory()`` returns ``(nn.Module, metadata dict)``
==========================  ==================================================================
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import operator
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leafattack.errors import LeafattackError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "leafattack-checkpoint"
CHECKPOINT_VERSION = 1
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "weights" / "lisacnn_default.pt"
RESIZE_MODES = ("bilinear", "area", "nearest", "bicubic")


class LisaCNN(nn.Module):
    """LISA-CNN: conv 8×8/64 s2 → conv 6×6/128 s2 → conv 5×5/128 → fc.

    Shape: input (N, 3, 32, 32) float (normalised), output (N, num_classes) logits.
    The first convolution pads by 3 ("same" for stride 2), the others are unpadded,
    giving 16×16 → 6×6 → 2×2 feature maps.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=8, stride=2, padding=3),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, kernel_size=6, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 128, kernel_size=5),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(128 * 2 * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class MultiScaleCNN(nn.Module):
    """A Sermanet–LeCun style multi-scale CNN for 32×32 inputs.

    Three conv/pool stages (32, 64, 128 channels); the classifier sees the outputs of all
    three, each pooled to 4×4, so that coarse and fine features both reach it.

    Shape: input (N, 3, 32, 32) float, output (N, num_classes) logits.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()

        def stage(cin: int, cout: int, k: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, k, padding=k // 2),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.stage1 = stage(3, 32, 5)
        self.stage2 = stage(32, 64, 5)
        self.stage3 = stage(64, 128, 3)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Sequential(
            nn.Dropout(0.3),
            nn.Linear((32 + 64 + 128) * 16, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        feats = [torch.flatten(self.pool(s), 1) for s in (s1, s2, s3)]
        return self.classifier(torch.cat(feats, dim=1))


@dataclass(frozen=True, slots=True)
class Architecture:
    """A registered architecture: a factory plus its native input size."""

    factory: Callable[[int], nn.Module]
    input_size: int


ARCHITECTURES: dict[str, Architecture] = {
    "lisacnn": Architecture(LisaCNN, 32),
    "gtsrbcnn": Architecture(MultiScaleCNN, 32),
}
"""Built-in architectures; torchvision classification models are found by name on top."""

TORCHVISION_INPUT_SIZE = 64


def torchvision_architectures() -> list[str]:
    """Names of the torchvision classification models that :func:`build_model` accepts."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_model(arch: str, num_classes: int) -> nn.Module:
    """Build an untrained model by architecture name.

    Raises:
        LeafattackError: unknown architecture or non-positive class count.
    """
    if num_classes < 2:
        raise LeafattackError(f"num_classes={num_classes}: expected at least 2 classes")
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch].factory(num_classes)
    names = torchvision_architectures()
    if arch in names:
        import torchvision

        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    raise LeafattackError(
        f"unknown architecture {arch!r} (expected {', '.join(ARCHITECTURES)} "
        f"or a torchvision classification model such as resnet18)"
    )


def default_input_size(arch: str) -> int:
    """The input side length an architecture is trained at by default."""
    return ARCHITECTURES[arch].input_size if arch in ARCHITECTURES else TORCHVISION_INPUT_SIZE


@dataclass(frozen=True, slots=True)
class Preprocess:
    """How a batch of images becomes model input.

    Attributes:
        input_size: square side length the model expects.
        mean, std: per-channel normalisation of [0, 1] RGB.
        resize: interpolation mode of the resize (antialiased when downscaling bilinear/bicubic).
    """

    input_size: int = 32
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    resize: str = "area"

    def __post_init__(self) -> None:
        if not 8 <= self.input_size <= 1024:
            raise ValueError(f"input_size={self.input_size}: expected 8..1024")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean/std {self.mean}/{self.std}: expected three values each")
        if any(not s > 0 for s in self.std):
            raise ValueError(f"std={self.std}: expected positive values")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize={self.resize!r}: expected one of {', '.join(RESIZE_MODES)}")


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) in 0..255 or float in [0, 1] → float32 in [0, 1], same shape."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    return batch.float()


def resize_batch(batch: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize float (N, C, H, W) to (N, C, size, size), antialiased when shrinking."""
    if batch.shape[-2:] == (size, size):
        return batch
    if mode == "area":
        return F.interpolate(batch, size=(size, size), mode="area")
    if mode == "nearest":
        return F.interpolate(batch, size=(size, size), mode="nearest")
    shrink = batch.shape[-1] > size or batch.shape[-2] > size
    return F.interpolate(batch, size=(size, size), mode=mode, align_corners=False, antialias=shrink)


class Classifier:
    """A model with its preprocessing and class names.

    ``predict_proba`` accepts uint8 (0..255) or float ([0, 1]) tensors of shape (N, 3, H, W)
    of any size, resizes and normalises them on the model's device, and returns float32
    probabilities (N, num_classes). It always runs in eval mode under ``inference_mode``.
    """

    def __init__(
        self,
        module: nn.Module,
        class_names: Sequence[str],
        preprocess: Preprocess = Preprocess(),
        *,
        arch: str = "custom",
        metadata: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.module = module.eval()
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.preprocess = preprocess
        self.arch = arch
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.fingerprint = fingerprint or module_fingerprint(module)
        if len(set(self.class_names)) != len(self.class_names):
            raise LeafattackError(f"model class names are not unique: {self.class_names}")
        self._mean = torch.tensor(preprocess.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(preprocess.std).view(1, 3, 1, 1)
        self._checked_width = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        for b in self.module.buffers():
            return b.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> Classifier:
        """Move the model to ``device`` (in place) and return self."""
        self.module.to(device)
        return self

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8/float (N, 3, H, W) → normalised float32 (N, 3, S, S) on the model's device."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise LeafattackError(
                f"model input has shape {tuple(batch.shape)}, expected (N, 3, H, W) RGB"
            )
        dev = self.device
        x = to_float(batch.to(dev, non_blocking=True))
        x = resize_batch(x, self.preprocess.input_size, self.preprocess.resize)
        return (x - self._mean.to(dev)) / self._std.to(dev)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw model outputs (N, num_classes) float32 for a uint8/float (N, 3, H, W) batch."""
        self.module.eval()
        with torch.inference_mode():
            out = self.module(self.prepare(batch))
            if isinstance(out, tuple):  # e.g. torchvision GoogLeNet aux outputs
                out = out[0]
            out = out.float()
        if not self._checked_width:
            if out.ndim != 2 or out.shape[1] != self.num_classes:
                raise LeafattackError(
                    f"model outputs shape {tuple(out.shape)}, expected (N, {self.num_classes}) "
                    f"for its {self.num_classes} class names"
                )
            self._checked_width = True
        if not bool(torch.isfinite(out).all()):
            raise LeafattackError(
                f"model {self.arch} ({self.fingerprint}) produced NaN or infinite outputs"
            )
        return out

    def predict_proba(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, num_classes) float32 in [0, 1] for (N, 3, H, W) images."""
        return torch.softmax(self.logits(batch), dim=1)

    def class_index(self, name: str) -> int:
        """Index of a class name; LeafattackError listing the known names if absent."""
        try:
            return self.class_names.index(name)
        except ValueError:
            raise LeafattackError(
                f"class {name!r} is not one of the model's classes ({', '.join(self.class_names)})"
            ) from None


def module_fingerprint(module: nn.Module) -> str:
    """sha256 (16 hex chars) over parameter names, shapes and bytes."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: str | Path,
    classifier: Classifier,
    *,
    seed: int | None = None,
    data_fingerprint: str = "",
    val_accuracy: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a leafattack checkpoint: state_dict plus metadata, loadable with weights_only=True."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in classifier.module.state_dict().items()}
    pp = classifier.preprocess
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arch": classifier.arch,
        "class_names": list(classifier.class_names),
        "input_size": pp.input_size,
        "mean": list(pp.mean),
        "std": list(pp.std),
        "resize": pp.resize,
        "seed": -1 if seed is None else int(seed),
        "data_fingerprint": data_fingerprint,
        "val_accuracy": float("nan") if val_accuracy is None else float(val_accuracy),
        "extra": json.dumps(dict(extra or {}), sort_keys=True),
        "state_dict": state,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(p)
    return p


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _zip_damage(path: Path) -> str | None:
    """For a zip archive (the format torch.save writes): a description of the first member
    whose bytes fail their CRC, or of a damaged archive; None when intact or not a zip."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except Exception as exc:  # damaged directory or headers: BadZipFile, zlib.error, ...
        return f"damaged zip archive, {type(exc).__name__}"
    return None if bad is None else f"member {bad} fails its CRC check"


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Load a leafattack checkpoint safely (``weights_only=True``: no code runs).

    Raises:
        LeafattackError: missing/corrupt file, a pickle that would run code, a file that is
            not a leafattack checkpoint, a TorchScript file, NaN/inf weights, or weights that
            do not fit the architecture.
    """
    p = Path(path)
    if not p.is_file():
        raise LeafattackError(f"{p}: checkpoint file not found (expected a leafattack .pt file)")
    if p.stat().st_size == 0:
        raise LeafattackError(f"{p}: empty file (expected a leafattack .pt checkpoint)")
    if _is_torchscript(p):
        raise LeafattackError(
            f"{p}: is a TorchScript file; TorchScript runs code from the file, so load it "
            f"only if you trust it, with the spec torchscript:{p} or --trust-torchscript"
        )
    bad_member = _zip_damage(p)
    if bad_member is not None:
        raise LeafattackError(
            f"{p}: corrupt checkpoint ({bad_member}); expected an intact leafattack .pt file"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise LeafattackError(
            f"{p}: refused, the file is not a plain leafattack checkpoint and loading it would "
            f"execute code ({first[:120]})"
        ) from None
    except Exception as exc:  # any parse failure of untrusted bytes (KeyError, IndexError, ...)
        raise LeafattackError(
            f"{p}: not a readable checkpoint ({type(exc).__name__}); expected a leafattack .pt file"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise LeafattackError(
            f"{p}: not a leafattack checkpoint (expected a dict with format={CHECKPOINT_FORMAT!r}, "
            f"as written by 'leafattack train')"
        )
    missing = [
        k
        for k in ("arch", "class_names", "input_size", "mean", "std", "state_dict")
        if k not in obj
    ]
    if missing:
        raise LeafattackError(f"{p}: leafattack checkpoint lacks {', '.join(missing)}")
    if not isinstance(obj["class_names"], list | tuple) or not isinstance(obj["state_dict"], dict):
        raise LeafattackError(
            f"{p}: leafattack checkpoint has malformed class_names or state_dict "
            f"(expected a list of names and a dict of tensors)"
        )
    class_names = [str(c) for c in obj["class_names"]]
    try:
        module = build_model(str(obj["arch"]), len(class_names))
    except LeafattackError as exc:
        raise LeafattackError(f"{p}: {exc}") from None
    state = obj["state_dict"]
    for name, t in state.items():
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise LeafattackError(f"{p}: weight {name} contains NaN or infinite values")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise LeafattackError(
            f"{p}: weights do not fit architecture {obj['arch']} with {len(class_names)} "
            f"classes ({str(exc).splitlines()[0][:160]})"
        ) from None
    try:
        preprocess = Preprocess(
            input_size=int(obj["input_size"]),
            mean=tuple(float(v) for v in obj["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in obj["std"]),  # type: ignore[arg-type]
            resize=str(obj.get("resize", "bilinear")),
        )
    except (TypeError, ValueError) as exc:
        raise LeafattackError(f"{p}: bad preprocessing metadata ({exc})") from None
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    meta["path"] = str(p)
    clf = Classifier(module, class_names, preprocess, arch=str(obj["arch"]), metadata=meta)
    return clf.to(device)


def load_torchscript(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Load a TorchScript classifier (trusted files only: it runs code from the file).

    Metadata comes from an extra file ``leafattack.json`` inside the archive with keys
    ``class_names`` (required), ``input_size``, ``mean``, ``std``, ``resize``.
    """
    p = Path(path)
    if not p.is_file():
        raise LeafattackError(f"{p}: TorchScript file not found")
    extra = {"leafattack.json": ""}
    try:
        module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as exc:
        raise LeafattackError(
            f"{p}: not a loadable TorchScript file ({type(exc).__name__})"
        ) from None
    try:
        meta = json.loads(extra["leafattack.json"] or "{}")
    except json.JSONDecodeError:
        raise LeafattackError(f"{p}: leafattack.json inside the archive is not JSON") from None
    return _wrap_with_meta(module, meta, str(p), arch="torchscript").to(device)


def _wrap_with_meta(
    module: nn.Module, meta: Mapping[str, Any], where: str, arch: str
) -> Classifier:
    if not isinstance(meta, Mapping) or "class_names" not in meta:
        raise LeafattackError(
            f"{where}: metadata lacks class_names (expected a list of the model's class names)"
        )
    if not isinstance(meta["class_names"], list | tuple):
        raise LeafattackError(
            f"{where}: metadata class_names is {type(meta['class_names']).__name__} "
            f"(expected a list of the model's class names)"
        )
    kw: dict[str, Any] = {}
    try:
        if "input_size" in meta:
            kw["input_size"] = operator.index(meta["input_size"])  # TypeError unless integral
        if "resize" in meta:
            kw["resize"] = meta["resize"]
        for key in ("mean", "std"):
            if key in meta:
                kw[key] = tuple(float(v) for v in meta[key])
        preprocess = Preprocess(**kw)
    except (TypeError, ValueError) as exc:
        raise LeafattackError(f"{where}: bad preprocessing metadata ({exc})") from None
    return Classifier(
        module, [str(c) for c in meta["class_names"]], preprocess, arch=arch, metadata=dict(meta)
    )


_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_factory(spec: str, device: str | torch.device = "cpu") -> Classifier:
    """``package.module:factory`` → ``factory()`` returning ``(nn.Module, metadata)``."""
    mod_name, func_name = spec.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except Exception as exc:  # not found, or the module fails while importing
        raise LeafattackError(f"model spec {spec!r}: cannot import {mod_name} ({exc})") from None
    factory = getattr(mod, func_name, None)
    if not callable(factory):
        raise LeafattackError(f"model spec {spec!r}: {mod_name} has no callable {func_name}")
    try:
        out = factory()
    except Exception as exc:  # e.g. a class or function that needs arguments
        raise LeafattackError(
            f"model spec {spec!r}: {func_name}() failed ({type(exc).__name__}: {exc}); "
            f"expected a factory without arguments returning (nn.Module, metadata dict)"
        ) from None
    if not (
        isinstance(out, tuple)
        and len(out) == 2
        and isinstance(out[0], nn.Module)
        and isinstance(out[1], Mapping)
    ):
        raise LeafattackError(
            f"model spec {spec!r}: factory must return (nn.Module, metadata dict)"
        )
    return _wrap_with_meta(out[0], out[1], spec, arch=str(out[1].get("arch", spec))).to(device)


def load_model(
    spec: str, device: str | torch.device = "cpu", *, trust_torchscript: bool = False
) -> Classifier:
    """Resolve a model spec (see the module docstring) to a :class:`Classifier` on ``device``."""
    if spec == "default":
        if not DEFAULT_MODEL_PATH.is_file():
            raise LeafattackError(
                f"{DEFAULT_MODEL_PATH}: the default model is missing; train it with "
                f"'leafattack train --out {DEFAULT_MODEL_PATH}'"
            )
        return load_checkpoint(DEFAULT_MODEL_PATH, device)
    if spec.startswith("torchscript:"):
        return load_torchscript(spec[len("torchscript:") :], device)
    p = Path(spec)
    if p.exists():
        if trust_torchscript and _is_torchscript(p):
            return load_torchscript(p, device)
        return load_checkpoint(p, device)
    if _FACTORY_RE.match(spec):
        return load_factory(spec, device)
    raise LeafattackError(
        f"model spec {spec!r}: no such file (expected 'default', a checkpoint path, "
        f"'torchscript:PATH' or 'package.module:factory')"
    )


def resolve_device(device: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LeafattackError(f"device {device!r}: CUDA is not available on this machine")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise LeafattackError(f"device {device!r}: expected auto, cpu or cuda[:N]") from None
    if dev.type not in ("cpu", "cuda"):  # meta, mps, xpu, ...: not devices leafattack runs on
        raise LeafattackError(f"device {device!r}: expected auto, cpu or cuda[:N]")
    return dev


def match_classes(
    sign_classes: Sequence[str],
    model_classes: Sequence[str],
    used_labels: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Map each sign class name to the model's class index, by name (-1 when unknown).

    Only the classes in ``used_labels`` (default: all) must be known to the model, so a
    folder holding only ``stop/`` photos can be scored against a 16-class model.

    Raises:
        LeafattackError: a used sign class the model does not know.
    """
    index = {n: i for i, n in enumerate(model_classes)}
    mapping = tuple(index.get(n, -1) for n in sign_classes)
    used = range(len(sign_classes)) if used_labels is None else sorted(set(used_labels))
    unknown = [sign_classes[i] for i in used if mapping[i] < 0]
    if unknown:
        raise LeafattackError(
            f"sign classes {', '.join(unknown)} are not classes of the model "
            f"(model knows {', '.join(model_classes)})"
        )
    return mapping
