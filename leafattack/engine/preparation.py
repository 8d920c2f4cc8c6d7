"""Preparation: load and validate model, signs and leaves once, before any work."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from leafattack.compose.appearance import (
    Appearance,
    estimate_appearance,
    native_size,
    sample_shadows,
)
from leafattack.compose.bank import (
    LeafBank,
    SignStack,
    build_leaf_bank,
    build_sign_stack,
    leaf_pixels,
)
from leafattack.compose.scenes import VariantBank, build_variant_bank
from leafattack.config import RunConfig, config_from_mapping, load_config
from leafattack.criteria import Criterion, build_criterion
from leafattack.data.canvas import face_width, pad_square, square_canvas
from leafattack.data.faces import sign_faces
from leafattack.data.palettes import (
    GTSRB_FAMILIES,
    GTSRB_PALETTES,
    LISA_FAMILIES,
    LISA_PALETTES,
    sign_palettes,
)
from leafattack.data.signset import SignSet, fingerprint, present_classes, subset
from leafattack.data.sizes import face_widths_cm
from leafattack.data.sources import load_signs
from leafattack.data.splits import TrainingSplit, in_training, split_from_metadata, split_indices
from leafattack.errors import LeafattackError
from leafattack.grid import (
    NATURAL,
    Plan,
    ScenePlan,
    TrialPlan,
    angle_range,
    sample_litter,
    sign_positions,
)
from leafattack.leaves import (
    FALL_COLOURS,
    builtin_leaves_dir,
    load_leaves,
    recolour,
    select_leaves,
)
from leafattack.models.classifier import Classifier, match_classes, resolve_device
from leafattack.models.loading import load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeafVariant:
    """One entry of the leaf axis: a leaf in one colour."""

    leaf_id: str
    species: str
    colour: str
    rgba: np.ndarray


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything a run needs in memory, resolved and validated before any work starts."""

    config: RunConfig
    classifier: Classifier
    signs: SignSet
    sign_ids: np.ndarray  # int64 (S,): index of each used sign in the loaded set
    true_labels: np.ndarray  # int64 (S,): model class index of each used sign
    sign_images: torch.Tensor  # uint8 (S, 3, H, W) on device
    sign_masks: torch.Tensor  # bool (S, H, W) on device
    variants: tuple[LeafVariant, ...]
    bank: LeafBank
    stack: SignStack | None  # set when the pooled fast path applies (area-resizing models)
    criterion: Criterion
    target_index: int | None
    fingerprints: dict[str, str]
    scene_bank: VariantBank | None = None  # random multi-leaf scenes (scenes_per_sign > 0)
    unit_px: np.ndarray | None = None  # float64 (S,): pixels of a leaf of size 1 on each sign
    bank_group: torch.Tensor | None = None  # int64 (S,): each sign's width group in ``bank``
    face_rule: str = "masks of the source"
    appearance: Appearance | None = None  # photo conditions per sign (matched appearance)
    noise: torch.Tensor | None = None  # float32 (S, 3, Hn, Wn): each sign's noise field
    training_split: TrainingSplit | None = None  # what the model records (None: unknown)

    def render_size(self, sign: np.ndarray, size: np.ndarray) -> np.ndarray:
        """Grid sizes (face widths or cm) → leaf lengths as fractions of the image width.

        Args:
            sign: int64 (...) indices of used signs; size: float (...) in the grid's unit.

        Returns:
            float64 (...), what :func:`~leafattack.compose.render_scenes` takes.
        """
        units = self.unit_px if self.unit_px is not None else np.full(len(self.sign_ids), 1.0)
        return np.asarray(size, dtype=np.float64) * units[sign] / self.config.sign_size


