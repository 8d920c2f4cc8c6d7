"""Training and evaluation of sign classifiers.

Training draws fresh, seeded variants of the sign images every epoch
(:mod:`leafattack.data.variations`): perspective, lighting, blur, JPEG, noise and cluttered
backgrounds. Optionally a fraction of them get a random leaf pasted on as a defence
(``leaf_augment``), through the same batched compositor as the attack; or every one of them
gets the worst, by the current loss, of M random leaf scenes (``adversarial_leaves``,
occlusion training in the manner of DOA).

For a set with one image per class (the built-in signs) the validation set is a fixed
batch of variants drawn from an independent seed stream; for photo datasets it is a
stratified hold-out of the photos.

The checkpoint records its training split (:class:`~leafattack.data.splits.TrainingSplit`:
the source spec, the training images' files and content hashes): every image of a
rendered set, or the photos outside the validation hold-out. ``run``, ``search`` and
``evaluate`` select by it with ``--split heldout|train``.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from leafattack.data.canvas import square_canvas
from leafattack.data.signset import SignSet, fingerprint, subset
from leafattack.data.sources import load_signs
from leafattack.data.splits import (
    BUILTIN_VARIATIONS_NOTE,
    in_training,
    split_from_metadata,
    split_indices,
    training_split,
)
from leafattack.data.variations import VariationConfig, make_variants
from leafattack.errors import LeafattackError
from leafattack.models.architectures import build_model, default_input_size
from leafattack.models.classifier import Classifier, Preprocess, match_classes, resolve_device
from leafattack.models.loading import save_checkpoint

if TYPE_CHECKING:
    from leafattack.compose.bank import LeafBank

log = logging.getLogger(__name__)

VALIDATION_SEED_OFFSET = 1_000_003
EVALUATION_SEED_OFFSET = 2_000_003
"""Seed offsets of the validation and evaluation variant streams (never used in training)."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Configuration of ``leafattack train``.

    Attributes:
        signs: sign source spec.
        arch: architecture name (see :data:`leafattack.models.ARCHITECTURES`).
        epochs: passes; each draws ``variants`` fresh variants per training image.
        out: checkpoint path; ``OUT.history.csv`` is written beside it.
        seed: seed of every random choice (variants, split, initialisation, shuffling).
        device: ``cpu``, ``cuda`` or ``auto``.
        variants: variants per training image and epoch (0 = auto: about 400 per class).
        val_fraction: share of photos held out (photo datasets), or validation variants
            relative to one epoch (single-image-per-class sets).
        leaf_augment: probability that a training variant gets a random leaf pasted on.
        augment_leaves: the leaf library the leaves of ``leaf_augment`` and
            ``adversarial_leaves`` come from (``builtin`` or a leaf folder; every leaf of it,
            as shipped).
        adversarial_leaves: M > 0 gives every training variant the worst, by the model's
            current loss, of M random one-leaf scenes (0 = off; excludes ``leaf_augment``).
        input_size: model input side (None = the architecture's default).
    """

    signs: str = "builtin"
    arch: str = "lisacnn"
    epochs: int = 30
    out: str = "model.pt"
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    variants: int = 0
    val_fraction: float = 0.15
    leaf_augment: float = 0.0
    augment_leaves: str = "builtin"
    input_size: int | None = None
    quiet: bool = False
    adversarial_leaves: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise LeafattackError(f"epochs={self.epochs}: expected at least 1")
        if self.batch_size < 2:
            raise LeafattackError(f"batch_size={self.batch_size}: expected at least 2")
        if not 0.0 < self.val_fraction < 0.9:
            raise LeafattackError(f"val_fraction={self.val_fraction}: expected in (0, 0.9)")
        if not 0.0 <= self.leaf_augment <= 1.0:
            raise LeafattackError(
                f"leaf_augment={self.leaf_augment}: expected a probability in [0, 1]"
            )
        if isinstance(self.adversarial_leaves, bool) or not 0 <= self.adversarial_leaves <= 64:
            raise LeafattackError(
                f"adversarial_leaves={self.adversarial_leaves}: expected 0 (off) to 64 "
                f"leaf scenes per training image"
            )
        if self.adversarial_leaves and self.leaf_augment:
            raise LeafattackError(
                "leaf_augment and adversarial_leaves: expected one of them, not both"
            )
        if self.variants < 0:
            raise LeafattackError(f"variants={self.variants}: expected >= 0 (0 = auto)")
        if not self.lr > 0:
            raise LeafattackError(f"lr={self.lr}: expected a positive learning rate")


@dataclass(frozen=True, slots=True)
class TrainResult:
    """Outcome of training: the checkpoint and its history."""

    checkpoint: Path
    history: pd.DataFrame
    val_accuracy: float
    seconds: float


def variation_config(input_size: int, photos: bool) -> VariationConfig:
    """Variations for training: rendered signs get the full range, photos a milder one."""
    base = VariationConfig(out_size=2 * input_size)
    if photos:
        return dataclasses.replace(base, scale=(0.85, 1.05), max_shift=0.06, background_prob=0.0)
    return base


def _split(labels: np.ndarray, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Stratified split of indices into (train, val); each class keeps >= 1 training item."""
    train: list[int] = []
    val: list[int] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * frac)) if len(idx) > 1 else 0
        k = min(k, len(idx) - 1)
        val.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """uint8 (H, W, 3) → uint8 (side, side, 3): padded to a square as runs do
    (:func:`~leafattack.data.canvas.square_canvas`), area interpolation when shrinking."""
    return square_canvas(image, None, side)[0]


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → uint8 (N, 3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


LeafPaster = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

TRAINING_LEAF_SIZES: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5)
"""Leaf sizes (longest side / image width) of the training defences."""


