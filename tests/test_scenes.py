"""Scenes (one sign, K leaves) against a slow per-scene OpenCV reference written here.

The reference shares no code with :mod:`leafattack.compose`: per leaf, it premultiplies the
RGBA leaf, resizes it with ``cv2.resize`` to the exact scale ``size * W / longest`` (area
interpolation when shrinking, bilinear when enlarging; the scale is passed as ``fx``, ``fy``
so the size is not rounded to whole pixels), rotates it about its centre with
``cv2.warpAffine`` while moving that centre to ``(x W, y H)``, and blends it "over" the
image so far, one leaf after another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import cv2
import numpy as np
import pytest
import torch

from leafattack.compose.bank import build_leaf_bank
from leafattack.compose.functional import composite
from leafattack.compose.scenes import (
    SceneBatch,
    VariantBank,
    build_variant_bank,
    render_scenes,
)
from leafattack.data.builtin import render_sign
from leafattack.leaves import builtin_leaves_dir, load_leaves

SIGN_NAMES = ("stop", "yield", "speedLimit30", "pedestrianCrossing")
SIDE = 128
CONTINUOUS_SIZES = (0.137, 0.61, 1.3, 0.29, 0.83, 0.05, 1.95)
"""Sizes that are no level of the bank (levels: 2 * 2**(-j/2) for j = 0, 1, ...)."""

Slot = tuple[int, float, float, float, float]
"""(variant, size, angle, x, y) of one present leaf."""


# --- the independent reference -----------------------------------------------------------


def reference_scene(
    sign: np.ndarray, mask: np.ndarray, leaves: list[np.ndarray], slots: list[Slot]
) -> tuple[np.ndarray, float]:
    """One scene with OpenCV only: float32 (H, W, 3) in [0, 1] and the union coverage."""
    h, w = sign.shape[:2]
    out = sign.astype(np.float32) / 255.0
    clear = np.ones((h, w), np.float32)
    for variant, size, angle, x, y in slots:
        leaf = leaves[variant]
        lh, lw = leaf.shape[:2]
        scale = size * w / max(lh, lw)
        rgba = leaf.astype(np.float32) / 255.0
        rgba[..., :3] *= rgba[..., 3:4]
        if scale < 1:  # area: keep the left/top edge at 0, pad so the last partial pixel stays
            before, after, interp = 0, int(math.ceil(1 / scale)) + 1, cv2.INTER_AREA
        else:  # bilinear: a transparent frame instead of replicated edge pixels
            before, after, interp = 1, 1, cv2.INTER_LINEAR
        rgba = np.pad(rgba, ((before, after), (before, after), (0, 0)))
        small = cv2.resize(rgba, (0, 0), fx=scale, fy=scale, interpolation=interp)
        t = math.radians(angle)
        c, s = math.cos(t), math.sin(t)
        rot = np.array([[c, s], [-s, c]])  # counter-clockwise on screen, y pointing down
        src_c = np.array([(before + lw / 2) * scale - 0.5, (before + lh / 2) * scale - 0.5])
        dst_c = np.array([x * w - 0.5, y * h - 0.5])  # pixel-centre coordinates
        m = np.hstack([rot, (dst_c - rot @ src_c)[:, None]])
        layer = cv2.warpAffine(
            small, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        alpha = layer[..., 3]
        out = out * (1.0 - alpha[..., None]) + layer[..., :3]
        clear *= 1.0 - alpha
    occluded = float(((1.0 - clear) * mask).sum() / max(int(mask.sum()), 1))
    return np.clip(out, 0.0, 1.0), occluded


# --- fixtures and helpers -----------------------------------------------------------------


class Signs(NamedTuple):
    rgb: list[np.ndarray]  # uint8 (H, W, 3)
    mask: list[np.ndarray]  # bool (H, W)
    images: torch.Tensor  # uint8 (S, 3, H, W)
    masks: torch.Tensor  # bool (S, H, W)


@pytest.fixture(scope="module")
def leaves() -> list[np.ndarray]:
    return [leaf.rgba for leaf in load_leaves(builtin_leaves_dir())]


@pytest.fixture(scope="module")
def bank(leaves: list[np.ndarray]) -> VariantBank:
    return build_variant_bank(leaves, SIDE)


@pytest.fixture(scope="module")
def signs() -> Signs:
    renders = [render_sign(name, SIDE) for name in SIGN_NAMES]
    rgb = [r for r, _ in renders]
    mask = [m for _, m in renders]
    return Signs(
        rgb,
        mask,
        torch.from_numpy(np.stack([r.transpose(2, 0, 1) for r in rgb])),
        torch.from_numpy(np.stack(mask)),
    )


def make_batch(sign: list[int], slots: Sequence[Sequence[Slot | None]]) -> SceneBatch:
    """A SceneBatch from per-scene slot lists; ``None`` is an absent slot (filled with junk)."""
    k = max(len(s) for s in slots)
    rows = [[s[i] if i < len(s) else None for i in range(k)] for s in slots]
    junk: Slot = (0, 0.7, 11.0, 0.5, 0.5)

    def field(i: int, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor([[(v if v is not None else junk)[i] for v in r] for r in rows],
                            dtype=dtype)

    return SceneBatch(
        sign=torch.tensor(sign, dtype=torch.int64),
        variant=field(0, torch.int64),
        size=field(1, torch.float32),
        angle=field(2, torch.float32),
        x=field(3, torch.float32),
        y=field(4, torch.float32),
        present=torch.tensor([[v is not None for v in r] for r in rows], dtype=torch.bool),
    )


def random_slots(rng: np.random.Generator, n_variants: int, k: int) -> list[Slot]:
    """K leaves with continuous sizes, anywhere from a quarter outside to a quarter beyond."""
    return [
        (
            int(rng.integers(n_variants)),
            float(rng.choice(CONTINUOUS_SIZES)),
            float(rng.uniform(0.0, 360.0)),
            float(rng.uniform(-0.25, 1.25)),
            float(rng.uniform(-0.25, 1.25)),
        )
        for _ in range(k)
    ]


def hwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()


# --- agreement with the reference ----------------------------------------------------------

# Stated tolerances, per channel value in [0, 1] (measured worst case over K = 1..4 in
# brackets). The renderer draws a size between two levels from the larger level, bilinearly
# reduced; the reference area-resizes to the exact size and then warps bilinearly. The two
# resamplings differ only on the leaf's anti-aliased rim and its fine texture: mean abs
# error per image < 0.008 [0.0054], its 99th percentile < 0.06 [0.042], mean over a batch
# < 0.004 [0.0026]; union coverage within 5e-4 [2e-4].
MAE_PER_IMAGE = 0.008
P99_PER_IMAGE = 0.06
MAE_BATCH = 0.004
OCC_ABS = 5e-4


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_matches_opencv_reference(
    k: int, leaves: list[np.ndarray], bank: VariantBank, signs: Signs
) -> None:
    rng = np.random.default_rng(100 + k)
    n = 16
    sign = [int(s) for s in rng.integers(0, len(SIGN_NAMES), n)]
    scenes = [random_slots(rng, len(leaves), k) for _ in range(n)]
    # One leaf per scene is the edge case: a big leaf hanging off a corner.
    scenes[0][0] = (3, 1.3, 40.0, -0.1, 1.05)
    scenes[1][-1] = (7, 0.61, 300.0, 1.1, 0.3)
    images, occluded = render_scenes(signs.images, signs.masks, bank, make_batch(sign, scenes))
    got = hwc(images)
    maes = []
    for i in range(n):
        ref, ref_occ = reference_scene(signs.rgb[sign[i]], signs.mask[sign[i]], leaves, scenes[i])
        diff = np.abs(got[i] - ref)
        maes.append(diff.mean())
        assert diff.mean() < MAE_PER_IMAGE, (i, scenes[i])
        assert np.quantile(diff, 0.99) < P99_PER_IMAGE, (i, scenes[i])
        assert float(occluded[i]) == pytest.approx(ref_occ, abs=OCC_ABS)
    assert np.mean(maes) < MAE_BATCH


@pytest.mark.parametrize("size", [0.25, 0.5, 1.0], ids=["0.25", "0.5", "1.0"])
def test_a_size_on_a_level_is_the_reference(
    size: float, leaves: list[np.ndarray], bank: VariantBank, signs: Signs
) -> None:
    """Where no residual scaling is left, the warp is the reference's warp: near-identical."""
    scenes: list[list[Slot]] = [[(v, size, 37.0 * v, 0.3 + 0.03 * v, 0.6)] for v in (0, 5, 11)]
    images, occ = render_scenes(signs.images, signs.masks, bank, make_batch([0, 1, 2], scenes))
    for i, slots in enumerate(scenes):
        ref, ref_occ = reference_scene(signs.rgb[i], signs.mask[i], leaves, slots)
        # Max abs error < 1e-3 [1.5e-4]: cv2.warpAffine's fixed-point 1/32-pixel weights.
        assert np.abs(hwc(images)[i] - ref).max() < 1e-3
        assert float(occ[i]) == pytest.approx(ref_occ, abs=1e-5)


