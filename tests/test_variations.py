"""Tests of the training variations (leafattack.variations)."""

from __future__ import annotations

import dataclasses
from functools import cache

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leafattack.data import LISA_CLASSES
from leafattack.data.builtin import render_sign
from leafattack.data.variations import (
    DEFAULT_CONFIG,
    VariantParams,
    VariationConfig,
    apply_variant,
    make_background,
    make_variants,
    random_variant,
    random_variant_with_mask,
    sample_params,
)
from leafattack.errors import LeafattackError

# Photometrically neutral: only geometry and compositing remain (JPEG at quality 100).
NEUTRAL = VariationConfig(
    fade=(0.0, 0.0),
    brightness=(1.0, 1.0),
    colour_cast=0.0,
    contrast=(1.0, 1.0),
    gamma=(1.0, 1.0),
    shadow_prob=0.0,
    blur_sigma=(0.0, 0.0),
    jpeg_quality=(100, 100),
    noise_sigma=(0.0, 0.0),
)


@pytest.fixture(scope="module")
def stop() -> tuple[np.ndarray, np.ndarray]:
    return render_sign("stop", 128)


def straight_params(**changes: object) -> VariantParams:
    """Parameters of an upright, centred, undistorted, unlit-changed variant."""
    base = VariantParams(
        out_size=32,
        scale=0.75,
        aspect=1.0,
        rotation=0.0,
        shift=(0.0, 0.0),
        corners=((0.0, 0.0),) * 4,
        fade=0.0,
        background=False,
        pole=None,
        shadow=None,
        brightness=1.0,
        gains=(1.0, 1.0, 1.0),
        contrast=1.0,
        gamma=1.0,
        blur_sigma=0.0,
        jpeg_quality=100,
        noise_sigma=0.0,
        seed=0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_make_variants_is_deterministic(stop: tuple[np.ndarray, np.ndarray]) -> None:
    images, masks = [stop[0], render_sign("yield", 64)[0]], [stop[1], render_sign("yield", 64)[1]]
    labels = np.array([12, 15])
    x1, y1 = make_variants(images, masks, labels, 5, np.random.default_rng(7))
    x2, y2 = make_variants(images, masks, labels, 5, np.random.default_rng(7))
    x3, _ = make_variants(images, masks, labels, 5, np.random.default_rng(8))
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert x1.shape == (10, 32, 32, 3) and x1.dtype == np.uint8
    assert y1.dtype == np.int64 and y1.tolist() == [12] * 5 + [15] * 5


@cache
def cached_render(name: str) -> tuple[np.ndarray, np.ndarray]:
    return render_sign(name, 64)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), name=st.sampled_from(LISA_CLASSES))
def test_same_seed_same_variant(seed: int, name: str) -> None:
    rgb, mask = cached_render(name)
    a, alpha_a = random_variant_with_mask(rgb, mask, np.random.default_rng(seed))
    b, alpha_b = random_variant_with_mask(rgb, mask, np.random.default_rng(seed))
    c = random_variant(rgb, mask, np.random.default_rng(seed + 1))
    assert np.array_equal(a, b) and np.array_equal(alpha_a, alpha_b)
    assert not np.array_equal(a, c)


def test_random_variant_equals_applying_sampled_params(
    stop: tuple[np.ndarray, np.ndarray],
) -> None:
    rgb, mask = stop
    a = random_variant(rgb, mask, np.random.default_rng(3))
    params = sample_params(np.random.default_rng(3))
    b, alpha = apply_variant(rgb, mask, params)
    c, alpha_c = random_variant_with_mask(rgb, mask, np.random.default_rng(3))
    assert np.array_equal(a, b) and np.array_equal(b, c) and np.array_equal(alpha, alpha_c)
    assert alpha.shape == (32, 32) and alpha.dtype == np.float32
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0


def test_make_variants_matches_random_variant_stream(
    stop: tuple[np.ndarray, np.ndarray],
) -> None:
    rgb, mask = stop
    x, _ = make_variants([rgb], [mask], np.array([0]), 3, np.random.default_rng(11))
    rng = np.random.default_rng(11)
    for i in range(3):
        assert np.array_equal(x[i], random_variant(rgb, mask, rng))


@pytest.mark.parametrize("out_size", [8, 48, 64])
def test_output_size(out_size: int, stop: tuple[np.ndarray, np.ndarray]) -> None:
    cfg = VariationConfig(out_size=out_size)
    x, y = make_variants([stop[0]], [stop[1]], np.array([4]), 2, np.random.default_rng(0), cfg)
    assert x.shape == (2, out_size, out_size, 3) and x.dtype == np.uint8
    assert y.tolist() == [4, 4]


