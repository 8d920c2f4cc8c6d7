"""The scenes a search found, as a plan that ``robustness``, ``transfer`` and ``controls``
re-render exactly as the search rendered them.

A search directory (``leafattack search``) keeps every query's leaves in
``query_leaves.csv`` (floats as rendered: float32, written ``%.9g``, so they read back
exactly), every query's outcome in ``queries.csv`` and each sign's lowest-loss query in
``best.csv``. :func:`open_search` re-creates the search's prepared state (model, signs,
leaves, checked against the stored fingerprints) and :func:`found_plan` turns chosen queries
into a :class:`FoundPlan`: a :class:`~leafattack.grid.ScenePlan` whose scenes are those
queries (K >= 1 leaves, absent slots kept absent) instead of seeded random ones. Everything
downstream of a plan (compositing, views, other models, neutral occluders) is shared with
grid and scene runs.

Trial ids: in a search directory, query ``q`` (1-based) of the sign with index ``s`` in the
sign set is trial ``s * Q + q - 1``, with ``Q`` the search's queries per sign
(``budget // eot``). They are unique, stable, and decode back to ``(sign, query)``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leafattack import schema
from leafattack.config import SearchConfig, load_config, search_config_from_mapping
from leafattack.engine.evaluate import composite_scenes, variant_columns
from leafattack.engine.preparation import Prepared, check_fingerprints, open_run, prepare
from leafattack.engine.robustness import attack_scenes
from leafattack.engine.search import QUERIES_FILE, QUERY_LEAVES_FILE, build_bank
from leafattack.errors import LeafattackError
from leafattack.grid import Plan, ScenePlan

SCENE_COLUMNS = ("trial_id", "sign_id", "true_label", "true_name")
"""Columns of the chosen scenes (as :data:`leafattack.engine.robustness.SCENE_COLUMNS`)."""


def is_search_dir(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a search (its ``config.toml`` has ``method`` and ``budget``,
    or it has a ``queries.csv``) rather than a grid or scene run."""
    if (run_dir / QUERIES_FILE).exists():
        return True
    try:
        data = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return "method" in data and "budget" in data


@dataclass(frozen=True, slots=True)
class FoundPlan(ScenePlan):
    """Chosen queries of a search as a plan (see the module docstring for the trial ids).

    Attributes:
        trial_ids: int64 (N,) sorted trial ids of the chosen queries.
        sign: int64 (N,) index of each query's sign among the prepared signs.
        params: ``variant`` int64, ``size``, ``angle``, ``x``, ``y`` float32 and ``present``
            bool, each (N, K).
    """

    trial_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sign: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ScenePlan.__post_init__(self)
        t = np.asarray(self.trial_ids)
        if len(t) > 1 and not (np.diff(t) > 0).all():
            raise ValueError("FoundPlan.trial_ids must be strictly increasing")
        for name, arr in self.params.items():
            if arr.shape[0] != len(t):
                raise ValueError(f"FoundPlan.params[{name!r}] has {arr.shape[0]} rows, "
                                 f"expected {len(t)}")

    @property
    def leaves(self) -> int:
        return int(self.params["x"].shape[1]) if self.params else 1

    @property
    def total(self) -> int:
        return len(self.trial_ids)

    @property
    def total_active(self) -> int:
        return len(self.trial_ids)

    def active_index(self, trial_ids: np.ndarray) -> np.ndarray:
        t = np.asarray(trial_ids, dtype=np.int64)
        pos = np.searchsorted(self.trial_ids, t)
        ok = (pos < len(self.trial_ids)) & (
            self.trial_ids[np.minimum(pos, max(0, len(self.trial_ids) - 1))] == t
        )
        if t.size and not ok.all():
            raise LeafattackError("trial ids refer to queries that were not chosen")
        return pos

    def decode_active(self, k: np.ndarray) -> dict[str, np.ndarray]:
        """Active indices -> ``trial_id``, ``sign`` (N,) and ``variant``, ``size``,
        ``angle``, ``x``, ``y``, ``present`` (N, K)."""
        k = np.asarray(k, dtype=np.int64)
        out = {"trial_id": self.trial_ids[k], "sign": self.sign[k]}
        out.update({name: arr[k] for name, arr in self.params.items()})
        return out