def test_single_leaf_at_a_banked_size_matches_composite(
    leaves: list[np.ndarray], bank: VariantBank, signs: Signs
) -> None:
    """K = 1 at a leaf-bank size agrees with the fixed-size compositor.

    composite() rounds each leaf side to whole pixels (a 233-pixel-wide leaf at 64 pixels
    long becomes 62 wide, not 61.6), so the two differ by up to half a pixel at the rim:
    mean abs error < 5e-4 [1.6e-4], 99th percentile < 0.01 [0.004], coverage 1.5e-3 [8e-4].
    """
    sizes = [0.25, 0.5]
    rng = np.random.default_rng(7)
    n = 24
    variant = torch.from_numpy(rng.integers(0, len(leaves), n))
    size_idx = torch.from_numpy(rng.integers(0, len(sizes), n))
    x = torch.from_numpy(rng.uniform(-0.1, 1.1, n)).float()
    y = torch.from_numpy(rng.uniform(-0.1, 1.1, n)).float()
    angle = torch.from_numpy(rng.uniform(0.0, 360.0, n)).float()
    sign = torch.from_numpy(rng.integers(0, len(SIGN_NAMES), n))
    leaf_bank = build_leaf_bank(leaves, sizes, SIDE)
    want, want_occ, _ = composite(
        signs.images[sign], signs.masks[sign], leaf_bank, variant * len(sizes) + size_idx,
        x, y, angle,
    )
    batch = SceneBatch(
        sign, variant[:, None], torch.tensor(sizes)[size_idx][:, None], angle[:, None],
        x[:, None], y[:, None], torch.ones((n, 1), dtype=torch.bool),
    )
    got, occ = render_scenes(signs.images, signs.masks, bank, batch)
    diff = (got - want).abs()
    assert float(diff.mean()) < 5e-4
    assert float(torch.quantile(diff.flatten(), 0.99)) < 0.01
    torch.testing.assert_close(occ, want_occ, atol=1.5e-3, rtol=0)


