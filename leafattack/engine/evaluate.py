"""The batch evaluator: decode -> composite -> classify -> judge, and the local executor."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
import pandas as pd
import torch

from leafattack import schema
from leafattack.compose.controls import LayerHook
from leafattack.compose.functional import composite, composite_pooled, to_uint8_hwc
from leafattack.compose.scenes import SceneBatch, render_scenes_covered
from leafattack.data.canvas import face_width
from leafattack.engine.preparation import Prepared
from leafattack.errors import LeafattackError
from leafattack.grid import Plan, ScenePlan
from leafattack.models import Classifier
from leafattack.rundir import columns_csv_bytes

log = logging.getLogger(__name__)


def classify(clf: Classifier, images: torch.Tensor, model: str) -> torch.Tensor:
    """``clf.predict_proba(images)``, with a model's own failure turned into one line.

    Out-of-memory errors pass through (the caller splits the batch).

    Shape:
        images: uint8 (N, 3, H, W). Returns float32 (N, K) probabilities.
    """
    try:
        return clf.predict_proba(images)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # a user model may raise anything
        if "out of memory" in str(exc).lower():
            raise torch.OutOfMemoryError(str(exc)) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LeafattackError(
            f"model {model!r} failed on a batch of {len(images)} images: {first}"
        ) from None


def placement_tensors(
    prep: Prepared, d: dict[str, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoded trials → (sign, bank entry, x, y, angle) tensors on the run's device."""
    dev = prep.sign_images.device
    angles = torch.tensor(prep.config.grid.angles, dtype=torch.float32, device=dev)
    sign = torch.from_numpy(d["sign"]).to(dev)
    entry = torch.from_numpy(d["variant"] * prep.bank.n_sizes + d["size_idx"]).to(dev)
    if prep.bank_group is not None:
        per_group = len(prep.variants) * prep.bank.n_sizes
        entry = entry + prep.bank_group[sign] * per_group
    return (
        sign,
        entry,
        torch.from_numpy(d["x"]).float().to(dev),
        torch.from_numpy(d["y"]).float().to(dev),
        angles[torch.from_numpy(d["angle_idx"]).to(dev)],
    )


