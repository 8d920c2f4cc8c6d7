"""The adaptive search loop: ask every sign's optimiser, render all candidates at once,
classify, tell, and log every query resumably.

Each round asks every unfinished sign's optimiser for up to ``population`` candidates,
renders the candidates of *all* signs with :func:`~leafattack.compose.scenes.render_scenes`
in batches of ``batch_size`` (no per-sign forward loop), scores them with
:func:`~leafattack.adaptive.margin_loss` and the run's criterion, tells each optimiser its
losses, and appends the round to ``queries.csv`` (and its leaves to ``query_leaves.csv``).

Resume: ``queries.csv`` is the source of truth. It is an
:class:`~leafattack.rundir.AppendLog` appended one whole round at a time, so after a kill
it is truncated to the last complete round. A rerun rebuilds every optimiser by replaying
the log: it asks as before (the same seeded draws) and tells the logged losses instead of
evaluating; losses are told as the float32 values written in the log (``%.9g``, exact), so
the replayed state is the uninterrupted run's. Nothing is pickled; ``query_leaves.csv`` is
rewritten from the replay.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from leafattack import schema
from leafattack.adaptive import METHODS, Optimiser, Scenes, SearchSpace, SignContext, margin_loss
from leafattack.adaptive.eot import draw_eot_views, eot_judge, parse_view_spec, see_eot
from leafattack.adaptive.methods import method_seed
from leafattack.compose.pooled import render_pooled
from leafattack.compose.scenes import SceneBatch, VariantBank, build_variant_bank, render_scenes
from leafattack.config import SearchConfig
from leafattack.engine.evaluate import variant_columns
from leafattack.engine.preparation import Prepared
from leafattack.errors import LeafattackError
from leafattack.grid import mask_bbox, sign_positions
from leafattack.models import Classifier
from leafattack.rundir import FLOAT_FORMAT, AppendLog, columns_csv_bytes, write_atomic

log = logging.getLogger(__name__)

QUERIES_FILE = "queries.csv"
QUERIES_PROGRESS_FILE = "queries_progress.json"
QUERY_LEAVES_FILE = "query_leaves.csv"

FLUSH_ROWS = 4096
FLUSH_S = 2.0
"""queries.csv is appended (and fsynced) every FLUSH_ROWS queries or FLUSH_S seconds, in
whole rounds."""

POOLED_MAX_LEAVES = 5
"""Scenes of at most this many leaves render at the model's resolution
(:func:`~leafattack.compose.pooled.render_pooled`, when the model area-resizes by an integer
factor); more leaves render at the sign resolution, where re-compositing the earlier leaves
in every window no longer pays."""


@dataclass
class SignSearch:
    """The mutable search state of one attacked sign (engine-internal bookkeeping)."""

    local: int  # index into the prepared signs
    sign_id: int
    opt: Optimiser
    used: int = 0
    finished: bool = False
    first_success: int = 0
    best_loss: float = float("inf")
    best_query: int = 0
    best_scene: Scenes | None = None
    best_row: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """What the loop leaves behind, per attacked sign, in sign order."""

    states: tuple[SignSearch, ...]
    replayed: int  # queries replayed from the log instead of evaluated
    evaluated: int
    seconds: float  # spent on evaluated rounds


def build_bank(prep: Prepared) -> VariantBank:
    """The continuous-size variant bank of the prepared leaf variants."""
    dev = prep.sign_images.device
    return build_variant_bank([v.rgba for v in prep.variants], prep.config.sign_size, device=dev)


def sign_contexts(prep: Prepared, config: SearchConfig, locals_: np.ndarray) -> list[SignContext]:
    """The :class:`SignContext` of each attacked sign (face box, grid lattice, seed)."""
    masks = prep.sign_masks.cpu().numpy()
    g = config.run.grid
    out = []
    for j in locals_:
        mask = masks[int(j)]
        space = SearchSpace(
            config.leaves_per_scene, len(prep.variants), config.size_range, mask_bbox(mask)
        )
        xy, _ = sign_positions(g, mask)
        seed = method_seed(config.run.seed, int(prep.sign_ids[int(j)]), config.method)
        out.append(SignContext(space, config.queries, seed, xy, g.sizes, g.angles))
    return out


def classify_logits(clf: Classifier, images: torch.Tensor, model: str) -> torch.Tensor:
    """``clf.logits(images)``, with a model's own failure turned into one line.

    Shape:
        images: float32 (N, 3, H, W) in [0, 1]. Returns float32 (N, C) logits.
    """
    try:
        return clf.logits(images)
    except (LeafattackError, torch.OutOfMemoryError):
        raise
    except Exception as exc:  # a user model may raise anything
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LeafattackError(
            f"model {model!r} failed on a batch of {len(images)} images: {first}"
        ) from None


def _read_log(path: Path) -> dict[int, pd.DataFrame]:
    """Complete rows of queries.csv (already truncated by the AppendLog), per sign_id."""
    raw = path.read_bytes()
    if raw.count(b"\n") <= 1:
        return {}
    df = pd.read_csv(io.BytesIO(raw), dtype=dict(schema.QUERY_COLUMNS))
    return {
        int(str(s)): part.reset_index(drop=True)
        for s, part in df.groupby("sign_id", sort=False)
    }


def _fmt_exact(values: np.ndarray) -> list[str]:
    return [f"{v:.9g}" for v in np.asarray(values, dtype=np.float32).tolist()]


def execute_search(
    prep: Prepared, config: SearchConfig, attacked: np.ndarray, run_dir: Path
) -> SearchOutcome:
    """Search every attacked sign within the budget, logging into ``run_dir``.

    Args:
        attacked: int64 (A,) indices into the prepared signs, in order.

    Raises:
        LeafattackError: queries.csv does not match the replay (another config).
        OSError: a write failed (the caller turns it into a one-line error).
    """
    ctxs = sign_contexts(prep, config, attacked)
    factory = METHODS[config.method]
    states = [
        SignSearch(int(j), int(prep.sign_ids[int(j)]), factory(ctx))
        for j, ctx in zip(attacked, ctxs, strict=True)
    ]
    bank = build_bank(prep)
    names = np.array(prep.classifier.class_names, dtype=object)
    vcols = variant_columns(prep)
    total = len(states) * config.queries
    table = AppendLog(
        run_dir / QUERIES_FILE,
        run_dir / QUERIES_PROGRESS_FILE,
        header=",".join(schema.QUERY_COLUMNS).encode() + b"\n",
        total=total,
        meta={"attacked": [s.sign_id for s in states], "method": config.method},
        strict_meta=("attacked",),
    )
    leaves_header = ",".join(schema.QUERY_LEAF_COLUMNS).encode() + b"\n"
    replayed_leaves: list[bytes] = [leaves_header]
    leaves_file = None
    replayed = evaluated = pending_rows = 0
    pending: list[bytes] = []
    seconds = 0.0
    flushed = time.perf_counter()
    with table as done:
        logged = _read_log(table.path) if done else {}
        ptr = {s.sign_id: 0 for s in states}
        with tqdm(
            total=total, unit="query", unit_scale=True, disable=config.run.quiet,
            desc=f"search ({config.method})", dynamic_ncols=True,
        ) as bar:
            try:
                while True:
                    round_states, asks = [], []
                    for st in states:
                        if st.finished:
                            continue
                        n = min(st.opt.population, config.queries - st.used)
                        scenes = st.opt.ask(n) if n > 0 else None
                        if scenes is None or scenes.n == 0:
                            st.finished = True
                            bar.update(config.queries - st.used)
                            continue
                        round_states.append(st)
                        asks.append(scenes)
                    if not round_states:
                        break
                    have = [
                        ptr[st.sign_id] < len(logged.get(st.sign_id, ()))
                        for st in round_states
                    ]
                    t0 = time.perf_counter()
                    if all(have):
                        results = [
                            _from_log(logged[st.sign_id], ptr[st.sign_id], sc.n, config)
                            for st, sc in zip(round_states, asks, strict=True)
                        ]
                    elif any(have):
                        raise LeafattackError(
                            f"{run_dir / QUERIES_FILE}: does not match a replay of this search "
                            f"(edited, or written by another version); rerun with --overwrite"
                        )
                    else:
                        results = _evaluate_round(
                            prep, bank, round_states, asks, config, names
                        )
                    signs_r, queries_r, scenes_r, results_r = [], [], [], []
                    for st, sc, res in zip(round_states, asks, results, strict=True):
                        m = len(res["loss"])
                        queries = np.arange(st.used + 1, st.used + m + 1, dtype=np.int64)
                        st.opt.tell(res["loss"].astype(np.float64))
                        _update_best(st, sc, res, queries)
                        st.used += m
                        ptr[st.sign_id] += m
                        bar.update(m)
                        if st.first_success and config.stop_on_success:
                            st.finished = True
                            bar.update(config.queries - st.used)
                        elif st.used >= config.queries:
                            st.finished = True
                        signs_r.append(np.full(m, st.sign_id, np.int64))
                        queries_r.append(queries)
                        scenes_r.append(sc.take(slice(0, m)))
                        results_r.append(res)
                    sign_ids = np.concatenate(signs_r)
                    queries = np.concatenate(queries_r)
                    scenes = Scenes.concat(scenes_r, config.leaves_per_scene)
                    leaves = _leaf_csv(sign_ids, queries, scenes, vcols)
                    if all(have):
                        replayed += len(sign_ids)
                        replayed_leaves.append(leaves)
                        continue
                    if leaves_file is None:
                        write_atomic(run_dir / QUERY_LEAVES_FILE, b"".join(replayed_leaves))
                        leaves_file = open(run_dir / QUERY_LEAVES_FILE, "ab")  # noqa: SIM115
                    leaves_file.write(leaves)
                    merged = {k: np.concatenate([r[k] for r in results_r]) for k in results_r[0]}
                    pending.append(
                        columns_csv_bytes(
                            _query_columns(sign_ids, queries, merged, config.method),
                            _QUERY_TEXT,
                        )
                    )
                    pending_rows += len(sign_ids)
                    evaluated += len(sign_ids)
                    if pending_rows >= FLUSH_ROWS or time.perf_counter() - flushed >= FLUSH_S:
                        pending_rows = _flush(table, pending, pending_rows)
                        flushed = time.perf_counter()
                    seconds += time.perf_counter() - t0
            finally:
                t0 = time.perf_counter()
                _flush(table, pending, pending_rows)  # complete rounds only: resumable
                seconds += time.perf_counter() - t0
                if leaves_file is not None:
                    leaves_file.close()
        if leaves_file is None:  # everything was replayed (or nothing to do)
            write_atomic(run_dir / QUERY_LEAVES_FILE, b"".join(replayed_leaves))
        leftover = [s for s, rows in logged.items() if ptr.get(s, 0) < len(rows)]
        if leftover:
            raise LeafattackError(
                f"{run_dir / QUERIES_FILE}: holds queries a replay of this search does not "
                f"make (signs {leftover[:5]}); rerun with --overwrite"
            )
    return SearchOutcome(tuple(states), replayed, evaluated, seconds)


def _flush(table: AppendLog, pending: list[bytes], rows: int) -> int:
    """Append the buffered rounds to queries.csv (fsynced, then the progress file)."""
    if rows:
        table.append(table.rows + rows, b"".join(pending))
        pending.clear()
    return 0


def _from_log(
    rows: pd.DataFrame, start: int, n: int, config: SearchConfig
) -> dict[str, np.ndarray]:
    """The logged results of the next ``n`` queries of one sign (cut after a success)."""
    part = rows.iloc[start : start + n]
    out = {
        "loss": part["loss"].to_numpy(np.float32),
        "pred_label": part["pred_label"].to_numpy(np.int64),
        "pred_name": part["pred_name"].astype(object).to_numpy(),
        "pred_conf": part["pred_conf"].to_numpy(np.float64),
        "true_conf": part["true_conf"].to_numpy(np.float64),
        "success": part["success"].to_numpy(bool),
    }
    return _cut(out, config.stop_on_success)


def _cut(res: dict[str, np.ndarray], stop: bool) -> dict[str, np.ndarray]:
    """Keep the queries up to and including the first success (with stop-on-success)."""
    if stop and res["success"].any():
        m = int(np.argmax(res["success"])) + 1
        return {k: v[:m] for k, v in res.items()}
    return res


def _evaluate_round(
    prep: Prepared,
    bank: VariantBank,
    round_states: list[SignSearch],
    asks: list[Scenes],
    config: SearchConfig,
    names: np.ndarray,
) -> list[dict[str, np.ndarray]]:
    """Render and classify every candidate of a round, in batches across signs."""
    k = config.leaves_per_scene
    scenes = Scenes.concat(asks, k)
    sign = np.concatenate(
        [np.full(sc.n, st.local, np.int64) for st, sc in zip(round_states, asks, strict=True)]
    )
    dev = prep.sign_images.device
    labels_all = torch.from_numpy(prep.true_labels[sign]).to(dev)
    parts: list[dict[str, np.ndarray]] = []
    bs = config.run.batch_size
    pooled = prep.stack is not None and k <= POOLED_MAX_LEAVES
    views = None
    if config.eot > 1:
        spec = parse_view_spec(config.view_spec)
        # Views act on the sign-resolution composite, as in ``robustness``; identity views
        # change nothing, so those keep the (equivalent) pooled path.
        pooled = pooled and spec.is_identity
        group = np.concatenate(
            [np.full(sc.n, r, np.int64) for r, sc in enumerate(asks)]
        )
        views = draw_eot_views(
            spec,
            config.eot,
            config.run.seed,
            [(st.sign_id, st.used) for st in round_states],
            tuple(prep.sign_images.shape[1:]),  # type: ignore[arg-type]
            dev,
        )
        chunk = max(1, bs // config.eot)  # candidates per forward pass: <= batch_size images
    for a in range(0, len(sign), bs):
        b = min(len(sign), a + bs)
        batch = SceneBatch(
            sign=torch.from_numpy(sign[a:b]).to(dev),
            variant=torch.from_numpy(scenes.variant[a:b]).to(dev),
            size=torch.from_numpy(  # face widths (or cm) -> fractions of the image width
                prep.render_size(sign[a:b][:, None], scenes.size[a:b]).astype(np.float32)
            ).to(dev),
            angle=torch.from_numpy(scenes.angle[a:b].astype(np.float32)).to(dev),
            x=torch.from_numpy(scenes.x[a:b].astype(np.float32)).to(dev),
            y=torch.from_numpy(scenes.y[a:b].astype(np.float32)).to(dev),
            present=torch.from_numpy(scenes.present[a:b]).to(dev),
        )
        with torch.inference_mode():
            if pooled:
                assert prep.stack is not None
                images, _ = render_pooled(prep.stack, bank, batch)
            else:
                images, _ = render_scenes(
                    prep.sign_images,
                    prep.sign_masks,
                    bank,
                    batch,
                    appearance=prep.appearance,
                    noise=prep.noise,
                )
            labels = labels_all[a:b]
            if views is not None:
                judged = []
                for c0 in range(0, b - a, chunk):
                    c1 = min(b - a, c0 + chunk)
                    seen = see_eot(images[c0:c1], group[a + c0 : a + c1], views)
                    logits = classify_logits(prep.classifier, seen, config.run.model)
                    judged.append(
                        eot_judge(
                            logits, labels[c0:c1], views.m, prep.target_index, prep.criterion
                        )
                    )
                res = {key: torch.cat([j[key] for j in judged]) for key in judged[0]}
            else:
                logits = classify_logits(prep.classifier, images, config.run.model)
                probs = torch.softmax(logits, dim=1)
                pred = probs.argmax(1)
                res = {
                    "loss": margin_loss(logits, labels, prep.target_index),
                    "pred_label": pred,
                    "pred_conf": probs.gather(1, pred[:, None])[:, 0].double(),
                    "true_conf": probs.gather(1, labels[:, None])[:, 0].double(),
                    "success": prep.criterion(probs, labels),
                }
        pred_np = res["pred_label"].cpu().numpy()
        parts.append(
            {
                "loss": res["loss"].cpu().numpy().astype(np.float32),
                "pred_label": pred_np,
                "pred_name": names[pred_np],
                "pred_conf": res["pred_conf"].cpu().numpy(),
                "true_conf": res["true_conf"].cpu().numpy(),
                "success": res["success"].cpu().numpy().astype(bool),
            }
        )
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    out, a = [], 0
    for sc in asks:
        part = {key: v[a : a + sc.n] for key, v in merged.items()}
        out.append(_cut(part, config.stop_on_success))
        a += sc.n
    return out


def _update_best(
    st: SignSearch, scenes: Scenes, res: dict[str, np.ndarray], queries: np.ndarray
) -> None:
    loss = res["loss"]
    if len(loss) == 0:
        return
    i = int(np.argmin(loss))
    if float(loss[i]) < st.best_loss:
        st.best_loss = float(loss[i])
        st.best_query = int(queries[i])
        st.best_scene = scenes.take(slice(i, i + 1))
        st.best_row = {key: res[key][i] for key in res}
    if not st.first_success and res["success"].any():
        st.first_success = int(queries[int(np.argmax(res["success"]))])


_QUERY_TEXT: dict[str, str] = {
    "sign_id": "int64", "query": "int64", "method": "string", "loss": "string",
    "pred_label": "int64", "pred_name": "string", "pred_conf": "float64",
    "true_conf": "float64", "success": "bool",
}
"""How each queries.csv column is written (``loss`` comes preformatted, exact)."""


def _query_columns(
    sign_ids: np.ndarray, queries: np.ndarray, res: dict[str, np.ndarray], method: str
) -> dict[str, np.ndarray]:
    """QUERY_COLUMNS of scored queries, as (N,) columns; ``res`` holds (N,) arrays."""
    return {
        "sign_id": sign_ids,
        "query": queries,
        "method": np.full(len(sign_ids), method, dtype=object),
        "loss": np.array(_fmt_exact(res["loss"]), dtype=object),
        "pred_label": res["pred_label"],
        "pred_name": res["pred_name"],
        "pred_conf": res["pred_conf"],
        "true_conf": res["true_conf"],
        "success": res["success"],
    }


def _leaf_columns(
    sign_ids: np.ndarray, queries: np.ndarray, scenes: Scenes, vcols: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """QUERY_LEAF_COLUMNS of the present slots (floats as rendered: float32, %.9g text).

    ``sign_ids`` and ``queries`` are int64 (N,), one per scene."""
    n, k = scenes.present.shape
    q = np.repeat(queries, k)
    sid = np.repeat(sign_ids, k)
    slot = np.tile(np.arange(k, dtype=np.int64), n)
    on = scenes.present.ravel()
    v = scenes.variant.ravel()[on]
    return {
        "sign_id": sid[on],
        "query": q[on],
        "slot": slot[on],
        **{name: values[v] for name, values in vcols.items()},
        **{
            name: np.array(_fmt_exact(getattr(scenes, name).ravel()[on]), dtype=object)
            for name in ("size", "angle", "x", "y")
        },
    }


def _leaf_rows(
    sign_ids: np.ndarray, queries: np.ndarray, scenes: Scenes, vcols: dict[str, np.ndarray]
) -> pd.DataFrame:
    """:func:`_leaf_columns` as a DataFrame."""
    return pd.DataFrame(_leaf_columns(sign_ids, queries, scenes, vcols))


def _leaf_csv(
    sign_ids: np.ndarray, queries: np.ndarray, scenes: Scenes, vcols: dict[str, np.ndarray]
) -> bytes:
    """:func:`_leaf_columns` as headerless CSV rows (as pandas would write them)."""
    cols = _leaf_columns(sign_ids, queries, scenes, vcols)
    ints = ("sign_id", "query", "slot")
    return columns_csv_bytes(cols, {c: "int64" if c in ints else "string" for c in cols})


def best_tables(
    prep: Prepared, outcome: SearchOutcome, method: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(best.csv rows, best_leaves.csv rows): per searched sign its lowest-loss scene.

    ``best_leaves.csv`` is a scenes file (``leafattack render --scenes``), whose scene id
    is the sign id.
    """
    names = np.array(prep.classifier.class_names, dtype=object)
    vcols = variant_columns(prep)
    rows, leaves = [], []
    for st in outcome.states:
        if st.best_scene is None:
            continue
        true = int(prep.true_labels[st.local])
        r = st.best_row
        rows.append(
            {
                "sign_id": st.sign_id,
                "sign_file": prep.signs.files[st.sign_id],
                "true_label": true,
                "true_name": names[true],
                "method": method,
                "queries_used": st.used,
                "success": st.first_success > 0,
                "first_success": st.first_success,
                "best_query": st.best_query,
                "loss": float(np.float32(r["loss"])),  # type: ignore[arg-type]
                "pred_label": int(r["pred_label"]),  # type: ignore[call-overload]
                "pred_name": r["pred_name"],
                "pred_conf": float(r["pred_conf"]),  # type: ignore[arg-type]
                "true_conf": float(r["true_conf"]),  # type: ignore[arg-type]
                "image": f"best/{st.sign_id}.png",
            }
        )
        ids = np.array([st.sign_id], np.int64)
        lr = _leaf_rows(ids, ids, st.best_scene, vcols)
        leaves.append(lr.rename(columns={"query": "scene_id"}).drop(columns="species"))
    best = pd.DataFrame(rows, columns=list(schema.SEARCH_BEST_COLUMNS))
    cols = ["scene_id", "sign_id", "slot", "leaf_id", "colour", "size", "angle", "x", "y"]
    table = pd.concat(leaves, ignore_index=True)[cols] if leaves else pd.DataFrame(columns=cols)
    return best, table


def format_floats(df: pd.DataFrame) -> bytes:
    """``df`` as CSV bytes with the project's float format."""
    return df.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n").encode()
