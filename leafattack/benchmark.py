"""The leaf-robustness benchmark: one fixed, versioned protocol that gives every model
comparable numbers (``leafattack benchmark``).

Protocol version 1, per model, on the same signs (all of them, or ``limit_signs`` chosen by
the seed as a run chooses them):

1. **Clean accuracy**: the share of signs the model classifies correctly without leaves.
2. **Grid**: the default grid run (``leafattack run``: every species x colour x size x
   angle x position of :class:`~leafattack.grid.GridSpec`), its success rate over the
   trials of attacked signs and the signs it fools.
3. **Leaf against grey**: the same placements with each leaf replaced by a grey cut-out of
   its shape (the ``grey`` control of ``leafattack controls``); the excess is the leaf's
   success rate minus the grey one.
4. **Survival**: each sign's best successful grid scene under ``views`` seeded viewing
   changes (``leafattack robustness``, the ``approach`` views): the share of views under
   which it still fools the model.
5. **Robust accuracy under adaptive search**: one search per K in (1, 3) leaves per scene,
   method ``cmaes``, at the full budget, stopping each sign at its first success. The
   search queries the benchmarked model itself (white-box queries to the model's outputs),
   never a proxy. Robust accuracy at 10, 100 and the full budget is read from each search's
   query log (the query of each sign's first success), so the smaller budgets cost no
   further queries.

Every figure carries a 95% interval at the level of signs, and every row of
``leaderboard.csv`` carries the protocol version and its settings (JSON), so rows from
different runs are comparable, or visibly not.

Layout of the output folder::

    OUT/benchmark.json              the protocol version (another version is refused)
    OUT/leaderboard.csv             one row per model (LEADERBOARD_COLUMNS)
    OUT/leaderboard_curves.csv      robust accuracy against budget, per model and K
    OUT/leaderboard.html            self-contained page with the figure
    OUT/figures/robust_vs_budget.png
    OUT/models/<name>/grid/         the grid run (controls, robustness inside)
    OUT/models/<name>/search-k1/, search-k3/
    OUT/models/<name>/row.json      the finished row (reused when the settings match)

Example:
    >>> result = benchmark(["default", "robust=models/robust.pt"], "builtin")
    >>> result.rows[["model", "clean_accuracy", "robust_k1_full"]]
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leafattack import schema
from leafattack.adaptive import METHODS, check_size_range, curve_budgets
from leafattack.analysis.cluster import DEFAULT_N_BOOT, BootSpec
from leafattack.analysis.leaderboard import curve_frame, leaderboard_frame, robust_curve
from leafattack.api import robustness, run, search
from leafattack.compose.views import ViewSpec
from leafattack.config import MAX_BUDGET, RunConfig, SearchConfig, absolute_spec
from leafattack.data import load_signs
from leafattack.errors import LeafattackError
from leafattack.grid import GridSpec
from leafattack.models import resolve_device
from leafattack.models.classifier import match_classes
from leafattack.models.loading import BUILTIN_MODELS, load_model
from leafattack.report.leaderboard import write_leaderboard_html
from leafattack.rundir import csv_bytes, write_atomic
from leafattack.version import __version__

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "1"
"""Version of the benchmark protocol; changes whenever a number it produces would change."""

FIXED_BUDGETS: tuple[int, ...] = (10, 100)
"""The budgets below the full one at which robust accuracy is reported."""

CONTROL = "grey"
"""The neutral occluder the leaf is compared with."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Protocol:
    """The settings of the protocol (version :data:`PROTOCOL_VERSION`).

    ``leafattack benchmark`` sets only ``budget``; the others exist for tests and quick
    looks, and every one of them is recorded in each row's ``settings``.

    Attributes:
        budget: the full query budget per sign of the searches (>= 10).
        method: the search method (a name of :data:`leafattack.adaptive.METHODS`).
        size_range: the searched leaf sizes, longest side / face width.
        grid: the grid of the grid run.
        views: viewing changes per successful scene for survival (>= 1).
        view_spec: the views (``approach``, or ranges as ``leafattack robustness`` takes).
        seed: seed of every random choice (sign subset, searches, views, intervals).
        limit_signs: benchmark only this many signs (None = all).
        n_boot: bootstrap replicates of the intervals.
    """

    budget: int = 1000
    method: str = "cmaes"
    size_range: tuple[float, float] = (0.2, 0.5)
    grid: GridSpec = field(default_factory=GridSpec)
    views: int = 100
    view_spec: str = "approach"
    seed: int = 0
    limit_signs: int | None = None
    n_boot: int = DEFAULT_N_BOOT
    sign_size: int = 128
    batch_size: int = 512

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not FIXED_BUDGETS[0] <= self.budget <= MAX_BUDGET:
            raise LeafattackError(
                f"budget={self.budget}: expected {FIXED_BUDGETS[0]} to {MAX_BUDGET} queries "
                f"per sign (the protocol reports robust accuracy at 10, 100 and the budget)"
            )
        if self.method not in METHODS:
            raise LeafattackError(f"method {self.method!r}: expected one of {', '.join(METHODS)}")
        check_size_range(self.size_range)
        if self.views < 1:
            raise LeafattackError(f"views={self.views}: expected at least 1 view per scene")
        if self.view_spec != "approach":
            ViewSpec.parse(self.view_spec)  # a bad spec is a one-line error before any work
        if self.seed < 0:
            raise LeafattackError(f"seed={self.seed}: expected a non-negative integer")
        if self.n_boot < 1:
            raise LeafattackError(f"n_boot={self.n_boot}: expected at least 1 resample")

    def budgets(self) -> tuple[int, ...]:
        """10, 100 and the full budget (those not above it), in increasing order."""
        return tuple(sorted({b for b in (*FIXED_BUDGETS, self.budget) if b <= self.budget}))

    def settings(self) -> dict[str, Any]:
        """Every setting, JSON-ready (the ``settings`` column without the package version)."""
        grid = RunConfig(grid=self.grid).to_flat()
        return {
            "protocol_version": PROTOCOL_VERSION,
            "budget": self.budget,
            "budgets": list(self.budgets()),
            "method": self.method,
            "leaves_per_scene": list(schema.LEADERBOARD_LEAVES),
            "size_range": list(self.size_range),
            "stop_on_success": True,
            "grid": {
                k: grid[k]
                for k in ("leaf_ids", "species", "colours", "sizes", "angles", "positions")
            }
            | {"on_sign_only": self.grid.on_sign_only, "size_unit": self.grid.size_unit},
            "control": CONTROL,
            "views": self.views,
            "view_spec": self.view_spec,
            "seed": self.seed,
            "limit_signs": self.limit_signs,
            "n_boot": self.n_boot,
            "sign_size": self.sign_size,
            "leaves": "builtin",
        }