def composite_trials(
    prep: Prepared, d: dict[str, np.ndarray], *, recolour: LayerHook | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-resolution composites of decoded trials: images (N, 3, H, W), occluded (N,),
    leaf alpha (N, H, W), as :func:`~leafattack.compose.composite` returns them (with
    ``recolour``, the leaf's colour replaced, as there)."""
    sign, entry, x, y, angle = placement_tensors(prep, d)
    app = None if prep.appearance is None else prep.appearance.take(sign)
    noise = None if prep.noise is None else prep.noise.index_select(0, sign)
    with torch.inference_mode():
        return composite(
            prep.sign_images[sign],
            prep.sign_masks[sign],
            prep.bank,
            entry,
            x,
            y,
            angle,
            appearance=app,
            noise=noise,
            recolour=recolour,
        )


@dataclass
class BatchEvaluator:
    """Decode → composite → classify → judge, for one batch of active trials."""

    prep: Prepared
    plan: Plan
    sizes: np.ndarray = field(init=False)
    angles: np.ndarray = field(init=False)
    names: np.ndarray = field(init=False)
    files: np.ndarray = field(init=False)
    host_extent: np.ndarray = field(init=False)
    host_group: np.ndarray | None = field(init=False)
    variant_columns: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        prep = self.prep
        self.sizes = np.asarray(prep.config.grid.sizes, dtype=np.float64)
        self.angles = np.asarray(prep.config.grid.angles, dtype=np.float64)
        self.names = np.array(prep.classifier.class_names, dtype=object)
        self.files = np.array(prep.signs.files, dtype=object)
        self.variant_columns = variant_columns(prep)
        self.host_extent = prep.bank.extent.cpu().numpy()
        self.host_group = None if prep.bank_group is None else prep.bank_group.cpu().numpy()

    def host_entry(self, d: dict[str, np.ndarray]) -> np.ndarray:
        """The bank entry of each decoded trial, on the host (as :func:`placement_tensors`
        computes it on the device), so grouping by entry needs no device sync."""
        prep = self.prep
        entry = d["variant"] * prep.bank.n_sizes + d["size_idx"]
        if self.host_group is not None:
            entry = entry + self.host_group[d["sign"]] * (len(prep.variants) * prep.bank.n_sizes)
        return entry

    def evaluate(self, k0: int, k1: int) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        """Run active trials ``k0..k1``; returns decoded params and (N, K) probabilities.

        On out-of-memory the range is split in halves (and so on down to one trial).
        """
        try:
            return self._evaluate(k0, k1)
        except torch.OutOfMemoryError:
            if k1 - k0 <= 1:
                raise LeafattackError(
                    f"model {self.prep.config.model!r}: out of memory on a single trial"
                ) from None
            log.warning("out of memory on %d trials; going on in halves", k1 - k0)
            if self.prep.sign_images.is_cuda:
                torch.cuda.empty_cache()
            mid = (k0 + k1) // 2
            d0, p0 = self.evaluate(k0, mid)
            d1, p1 = self.evaluate(mid, k1)
            return {k: np.concatenate([d0[k], d1[k]]) for k in d0}, torch.cat([p0, p1])

    def _evaluate(self, k0: int, k1: int) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        prep = self.prep
        d = self.plan.decode(k0, k1)
        if isinstance(self.plan, ScenePlan):
            images, occ = composite_scenes(prep, d)
        elif prep.stack is not None:
            sign, entry, x, y, angle = placement_tensors(prep, d)
            with torch.inference_mode():
                images, occ = composite_pooled(
                    prep.stack, prep.bank, sign, entry, x, y, angle,
                    host_entry=self.host_entry(d), host_extent=self.host_extent,
                )
        else:
            images, occ, _ = composite_trials(prep, d)
        probs = classify(prep.classifier, images, prep.config.model)
        d["occluded_frac"] = occ.double().cpu().numpy()
        return d, probs

    def columns(self, d: dict[str, np.ndarray], probs: torch.Tensor) -> dict[str, np.ndarray]:
        """A batch's results as TRIAL_COLUMNS arrays (SCENE_TRIAL_COLUMNS for scenes), in
        order, floats as numbers (full precision), strings as object arrays."""
        prep = self.prep
        true = torch.from_numpy(prep.true_labels[d["sign"]]).to(probs.device)
        success = prep.criterion(probs, true)
        pred = probs.argmax(1)
        pred_np = pred.cpu().numpy()
        true_np = prep.true_labels[d["sign"]]
        sign_ids = prep.sign_ids[d["sign"]]
        leaf: dict[str, np.ndarray]
        if isinstance(self.plan, ScenePlan):
            leaf = {"n_leaves": np.full(len(true_np), self.plan.leaves, dtype=np.int64)}
        else:
            v = d["variant"]
            leaf = {
                **{name: values[v] for name, values in self.variant_columns.items()},
                "size": self.sizes[d["size_idx"]],
                "angle": self.angles[d["angle_idx"]],
                "x": d["x"],
                "y": d["y"],
                "position": d["position"],
            }
        return {
            "trial_id": d["trial_id"],
            "sign_id": sign_ids,
            "sign_file": self.files[sign_ids],
            "true_label": true_np,
            "true_name": self.names[true_np],
            **leaf,
            "occluded_frac": d["occluded_frac"],
            "pred_label": pred_np,
            "pred_name": self.names[pred_np],
            "pred_conf": probs.gather(1, pred[:, None])[:, 0].double().cpu().numpy(),
            "true_conf": probs.gather(1, true[:, None])[:, 0].double().cpu().numpy(),
            **self._target_column(probs),
            "success": success.cpu().numpy(),
        }

    def _target_column(self, probs: torch.Tensor) -> dict[str, np.ndarray]:
        """``{"target_conf": (N,) float64}`` in a targeted run, else nothing."""
        t = self.prep.target_index
        if t is None:
            return {}
        return {schema.TARGET_CONF: probs[:, t].double().cpu().numpy()}


def variant_columns(prep: Prepared) -> dict[str, np.ndarray]:
    """``leaf_id``, ``species`` and ``colour`` of every leaf variant, as object arrays
    indexed by variant."""
    return {
        name: np.array([getattr(v, name) for v in prep.variants], dtype=object)
        for name in ("leaf_id", "species", "colour")
    }


def composite_scenes(
    prep: Prepared, d: dict[str, np.ndarray], *, recolour: LayerHook | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render decoded random scenes (:meth:`~leafattack.grid.ScenePlan.decode`); with
    ``recolour``, every leaf's colour replaced (:func:`~leafattack.compose.render_scenes`).

    Returns:
        float32 (N, 3, H, W) composites in [0, 1] at the sign resolution, and float32 (N,)
        the union coverage of each sign mask.
    """
    images, occluded, _ = composite_scenes_covered(prep, d, recolour=recolour)
    return images, occluded


def composite_scenes_covered(
    prep: Prepared, d: dict[str, np.ndarray], *, recolour: LayerHook | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`composite_scenes` plus the union of the leaves' alpha, float32 (N, H, W)."""
    if prep.scene_bank is None:
        raise LeafattackError("this run has no scene bank (scenes_per_sign = 0)")
    dev = prep.sign_images.device
    n, k = d["x"].shape
    batch = SceneBatch(
        sign=torch.from_numpy(d["sign"]).to(dev),
        variant=torch.from_numpy(d["variant"]).to(dev),
        size=torch.from_numpy(prep.render_size(d["sign"][:, None], d["size"])).float().to(dev),
        angle=torch.from_numpy(d["angle"]).float().to(dev),
        x=torch.from_numpy(d["x"]).float().to(dev),
        y=torch.from_numpy(d["y"]).float().to(dev),
        present=(  # a search's scenes may leave slots empty
            torch.from_numpy(d["present"]).to(dev)
            if "present" in d
            else torch.ones((n, k), dtype=torch.bool, device=dev)
        ),
    )
    with torch.inference_mode():
        return render_scenes_covered(
            prep.sign_images,
            prep.sign_masks,
            prep.scene_bank,
            batch,
            appearance=prep.appearance,
            noise=prep.noise,
            recolour=recolour,
        )


def leaf_rows(prep: Prepared, plan: ScenePlan) -> pd.DataFrame:
    """Every leaf of every attacked scene, as LEAF_COLUMNS rows (leaves.csv), scene-major.

    The ``size``, ``angle``, ``x`` and ``y`` are the float32 values the renderer uses
    (written with ``%.9g`` they read back exactly)."""
    d = plan.decode(0, plan.total_active)
    n, k = d["x"].shape
    v = d["variant"].ravel()
    return pd.DataFrame(
        {
            "trial_id": np.repeat(d["trial_id"], k),
            "sign_id": np.repeat(prep.sign_ids[d["sign"]], k),
            "slot": np.tile(np.arange(k, dtype=np.int64), n),
            **{name: values[v] for name, values in variant_columns(prep).items()},
            **{
                name: d[name].astype(np.float32).astype(np.float64).ravel()
                for name in ("size", "angle", "x", "y")
            },
        }
    )


def recompose(prep: Prepared, plan: Plan, trial_ids: np.ndarray) -> np.ndarray:
    """Recreate the attacked images of given trial ids.

    Returns:
        uint8 (N, H, W, 3) composites at the sign resolution.
    """
    if len(trial_ids) == 0:
        return np.zeros((0, prep.config.sign_size, prep.config.sign_size, 3), np.uint8)
    d = decode_trial_ids(plan, np.asarray(trial_ids, dtype=np.int64))
    if isinstance(plan, ScenePlan):
        return to_uint8_hwc(composite_scenes(prep, d)[0])
    images, _, _ = composite_trials(prep, d)
    return to_uint8_hwc(images)


def decode_trial_ids(plan: Plan, trial_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Decode arbitrary trial ids (of attacked signs) into per-trial parameters."""
    return plan.decode_active(plan.active_index(trial_ids))


def batch_bounds(start: int, total: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch ranges ``[k0, k1)`` of active trials from ``start``, aligned to ``batch_size``.

    Alignment makes a resumed run compute exactly the batches of an uninterrupted one.
    """
    out = []
    k0 = start
    while k0 < total:
        k1 = min(total, (k0 // batch_size + 1) * batch_size)
        out.append((k0, k1))
        k0 = k1
    return out


def evaluate_range(prep: Prepared, plan: Plan, k0: int, k1: int) -> bytes:
    """CSV rows (no header) of active trials ``k0..k1``, batch by batch as a local run does.

    Executors (local, Ray) call this on aligned ranges; its bytes are independent of which
    process computes them.
    """
    ev = BatchEvaluator(prep, plan)
    dtypes = schema.trial_columns(prep.target_index is not None, isinstance(plan, ScenePlan))
    parts = []
    for a, b in batch_bounds(k0, k1, prep.config.batch_size):
        d, probs = ev.evaluate(a, b)
        parts.append(columns_csv_bytes(ev.columns(d, probs), dtypes))
    return b"".join(parts)


def resolve_streams(
    requested: int, device: torch.device, *, builtin: bool = True
) -> tuple[int, int]:
    """``(streams, torch threads per stream)`` of a local run.

    A stream computes whole batches (composite, classify, judge) on its own thread. On a
    CPU, small classifiers scale poorly over torch's intra-op threads (the default
    LISA-CNN runs about 1.75x faster on two threads than on one, 2 cores, 2026-12-02), so
    several single-threaded streams classify more images a second than one stream using
    every thread, and the compositing of one stream overlaps the other's forward pass.
    ``requested`` 0 is automatic: two streams on a CPU with at least two torch threads,
    sharing the threads, for a built-in architecture (``builtin``; any other model may
    keep state in its forward pass, so it gets one stream unless asked for more); one on
    a GPU (its kernels run asynchronously already).

    Every batch is computed whole, by one stream, from its trial range alone, and batches
    are written in order, so the stream count changes the output only where a kernel's
    rounding depends on its thread count (the built-in models' outputs do not, on one or
    two threads: tested byte for byte; a float sum over a single trial's pixels split
    across threads can differ in its last bit).
    """
    threads = torch.get_num_threads()
    if device.type != "cpu":
        return 1, threads
    streams = requested or (min(2, threads) if builtin else 1)
    return streams, max(1, threads // streams)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Set torch's intra-op thread count to ``n`` inside the block (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def local_batches(
    prep: Prepared, plan: Plan, start: int, streams: int = 1
) -> Generator[tuple[int, dict[str, np.ndarray]], None, None]:
    """The local executor: yields ``(k1, columns)`` per batch, in trial order, with the
    columns of :meth:`BatchEvaluator.columns` (the writer formats them).

    With ``streams`` > 1, that many threads compute batches at once (each whole, so the
    columns are those of one stream) and they are yielded in order; the caller sets
    torch's thread count (:func:`resolve_streams`, :func:`torch_threads`).
    """
    ev = BatchEvaluator(prep, plan)
    bounds = batch_bounds(start, plan.total_active, prep.config.batch_size)

    def one(k0: int, k1: int) -> dict[str, np.ndarray]:
        d, probs = ev.evaluate(k0, k1)
        return ev.columns(d, probs)

    if streams <= 1:
        for k0, k1 in bounds:
            yield k1, one(k0, k1)
        return
    todo = iter(bounds)
    with ThreadPoolExecutor(streams, thread_name_prefix="leafattack-stream") as pool:
        flight: deque[tuple[int, Future[dict[str, np.ndarray]]]] = deque(
            (k1, pool.submit(one, k0, k1)) for k0, k1 in islice(todo, streams)
        )
        try:
            while flight:
                k1, fut = flight.popleft()
                columns = fut.result()
                nxt = next(todo, None)
                if nxt is not None:  # keep every stream busy while the caller writes
                    flight.append((nxt[1], pool.submit(one, *nxt)))
                yield k1, columns
        finally:  # an error or an early close: finish the batches running, start no more
            for _, fut in flight:
                fut.cancel()


def sign_records(prep: Prepared) -> pd.DataFrame:
    """How each chosen sign was prepared, one row per sign (``signs.csv``).

    Columns: ``sign_id``, ``sign_file``, ``face_rule`` (where the face mask came from),
    ``face_width_px`` (face width on the run's canvas), ``unit_px`` (pixels of a leaf of
    size 1: the face width, or face width / standard width in cm), and with matched
    appearance the estimates of :meth:`~leafattack.compose.appearance.Appearance.columns`
    (``scale, blur_sigma, gain_r, gain_g, gain_b, noise_sigma, shadow_*``).
    """
    masks = prep.sign_masks.cpu().numpy()
    cols: dict[str, object] = {
        "sign_id": prep.sign_ids,
        "sign_file": [prep.signs.files[int(i)] for i in prep.sign_ids],
        "face_rule": prep.face_rule,
        "face_width_px": [face_width(m) for m in masks],
        "unit_px": prep.unit_px if prep.unit_px is not None else float(prep.config.sign_size),
    }
    if prep.appearance is not None:
        cols.update(prep.appearance.columns())
    return pd.DataFrame(cols)


def clean_predictions(prep: Prepared) -> pd.DataFrame:
    """Classify every chosen sign once, without leaves (CLEAN_COLUMNS)."""
    clf = prep.classifier
    probs_l = []
    for i in range(0, len(prep.sign_ids), prep.config.batch_size):
        batch = prep.sign_images[i : i + prep.config.batch_size]
        probs_l.append(classify(clf, batch, prep.config.model).cpu())
    probs = torch.cat(probs_l) if probs_l else torch.zeros((0, clf.num_classes))
    pred = probs.argmax(1).numpy()
    true = prep.true_labels
    names = np.array(clf.class_names, dtype=object)
    return pd.DataFrame(
        {
            "sign_id": prep.sign_ids,
            "sign_file": [prep.signs.files[i] for i in prep.sign_ids],
            "true_label": true,
            "true_name": names[true],
            "pred_label": pred,
            "pred_name": names[pred],
            "pred_conf": probs.max(1).values.numpy().astype(np.float64),
            "true_conf": probs[np.arange(len(true)), torch.from_numpy(true)]
            .numpy()
            .astype(np.float64),
            "correct": pred == true,
        }
    )