@pytest.mark.parametrize("pixels", [0.5, 1.3, 3.8, 17.5, 78.0, 166.0, 250.0])
def test_alpha_mass_scales_with_size_squared(
    pixels: float, leaves: list[np.ndarray], bank: VariantBank
) -> None:
    """Continuous sizes: a leaf's total alpha on the sign is its alpha area times scale²,
    down to sub-pixel leaves (averaged over placements, since a sub-pixel speck's mass
    depends on where it falls between pixel centres). On a 384-pixel frame, so that no
    leaf reaches the edge, with the bank built for 128-pixel signs."""
    side = 384
    leaf = leaves[4]
    scale = pixels / max(leaf.shape[:2])
    expect = leaf[..., 3].astype(np.float64).sum() / 255.0 * scale**2
    n = 32
    rng = np.random.default_rng(1)
    batch = SceneBatch(
        torch.zeros(n, dtype=torch.int64), torch.full((n, 1), 4),
        torch.full((n, 1), pixels / side),
        torch.from_numpy(rng.uniform(0, 360, (n, 1))).float(),
        torch.from_numpy(rng.uniform(0.45, 0.55, (n, 1))).float(),
        torch.from_numpy(rng.uniform(0.45, 0.55, (n, 1))).float(),
        torch.ones((n, 1), dtype=torch.bool),
    )
    black = torch.zeros((1, 3, side, side), dtype=torch.uint8)
    everywhere = torch.ones((1, side, side), dtype=torch.bool)
    _, occ = render_scenes(black, everywhere, bank, batch)
    mass = occ.double() * side * side
    assert float(mass.mean()) == pytest.approx(expect, rel=0.02 if pixels >= 3 else 0.1)