def select_signs(signs: SignSet, limit: int | None, seed: int) -> np.ndarray:
    """Indices of the signs to attack: all, or ``limit`` spread round-robin over classes.

    With ``seed``, the signs within each class and the order of the classes are drawn at
    random: every class gives one sign before any gives a second, and when ``limit`` is
    below the number of classes, which classes are taken depends on the seed.

    Returns:
        int64 (min(limit, N),) sorted indices into ``signs``.
    """
    n = len(signs)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    labels = np.asarray(signs.labels)[perm]
    classes = np.unique(labels)
    class_rank = np.empty(int(classes.max()) + 1, dtype=np.int64)
    class_rank[classes] = rng.permutation(len(classes))
    rank = np.empty(n, dtype=np.int64)
    for c in classes:
        sel = labels == c
        rank[sel] = np.arange(sel.sum())
    order = np.lexsort((class_rank[labels], rank))
    return np.sort(perm[order[:limit]])


def attack_mask(clean: pd.DataFrame, target_index: int | None) -> np.ndarray:
    """Which signs are attacked: those classified correctly when clean and, in a targeted
    run, not already of the target class (their attack could never succeed).

    Returns:
        bool (S,), aligned with the rows of ``clean`` (CLEAN_COLUMNS).
    """
    mask = clean["correct"].to_numpy(dtype=bool)
    if target_index is not None:
        mask = mask & (clean["true_label"].to_numpy(dtype=np.int64) != target_index)
    return mask


def load_leaf_variants(config: RunConfig) -> tuple[LeafVariant, ...]:
    """Load the leaf library, select leaves, and expand the colour axis.

    Colour levels: ``natural`` keeps every leaf as shipped (its ``colour`` is the shipped
    one); a fall colour C recolours every leaf into C with
    :func:`~leafattack.leaves.recolouring`, a leaf shipped in C included, so that one level
    is one colouring method. A recoloured variant's id is ``<leaf id>@C``, so no two
    variants are the same (a grid refuses repeated levels).
    """
    folder = builtin_leaves_dir() if config.leaves == "builtin" else Path(config.leaves)
    library = load_leaves(folder)
    g = config.grid
    chosen = select_leaves(library, ids=g.leaf_ids or None, species=g.species or None)
    if not chosen:
        raise LeafattackError(f"{folder}: the grid selects no leaves (check species and leaf ids)")
    for c in g.colours:
        if c != NATURAL and c not in FALL_COLOURS:
            raise LeafattackError(
                f"unknown colour {c!r} (expected {NATURAL} or one of {', '.join(FALL_COLOURS)})"
            )
    out = []
    for leaf in chosen:
        for c in g.colours:
            if c == NATURAL:
                out.append(LeafVariant(leaf.leaf_id, leaf.species, leaf.colour, leaf.rgba))
            else:
                rc = recolour(leaf, c)
                out.append(LeafVariant(f"{leaf.leaf_id}@{c}", leaf.species, c, rc.rgba))
    return tuple(out)