def test_variants_differ_from_each_other(stop: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = make_variants([stop[0]], [stop[1]], np.array([0]), 12, np.random.default_rng(1))
    flat = x.reshape(12, -1).astype(np.float32)
    for i in range(12):
        for j in range(i + 1, 12):
            assert np.abs(flat[i] - flat[j]).mean() > 5.0


@pytest.mark.parametrize("size", [32, 100])
def test_backgrounds_are_cluttered_not_flat(size: int) -> None:
    rng = np.random.default_rng(5)
    means = []
    for _ in range(40):
        bg = make_background(size, rng)
        assert bg.shape == (size, size, 3) and bg.dtype == np.uint8
        grey = bg.astype(np.float32).mean(axis=2)
        assert grey.std() > 6.0  # not a flat colour
        # Structure at several places: the four quadrants are not all alike.
        h = size // 2
        quadrant_means = [grey[:h, :h].mean(), grey[:h, h:].mean(), grey[h:, :h].mean()]
        assert np.ptp(quadrant_means + [grey[h:, h:].mean()]) > 1.0
        means.append(bg.reshape(-1, 3).mean(axis=0))
    # The scenes vary in colour, too.
    assert np.std(np.array(means), axis=0).min() > 10.0


def test_background_is_deterministic() -> None:
    a = make_background(32, np.random.default_rng(9))
    b = make_background(32, np.random.default_rng(9))
    c = make_background(32, np.random.default_rng(10))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_background_size_must_be_positive() -> None:
    with pytest.raises(LeafattackError, match="background size"):
        make_background(0, np.random.default_rng(0))


def test_area_outside_the_sign_is_cluttered(stop: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, mask = stop
    rng = np.random.default_rng(2)
    for _ in range(20):
        out, alpha = random_variant_with_mask(rgb, mask, rng)
        outside = out[alpha == 0].astype(np.float32)
        assert len(outside) > 50
        assert outside.mean(axis=1).std() > 5.0


def test_sign_keeps_its_dominant_colour() -> None:
    rng = np.random.default_rng(4)
    for name, check in (
        ("stop", lambda m: m[0] > m[1] + 25 and m[0] > m[2] + 25),  # red
        ("turnRight", lambda m: min(m[0], m[1]) > m[2] + 25),  # yellow
        ("school", lambda m: m[1] > m[2] + 40),  # yellow-green
    ):
        rgb, mask = render_sign(name, 128)
        ok = 0
        for _ in range(40):
            out, alpha = random_variant_with_mask(rgb, mask, rng)
            face = out[alpha > 0.99].astype(np.float32)
            ok += bool(check(face.mean(axis=0)))
        assert ok >= 38, (name, ok)


def test_neutral_variant_keeps_colours_and_source_surroundings() -> None:
    # A red disc on a large grey surround, so the surround covers the whole output.
    img = np.full((128, 128, 3), 128, np.uint8)
    cv2.circle(img, (64, 64), 16, (200, 30, 40), -1)
    mask = np.all(img == (200, 30, 40), axis=2)
    cfg = dataclasses.replace(NEUTRAL, background_prob=0.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        out, alpha = random_variant_with_mask(img, mask, rng, cfg)
        # Away from the disc's edge (JPEG subsamples colour over 2x2 blocks).
        near = cv2.dilate((alpha > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert np.abs(out[~near].astype(int) - 128).max() <= 3
        inner = cv2.erode((alpha > 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert inner.sum() > 60
        assert np.abs(out[inner].astype(int) - (200, 30, 40)).max() <= 6


def test_geometry_of_an_upright_variant(stop: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, mask = stop
    _, alpha = apply_variant(rgb, mask, straight_params(scale=0.75))
    ys, xs = np.nonzero(alpha > 0.5)
    # The face's longest side is 0.75 of 32 px, centred.
    assert xs.max() - xs.min() + 1 == pytest.approx(24, abs=1)
    assert ys.max() - ys.min() + 1 == pytest.approx(24, abs=1)
    assert (xs.min() + xs.max()) / 2 == pytest.approx(15.5, abs=0.6)
    assert (ys.min() + ys.max()) / 2 == pytest.approx(15.5, abs=0.6)
    # Octagon area fraction is kept: 24 px octagon of apothem 12.
    assert alpha.sum() == pytest.approx(8 * 12**2 * np.tan(np.pi / 8), rel=0.05)
    # A shift moves it by shift * out_size pixels.
    _, moved = apply_variant(rgb, mask, straight_params(scale=0.75, shift=(0.125, -0.0625)))
    ys2, xs2 = np.nonzero(moved > 0.5)
    assert xs2.mean() - xs.mean() == pytest.approx(4, abs=0.3)
    assert ys2.mean() - ys.mean() == pytest.approx(-2, abs=0.3)


def test_rotation_is_counter_clockwise_and_aspect_squashes() -> None:
    # A square sign, left half red and right half blue.
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)
    img[:, 20:] = (0, 0, 255)
    mask = np.ones((40, 40), bool)
    out, _ = apply_variant(img, mask, straight_params(scale=1.0, rotation=90.0))
    top, bottom = out[:12].astype(int), out[-12:].astype(int)
    # Counter-clockwise on screen: the right (blue) half ends up on top.
    assert top[..., 2].mean() > 200 and top[..., 0].mean() < 50
    assert bottom[..., 0].mean() > 200 and bottom[..., 2].mean() < 50
    _, alpha = apply_variant(img, mask, straight_params(scale=1.0, aspect=0.5))
    cols = np.nonzero((alpha > 0.5).any(axis=0))[0]
    assert len(cols) == pytest.approx(16, abs=1)


def test_brightness_scales_intensity(stop: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, mask = stop
    full = apply_variant(rgb, mask, straight_params(background=True, seed=5))[0]
    half = apply_variant(rgb, mask, straight_params(background=True, seed=5, brightness=0.5))[0]
    assert half.mean() / full.mean() == pytest.approx(0.5, abs=0.02)


def test_sampled_params_respect_the_ranges() -> None:
    cfg = VariationConfig(max_rotation=5.0, jpeg_quality=(60, 70), scale=(0.5, 0.6))
    rng = np.random.default_rng(0)
    params = [sample_params(rng, cfg) for _ in range(300)]
    assert all(0.5 <= p.scale <= 0.6 for p in params)
    assert all(abs(p.rotation) <= 5.0 for p in params)
    assert {p.jpeg_quality for p in params} == set(range(60, 71))
    assert all(abs(c) <= cfg.perspective for p in params for xy in p.corners for c in xy)
    assert all(p.background for p in params)
    shadows = sum(p.shadow is not None for p in params) / len(params)
    assert shadows == pytest.approx(cfg.shadow_prob, abs=0.08)
    # Log-uniform scale: as many draws below the geometric mean as above it.
    below = np.mean([p.scale < np.sqrt(0.5 * 0.6) for p in params])
    assert below == pytest.approx(0.5, abs=0.08)


def test_small_and_full_mask_sources_work() -> None:
    rng = np.random.default_rng(0)
    tiny = np.full((12, 12, 3), 200, np.uint8)
    out = random_variant(tiny, np.ones((12, 12), bool), rng, VariationConfig(out_size=64))
    assert out.shape == (64, 64, 3)
    photo = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    cfg = VariationConfig(background_prob=0.0)
    out = random_variant(photo, np.ones((50, 70), bool), rng, cfg)
    assert out.shape == (32, 32, 3)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("out_size", 4),
        ("out_size", 32.0),
        ("scale", (1.0, 0.5)),
        ("scale", (0.0, 1.0)),
        ("scale", (0.5,)),
        ("aspect", "wide"),
        ("max_shift", 0.9),
        ("max_rotation", -1.0),
        ("perspective", 0.5),
        ("brightness", (0.0, 1.0)),
        ("gamma", (2.0, 1.0)),
        ("colour_cast", 1.0),
        ("blur_sigma", (-1.0, 1.0)),
        ("jpeg_quality", (0, 50)),
        ("jpeg_quality", (50.5, 60)),
        ("noise_sigma", (0.0, 300.0)),
        ("background_prob", 1.5),
        ("shadow_prob", "often"),
        ("pole_prob", -0.1),
    ],
)
def test_config_validation(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"VariationConfig.{field} ="):
        VariationConfig(**{field: value})  # type: ignore[arg-type]


def test_config_normalises_values() -> None:
    cfg = VariationConfig(jpeg_quality=(50.0, 90.0), scale=[0.5, 1.0])  # type: ignore[arg-type]
    assert cfg.jpeg_quality == (50, 90) and isinstance(cfg.jpeg_quality[0], int)
    assert cfg.scale == (0.5, 1.0)
    assert DEFAULT_CONFIG == VariationConfig()
    # Replacing a field re-validates.
    with pytest.raises(ValueError, match="max_rotation"):
        dataclasses.replace(DEFAULT_CONFIG, max_rotation=500.0)


def test_bad_inputs_raise(stop: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, mask = stop
    rng = np.random.default_rng(0)
    with pytest.raises(LeafattackError, match="mask has shape"):
        random_variant(rgb, mask[:-1], rng)
    with pytest.raises(LeafattackError, match="mask is empty"):
        random_variant(rgb, np.zeros_like(mask), rng)
    with pytest.raises(LeafattackError, match="expected uint8"):
        random_variant(rgb.astype(np.float32), mask, rng)
    with pytest.raises(LeafattackError, match="one mask and one label"):
        make_variants([rgb], [mask], np.array([0, 1]), 2, rng)
    with pytest.raises(LeafattackError, match="n_per_image"):
        make_variants([rgb], [mask], np.array([0]), 0, rng)