# --- properties of stacking ----------------------------------------------------------------


def test_absent_slots_change_nothing(bank: VariantBank, signs: Signs) -> None:
    a: Slot = (2, 0.61, 30.0, 0.4, 0.45)
    b: Slot = (9, 0.29, 200.0, 0.55, 0.5)
    with_gaps = make_batch([1, 1, 2], [[a, None, b], [None, a, b], [None, None, None]])
    dense = make_batch([1, 1], [[a, b], [a, b]])
    images, occ = render_scenes(signs.images, signs.masks, bank, with_gaps)
    want, want_occ = render_scenes(signs.images, signs.masks, bank, dense)
    assert torch.equal(images[:2], want) and torch.equal(occ[:2], want_occ)
    # A scene without leaves is its clean sign, with nothing covered.
    assert torch.equal(images[2], signs.images[2].float() / 255.0)
    assert float(occ[2]) == 0.0


def test_slot_order_matters_only_where_leaves_overlap(bank: VariantBank, signs: Signs) -> None:
    a: Slot = (0, 0.5, 10.0, 0.45, 0.5)  # red-ish maple and a yellow oak, overlapping
    b: Slot = (4, 0.5, 80.0, 0.55, 0.5)
    far_a: Slot = (0, 0.3, 10.0, 0.2, 0.2)
    far_b: Slot = (4, 0.3, 80.0, 0.8, 0.8)
    batch = make_batch([0, 0, 0, 0], [[a, b], [b, a], [far_a, far_b], [far_b, far_a]])
    images, occ = render_scenes(signs.images, signs.masks, bank, batch)
    changed = (images[0] - images[1]).abs().amax(dim=0) > 0.05
    assert int(changed.sum()) > 100
    # ... and only where both leaves lie.
    alone_a, _ = render_scenes(signs.images, signs.masks, bank, make_batch([0], [[a]]))
    alone_b, _ = render_scenes(signs.images, signs.masks, bank, make_batch([0], [[b]]))
    clean = signs.images[0].float() / 255.0
    on_a = (alone_a[0] - clean).abs().amax(dim=0) > 0
    on_b = (alone_b[0] - clean).abs().amax(dim=0) > 0
    assert not bool((changed & ~(on_a & on_b)).any())
    torch.testing.assert_close(occ[0], occ[1])  # the union does not depend on the order
    assert torch.equal(images[2], images[3]) and torch.equal(occ[2], occ[3])


def test_union_coverage_between_max_and_sum(
    leaves: list[np.ndarray], bank: VariantBank, signs: Signs
) -> None:
    rng = np.random.default_rng(3)
    n, k = 12, 3
    scenes = [random_slots(rng, len(leaves), k) for _ in range(n)]
    sign = [int(s) for s in rng.integers(0, len(SIGN_NAMES), n)]
    _, union = render_scenes(signs.images, signs.masks, bank, make_batch(sign, scenes))
    singles = torch.stack(
        [
            render_scenes(
                signs.images, signs.masks, bank, make_batch(sign, [[s[j]] for s in scenes])
            )[1]
            for j in range(k)
        ],
        dim=1,
    )  # (N, K)
    assert bool((union <= singles.sum(dim=1) + 1e-6).all())
    assert bool((union >= singles.max(dim=1).values - 1e-6).all())
    assert bool((union < singles.sum(dim=1) - 1e-4).any())  # some leaves do overlap


def test_deterministic_and_independent_of_batch_order(
    leaves: list[np.ndarray], bank: VariantBank, signs: Signs
) -> None:
    rng = np.random.default_rng(4)
    n = 10
    batch = make_batch(
        [int(s) for s in rng.integers(0, len(SIGN_NAMES), n)],
        [random_slots(rng, len(leaves), 2) for _ in range(n)],
    )
    first = render_scenes(signs.images, signs.masks, bank, batch)
    again = render_scenes(signs.images, signs.masks, bank, batch)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    perm = torch.from_numpy(rng.permutation(n))
    shuffled = SceneBatch(
        batch.sign[perm], batch.variant[perm], batch.size[perm], batch.angle[perm],
        batch.x[perm], batch.y[perm], batch.present[perm],
    )
    images, occ = render_scenes(signs.images, signs.masks, bank, shuffled)
    torch.testing.assert_close(images, first[0][perm], atol=1e-6, rtol=0)
    torch.testing.assert_close(occ, first[1][perm], atol=1e-6, rtol=0)


