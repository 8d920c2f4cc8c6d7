"""The batched compositor against a slow per-trial OpenCV reference (the ``opencv_paste``
fixture of conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
import torch

from leafattack.compose.bank import Placement, build_leaf_bank
from leafattack.compose.functional import composite, paste_leaf


def make_leaf(h: int = 60, w: int = 36) -> np.ndarray:
    """An asymmetric test leaf: red ellipse with a green stripe on the right, soft edge."""
    leaf = np.zeros((h, w, 4), np.uint8)
    cv2.ellipse(leaf, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, (200, 40, 30, 255), -1,
                cv2.LINE_AA)
    leaf[:, w * 2 // 3 :, 1] = 180
    leaf[..., :3] = np.where(leaf[..., 3:4] > 0, leaf[..., :3], 0)
    return leaf


@pytest.mark.parametrize(
    "placement",
    [
        Placement(0.5, 0.5, 0.4, 0.0),
        Placement(0.3, 0.7, 0.3, 30.0),
        Placement(0.8, 0.2, 0.5, 90.0),
        Placement(0.5, 0.4, 0.25, 217.5),
        Placement(0.05, 0.95, 0.6, 300.0),  # partly outside the sign
    ],
    ids=["centre", "rot30", "rot90", "rot217", "corner"],
)
def test_batched_matches_reference(
    placement: Placement, opencv_paste: Callable[..., tuple[np.ndarray, float]]
) -> None:
    rng = np.random.default_rng(0)
    sign = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    sign = cv2.GaussianBlur(sign, (5, 5), 0)
    mask = np.zeros((96, 96), bool)
    mask[10:86, 10:86] = True
    leaf = make_leaf()
    got, occ = paste_leaf(sign, leaf, placement, mask)
    p = placement
    ref, ref_occ = opencv_paste(sign, mask, leaf, p.x, p.y, p.size, p.angle)
    diff = np.abs(got.astype(np.float32) / 255.0 - ref)
    # Stated tolerance: bilinear sampling conventions differ only at the anti-aliased rim.
    assert diff.mean() < 0.004
    assert np.quantile(diff, 0.999) < 0.12
    assert occ == pytest.approx(ref_occ, abs=0.004)


def test_rotation_is_counter_clockwise() -> None:
    """A leaf whose green stripe is on its right moves it to the top after +90 degrees."""
    sign = np.zeros((64, 64, 3), np.uint8)
    leaf = make_leaf(40, 40)
    img, _ = paste_leaf(sign, leaf, Placement(0.5, 0.5, 0.8, 90.0))
    green = img[..., 1].astype(float) > 120
    ys, _ = np.nonzero(green)
    assert ys.mean() < 32 - 5  # stripe now in the upper half


def test_centre_and_size_geometry() -> None:
    """A square opaque leaf of size 0.25 at (0.25, 0.75) covers exactly its 16x16 square."""
    sign = np.zeros((64, 64, 3), np.uint8)
    leaf = np.full((10, 10, 4), 255, np.uint8)
    img, occ = paste_leaf(sign, leaf, Placement(0.25, 0.75, 0.25, 0.0))
    covered = img[..., 0] > 127
    ys, xs = np.nonzero(covered)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (8, 24, 40, 56)
    assert occ == pytest.approx(256 / 4096, abs=1e-3)


def test_batch_equals_single_calls() -> None:
    rng = np.random.default_rng(1)
    signs = rng.integers(0, 256, (4, 3, 48, 48), dtype=np.uint8)
    masks = torch.ones(4, 48, 48, dtype=torch.bool)
    leaves = [make_leaf(30, 20), make_leaf(20, 30)]
    bank = build_leaf_bank(leaves, [0.3, 0.5], 48)
    entry = torch.tensor([0, 1, 2, 3])
    x = torch.tensor([0.2, 0.4, 0.6, 0.8])
    y = torch.tensor([0.5, 0.3, 0.7, 0.5])
    ang = torch.tensor([0.0, 45.0, 90.0, 135.0])
    out, occ, alpha = composite(torch.from_numpy(signs), masks, bank, entry, x, y, ang)
    assert out.shape == (4, 3, 48, 48) and occ.shape == (4,) and alpha.shape == (4, 48, 48)
    for i in range(4):
        o1, c1, _ = composite(torch.from_numpy(signs[i : i + 1]), masks[i : i + 1], bank,
                              entry[i : i + 1], x[i : i + 1], y[i : i + 1], ang[i : i + 1])
        torch.testing.assert_close(o1[0], out[i])
        torch.testing.assert_close(c1[0], occ[i])
    # Leaf 1 at size 0.5 is larger than leaf 0 at size 0.3: more coverage.
    assert alpha[3].sum() > alpha[0].sum()


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_pooled_fast_path_equals_full_composite(factor: int) -> None:
    """composite_pooled == avg_pool(composite), including leaves hanging off the image."""
    from leafattack.compose.bank import build_sign_stack
    from leafattack.compose.functional import composite_pooled

    rng = np.random.default_rng(3)
    n, size = 64, 64
    signs = torch.from_numpy(rng.integers(0, 256, (5, 3, size, size), dtype=np.uint8))
    masks = torch.from_numpy(rng.random((5, size, size)) > 0.3)
    bank = build_leaf_bank([make_leaf(40, 24), make_leaf(24, 40)], [0.2, 0.5, 0.9], size)
    sign = torch.from_numpy(rng.integers(0, 5, n))
    entry = torch.from_numpy(rng.integers(0, 6, n))
    x = torch.from_numpy(rng.uniform(-0.1, 1.1, n)).float()
    y = torch.from_numpy(rng.uniform(-0.1, 1.1, n)).float()
    ang = torch.from_numpy(rng.uniform(0, 360, n)).float()
    full, occ, _ = composite(signs[sign], masks[sign], bank, entry, x, y, ang)
    expect = torch.nn.functional.avg_pool2d(full, factor)
    stack = build_sign_stack(signs, masks, factor)
    low, occ2 = composite_pooled(stack, bank, sign, entry, x, y, ang)
    torch.testing.assert_close(low, expect, atol=2e-5, rtol=0)
    torch.testing.assert_close(occ2, occ, atol=2e-5, rtol=0)


def test_pooled_runs_cut_into_calls_equal_the_full_composite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Grid order (runs of one bank entry, each cut into several compositor calls by a
    small pixel budget) gives what the full-frame compositor gives, pooled."""
    import leafattack.compose.functional as functional
    from leafattack.compose.bank import build_sign_stack

    calls: list[int] = []
    window = functional.composite_pooled_window

    def counted(*args: object, **kw: object) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(int(args[2].shape[0]))  # type: ignore[attr-defined]
        return window(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(functional, "composite_pooled_window", counted)
    monkeypatch.setattr(functional, "WINDOW_PIXELS_PER_CALL", 2**12)
    rng = np.random.default_rng(8)
    n, size = 90, 64
    signs = torch.from_numpy(rng.integers(0, 256, (3, 3, size, size), dtype=np.uint8))
    masks = torch.from_numpy(rng.random((3, size, size)) > 0.3)
    bank = build_leaf_bank([make_leaf(40, 24), make_leaf(24, 40)], [0.3, 0.6], size)
    entry = torch.from_numpy(np.repeat([0, 3, 1], 30))  # three runs, as in a grid batch
    sign = torch.from_numpy(rng.integers(0, 3, n))
    x = torch.from_numpy(rng.uniform(-0.1, 1.1, n)).float()
    y = torch.from_numpy(rng.uniform(-0.1, 1.1, n)).float()
    ang = torch.from_numpy(rng.uniform(0, 360, n)).float()
    full, occ, _ = composite(signs[sign], masks[sign], bank, entry, x, y, ang)
    low, occ2 = functional.composite_pooled(build_sign_stack(signs, masks, 4), bank, sign,
                                            entry, x, y, ang)
    assert len(calls) > 3 and sum(calls) == n  # every run was cut, no trial twice
    torch.testing.assert_close(low, torch.nn.functional.avg_pool2d(full, 4), atol=2e-5, rtol=0)
    torch.testing.assert_close(occ2, occ, atol=2e-5, rtol=0)


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_reachable_blocks_hold_every_block_the_leaf_touches(factor: int) -> None:
    """Every block where bilinear sampling of the leaf gives anything non-zero is kept
    (checked by sampling the whole image), and most of the image is left out for small
    leaves, so the test would notice a selection that keeps everything."""
    from leafattack.compose.functional import placement_theta, reachable_blocks

    rng = np.random.default_rng(11)
    n, size = 240, 32
    hard = np.zeros((9, 30, 4), np.uint8)
    hard[...] = (250, 250, 250, 255)  # a hard-edged strip: its corners are the support's
    bank = build_leaf_bank([make_leaf(40, 24), make_leaf(40, 8), hard], [0.2, 0.35], size)
    entry = torch.from_numpy(rng.integers(0, 6, n))
    x = torch.from_numpy(rng.uniform(-0.2, 1.2, n)).float()
    y = torch.from_numpy(rng.uniform(-0.2, 1.2, n)).float()
    ang = torch.from_numpy(np.where(rng.random(n) < 0.3, rng.integers(0, 8, n) * 45.0,
                                    rng.uniform(0, 360, n))).float()
    grid = torch.nn.functional.affine_grid(
        placement_theta(x, y, ang, bank.shift[entry], bank.canvas, size, size),
        [n, 4, size, size], align_corners=False)
    layer = torch.nn.functional.grid_sample(bank.images[entry], grid, align_corners=False)
    k = size // factor
    touched = (layer.amax(1).view(n, k, factor, k, factor).amax((2, 4)) > 0).view(n, -1)
    # the window is the whole image: (u, v, 1) @ theta == the grid at pixel centre (u, v)
    g00, g10, g01 = grid[:, 0, 0], grid[:, 0, 1], grid[:, 1, 0]
    theta = torch.stack([g10 - g00, g01 - g00, g00 - 0.5 * (g10 - g00) - 0.5 * (g01 - g00)], 1)
    reach = reachable_blocks(bank, entry, theta, k, k, factor)
    assert reach is not None and reach.shape == touched.shape
    assert touched.sum() > 100
    assert not (touched & ~reach).any()
    assert reach.float().mean() < 0.5
    for e in range(6):  # one entry for every trial, given once
        sel = entry == e
        one = reachable_blocks(bank, entry[sel][:1], theta[sel], k, k, factor)
        assert one is not None and torch.equal(one, reach[sel])
