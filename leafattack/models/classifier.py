"""The Classifier: a module plus its preprocessing and class names."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leafattack.errors import LeafattackError
from leafattack.models.architectures import ARCHITECTURES

RESIZE_MODES = ("bilinear", "area", "nearest", "bicubic")


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

    The model gets a contiguous batch in one fixed memory layout: NCHW, or channels-last on
    a CPU when ``channels_last`` is set, by default for the built-in architectures (oneDNN runs
    their convolutions about 1.7x faster so on 2 CPU cores, to within 1e-6 of NCHW). A
    model of unknown code keeps NCHW, since one that calls ``.view`` on its activations
    would fail on channels-last ones.
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
        channels_last: bool | None = None,
    ) -> None:
        self.module = module.eval()
        self.arch = arch
        self.channels_last = self.builtin if channels_last is None else channels_last
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.preprocess = preprocess
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
    def builtin(self) -> bool:
        """Whether the model is one of the built-in :data:`ARCHITECTURES` (by its recorded
        ``arch``): a forward pass that keeps no state, safe on several threads at once."""
        return self.arch in ARCHITECTURES

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
        """uint8/float (N, 3, H, W) → normalised float32 (N, 3, S, S) on the model's device,
        contiguous in the layout the model gets (see the class docstring)."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise LeafattackError(
                f"model input has shape {tuple(batch.shape)}, expected (N, 3, H, W) RGB"
            )
        dev = self.device
        x = to_float(batch.to(dev, non_blocking=True))
        x = resize_batch(x, self.preprocess.input_size, self.preprocess.resize)
        x = (x - self._mean.to(dev)) / self._std.to(dev)
        if self.channels_last and dev.type == "cpu":
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

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