def test_float_signs_render_like_uint8(bank: VariantBank, signs: Signs) -> None:
    batch = make_batch([3, 0], [[(1, 0.4, 5.0, 0.5, 0.5)], [(2, 0.9, 95.0, 0.1, 0.9)]])
    as_uint8 = render_scenes(signs.images, signs.masks, bank, batch)
    as_float = render_scenes(signs.images.float() / 255.0, signs.masks, bank, batch)
    assert torch.equal(as_uint8[0], as_float[0]) and torch.equal(as_uint8[1], as_float[1])


# --- the types -----------------------------------------------------------------------------


def test_scene_batch_properties_and_to() -> None:
    batch = make_batch([0, 1], [[(0, 0.3, 0.0, 0.5, 0.5), None], [(1, 0.2, 5.0, 0.1, 0.2)]])
    assert (batch.n_scenes, batch.slots) == (2, 2)
    moved = batch.to("cpu")
    assert moved.device == torch.device("cpu")
    assert all(
        torch.equal(getattr(moved, f), getattr(batch, f))
        for f in ("sign", "variant", "size", "angle", "x", "y", "present")
    )


def test_variant_bank_levels(leaves: list[np.ndarray], bank: VariantBank) -> None:
    assert bank.n_variants == len(leaves)
    levels = bank.level_px
    assert bool((levels[:, 1:] <= levels[:, :-1]).all())
    assert float(levels[0, 0]) == max(leaves[0].shape[:2])  # level 0: full resolution
    assert float(levels[:, -1].max()) < 1.0  # down to a sub-pixel level
    # Sizes 2 * 2**(-j/2) of a 128-pixel sign are levels exactly.
    for px in (128.0, 64.0, 32.0, 90.50967):
        assert bool(((levels - px).abs() < 1e-3).any(dim=1).all())
    atlas = bank.atlas
    assert atlas.dtype == torch.float32 and float(atlas.min()) >= 0 and float(atlas.max()) <= 1
    # Premultiplied: colour never exceeds alpha.
    assert bool((atlas[:, :3] <= atlas[:, 3:4] + 1e-6).all())


def _fields(**change: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sign": torch.zeros(2, dtype=torch.int64),
        "variant": torch.zeros((2, 3), dtype=torch.int64),
        "size": torch.full((2, 3), 0.5),
        "angle": torch.zeros((2, 3)),
        "x": torch.full((2, 3), 0.5),
        "y": torch.full((2, 3), 0.5),
        "present": torch.ones((2, 3), dtype=torch.bool),
    }
    base.update(change)
    return base


class BadBatch(NamedTuple):
    change: Mapping[str, object]
    message: str


BAD_BATCHES = {
    "sign float": BadBatch({"sign": torch.zeros(2)}, "sign"),
    "sign 2-d": BadBatch({"sign": torch.zeros((2, 1), dtype=torch.int64)}, "sign"),
    "sign negative": BadBatch({"sign": torch.tensor([0, -1])}, "sign"),
    "variant int32": BadBatch({"variant": torch.zeros((2, 3), dtype=torch.int32)}, "variant"),
    "size float64": BadBatch({"size": torch.full((2, 3), 0.5, dtype=torch.float64)}, "size"),
    "x wrong N": BadBatch({"x": torch.full((3, 3), 0.5)}, "x"),
    "y wrong K": BadBatch({"y": torch.full((2, 2), 0.5)}, "y"),
    "present not bool": BadBatch({"present": torch.ones((2, 3))}, "present"),
    "size zero": BadBatch({"size": torch.tensor([[0.5, 0.0, 0.5], [0.5] * 3])}, "size"),
    "size too big": BadBatch({"size": torch.tensor([[0.5, 2.5, 0.5], [0.5] * 3])}, "size"),
    "angle nan": BadBatch({"angle": torch.tensor([[0.0, math.nan, 0.0], [0.0] * 3])}, "angle"),
    "x inf": BadBatch({"x": torch.tensor([[0.5, 0.5, math.inf], [0.5] * 3])}, "x"),
    "variant negative": BadBatch({"variant": torch.tensor([[0, -1, 0], [0, 0, 0]])}, "variant"),
    "no slots": BadBatch(
        {k: torch.zeros((2, 0), dtype=d) for k, d in (
            ("variant", torch.int64), ("size", torch.float32), ("angle", torch.float32),
            ("x", torch.float32), ("y", torch.float32), ("present", torch.bool))},
        "K=0",
    ),
    "17 slots": BadBatch(
        {k: torch.zeros((2, 17), dtype=d) for k, d in (
            ("variant", torch.int64), ("angle", torch.float32), ("x", torch.float32),
            ("y", torch.float32), ("present", torch.bool))} | {"size": torch.ones((2, 17))},
        "K=17",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES.values()), ids=list(BAD_BATCHES))