@dataclass(frozen=True, slots=True)
class _LeafScenes:
    """A leaf library's leaves at :data:`TRAINING_LEAF_SIZES`, pre-scaled for one image width,
    with the draw of random one-leaf scenes and their batched rendering."""

    bank: LeafBank
    n_entries: int

    def draw(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(entry, u)``: int64 (n,) bank entries and float32 (n, 3) uniforms (x, y, angle),
        drawn on the CPU from ``gen``."""
        entry = torch.randint(0, self.n_entries, (n,), generator=gen)
        u = torch.rand(n, 3, generator=gen)
        return entry, u

    def render(self, images: torch.Tensor, entry: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """float32 (n, 3, H, W) in [0, 1]: one leaf on each image (uint8 or float32 [0, 1]),
        centred at 0.2..0.8 of the width and height, at any angle."""
        from leafattack.compose.functional import composite

        dev = images.device
        n, _, h, w = images.shape
        out, _, _ = composite(
            images,
            torch.ones(n, h, w, dtype=torch.bool, device=dev),
            self.bank,
            entry.to(dev),
            (0.2 + 0.6 * u[:, 0]).to(dev),
            (0.2 + 0.6 * u[:, 1]).to(dev),
            (360.0 * u[:, 2]).to(dev),
        )
        return out


def _leaf_scenes(width: int, device: torch.device, leaves_dir: str = "builtin") -> _LeafScenes:
    from leafattack.compose.bank import build_leaf_bank
    from leafattack.leaves.library import builtin_leaves_dir, load_leaves

    leaves = load_leaves(builtin_leaves_dir() if leaves_dir == "builtin" else Path(leaves_dir))
    bank = build_leaf_bank([lf.rgba for lf in leaves], TRAINING_LEAF_SIZES, width, device)
    return _LeafScenes(bank, len(leaves) * len(TRAINING_LEAF_SIZES))


def leaf_paster(
    prob: float, width: int, device: torch.device, leaves_dir: str = "builtin"
) -> LeafPaster:
    """A batched random-leaf occluder for defensive training.

    Args:
        leaves_dir: the leaf library (``builtin`` or a leaf folder); every leaf is used.
    """
    scenes = _leaf_scenes(width, device, leaves_dir)

    def paste(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n = batch.shape[0]
        u = torch.rand(n, 4, generator=gen)
        pick = u[:, 0] < prob
        if not bool(pick.any()):
            return batch
        idx = torch.nonzero(pick).flatten()
        entry = torch.randint(0, scenes.n_entries, (len(idx),), generator=gen)
        out = scenes.render(batch[idx], entry, u[idx, 1:])
        res = batch.float().div(255.0) if batch.dtype == torch.uint8 else batch.clone()
        res[idx] = out
        return res

    return paste


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(images float32 (n, 3, H, W) in [0, 1], labels int64 (n,)) -> float (n,) losses``."""

AdversarialPaster = Callable[[torch.Tensor, torch.Tensor, LossFn, torch.Generator], torch.Tensor]


def adversarial_paster(
    m: int, width: int, device: torch.device, leaves_dir: str = "builtin"
) -> AdversarialPaster:
    """A batched worst-of-M leaf occluder for adversarial occlusion training.

    The returned ``paste(batch, labels, loss, gen)`` draws M random one-leaf scenes per
    image (the scenes of :func:`leaf_paster`: a built-in leaf at 0.2..0.5 of the width,
    centred at 0.2..0.8, any angle), renders all B x M composites in one batch, scores them
    with ``loss`` in one call under ``torch.no_grad`` and keeps, per image, the scene of the
    highest loss (the first on ties).

    Shape:
        batch: uint8 (B, 3, H, W) or float32 in [0, 1]; labels: int64 (B,).
        Returns float32 (B, 3, H, W) in [0, 1].

    Example:
        >>> paste = adversarial_paster(4, 64, torch.device("cpu"))
        >>> out = paste(batch, labels, per_sample_loss, torch.Generator().manual_seed(0))
    """
    if m < 1:
        raise LeafattackError(f"adversarial_leaves={m}: expected at least 1 scene per image")
    scenes = _leaf_scenes(width, device, leaves_dir)

    def paste(
        batch: torch.Tensor, labels: torch.Tensor, loss: LossFn, gen: torch.Generator
    ) -> torch.Tensor:
        b = batch.shape[0]
        entry, u = scenes.draw(b * m, gen)
        with torch.no_grad():
            cand = scenes.render(batch.repeat_interleave(m, dim=0), entry, u)
            scores = loss(cand, labels.repeat_interleave(m, dim=0)).reshape(b, m)
            worst = scores.argmax(dim=1)
            rows = torch.arange(b, device=cand.device) * m + worst.to(cand.device)
            return cand[rows]

    return paste


def _accuracy(
    clf: Classifier, images: torch.Tensor, labels: torch.Tensor, bs: int
) -> tuple[float, float]:
    losses, correct = 0.0, 0
    for i in range(0, len(images), bs):
        logits = clf.logits(images[i : i + bs])
        y = labels[i : i + bs].to(logits.device)
        losses += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    n = max(len(images), 1)
    return losses / n, correct / n


def train(config: TrainConfig) -> TrainResult:
    """Train a classifier on a sign source and write a checkpoint plus ``.history.csv``."""
    t_start = time.perf_counter()
    device = resolve_device(config.device)
    build_model(config.arch, 2)  # validates the architecture name before any work
    signs = load_signs(config.signs)
    if len(signs) == 0:
        raise LeafattackError(f"sign source {config.signs!r} holds no signs")
    used = sorted(set(np.asarray(signs.labels).tolist()))
    class_names = [signs.class_names[i] for i in used]
    remap = np.full(len(signs.class_names), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    labels = remap[np.asarray(signs.labels)]
    if len(class_names) < 2:
        raise LeafattackError(
            f"sign source {config.signs!r} has {len(class_names)} class; expected at least 2"
        )
    input_size = config.input_size or default_input_size(config.arch)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    val_rng = np.random.default_rng(config.seed + VALIDATION_SEED_OFFSET)
    photos = len(signs) > len(class_names)
    vcfg = variation_config(input_size, photos)
    masks = [signs.mask(i) for i in range(len(signs))]
    if photos:
        tr_idx, va_idx = _split(labels, config.val_fraction, rng)
        train_set = subset(signs, tr_idx.tolist())
        tr_labels = labels[tr_idx]
        tr_masks = [masks[i] for i in tr_idx]
        val_imgs_np, _ = make_variants(
            [signs.images[i] for i in va_idx],
            [masks[i] for i in va_idx],
            labels[va_idx],
            1,
            val_rng,
            dataclasses.replace(
                vcfg, scale=(0.95, 1.0), max_shift=0.0, max_rotation=0.0, perspective=0.0
            ),
        )
        val_labels_np = labels[va_idx]
        per_image = config.variants or max(1, int(np.ceil(400 / max(1, len(tr_idx) / len(used)))))
        split = training_split(
            signs, tr_idx.tolist(), note="mild variations of the training photos"
        )
    else:
        train_set = signs
        tr_labels = labels
        tr_masks = masks
        split = training_split(
            signs,
            range(len(signs)),
            note=BUILTIN_VARIATIONS_NOTE
            if config.signs == "builtin"
            else "variations of every image of the source",
        )
        per_image = config.variants or 400
        n_val = max(1, int(round(per_image * config.val_fraction)))
        val_imgs_np, val_labels_np = make_variants(
            list(signs.images), masks, labels, n_val, val_rng, vcfg
        )
    module = build_model(config.arch, len(class_names)).to(device)
    # Training keeps NCHW (channels_last=False): checkpoints stay byte-identical to those of
    # earlier versions for the same command; the saved model is run channels-last later.
    clf = Classifier(
        module, class_names, Preprocess(input_size=input_size), arch=config.arch,
        channels_last=False,
    )
    opt = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = int(np.ceil(len(train_set) * per_image / config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    gen = torch.Generator().manual_seed(config.seed)
    paster = (
        leaf_paster(config.leaf_augment, 2 * input_size, device, config.augment_leaves)
        if config.leaf_augment
        else None
    )
    adversary = (
        adversarial_paster(
            config.adversarial_leaves, 2 * input_size, device, config.augment_leaves
        )
        if config.adversarial_leaves
        else None
    )

    def current_loss(images: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Eval mode: the choice neither updates batch-norm statistics nor draws dropout.
        module.eval()
        try:
            return F.cross_entropy(module(clf.prepare(images)), y, reduction="none")
        finally:
            module.train()

    val_x, val_y = _to_tensor(val_imgs_np), torch.from_numpy(val_labels_np)
    history = []
    out = Path(config.out)
    with tqdm(
        total=config.epochs * steps_per_epoch,
        disable=config.quiet,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    ) as bar:
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            x_np, y_np = make_variants(
                list(train_set.images), tr_masks, tr_labels, per_image, rng, vcfg
            )
            x_all, y_all = _to_tensor(x_np), torch.from_numpy(y_np)
            order = torch.randperm(len(x_all), generator=gen)
            module.train()
            tot_loss, tot_correct, seen = 0.0, 0, 0
            for s in range(steps_per_epoch):
                idx = order[s * config.batch_size : (s + 1) * config.batch_size]
                if len(idx) < 2:
                    continue
                xb = x_all[idx].to(device)
                yb = y_all[idx].to(device)
                if paster is not None:
                    xb = paster(xb, gen)
                if adversary is not None:
                    xb = adversary(xb, yb, current_loss, gen)
                logits = module(clf.prepare(xb))
                loss = F.cross_entropy(logits, yb, label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot_loss += float(loss.detach()) * len(idx)
                tot_correct += int((logits.argmax(1) == yb).sum())
                seen += len(idx)
                bar.update(1)
                bar.set_postfix(
                    epoch=epoch, loss=f"{tot_loss / seen:.3f}", acc=f"{tot_correct / seen:.3f}"
                )
            val_loss, val_acc = _accuracy(clf, val_x, val_y, 512)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": tot_loss / max(seen, 1),
                    "train_accuracy": tot_correct / max(seen, 1),
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                    "seconds": time.perf_counter() - t0,
                }
            )
            bar.set_postfix(
                epoch=epoch, loss=f"{tot_loss / max(seen, 1):.3f}", val_acc=f"{val_acc:.3f}"
            )
    hist = pd.DataFrame(history)
    val_acc = float(hist["val_accuracy"].iloc[-1])
    save_checkpoint(
        out,
        clf,
        seed=config.seed,
        data_fingerprint=fingerprint(signs),
        val_accuracy=val_acc,
        extra={
            "signs": config.signs,
            "epochs": config.epochs,
            "variants": per_image,
            "leaf_augment": config.leaf_augment,
            # only with augmentation, so checkpoints without it keep their bytes
            **(
                {"augment_leaves": config.augment_leaves}
                if config.leaf_augment or config.adversarial_leaves
                else {}
            ),
            **(
                {"adversarial_leaves": config.adversarial_leaves}
                if config.adversarial_leaves
                else {}
            ),
        },
        split=split.to_json(),
    )
    hist_path = out.with_name(out.name + ".history.csv")
    # Wall-clock seconds stay out of the file: same config + seed => byte-identical CSV.
    hist.drop(columns=["seconds"]).to_csv(
        hist_path, index=False, float_format="%.6g", quoting=csv.QUOTE_MINIMAL
    )
    return TrainResult(out, hist, val_acc, time.perf_counter() - t_start)


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Accuracy of a model on a sign set, classes matched by name."""

    accuracy: float
    per_class: pd.DataFrame  # class, n, correct, accuracy
    confusion: pd.DataFrame  # rows: true class names, columns: predicted class names
    n: int
    images: int = 0  # source images scored (each through ``variants`` variants when > 0)
    trained: int | None = None  # of those, in the model's training split (None: unknown)
    split: str = "all"  # which signs were scored (see leafattack.data.splits.SPLITS)


def evaluate(
    clf: Classifier,
    signs: SignSet,
    *,
    variants: int = 0,
    seed: int = 0,
    batch_size: int = 512,
    split: str = "all",
) -> EvalResult:
    """Score a model on a sign set, matching labels to the model's classes by name.

    Args:
        variants: when > 0, score that many freshly generated variants per image (drawn with a
            seed stream that training never uses) instead of the images themselves.
        split: ``all``, or ``train`` / ``heldout`` to score only the images inside / outside
            the training split the checkpoint records (see :mod:`leafattack.data.splits`).

    Returns:
        EvalResult; its ``trained`` counts the scored images that are in the model's
        training split (None when the model records none).

    Raises:
        LeafattackError: ``train``/``heldout`` against a model without a recorded split,
            a split that selects no image, or classes the model does not know.
    """
    where = str(clf.metadata.get("path", "the model"))
    recorded = split_from_metadata(clf.metadata, where)
    if split != "all":
        signs = subset(signs, split_indices(signs, recorded, split, where))
    trained = None if recorded is None else int(in_training(signs, recorded).sum())
    labels_sign = np.asarray(signs.labels)
    mapping = np.asarray(
        match_classes(signs.class_names, clf.class_names, used_labels=labels_sign.tolist())
    )
    labels = mapping[labels_sign]
    if variants > 0:
        rng = np.random.default_rng(seed + EVALUATION_SEED_OFFSET)
        masks = [signs.mask(i) for i in range(len(signs))]
        vcfg = variation_config(clf.preprocess.input_size, photos=False)
        x_np, labels = make_variants(list(signs.images), masks, labels, variants, rng, vcfg)
    else:
        # Photos differ in size: bring them to the training resolution first.
        side = 2 * clf.preprocess.input_size
        x_np = (
            np.stack([resize_square(img, side) for img in signs.images])
            if len(signs)
            else (np.zeros((0, side, side, 3), np.uint8))
        )
    preds = [
        clf.predict_proba(_to_tensor(x_np[i : i + batch_size])).argmax(1).cpu()
        for i in range(0, len(x_np), batch_size)
    ]
    pred = torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)
    names = np.array(clf.class_names, dtype=object)
    correct = pred == labels
    rows = []
    for c in np.unique(labels):
        sel = labels == c
        rows.append(
            {
                "class": names[c],
                "n": int(sel.sum()),
                "correct": int(correct[sel].sum()),
                "accuracy": float(correct[sel].mean()),
            }
        )
    per_class = pd.DataFrame(rows, columns=["class", "n", "correct", "accuracy"])
    conf = pd.crosstab(
        pd.Categorical(names[labels], categories=list(clf.class_names)),
        pd.Categorical(names[pred], categories=list(clf.class_names)),
        rownames=["true"],
        colnames=["predicted"],
        dropna=False,
    )
    return EvalResult(
        float(correct.mean()) if len(correct) else float("nan"),
        per_class,
        conf,
        len(labels),
        images=len(signs),
        trained=trained,
        split=split,
    )