@dataclass(frozen=True, slots=True)
class BenchmarkResult:
    """What :func:`benchmark` wrote: the rows (LEADERBOARD_COLUMNS), the curves, and which
    models' rows were reused from an earlier call."""

    out: Path
    rows: pd.DataFrame
    curves: pd.DataFrame
    reused: tuple[str, ...]
    csv_path: Path
    html_path: Path


def parse_models(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=SPEC`` or ``SPEC`` items to ``(name, spec)`` pairs; the name of a bare spec is
    ``default``, a file's stem, or a factory's function name.

    Raises:
        LeafattackError: no model, an invalid name, or a duplicate name.

    Example:
        >>> parse_models(["default", "robust=models/r.pt", "models/resnet18.pt"])
        [('default', 'default'), ('robust', 'models/r.pt'), ('resnet18', 'models/resnet18.pt')]
    """
    pairs: list[tuple[str, str]] = []
    for item in (s.strip() for s in specs):
        if not item:
            continue
        name, eq, spec = item.partition("=")
        if not eq:
            spec = item
            tail = item.split(":")[-1] if not Path(item).exists() else item
            name = item if item in BUILTIN_MODELS else Path(tail).stem or tail
        name, spec = name.strip(), spec.strip()
        if not _NAME_RE.match(name) or not spec:
            raise LeafattackError(
                f"model {item!r}: expected NAME=SPEC or SPEC, with a NAME of letters, digits "
                f"and . _ + - (up to 64)"
            )
        pairs.append((name, spec))
    if not pairs:
        raise LeafattackError("benchmark: no models given (expected --models SPEC,SPEC,...)")
    names = [n for n, _ in pairs]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise LeafattackError(
            f"--models: duplicate model name(s) {', '.join(dups)} (expected each name once; "
            f"name them with NAME=SPEC)"
        )
    return pairs


def _check_out(out: Path) -> None:
    meta = out / "benchmark.json"
    if not meta.exists():
        return
    try:
        version = json.loads(meta.read_text(encoding="utf-8")).get("protocol_version")
    except (OSError, ValueError, AttributeError):
        version = None
    if version != PROTOCOL_VERSION:
        raise LeafattackError(
            f"{out}: holds a benchmark of protocol version {version} (expected "
            f"{PROTOCOL_VERSION}); use another --out"
        )


def _overall(table: pd.DataFrame, column: str, value: str) -> pd.Series | None:
    part = table[(table[column].astype(str) == value)] if len(table) else table
    return None if part.empty else part.iloc[0]


def _grid_figures(grid_dir: Path, boot: BootSpec) -> dict[str, Any]:
    from leafattack.analysis.leaderboard import sign_rate

    clean = pd.read_csv(grid_dir / "clean.csv")
    acc = sign_rate(clean["correct"].astype(bool).to_numpy(), clean["sign_id"].to_numpy(), boot)
    summary = pd.read_csv(grid_dir / "summary.csv")
    nan3 = (math.nan, math.nan, math.nan)
    overall = _overall(summary[summary["factor"] == "overall"], "level", "all")
    fooled = _overall(summary[summary["factor"] == "signs_fooled"], "level", "all")
    row: dict[str, Any] = {
        "n_signs": len(clean),
        "clean_accuracy": acc[0],
        "clean_accuracy_ci_low": acc[1],
        "clean_accuracy_ci_high": acc[2],
    }
    g = nan3 if overall is None else (overall["rate"], overall["ci_low"], overall["ci_high"])
    row.update(zip(_interval("grid_success_rate"), g, strict=True))
    f = nan3 if fooled is None else (fooled["rate"], fooled["ci_low"], fooled["ci_high"])
    row.update(zip(_interval("grid_signs_fooled_rate"), f, strict=True))
    row["grid_signs_attacked"] = 0 if fooled is None else int(fooled["trials"])
    row["grid_signs_fooled"] = 0 if fooled is None else int(fooled["successes"])
    controls_path = grid_dir / "controls_summary.csv"
    cs = pd.read_csv(controls_path) if controls_path.exists() else pd.DataFrame()
    grey = None
    if len(cs):
        grey = _overall(
            cs[(cs["control"] == CONTROL) & (cs["factor"] == "overall")], "control", CONTROL
        )
    e = nan3 if grey is None else (grey["excess"], grey["excess_ci_low"], grey["excess_ci_high"])
    row.update(zip(_interval("grey_excess"), e, strict=True))
    return row


def _interval(name: str) -> tuple[str, str, str]:
    return name, f"{name}_ci_low", f"{name}_ci_high"


def _survival(grid_dir: Path, protocol: Protocol, device: str, quiet: bool) -> dict[str, Any]:
    best = pd.read_csv(grid_dir / "best.csv") if (grid_dir / "best.csv").exists() else None
    if best is None or not bool(best.get("success", pd.Series(dtype=bool)).astype(bool).any()):
        return dict(
            zip(("survival_signs", *_interval("survival")), (0, *(math.nan,) * 3), strict=True)
        )
    res = robustness(
        grid_dir,
        views=protocol.views,
        view_spec=protocol.view_spec,
        seed=protocol.seed,
        device=device,
        quiet=quiet,
    )
    s = _overall(res.summary, "factor", "overall")
    if s is None:
        return dict(
            zip(("survival_signs", *_interval("survival")), (0, *(math.nan,) * 3), strict=True)
        )
    return {
        "survival_signs": int(s["signs"]),
        "survival": float(s["rate"]),
        "survival_ci_low": float(s["ci_low"]),
        "survival_ci_high": float(s["ci_high"]),
    }


def _search_figures(
    search_dir: Path, k: int, protocol: Protocol, boot: BootSpec
) -> tuple[dict[str, Any], pd.DataFrame]:
    clean = pd.read_csv(search_dir / "clean.csv")
    best = pd.read_csv(search_dir / "best.csv")
    budgets = sorted(set(curve_budgets(protocol.budget)) | set(protocol.budgets()))
    curve = robust_curve(clean, best, budgets, boot)
    row: dict[str, Any] = {}
    at = {"b10": FIXED_BUDGETS[0], "b100": FIXED_BUDGETS[1], "full": protocol.budget}
    for label in schema.LEADERBOARD_BUDGET_LABELS:
        names = _interval(f"robust_k{k}_{label}")
        hit = curve[curve["budget"] == at[label]]
        values = (
            (math.nan,) * 3
            if hit.empty
            else tuple(float(hit[c].iloc[0]) for c in _interval("robust_accuracy"))
        )
        row.update(zip(names, values, strict=True))
    return row, curve.assign(leaves_per_scene=k)


def _benchmark_model(
    name: str,
    spec: str,
    signs: str,
    model_dir: Path,
    protocol: Protocol,
    *,
    device: str,
    quiet: bool,
    trust_torchscript: bool,
) -> tuple[dict[str, Any], pd.DataFrame]:
    boot = BootSpec(n_boot=protocol.n_boot, seed=protocol.seed)
    base = RunConfig(
        signs=signs,
        model=spec,
        limit_signs=protocol.limit_signs,
        seed=protocol.seed,
        device=device,
        sign_size=protocol.sign_size,
        batch_size=protocol.batch_size,
        quiet=quiet,
        trust_torchscript=trust_torchscript,
    )
    grid_dir = model_dir / "grid"
    log.info("benchmark %s: grid run with %s controls", name, CONTROL)
    run(
        RunConfig(**{**_fields(base), "grid": protocol.grid, "out": str(grid_dir)}),
        controls=(CONTROL,),
    )
    row = _grid_figures(grid_dir, boot)
    log.info("benchmark %s: survival under %d views", name, protocol.views)
    row.update(_survival(grid_dir, protocol, device, quiet))
    curves = []
    for k in schema.LEADERBOARD_LEAVES:
        search_dir = model_dir / f"search-k{k}"
        log.info(
            "benchmark %s: %s search, K=%d, budget %d", name, protocol.method, k, protocol.budget
        )
        search(
            SearchConfig(
                run=RunConfig(**{**_fields(base), "out": str(search_dir)}),
                method=protocol.method,
                budget=protocol.budget,
                leaves_per_scene=k,
                size_range=protocol.size_range,
                stop_on_success=True,
            )
        )
        part, curve = _search_figures(search_dir, k, protocol, boot)
        row.update(part)
        curves.append(curve)
    curve_rows = pd.concat(curves, ignore_index=True).assign(
        protocol_version=PROTOCOL_VERSION, model=name
    )
    return row, curve_rows


def _fields(config: RunConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in RunConfig.__dataclass_fields__}


def _json_default(value: object) -> object:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def benchmark(
    models: Sequence[str],
    signs: str = "builtin",
    *,
    out: str | os.PathLike[str] = "results/benchmark",
    protocol: Protocol | None = None,
    device: str = "auto",
    quiet: bool = False,
    trust_torchscript: bool = False,
) -> BenchmarkResult:
    """Run (or resume) the benchmark protocol on each model and write the leaderboard.

    Args:
        models: model specs, each ``SPEC`` or ``NAME=SPEC`` (see :func:`parse_models`).
        signs: the sign source spec, the same for every model.
        out: the benchmark folder (see the module docstring for its layout).
        protocol: the settings (default: :class:`Protocol` with a budget of 1,000).

    Returns:
        BenchmarkResult; ``reused`` names the models whose finished row was reused.

    Raises:
        LeafattackError: (before any work) a duplicate model name, a model whose classes do
            not cover the signs', a budget below 10, an output folder holding another
            protocol version or a model benchmarked with other settings; then anything a
            run or search raises (their results so far stay resumable).
    """
    proto = protocol or Protocol()
    pairs = parse_models(models)
    out_dir = Path(out)
    _check_out(out_dir)
    sign_set = load_signs(signs)
    if len(sign_set) == 0:
        raise LeafattackError(f"sign source {signs!r} holds no signs")
    dev = resolve_device(device)
    used = sorted(set(np.asarray(sign_set.labels).tolist()))
    for name, spec in pairs:
        clf = load_model(spec, dev, trust_torchscript=trust_torchscript)
        try:
            match_classes(sign_set.class_names, clf.class_names, used_labels=used)
        except LeafattackError as exc:
            raise LeafattackError(
                f"model {name} ({spec}) does not match the signs: {exc}"
            ) from None
    settings = proto.settings()
    keys = {
        name: {
            "settings": settings,
            "spec": absolute_spec(spec, ("torchscript",), keep=tuple(BUILTIN_MODELS)),
            "signs": absolute_spec(signs, ("folder", "gtsrb", "lisa"), keep=("builtin",)),
        }
        for name, spec in pairs
    }
    finished: dict[str, dict[str, Any]] = {}
    for name, _ in pairs:
        path = out_dir / "models" / name / "row.json"
        if not path.exists():
            continue
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        if saved.get("key") != keys[name]:
            raise LeafattackError(
                f"{path.parent}: holds model {name} benchmarked with another spec, signs or "
                f"settings; use another --out (or another NAME=)"
            )
        finished[name] = saved
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(
            out_dir / "benchmark.json",
            (json.dumps({"protocol_version": PROTOCOL_VERSION}, indent=2) + "\n").encode(),
        )
    except OSError as exc:
        raise LeafattackError(f"{out_dir}: cannot write ({exc.strerror or exc})") from None
    settings_text = json.dumps({**settings, "leafattack_version": __version__}, sort_keys=True)
    rows: list[dict[str, Any]] = []
    curves: list[pd.DataFrame] = []
    reused: list[str] = []
    for name, spec in pairs:
        model_dir = out_dir / "models" / name
        if name in finished:
            row, curve = finished[name]["row"], pd.DataFrame(finished[name]["curve"])
            reused.append(name)
        else:
            figures, curve = _benchmark_model(
                name,
                spec,
                signs,
                model_dir,
                proto,
                device=device,
                quiet=quiet,
                trust_torchscript=trust_torchscript,
            )
            row = {
                "protocol_version": PROTOCOL_VERSION,
                "model": name,
                "spec": spec,
                "signs": signs,
                "budget": proto.budget,
                "method": proto.method,
                "settings": settings_text,
                **figures,
            }
            saved = {"key": keys[name], "row": row, "curve": curve.to_dict(orient="list")}
            write_atomic(
                model_dir / "row.json",
                (json.dumps(saved, indent=1, default=_json_default) + "\n").encode(),
            )
        rows.append(row)
        curves.append(curve)
        _write_tables(out_dir, rows, curves)
    table, curve_table = _write_tables(out_dir, rows, curves)
    html_path = write_leaderboard_html(out_dir, table, curve_table)
    return BenchmarkResult(
        out_dir, table, curve_table, tuple(reused), out_dir / "leaderboard.csv", html_path
    )


def _write_tables(
    out_dir: Path, rows: list[dict[str, Any]], curves: list[pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = leaderboard_frame(rows)
    curve_table = curve_frame(pd.concat(curves, ignore_index=True))
    try:
        write_atomic(out_dir / "leaderboard.csv", csv_bytes(table, header=True))
        write_atomic(out_dir / "leaderboard_curves.csv", csv_bytes(curve_table, header=True))
    except OSError as exc:
        raise LeafattackError(f"{out_dir}: cannot write ({exc.strerror or exc})") from None
    return table, curve_table