def open_search(run_dir: Path, *, device: str = "auto") -> tuple[Prepared, SearchConfig]:
    """Re-create the prepared state of a search directory (with a scene bank).

    Raises:
        LeafattackError: no config, changed inputs (fingerprints), or no ``clean.csv``.
    """
    cfg_path = run_dir / "config.toml"
    if not cfg_path.exists():
        raise LeafattackError(f"{run_dir}: not a search directory (expected config.toml)")
    data = load_config(cfg_path, search=True)
    config = search_config_from_mapping({**data, "device": device, "out": str(run_dir)})
    prep = prepare(config.run)
    check_fingerprints(prep, data, run_dir, "search")
    return dataclasses.replace(prep, scene_bank=build_bank(prep)), config


def _read(run_dir: Path, name: str, columns: dict[str, str]) -> pd.DataFrame:
    path = run_dir / name
    if not path.exists():
        raise LeafattackError(
            f"{run_dir}: no {name} (expected a finished search with best scenes)"
        )
    try:
        df = pd.read_csv(path, dtype={k: v for k, v in columns.items() if v != "bool"})
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeafattackError(f"{path}: not a readable table ({first})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise LeafattackError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def chosen_queries(run_dir: Path, which: str) -> pd.DataFrame:
    """The queries to re-render: ``best`` (each sign's lowest-loss query, successful or
    not), ``best-successes`` (those of them that succeeded) or ``successes`` (every
    successful query).

    Returns:
        ``sign_id``, ``query`` (int64) and ``success`` (bool), sorted by sign and query.

    Raises:
        LeafattackError: no ``best.csv`` or ``queries.csv`` (no best scenes), or nothing to
            re-render.
    """
    if which not in ("best", "best-successes", "successes"):
        raise ValueError(f"which={which!r}: expected best, best-successes or successes")
    best = _read(run_dir, "best.csv", {"sign_id": "int64", "best_query": "int64"})
    queries = _read(run_dir, QUERIES_FILE, {k: schema.QUERY_COLUMNS[k] for k in
                                            ("sign_id", "query", "success")})
    queries = queries[["sign_id", "query", "success"]].astype({"success": bool})
    if which == "successes":
        out = queries[queries["success"]]
    else:
        keys = best[["sign_id", "best_query"]].rename(columns={"best_query": "query"})
        out = keys.merge(queries, on=["sign_id", "query"], how="left")
        if out["success"].isna().any():
            raise LeafattackError(
                f"{run_dir}: best.csv names queries that queries.csv lacks (rerun the search)"
            )
        out["success"] = out["success"].astype(bool)
        if which == "best-successes":
            out = out[out["success"]]
    if out.empty:
        what = "best scene" if which == "best" else "successful scene"
        raise LeafattackError(
            f"{run_dir}: no {what} to re-evaluate"
            + (" (no sign was fooled)" if which != "best" else " (no sign was searched)")
        )
    return out.sort_values(["sign_id", "query"]).reset_index(drop=True)


def found_plan(
    prep: Prepared, config: SearchConfig, run_dir: Path, chosen: pd.DataFrame
) -> tuple[FoundPlan, pd.DataFrame]:
    """The chosen queries' scenes from ``query_leaves.csv`` as a plan, and their
    :data:`SCENE_COLUMNS` rows (plus ``query`` and ``success``) in trial order.

    Raises:
        LeafattackError: ``query_leaves.csv`` missing, or lacking a chosen query, or naming
            a leaf the search's library does not hold.
    """
    leaves = _read(
        run_dir, QUERY_LEAVES_FILE,
        {k: v for k, v in schema.QUERY_LEAF_COLUMNS.items() if k != "species"},
    )
    q_per_sign = config.queries
    local_of = {int(s): i for i, s in enumerate(prep.sign_ids)}
    unknown = sorted(set(chosen["sign_id"].astype(int)) - set(local_of))
    if unknown:
        raise LeafattackError(f"{run_dir}: queries of signs {unknown[:5]} that the search "
                              f"did not prepare (edited files?)")
    vc = variant_columns(prep)
    vindex = {(str(i), str(c)): v for v, (i, c) in enumerate(zip(vc["leaf_id"], vc["colour"],
                                                               strict=True))}
    chosen = chosen.copy()
    chosen["trial_id"] = chosen["sign_id"].astype(np.int64) * q_per_sign + chosen["query"] - 1
    chosen = chosen.sort_values("trial_id").reset_index(drop=True)
    rows = leaves.merge(chosen[["sign_id", "query", "trial_id"]], on=["sign_id", "query"])
    have = set(zip(rows["sign_id"], rows["query"], strict=True))
    lacking = [(s, q) for s, q in zip(chosen["sign_id"], chosen["query"], strict=True)
               if (s, q) not in have]
    if lacking:
        raise LeafattackError(
            f"{run_dir / QUERY_LEAVES_FILE}: lacks the leaves of query {lacking[0][1]} of "
            f"sign {lacking[0][0]} (rerun the search to rewrite it)"
        )
    n, k = len(chosen), int(rows["slot"].max()) + 1
    pos = np.searchsorted(chosen["trial_id"].to_numpy(), rows["trial_id"].to_numpy())
    slot = rows["slot"].to_numpy(np.int64)
    variant = np.zeros((n, k), np.int64)
    params = {name: np.zeros((n, k), np.float32) for name in ("size", "angle", "x", "y")}
    params["size"][:] = 1.0
    present = np.zeros((n, k), bool)
    try:
        variant[pos, slot] = [vindex[(str(i), str(c))] for i, c in
                              zip(rows["leaf_id"], rows["colour"], strict=True)]
    except KeyError as exc:
        raise LeafattackError(
            f"{run_dir / QUERY_LEAVES_FILE}: leaf {exc.args[0]} is not among the search's "
            f"leaf variants"
        ) from None
    for name in params:
        params[name][pos, slot] = rows[name].to_numpy(np.float64)
    present[pos, slot] = True
    sign = np.array([local_of[int(s)] for s in chosen["sign_id"]], np.int64)
    active = np.zeros(len(prep.sign_ids), bool)
    active[np.unique(sign)] = True
    plan = FoundPlan(
        scenes=tuple({} for _ in prep.sign_ids),
        per_sign=max(1, q_per_sign),
        active=active,
        trial_ids=chosen["trial_id"].to_numpy(np.int64),
        sign=sign,
        params={"variant": variant, **params, "present": present},
    )
    names = prep.classifier.class_names
    true = prep.true_labels[sign]
    scenes = pd.DataFrame({
        "trial_id": plan.trial_ids,
        "sign_id": chosen["sign_id"].to_numpy(np.int64),
        "true_label": true,
        "true_name": [names[int(t)] for t in true],
        "query": chosen["query"].to_numpy(np.int64),
        "success": chosen["success"].to_numpy(bool),
    })
    return plan, scenes


def found_trials(prep: Prepared, plan: FoundPlan, scenes: pd.DataFrame) -> pd.DataFrame:
    """The leaf side of a controls comparison on a search's scenes: per chosen query its
    ``trial_id``, ``sign_id``, ``success`` (as logged), ``occluded_frac`` (alpha-weighted
    share of the sign face covered, as rendered now) and ``n_leaves``, in trial order
    (what :func:`~leafattack.analysis.controls.compare_controls` reads from a run's
    ``trials.csv``)."""
    cover = []
    bs = prep.config.batch_size
    for k0 in range(0, plan.total_active, bs):
        d = plan.decode(k0, min(plan.total_active, k0 + bs))
        cover.append(composite_scenes(prep, d)[1].double().cpu().numpy())
    return pd.DataFrame({
        "trial_id": scenes["trial_id"].to_numpy(np.int64),
        "sign_id": scenes["sign_id"].to_numpy(np.int64),
        "success": scenes["success"].to_numpy(bool),
        "occluded_frac": np.concatenate(cover) if cover else np.zeros(0),
        "n_leaves": plan.params["present"].sum(1).astype(np.int64),
    })


def open_scenes(
    run_dir: Path, *, device: str = "auto", all_successes: bool = False
) -> tuple[Prepared, Plan, pd.DataFrame]:
    """The successful scenes of a finished grid/scene run or of a search directory (told
    apart by :func:`is_search_dir`), ready to re-render: each sign's best scene when it
    succeeded, or with ``all_successes`` every successful trial or query.

    Returns:
        ``(prep, plan, scenes)``; ``scenes`` has :data:`SCENE_COLUMNS` in trial order.

    Raises:
        LeafattackError: no such directory, no best scenes, no successful scene, or inputs
            that changed since (one line each).
    """
    if not run_dir.is_dir():
        raise LeafattackError(f"{run_dir}: not a run or search directory (no such folder)")
    if is_search_dir(run_dir):
        chosen = chosen_queries(run_dir, "successes" if all_successes else "best-successes")
        prep, config = open_search(run_dir, device=device)
        plan, scenes = found_plan(prep, config, run_dir, chosen)
        return prep, plan, scenes
    prep, run_plan = open_run(run_dir, device=device)
    return prep, run_plan, attack_scenes(run_dir, all_successes)