def resize_signs(signs: SignSet, idx: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad the chosen signs to squares and resize them to ``size``×``size``
    (:func:`~leafattack.data.canvas.square_canvas`: crops keep their aspect ratio).

    Returns:
        uint8 (S, size, size, 3) images (area interpolation when shrinking) and bool
        (S, size, size) masks (nearest neighbour; False on the padding).
    """
    imgs = np.empty((len(idx), size, size, 3), dtype=np.uint8)
    masks = np.empty((len(idx), size, size), dtype=bool)
    for j, i in enumerate(idx):
        imgs[j], masks[j] = square_canvas(signs.images[i], signs.mask(int(i)), size)
    return imgs, masks


def leaf_units(signs: SignSet, idx: np.ndarray, masks: np.ndarray, size_unit: str) -> np.ndarray:
    """Pixels (on the run's canvas) of a leaf of size 1 on each chosen sign.

    ``face``: the width of the sign face (:func:`~leafattack.data.canvas.face_width`).
    ``cm``: the face width divided by the class's standard face width in cm
    (:data:`~leafattack.data.sizes.FACE_WIDTH_CM`).

    Returns:
        float64 (S,).
    """
    widths = np.array([face_width(m) for m in masks], dtype=np.float64)
    if size_unit == "cm":
        names = [signs.class_names[int(signs.labels[i])] for i in idx]
        widths = widths / face_widths_cm(names)
    return widths


def width_groups(units: np.ndarray, sizes: Sequence[float]) -> tuple[list[float], np.ndarray]:
    """Signs whose leaves have the same pixel lengths at every grid size share one group
    of the leaf bank.

    Returns:
        ``(widths, group)``: one representative width per group, and int64 (S,) groups.
    """
    keys = [tuple(leaf_pixels(s, u) for s in sizes) for u in units]
    order: dict[tuple[int, ...], int] = {}
    reps: list[float] = []
    group = np.empty(len(units), dtype=np.int64)
    for j, key in enumerate(keys):
        if key not in order:
            order[key] = len(reps)
            reps.append(float(units[j]))
        group[j] = order[key]
    return reps, group


def photo_conditions(
    signs: SignSet,
    idx: np.ndarray,
    mode: str,
    *,
    photo: bool,
    sign_size: int,
    seed: int,
    shadow: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[Appearance, torch.Tensor] | None:
    """Per-sign appearance estimates and sensor-noise fields, or None when leaves go on raw.

    ``mode`` ``auto`` matches on ``photo`` sources (those without masks of their own:
    GTSRB, LISA, folders of photos; not the built-in renders) whose classes have
    canonical palettes (GTSRB, LISA names); ``matched`` insists (and fails on classes
    without a palette); ``raw`` never matches. Estimates come from the native crop padded
    to a square, and its face. Each sign's noise field and shadow are drawn from its own
    generator, seeded by ``seed`` and the sign's index in the set, so they do not depend
    on which other signs are rendered with it.

    Returns:
        ``(appearance, noise)``: S entries, and float32 (S, 3, Hn, Wn) standard-normal
        fields (zero beyond each sign's native size), on ``device``.
    """
    if mode == "raw" or (mode == "auto" and not photo):
        return None
    used = subset(signs, idx)
    present = set(present_classes(used))
    pals = None
    for classes, families in ((GTSRB_PALETTES, GTSRB_FAMILIES), (LISA_PALETTES, LISA_FAMILIES)):
        if present <= classes.keys():
            pals = sign_palettes(used, classes, families)
            break
    if pals is None:
        if mode == "matched":
            raise LeafattackError(
                f"appearance matched: the classes of {signs.source!r} have no canonical "
                f"palettes (expected GTSRB or LISA class names; use --appearance raw)"
            )
        log.warning("appearance: no canonical palettes for these classes; leaves go on raw")
        return None
    padded = [pad_square(img, m) for img, m in zip(used.images, used.masks or (), strict=True)]
    app = estimate_appearance(
        [p[0] for p in padded], [p[1] for p in padded], pals, sign_size, "cpu"
    )
    if shadow:
        parts = [
            sample_shadows(
                app.take(torch.tensor([j])),
                np.random.default_rng([seed, SHADOW_STREAM, int(i)]),
            )
            for j, i in enumerate(idx)
        ]
        app = Appearance(
            *(torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(app))
        )
    hn, wn = native_size(app, sign_size, sign_size)
    noise = torch.zeros(
        (
            len(idx),
            3,
            max(1, int(hn.max())) if len(idx) else 1,
            max(1, int(wn.max())) if len(idx) else 1,
        )
    )
    for j, i in enumerate(idx):
        state = np.random.SeedSequence([seed, NOISE_STREAM, int(i)]).generate_state(1)[0]
        gen = torch.Generator().manual_seed(int(state))
        noise[j, :, : int(hn[j]), : int(wn[j])] = torch.randn(
            (3, int(hn[j]), int(wn[j])), generator=gen
        )
    return app.to(device), noise.to(device)


SHADOW_STREAM = 7001
"""Seed stream (with the run's seed) of the shadow directions."""
NOISE_STREAM = 7002
"""Seed stream (with the run's seed) of the per-sign sensor-noise fields."""


def _hash_arrays(parts: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def pooled_stack(clf: Classifier, images: torch.Tensor, masks: torch.Tensor) -> SignStack | None:
    """The pooled fast path's sign stack, when the model resizes by area averaging with an
    integer factor (exactly what :func:`~leafattack.compose.composite_pooled` computes)."""
    pp = clf.preprocess
    size = images.shape[-1]
    if pp.resize != "area" or size % pp.input_size or images.shape[-2] != size:
        return None
    return build_sign_stack(images, masks, size // pp.input_size)


def prepare(config: RunConfig) -> Prepared:
    """Load and validate model, signs and leaves; fail before any work with one-line errors."""
    device = resolve_device(config.device)
    clf = load_model(config.model, device, trust_torchscript=config.trust_torchscript)
    loaded = load_signs(config.signs)
    if len(loaded) == 0:
        raise LeafattackError(f"sign source {config.signs!r} holds no signs")
    signs, face_rule = sign_faces(loaded)
    recorded = split_from_metadata(clf.metadata, config.model)
    if config.split == "all":
        idx = select_signs(signs, config.limit_signs, config.seed)
    else:  # sign ids stay indices into the loaded set (seeds per sign do not move)
        pool = split_indices(loaded, recorded, config.split, f"model {config.model!r}")
        idx = pool[select_signs(subset(signs, pool), config.limit_signs, config.seed)]
    labels = np.asarray(signs.labels)[idx]
    mapping = match_classes(signs.class_names, clf.class_names, used_labels=labels.tolist())
    true_labels = np.asarray(mapping, dtype=np.int64)[labels]
    target_index = None if config.target is None else clf.class_index(config.target)
    criterion = build_criterion(target_index, config.min_confidence)
    variants = load_leaf_variants(config)
    imgs, masks = resize_signs(signs, idx, config.sign_size)
    units = leaf_units(signs, idx, masks, config.grid.size_unit)
    widths, group = width_groups(units, config.grid.sizes)
    bank = build_leaf_bank([v.rgba for v in variants], config.grid.sizes, widths, device)
    conditions = photo_conditions(
        signs,
        idx,
        config.appearance,
        photo=loaded.masks is None,
        sign_size=config.sign_size,
        seed=config.seed,
        shadow=config.shadow,
        device=device,
    )
    fps = {
        "signs": fingerprint(loaded),
        "leaves": _hash_arrays(
            [f"{v.leaf_id}|{v.species}|{v.colour}".encode() + v.rgba.tobytes() for v in variants]
        ),
        "model": clf.fingerprint,
    }
    images_t = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous().to(device)
    masks_t = torch.from_numpy(masks).to(device)
    # Matched leaves are rendered whole (the pooled path only warps a window).
    stack = pooled_stack(clf, images_t, masks_t) if conditions is None else None
    return Prepared(
        config=config,
        classifier=clf,
        signs=signs,
        sign_ids=idx,
        true_labels=true_labels,
        sign_images=images_t,
        sign_masks=masks_t,
        variants=variants,
        bank=bank,
        stack=stack,
        criterion=criterion,
        target_index=target_index,
        fingerprints=fps,
        scene_bank=(
            build_variant_bank([v.rgba for v in variants], config.sign_size, device=device)
            if config.scenes_per_sign
            else None
        ),
        unit_px=units,
        bank_group=torch.from_numpy(group).to(device),
        face_rule=face_rule,
        appearance=None if conditions is None else conditions[0],
        noise=None if conditions is None else conditions[1],
        training_split=recorded,
    )


SPLIT_FILE = "split.json"
"""Run/search directory file that says which split was attacked (see :func:`split_document`)."""


def split_document(prep: Prepared) -> dict[str, object]:
    """What a run attacked relative to its model's training split, for ``split.json``.

    Keys: ``split`` (all, train, heldout), ``model``, ``model_split`` (``recorded`` or
    ``unknown``), ``training`` (the split's description, empty when unknown), ``signs``
    (signs of the source), ``signs_used``, and ``used_in_training`` (how many of the used
    signs are in the training split; None when unknown).
    """
    rec = prep.training_split
    used = subset(prep.signs, prep.sign_ids)
    return {
        "split": prep.config.split,
        "model": prep.config.model,
        "model_split": "unknown" if rec is None else "recorded",
        "training": "" if rec is None else rec.describe(),
        "signs_source": prep.config.signs,
        "signs": len(prep.signs),
        "signs_used": len(prep.sign_ids),
        "used_in_training": None if rec is None else int(in_training(used, rec).sum()),
    }


def build_plan(prep: Prepared, active: np.ndarray) -> Plan:
    """The trial space of a prepared run; inactive signs keep their trial ids but are skipped."""
    masks = prep.sign_masks.cpu().numpy()
    positions = []
    for m in masks:
        xy, index = sign_positions(prep.config.grid, m)
        positions.append(np.column_stack([xy, index.astype(np.float64)]))
    if prep.config.scenes_per_sign:
        return scene_plan(prep, active)
    return TrialPlan(
        n_variants=len(prep.variants),
        sizes=prep.config.grid.sizes,
        angles=prep.config.grid.angles,
        positions=tuple(positions),
        active=active,
    )


def scene_plan(prep: Prepared, active: np.ndarray) -> ScenePlan:
    """Random scenes of a run with ``scenes_per_sign > 0``: each sign's scenes are drawn by
    :func:`~leafattack.grid.sample_litter` from their own generator, seeded by the run's seed
    and the sign's index in the sign set, so a sign's scenes do not depend on which other
    signs are in the run. Sizes are uniform between the grid's smallest and largest size,
    angles over :func:`~leafattack.grid.angle_range`; centres uniform over the sign face."""
    cfg = prep.config
    g = cfg.grid
    masks = prep.sign_masks.cpu().numpy()
    scenes = tuple(
        sample_litter(
            cfg.scenes_per_sign,
            cfg.leaves_per_scene,
            len(prep.variants),
            (min(g.sizes), max(g.sizes)),
            angle_range(g.angles),
            masks[j],
            np.random.default_rng([cfg.seed, int(sid)]),
        )
        for j, sid in enumerate(prep.sign_ids)
    )
    return ScenePlan(scenes=scenes, per_sign=cfg.scenes_per_sign, active=active)


def check_fingerprints(prep: Prepared, data: Mapping[str, Any], where: Path, what: str) -> None:
    """Raise unless the model, signs and leaves ``prep`` loaded have the fingerprints that
    the directory's config.toml (``data``) recorded; ``what``: the command to rerun."""
    stored = data.get("fingerprints", {})
    stale = [k for k, v in prep.fingerprints.items() if stored.get(k) != v]
    if stale:
        raise LeafattackError(
            f"{where}: {', '.join(stale)} on disk no longer match the fingerprints in "
            f"config.toml; rerun the {what} with --overwrite"
        )


def open_run(run_dir: str | os.PathLike[str], *, device: str = "auto") -> tuple[Prepared, Plan]:
    """Re-create the prepared state and trial plan of an existing run directory.

    Checks that the leaves, signs and model on disk still match the fingerprints stored
    in ``config.toml``.
    """
    rd = Path(run_dir)
    cfg_path = rd / "config.toml"
    if not cfg_path.exists():
        raise LeafattackError(f"{rd}: not a run directory (expected config.toml, trials.csv)")
    data = load_config(cfg_path)
    config = config_from_mapping({**data, "device": device, "out": str(rd)})
    prep = prepare(config)
    check_fingerprints(prep, data, rd, "attack")
    clean_path = rd / "clean.csv"
    if not clean_path.exists():
        raise LeafattackError(f"{rd}: clean.csv is missing (the run never started)")
    clean = pd.read_csv(clean_path)
    missing = [c for c in ("correct", "true_label") if c not in clean.columns]
    if missing or len(clean) != len(prep.sign_ids):
        raise LeafattackError(
            f"{clean_path}: expected {len(prep.sign_ids)} rows with columns correct and "
            f"true_label (leafattack's clean.csv)"
        )
    return prep, build_plan(prep, attack_mask(clean, prep.target_index))


def split_json(prep: Prepared) -> bytes:
    """:func:`split_document` as the bytes of ``split.json`` (sorted keys, one per line)."""
    return (json.dumps(split_document(prep), indent=1, sort_keys=True) + "\n").encode()