def test_bad_scene_batch_raises(case: BadBatch) -> None:
    with pytest.raises(ValueError, match=case.message):
        SceneBatch(**_fields(**case.change))  # type: ignore[arg-type]


def test_absent_slots_may_hold_out_of_range_sizes() -> None:
    size = torch.tensor([[0.5, 0.0, 9.0], [0.5, 0.5, 0.5]])
    present = torch.tensor([[True, False, False], [True, True, True]])
    SceneBatch(**_fields(size=size, present=present))  # type: ignore[arg-type]


def test_bad_render_inputs_raise(bank: VariantBank, signs: Signs) -> None:
    good = make_batch([0], [[(0, 0.5, 0.0, 0.5, 0.5)]])
    with pytest.raises(ValueError, match="sign has index 7"):
        render_scenes(signs.images, signs.masks, bank, make_batch([7], [[(0, 0.5, 0, 0.5, 0.5)]]))
    with pytest.raises(ValueError, match="variant has index 99"):
        render_scenes(signs.images, signs.masks, bank, make_batch([0], [[(99, 0.5, 0, 0.5, 0.5)]]))
    with pytest.raises(ValueError, match="masks"):
        render_scenes(signs.images, signs.masks[:, :64], bank, good)
    with pytest.raises(ValueError, match="signs"):
        render_scenes(signs.images[:, :1], signs.masks, bank, good)
    with pytest.raises(ValueError, match="levels_per_octave"):
        build_variant_bank([np.zeros((4, 4, 4), np.uint8)], SIDE, levels_per_octave=0)
    with pytest.raises(ValueError, match="leaf 0"):
        build_variant_bank([np.zeros((4, 4, 3), np.uint8)], SIDE)


@pytest.mark.parametrize("k", [1, 3])
def test_union_coverage_map_matches_the_reference(
    k: int, leaves: list[np.ndarray], bank: VariantBank, signs: Signs
) -> None:
    """The union map ``1 - prod(1 - alpha_k)`` that edge metrics use as the leaf region:
    white leaves composited over black by the OpenCV reference give exactly that union."""
    from leafattack.compose.scenes import render_scenes_covered

    rng = np.random.default_rng(7 + k)
    n = 6
    sign = [int(s) for s in rng.integers(0, len(SIGN_NAMES), n)]
    scenes = [random_slots(rng, len(leaves), k) for _ in range(n)]
    images, occluded, union = render_scenes_covered(
        signs.images, signs.masks, bank, make_batch(sign, scenes)
    )
    white = [np.concatenate([np.full_like(lf[..., :3], 255), lf[..., 3:]], axis=2) for lf in leaves]
    black = np.zeros((SIDE, SIDE, 3), np.uint8)
    for i in range(n):
        ref, _ = reference_scene(black, signs.mask[sign[i]], white, scenes[i])
        diff = np.abs(union[i].numpy() - ref[..., 0])
        # alpha edges carry the whole difference (no colour to average it down): measured
        # mean <= 0.003, 99th percentile <= 0.08
        assert diff.mean() < MAE_PER_IMAGE and np.quantile(diff, 0.99) < 0.1
        m = signs.mask[sign[i]]
        assert float(occluded[i]) == pytest.approx(float((union[i].numpy() * m).sum() / m.sum()))
