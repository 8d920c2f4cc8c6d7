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
``export:PATH``             a ``torch.export`` program (``.pt2``; trusted files only)
``package.module:factory``  ``factory()`` returns ``(nn.Module, metadata dict)``
==========================  ==================================================================

A TorchScript or ``.pt2`` file given as a plain path is loaded only with
``trust_torchscript=True`` (``--trust-torchscript``); both carry their class names and
preprocessing in an extra file ``leafattack.json`` of the archive (see
:func:`load_torchscript`, :func:`load_exported`).
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import operator
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leafattack.errors import LeafattackError
from leafattack.models.architectures import build_model
from leafattack.models.classifier import Classifier, Preprocess

log = logging.getLogger(__name__)


CHECKPOINT_FORMAT = "leafattack-checkpoint"


CHECKPOINT_VERSION = 2
"""Version 2 adds the optional ``split`` entry (the training split as JSON text, see
:class:`leafattack.data.splits.TrainingSplit`); version 1 checkpoints load as before and
simply record no split."""


DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "weights" / "lisacnn_default.pt"
ROBUST_MODEL_PATH = Path(__file__).resolve().parent / "weights" / "lisacnn_default_robust.pt"

BUILTIN_MODELS: dict[str, Path] = {
    "default": DEFAULT_MODEL_PATH,
    "default-robust": ROBUST_MODEL_PATH,
}
"""Model specs that name a shipped checkpoint: ``default`` (LISA-CNN, the built-in signs)
and ``default-robust`` (the same training with ``--adversarial-leaves 4``)."""


def save_checkpoint(
    path: str | Path,
    classifier: Classifier,
    *,
    seed: int | None = None,
    data_fingerprint: str = "",
    val_accuracy: float | None = None,
    extra: Mapping[str, Any] | None = None,
    split: str = "",
) -> Path:
    """Write a leafattack checkpoint: state_dict plus metadata, loadable with weights_only=True.

    ``split`` is the training split as JSON text (``TrainingSplit.to_json()``); empty for
    none. The same inputs give the same bytes.
    """
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
    if split:
        payload["split"] = split
    buf = io.BytesIO()
    torch.save(payload, buf)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(p)
    return p


def write_split(path: str | Path, split: str, out: str | Path | None = None) -> Path:
    """Record a training split (JSON text) in an existing leafattack checkpoint.

    The weights and every other entry stay as they are (the model fingerprint does not
    change); the version becomes :data:`CHECKPOINT_VERSION`. Writes ``out`` (default: in
    place, atomically). The same inputs give the same bytes.
    """
    p = Path(path)
    load_checkpoint(p)  # validates the file first (one-line errors)
    payload = torch.load(p, map_location="cpu", weights_only=True)
    payload["version"] = CHECKPOINT_VERSION
    payload["split"] = split
    buf = io.BytesIO()
    torch.save(payload, buf)
    target = Path(out) if out is not None else p
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(target)
    return target


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _is_exported_program(path: Path) -> bool:
    """A ``torch.export.save`` archive (``<name>/archive_format`` and a model JSON)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/archive_format") for n in names) and any(
        "/models/" in n and n.endswith(".json") for n in names
    )


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
    if _is_exported_program(p):
        raise LeafattackError(
            f"{p}: is a torch.export program; it runs code from the file, so load it only "
            f"if you trust it, with the spec export:{p} or --trust-torchscript"
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
        with warnings.catch_warnings():  # torch's TorchScript deprecation notices
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
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


class ExportedModule(nn.Module):
    """The module of a ``torch.export`` program, with ``train()``/``eval()`` as no-ops.

    An exported graph is fixed in the mode it was exported in (export in eval mode);
    torch refuses to switch it, and :class:`Classifier` switches every model to eval.

    Shape:
        forward: float32 (N, 3, S, S) normalised input -> (N, num_classes) logits.
    """

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.program(x)
        return out

    def train(self, mode: bool = True) -> ExportedModule:
        return self


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Load a ``torch.export`` program saved with ``torch.export.save`` (trusted files only).

    Metadata, as for TorchScript, comes from an extra file ``leafattack.json`` of the
    archive (``torch.export.save(ep, f, extra_files={"leafattack.json": json.dumps(meta)})``)
    with keys ``class_names`` (required), ``input_size``, ``mean``, ``std``, ``resize``.
    Export the model in eval mode with a dynamic batch dimension (see
    ``docs/export_model.py``), so that batches of any size run.
    """
    p = Path(path)
    if not p.is_file():
        raise LeafattackError(f"{p}: torch.export program not found (expected a .pt2 file)")
    extra = {"leafattack.json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            program = torch.export.load(str(p), extra_files=extra)
            module = program.module()
    except Exception as exc:  # any parse failure of the archive
        raise LeafattackError(
            f"{p}: not a loadable torch.export program ({type(exc).__name__}); expected a "
            ".pt2 file written by torch.export.save"
        ) from None
    try:
        meta = json.loads(extra["leafattack.json"] or "{}")
    except json.JSONDecodeError:
        raise LeafattackError(f"{p}: leafattack.json inside the archive is not JSON") from None
    return _wrap_with_meta(ExportedModule(module), meta, str(p), arch="export").to(device)


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
    if spec in BUILTIN_MODELS:
        path = BUILTIN_MODELS[spec]
        if not path.is_file():
            raise LeafattackError(
                f"{path}: the {spec} model is missing; train it with "
                f"'leafattack train --out {path}' (see the README's Models section)"
            )
        return load_checkpoint(path, device)
    if spec.startswith("torchscript:"):
        return load_torchscript(spec[len("torchscript:") :], device)
    if spec.startswith("export:"):
        return load_exported(spec[len("export:") :], device)
    p = Path(spec)
    if p.exists():
        if trust_torchscript and _is_torchscript(p):
            return load_torchscript(p, device)
        if trust_torchscript and _is_exported_program(p):
            return load_exported(p, device)
        return load_checkpoint(p, device)
    if _FACTORY_RE.match(spec):
        return load_factory(spec, device)
    raise LeafattackError(
        f"model spec {spec!r}: no such file (expected 'default', a checkpoint path, "
        f"'torchscript:PATH', 'export:PATH' or 'package.module:factory')"
    )
