"""Run configuration: :class:`RunConfig`, its TOML/CLI keys, and parsing with one-line errors."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import numbers
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leafattack.errors import LeafattackError
from leafattack.grid import (
    DEFAULT_SPECIES,
    GridSpec,
    parse_angles,
    parse_float_list,
    parse_names,
    parse_positions,
)
from leafattack.leaves.library import ALL_SPECIES
from leafattack.models.loading import BUILTIN_MODELS

APPEARANCES: tuple[str, ...] = ("auto", "matched", "raw")
"""Values of ``RunConfig.appearance``."""

IDENTITY_KEYS = (
    "signs",
    "leaves",
    "model",
    "target",
    "min_confidence",
    "limit_signs",
    "seed",
    "sign_size",
    "batch_size",
    "leaf_ids",
    "species",
    "colours",
    "sizes",
    "angles",
    "positions",
    "on_sign_only",
    "leaves_per_scene",
    "scenes_per_sign",
    "size_unit",
    "appearance",
    "shadow",
    "split",
)
"""Config keys that must match for a run directory to be resumed."""

SPLIT_CHOICES: tuple[str, ...] = ("all", "train", "heldout")
"""Values of ``RunConfig.split`` (the same as :data:`leafattack.data.splits.SPLITS`)."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything that defines a run. The TOML config file uses the same names.

    Attributes:
        signs: sign source spec (``builtin``, ``PATH``, ``gtsrb:PATH``, ``lisa:PATH``).
        leaves: leaf library folder, or ``builtin``.
        model: model spec (``default``, checkpoint path, ``torchscript:PATH``, ``pkg.mod:fn``).
        out: run directory; None = ``results/<model>-<config hash>``.
        grid: the attack grid.
        target: class name for a targeted attack (None = untargeted).
        min_confidence: minimum top-1 probability for a success (None = any).
        limit_signs: attack only this many signs, spread over the classes (None = all).
        batch_size: trials per batch.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: seed of every random choice (sign subset).
        sign_size: side length in pixels that every sign is resized to for compositing.
        scenes_per_sign: 0 runs the grid (one leaf per scene); N > 0 draws N seeded random
            scenes per sign instead ("leaf litter", :func:`leafattack.grid.sample_litter`).
        leaves_per_scene: leaves in each random scene (1 to 16).
        appearance: ``matched`` gives each leaf its photo's resolution, blur, exposure,
            white balance and noise (:mod:`leafattack.compose.appearance`); ``raw`` pastes
            it as rendered; ``auto`` (default) is matched on photo sources (those without
            masks of their own: GTSRB, LISA, folders of photos) and raw on the built-in
            renders (and other sources that ship masks).
        shadow: with matched appearance, add a soft cast shadow under each leaf at a light
            direction drawn per sign from the seed.
        split: ``all`` attacks every sign; ``heldout`` / ``train`` only the signs outside /
            inside the training split the model's checkpoint records
            (:mod:`leafattack.data.splits`).
        controls: neutral-occluder control kinds to run after the attack (``run
            --controls``; names as :func:`leafattack.api.run_controls` takes them).
        trials_format: ``csv``, ``parquet`` or ``auto`` (by the run's size).
        streams: batches computed at once on a CPU, each on its own thread with a share of
            torch's threads (0 = automatic: two on a CPU for a built-in architecture, else
            one; see :func:`leafattack.engine.evaluate.resolve_streams`). Each batch is
            computed whole and written in order; 1 is one batch at a time with every
            thread.
    """

    signs: str = "builtin"
    leaves: str = "builtin"
    model: str = "default"
    out: str | None = None
    grid: GridSpec = field(default_factory=GridSpec)
    target: str | None = None
    min_confidence: float | None = None
    limit_signs: int | None = None
    batch_size: int = 512
    device: str = "auto"
    seed: int = 0
    sign_size: int = 128
    quiet: bool = False
    overwrite: bool = False
    trust_torchscript: bool = False
    edges: bool = False
    report: bool = False
    executor: str = "local"
    address: str | None = None
    workers: int = 2
    gpus_per_worker: float = 0.0
    chunk_size: int = 0
    leaves_per_scene: int = 1
    scenes_per_sign: int = 0
    appearance: str = "auto"
    shadow: bool = False
    split: str = "all"
    controls: tuple[str, ...] = ()
    trials_format: str = "auto"
    streams: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.streams, bool) or not isinstance(self.streams, numbers.Integral) or not (
            0 <= self.streams <= 256
        ):
            raise LeafattackError(
                f"streams={self.streams}: expected 0 (automatic) or 1..256 batches computed at once"
            )
        if self.trials_format not in ("auto", "csv", "parquet"):
            raise LeafattackError(
                f"trials_format={self.trials_format!r}: expected auto, csv or parquet"
            )
        if self.split not in SPLIT_CHOICES:
            raise LeafattackError(
                f"split={self.split!r}: expected one of {', '.join(SPLIT_CHOICES)}"
            )
        if self.appearance not in APPEARANCES:
            raise LeafattackError(
                f"appearance={self.appearance!r}: expected one of {', '.join(APPEARANCES)}"
            )
        if self.shadow and self.appearance == "raw":
            raise LeafattackError(
                "shadow needs appearance matched or auto (raw pastes leaves as rendered)"
            )
        if self.executor not in ("local", "ray"):
            raise LeafattackError(f"executor={self.executor!r}: expected local or ray")
        if self.workers < 1:
            raise LeafattackError(f"workers={self.workers}: expected at least 1")
        if not 0.0 <= self.gpus_per_worker <= 64:
            raise LeafattackError(f"gpus_per_worker={self.gpus_per_worker}: expected 0..64")
        if not 1 <= self.leaves_per_scene <= 16:
            raise LeafattackError(
                f"leaves_per_scene={self.leaves_per_scene}: expected 1 to 16 leaves"
            )
        if self.scenes_per_sign < 0 or self.scenes_per_sign * self.leaves_per_scene > 1_000_000:
            raise LeafattackError(
                f"scenes_per_sign={self.scenes_per_sign}: expected 0 (the grid) or a count with "
                f"scenes_per_sign x leaves_per_scene <= 1000000 (the scenes are held in memory)"
            )
        if self.scenes_per_sign and self.executor != "local":
            raise LeafattackError(
                "random multi-leaf scenes (scenes_per_sign > 0) run on the local executor "
                "for now (expected --executor local)"
            )
        if self.leaves_per_scene > 1 and not self.scenes_per_sign:
            raise LeafattackError(
                f"leaves_per_scene={self.leaves_per_scene} needs scenes_per_sign (random scenes "
                f"of several leaves; the grid places one leaf per scene)"
            )
        if self.chunk_size < 0 or (self.chunk_size and self.chunk_size % self.batch_size):
            raise LeafattackError(
                f"chunk_size={self.chunk_size}: expected 0 (auto) or a multiple of "
                f"batch_size={self.batch_size}"
            )
        if not 1 <= self.batch_size <= 1_000_000:
            raise LeafattackError(f"batch_size={self.batch_size}: expected 1..1000000")
        if not 16 <= self.sign_size <= 1024:
            raise LeafattackError(f"sign_size={self.sign_size}: expected 16..1024 pixels")
        if self.limit_signs is not None and self.limit_signs < 1:
            raise LeafattackError(f"limit_signs={self.limit_signs}: expected a positive count")
        if self.min_confidence is not None and not (
            math.isfinite(self.min_confidence) and 0.0 <= self.min_confidence <= 1.0
        ):
            raise LeafattackError(
                f"min_confidence={self.min_confidence}: expected a probability in [0, 1]"
            )
        if self.seed < 0:
            raise LeafattackError(f"seed={self.seed}: expected a non-negative integer")

    def to_flat(self) -> dict[str, Any]:
        """Flat mapping with the TOML/CLI names (None values omitted)."""
        g = self.grid
        flat: dict[str, Any] = {
            "signs": self.signs,
            "leaves": self.leaves,
            "model": self.model,
            "out": self.out,
            "leaf_ids": list(g.leaf_ids),
            "species": list(g.species),
            "colours": list(g.colours),
            "sizes": list(g.sizes),
            "angles": list(g.angles),
            "positions": f"{g.positions[0]}x{g.positions[1]}",
            "on_sign_only": g.on_sign_only,
            "target": self.target,
            "min_confidence": self.min_confidence,
            "limit_signs": self.limit_signs,
            "batch_size": self.batch_size,
            "device": self.device,
            "seed": self.seed,
            "sign_size": self.sign_size,
            "executor": self.executor,
            "address": self.address,
            "workers": self.workers,
            "gpus_per_worker": self.gpus_per_worker,
            "chunk_size": self.chunk_size,
        }
        if g.size_unit != "face":
            flat["size_unit"] = g.size_unit
        if self.appearance != "auto":
            flat["appearance"] = self.appearance
        if self.shadow:
            flat["shadow"] = True
        if self.split != "all":  # default runs keep the keys (and directory names) they had
            flat["split"] = self.split
        if self.trials_format != "auto":
            flat["trials_format"] = self.trials_format
        if self.streams:
            flat["streams"] = self.streams
        if self.scenes_per_sign:  # grid runs keep the keys (and run directory names) they had
            flat["leaves_per_scene"] = self.leaves_per_scene
            flat["scenes_per_sign"] = self.scenes_per_sign
        return {k: v for k, v in flat.items() if v is not None}


_GRID_KEYS = {
    "leaf_ids",
    "species",
    "colours",
    "sizes",
    "angles",
    "positions",
    "on_sign_only",
    "size_unit",
}


_RUN_KEYS = {f.name for f in dataclasses.fields(RunConfig)} - {"grid"}


CONFIG_KEYS: tuple[str, ...] = tuple(sorted(_GRID_KEYS | _RUN_KEYS))
"""The names a TOML config (and the ``run`` command's flags) may set."""


def _as_list(value: Any, key: str) -> list[Any]:
    if isinstance(value, str):
        return list(parse_names(value))
    if isinstance(value, list | tuple):
        return list(value)
    raise LeafattackError(f"config key {key!r}: expected a list or a comma-separated string")


def config_from_mapping(values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Build a RunConfig from TOML/CLI values (same names), on top of ``base``.

    Unknown keys and values of the wrong type give a one-line LeafattackError. Where two
    spellings name one concept (:data:`CONFIG_ALIASES`, e.g. ``colors``), both are read.

    Species: when ``values`` names a leaf folder (``leaves`` other than ``builtin``) but
    no ``species``, and ``base`` still has the default species filter (maple, oak,
    poplar: the built-in library's), every species of the folder is used (``all``).
    """
    base = base or RunConfig()
    values = canonical_keys(values)
    grid_kw: dict[str, Any] = {}
    run_kw: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("run", "fingerprints", "versions"):
            continue  # informational tables written into a run's config.toml
        if key not in _GRID_KEYS and key not in _RUN_KEYS:
            raise LeafattackError(
                f"unknown config key {key!r} (expected one of {', '.join(CONFIG_KEYS)})"
            )
        if key in ("leaf_ids", "species", "colours"):
            grid_kw[key] = tuple(str(v) for v in _as_list(value, key))
        elif key == "controls":
            run_kw[key] = tuple(str(v) for v in _as_list(value, key))
        elif key == "sizes":
            grid_kw[key] = (
                parse_float_list(value, "sizes")
                if isinstance(value, str)
                else tuple(_number(v, key) for v in _as_list(value, key))
            )
        elif key == "angles":
            grid_kw[key] = (
                parse_angles(value)
                if isinstance(value, str)
                else tuple(_number(v, key) for v in _as_list(value, key))
            )
        elif key == "positions":
            if isinstance(value, str):
                grid_kw[key] = parse_positions(value)
            elif isinstance(value, list | tuple) and len(value) == 2:
                grid_kw[key] = (_integer(value[0], key), _integer(value[1], key))
            else:
                raise LeafattackError(f"positions {value!r}: expected NxM, e.g. 5x5")
        elif key == "on_sign_only":
            grid_kw[key] = _boolean(value, key)
        elif key == "size_unit":
            if not isinstance(value, str):
                raise LeafattackError(f"config key {key!r}: expected face or cm, got {value!r}")
            grid_kw[key] = value
        elif key in (
            "signs",
            "leaves",
            "model",
            "out",
            "device",
            "target",
            "executor",
            "address",
            "appearance",
            "split",
            "trials_format",
        ):
            if not isinstance(value, str):
                raise LeafattackError(f"config key {key!r}: expected a string, got {value!r}")
            if "\0" in value:  # no path or name can hold one; os calls would raise ValueError
                raise LeafattackError(
                    f"config key {key!r}: {value!r} contains a NUL character (expected text)"
                )
            run_kw[key] = value
        elif key in (
            "limit_signs",
            "batch_size",
            "seed",
            "sign_size",
            "workers",
            "chunk_size",
            "leaves_per_scene",
            "scenes_per_sign",
            "streams",
        ):
            run_kw[key] = _integer(value, key)
        elif key in ("min_confidence", "gpus_per_worker"):
            run_kw[key] = _number(value, key)
        else:
            run_kw[key] = _boolean(value, key)
    if (
        run_kw.get("leaves", "builtin") != "builtin"
        and "species" not in grid_kw
        and base.grid.species == DEFAULT_SPECIES
    ):
        grid_kw["species"] = (ALL_SPECIES,)
    grid = dataclasses.replace(base.grid, **grid_kw)
    return dataclasses.replace(base, grid=grid, **run_kw)


CONFIG_ALIASES: dict[str, str] = {
    "colors": "colours",
    "sizes_cm": "sizes",
    "format": "trials_format",
}
"""Second spellings the command line accepts (``--colors``), read by configs too.

``sizes_cm = [8, 12]`` is ``sizes = [8, 12]`` with ``size_unit = "cm"`` (``--sizes-cm``).
"""


def canonical_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with :data:`CONFIG_ALIASES` replaced by their canonical names.

    Raises:
        LeafattackError: both spellings of one key are given, or ``sizes_cm`` with a
            ``size_unit`` other than cm.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = CONFIG_ALIASES.get(key, key)
        if name in out:
            raise LeafattackError(
                f"config keys {key!r} and {name!r}: the same setting twice (expected one)"
            )
        out[name] = value
        if key == "sizes_cm":
            if values.get("size_unit", "cm") != "cm":
                raise LeafattackError(
                    "config keys 'sizes_cm' and size_unit = "
                    f"{values['size_unit']!r}: expected size_unit cm or no size_unit"
                )
            out["size_unit"] = "cm"
    return out


def _number(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        try:
            return float(str(v))
        except ValueError:
            raise LeafattackError(f"config key {key!r}: {v!r} is not a number") from None
    try:
        return float(v)
    except OverflowError:  # an integer beyond the float range
        raise LeafattackError(f"config key {key!r}: integer out of range") from None


def _integer(v: Any, key: str) -> int:
    if isinstance(v, bool):
        raise LeafattackError(f"config key {key!r}: {v!r} is not an integer")
    if isinstance(v, int):  # exact: through float, 2**53 + 1 would become 2**53
        return v
    if isinstance(v, str):
        with contextlib.suppress(ValueError):
            return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise LeafattackError(f"config key {key!r}: {v!r} is not an integer") from None
    if not f.is_integer():
        raise LeafattackError(f"config key {key!r}: {v!r} is not an integer")
    return int(f)


def _boolean(v: Any, key: str) -> bool:
    if isinstance(v, bool):
        return v
    raise LeafattackError(f"config key {key!r}: expected true or false, got {v!r}")


def load_config(path: str | os.PathLike[str], *, search: bool = False) -> dict[str, Any]:
    """Read a TOML config file into a flat mapping (validated by :func:`config_from_mapping`,
    or with ``search`` by :func:`search_config_from_mapping`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LeafattackError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LeafattackError(f"{p}: cannot read config ({type(exc).__name__})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LeafattackError(f"{p}: invalid TOML ({exc})") from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise LeafattackError(f"{p}: invalid TOML (nested too deeply)") from None
    except ValueError:  # tomllib: an integer of more than 4300 digits
        raise LeafattackError(f"{p}: invalid TOML (a number is too long)") from None
    stack: list[Any] = [data]
    while stack:  # TOML integers are 64-bit; tomllib accepts any size
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not -(2**63) <= item < 2**63:
            raise LeafattackError(f"{p}: invalid TOML (an integer exceeds the 64-bit range)")
    try:
        if search:
            search_config_from_mapping(data)  # validate early, naming the file
        else:
            config_from_mapping(data)
    except LeafattackError as exc:
        raise LeafattackError(f"{p}: {exc}") from None
    return data


FACTORY_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""A ``package.module:factory`` model spec (when no file of that name exists)."""


def model_stem(spec: str) -> str:
    """The model part of a default run directory name: ``default``, a file's stem
    (``torchscript:PATH``, ``export:PATH`` and ``.pt``/``.pt2`` files), or ``module.factory`` for a
    ``package.module:factory`` spec (``pkg.models:resnet`` -> ``pkg.models.resnet``)."""
    if spec in BUILTIN_MODELS:
        return spec
    if (
        FACTORY_SPEC.match(spec)
        and not Path(spec).exists()
        and not spec.startswith(("torchscript:", "export:"))
    ):
        return spec.replace(":", ".")
    return Path(spec.split(":")[-1]).stem or "model"


def default_out(config: RunConfig) -> Path:
    """``results/<model>-<hash of the identity keys>``: the same command finds the same dir.

    ``<model>`` is :func:`model_stem` of the model spec.
    """
    flat = config.to_flat()
    ident = {k: flat.get(k) for k in IDENTITY_KEYS if k != "split" or k in flat}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
    return Path("results") / f"{model_stem(config.model)}-{digest}"


SIGN_PREFIXES: tuple[str, ...] = ("folder", "gtsrb", "lisa")
"""``prefix:PATH`` sign source specs (see :func:`leafattack.data.load_signs`)."""


def absolute_spec(spec: str, prefixes: Sequence[str], keep: Sequence[str]) -> str:
    """Make the path in a ``PATH`` or ``prefix:PATH`` spec absolute when it exists here.

    Specs in ``keep`` and specs that are not existing paths (``pkg.mod:factory``) are
    returned unchanged.
    """
    if spec in keep:
        return spec
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in prefixes and rest and Path(rest).exists():
        return f"{prefix}:{Path(rest).absolute()}"
    if Path(spec).exists():
        return str(Path(spec).absolute())
    return spec


def absolute_paths(config: RunConfig) -> RunConfig:
    """``config`` with the paths in its sign, leaf and model specs made absolute.

    A run directory records these, so that it can be analysed and reported from any
    working directory, and Ray workers may run in another directory than the driver.
    ``builtin``, ``default`` and ``package.module:factory`` specs are kept as they are.
    """
    return dataclasses.replace(
        config,
        signs=absolute_spec(config.signs, SIGN_PREFIXES, keep=("builtin",)),
        leaves=absolute_spec(config.leaves, (), keep=("builtin",)),
        model=absolute_spec(config.model, ("torchscript", "export"), keep=tuple(BUILTIN_MODELS)),
    )


# --- Adaptive search (issue 13) --------------------------------------------------------

SEARCH_KEYS: tuple[str, ...] = (
    "method",
    "budget",
    "leaves_per_scene",
    "size_range",
    "stop_on_success",
    "eot",
    "view_spec",
)
"""The keys a search adds to a run's (same names in TOML and on the command line)."""

MAX_EOT = 128
"""Most sampled views per query (``--eot``)."""

MAX_BUDGET = 10_000_000
"""Most queries per sign a search may spend."""


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """Everything that defines an adaptive search: a run's settings plus the search's.

    Attributes:
        run: signs, leaves (species, colours, leaf ids), model, target, min_confidence,
            limit_signs, seed, device, batch_size, out, ... as for ``leafattack run``; its
            grid's sizes, angles and positions serve the ``grid`` method.
        method: a name of :data:`leafattack.adaptive.METHODS`.
        budget: model queries per sign (>= 1).
        leaves_per_scene: K, leaves per searched scene (1 to 5).
        size_range: (LO, HI), leaf longest side / sign width, 0 < LO <= HI <= 2.
        stop_on_success: stop a sign at its first success (else spend the whole budget).
        eot: M, viewing transforms per query (Expectation over Transformation; 1 = the
            plain search, one identity view). Each query costs M model evaluations, so
            ``budget`` buys ``budget // M`` queries (:attr:`queries`).
        view_spec: the :class:`~leafattack.compose.views.ViewSpec` text of the EOT views
            (None = ``approach``, the ``robustness`` default); used only when ``eot > 1``.
    """

    run: RunConfig = field(default_factory=RunConfig)
    method: str = "random"
    budget: int = 1000
    leaves_per_scene: int = 1
    size_range: tuple[float, float] = (0.2, 0.5)
    stop_on_success: bool = True
    eot: int = 1
    view_spec: str | None = None

    def __post_init__(self) -> None:
        from leafattack.adaptive import METHODS, check_leaves_per_scene, check_size_range
        from leafattack.adaptive.eot import parse_view_spec

        if self.method not in METHODS:
            raise LeafattackError(
                f"method {self.method!r}: expected one of {', '.join(METHODS)}"
            )
        if isinstance(self.budget, bool) or not 1 <= self.budget <= MAX_BUDGET:
            raise LeafattackError(
                f"budget={self.budget}: expected 1 to {MAX_BUDGET} model queries per sign"
            )
        check_leaves_per_scene(self.leaves_per_scene)
        check_size_range(self.size_range)
        if isinstance(self.eot, bool) or not 1 <= self.eot <= MAX_EOT:
            raise LeafattackError(
                f"--eot {self.eot}: expected 1 to {MAX_EOT} sampled views per query"
            )
        if self.budget < self.eot:
            raise LeafattackError(
                f"budget={self.budget} with --eot {self.eot}: expected a budget of at least "
                f"{self.eot} model evaluations (each query costs {self.eot})"
            )
        if self.view_spec is not None:
            if self.eot == 1:
                raise LeafattackError(
                    f"view_spec {self.view_spec!r} without --eot: expected --eot M (M > 1) "
                    f"to search under sampled views"
                )
            parse_view_spec(self.view_spec)  # one line on a bad spec, before any work
        r = self.run
        if (
            r.scenes_per_sign
            or r.leaves_per_scene != 1
            or r.edges
            or r.executor != "local"
            or r.controls
            or r.streams
        ):
            raise LeafattackError(
                "a search takes no scenes_per_sign, edges, controls, streams or executor settings "
                "(expected leaves_per_scene, method and budget instead)"
            )

    def to_flat(self) -> dict[str, Any]:
        """Flat mapping with the TOML/CLI names (None values omitted)."""
        flat = self.run.to_flat()
        for key in ("executor", "address", "workers", "gpus_per_worker", "chunk_size"):
            flat.pop(key, None)
        flat.update(
            method=self.method,
            budget=self.budget,
            leaves_per_scene=self.leaves_per_scene,
            size_range=list(self.size_range),
            stop_on_success=self.stop_on_success,
        )
        if self.eot > 1:  # a plain search keeps the keys (and directory) it always had
            flat["eot"] = self.eot
            flat["view_spec"] = self.view_spec or "approach"
        return flat

    @property
    def queries(self) -> int:
        """Queries per sign: ``budget // eot`` (each query costs ``eot`` model evaluations)."""
        return self.budget // self.eot

    def identity(self) -> dict[str, Any]:
        """The keys that must match for a search directory to be resumed."""
        flat = self.to_flat()
        keys = (*IDENTITY_KEYS, *SEARCH_KEYS)
        return {k: flat.get(k) for k in keys if k != "scenes_per_sign"}


SEARCH_CONFIG_KEYS: tuple[str, ...] = tuple(sorted(set(CONFIG_KEYS) | set(SEARCH_KEYS)))
"""The names a search's TOML config (and the ``search`` command's flags) may set."""


def search_config_from_mapping(
    values: Mapping[str, Any], base: SearchConfig | None = None
) -> SearchConfig:
    """Build a SearchConfig from TOML/CLI values (a run's names plus :data:`SEARCH_KEYS`).

    Unknown keys and values of the wrong type give a one-line LeafattackError.
    """
    base = base or SearchConfig()
    search_kw: dict[str, Any] = {}
    run_values: dict[str, Any] = {}
    for key, value in values.items():
        if key == "method":
            if not isinstance(value, str):
                raise LeafattackError(f"config key 'method': expected a string, got {value!r}")
            search_kw[key] = value
        elif key == "view_spec":
            if not isinstance(value, str):
                raise LeafattackError(
                    f"config key 'view_spec': expected a string, got {value!r}"
                )
            search_kw[key] = value
        elif key in ("budget", "leaves_per_scene", "eot"):
            search_kw[key] = _integer(value, key)
        elif key == "stop_on_success":
            search_kw[key] = _boolean(value, key)
        elif key == "size_range":
            if isinstance(value, str):
                from leafattack.adaptive import parse_size_range

                search_kw[key] = parse_size_range(value)
            elif isinstance(value, list | tuple) and len(value) == 2:
                search_kw[key] = (_number(value[0], key), _number(value[1], key))
            else:
                raise LeafattackError(f"size_range {value!r}: expected LO:HI, e.g. 0.2:0.5")
        else:
            run_values[key] = value
    run = config_from_mapping(run_values, base=base.run)
    return dataclasses.replace(base, run=run, **search_kw)


def default_search_out(config: SearchConfig) -> Path:
    """``results/search-<method>-<hash of the identity keys>``."""
    # split = all (None) stays out, so default searches keep the directory names they had
    ident = {k: v for k, v in config.identity().items() if k != "split" or v is not None}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
    return Path("results") / f"search-{config.method}-{digest}"
