"""Appearance matching (issue 12, item 7): estimators on synthetic photos with known blur,
exposure and noise; ``match_layers`` against a slow per-scene OpenCV reference; identity,
determinism, shadows; palettes; and plausibility on the real GTSRB sample when
``LEAFATTACK_REAL_DATA`` points at the shared data."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest
import torch

from leafattack.compose.appearance import (
    Appearance,
    area_matrices,
    cast_shadow,
    estimate_appearance,
    estimate_blur,
    estimate_exposure,
    estimate_noise,
    gaussian_matrices,
    linear_matrices,
    match_layers,
    sample_shadows,
)
from leafattack.data.palettes import (
    GTSRB_FAMILIES,
    GTSRB_PALETTES,
    LISA_FAMILIES,
    LISA_PALETTES,
    palette_array,
    sign_palettes,
)
from leafattack.data.signset import GTSRB_CLASSES, LISA_CLASSES, SignSet
from leafattack.errors import LeafattackError

REAL_DATA = os.environ.get("LEAFATTACK_REAL_DATA")
needs_real = pytest.mark.skipif(not REAL_DATA, reason="LEAFATTACK_REAL_DATA is unset")

# The synthetic sign's colours, written here rather than read from the package.
RED = (193, 18, 28)
WHITE = (241, 240, 234)
BLACK = (30, 30, 30)
PALETTE = np.array([RED, WHITE, BLACK], dtype=np.float32) / 255.0
BACKGROUND = (90, 115, 76)


def synthetic_sign(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A sharp "30" speed-limit sign: red ring, white field, black digits, on green-grey.

    Drawn 8x larger with anti-aliasing and area-reduced, so its edges are area-sampled
    ("sharp" in the photo model). Returns float32 (size, size, 3) in [0, 1] and the bool
    face mask (the disc).
    """
    ss = 8
    n = size * ss
    img = np.empty((n, n, 3), np.uint8)
    img[:] = BACKGROUND
    c, r = (n // 2, n // 2), int(0.46 * n)
    cv2.circle(img, c, r, RED, -1, cv2.LINE_AA)
    cv2.circle(img, c, int(r * 0.78), WHITE, -1, cv2.LINE_AA)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, n / 60, max(1, int(n * 0.07))
    (tw, th), _ = cv2.getTextSize("30", font, scale, thick)
    cv2.putText(img, "30", (c[0] - tw // 2, c[1] + th // 2), font, scale, BLACK, thick, cv2.LINE_AA)
    small = cv2.resize(img.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[:size, :size] + 0.5
    face = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= (0.46 * size) ** 2
    return small, face


def photograph(
    sharp: np.ndarray, sigma: float, gain: tuple[float, float, float], noise: float, seed: int
) -> np.ndarray:
    """The photo model with known parameters: ``cv2.GaussianBlur``, gain, noise, uint8."""
    out = cv2.GaussianBlur(sharp, (0, 0), sigma) if sigma > 0 else sharp.copy()
    out = out * np.asarray(gain, np.float32)
    out = out + np.random.default_rng(seed).normal(0.0, noise, out.shape)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


class Case(NamedTuple):
    size: int
    sigma: float
    gain: tuple[float, float, float]
    noise: float


CASES = [
    Case(32, 0.5, (0.6, 0.5, 0.4), 0.02),
    Case(32, 1.0, (0.9, 0.75, 1.0), 0.01),
    Case(32, 2.0, (0.35, 0.35, 0.4), 0.02),
    Case(48, 0.5, (0.9, 0.75, 1.0), 0.04),
    Case(48, 1.5, (0.6, 0.5, 0.4), 0.02),
    Case(48, 2.5, (0.35, 0.35, 0.4), 0.01),
    Case(64, 1.0, (0.35, 0.35, 0.4), 0.04),
    Case(64, 2.0, (0.9, 0.75, 1.0), 0.02),
    Case(64, 2.5, (0.6, 0.5, 0.4), 0.02),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.size}px-s{c.sigma}-n{c.noise}")
def test_estimators_recover_known_parameters(case: Case) -> None:
    """Blur within 0.25 px (sigma 0.5..2.5; sizes 32..64 px, sigma <= 2 on 32 px), each
    channel's gain within 10 % and noise sigma within 20 % (0.01..0.04)."""
    sharp, face = synthetic_sign(case.size)
    photo = photograph(sharp, case.sigma, case.gain, case.noise, seed=case.size)
    app = estimate_appearance([photo], [face], [PALETTE], size=128)
    assert abs(float(app.blur_sigma[0]) - case.sigma) <= 0.25
    rel = app.gain[0].numpy() / np.asarray(case.gain) - 1.0
    assert np.abs(rel).max() <= 0.10, rel
    assert abs(float(app.noise_sigma[0]) / case.noise - 1.0) <= 0.20
    assert float(app.scale[0]) == pytest.approx(case.size / 128)


def test_separate_estimators_agree_with_the_joint_one() -> None:
    """The per-quantity functions give what :func:`estimate_appearance` records."""
    sharp, face = synthetic_sign(48)
    photos = [photograph(sharp, s, (0.7, 0.6, 0.5), 0.02, seed=i) for i, s in enumerate((0.8, 1.8))]
    faces, pals = [face, face], [PALETTE, PALETTE]
    app = estimate_appearance(photos, faces, pals, size=64)
    np.testing.assert_allclose(estimate_blur(photos, faces, pals), app.blur_sigma.numpy())
    np.testing.assert_allclose(estimate_exposure(photos, faces, pals), app.gain.numpy())
    np.testing.assert_allclose(estimate_noise(photos, faces), app.noise_sigma.numpy())
    assert float(app.blur_sigma[1]) > float(app.blur_sigma[0]) + 0.7


def test_sharp_photo_reads_nearly_sharp_and_noise_free_reads_small() -> None:
    """Below about 0.4 px a sampled Gaussian is nearly a delta, so "sharp" reads <= 0.45;
    a noise-free photo reads under 0.004 (uint8 quantisation alone)."""
    sharp, face = synthetic_sign(64)
    photo = photograph(sharp, 0.0, (1.0, 1.0, 1.0), 0.0, seed=0)
    assert float(estimate_blur([photo], [face], [PALETTE])[0]) <= 0.45
    assert float(estimate_noise([photo], [face])[0]) < 0.004


def test_estimators_reject_bad_input() -> None:
    sharp, face = synthetic_sign(32)
    photo = photograph(sharp, 1.0, (1.0, 1.0, 1.0), 0.01, seed=0)
    with pytest.raises(LeafattackError, match="2 images, 1 masks"):
        estimate_noise([photo, photo], [face])
    with pytest.raises(LeafattackError, match="mask 0"):
        estimate_noise([photo], [face[:-1]])
    with pytest.raises(LeafattackError, match="inner face pixels"):
        estimate_noise([photo], [np.zeros_like(face)])
    with pytest.raises(LeafattackError, match="palette 0"):
        estimate_exposure([photo], [face], [PALETTE * 255])
    with pytest.raises(ValueError, match="size=0"):
        estimate_appearance([photo], [face], [PALETTE], 0)


# --------------------------------------------------------------------------- layers


def leaf_layers(m: int, h: int, w: int, seed: int) -> torch.Tensor:
    """float32 (m, 4, h, w) premultiplied RGBA: a random blobby opaque-ish leaf per scene."""
    rng = np.random.default_rng(seed)
    out = np.zeros((m, 4, h, w), np.float32)
    for i in range(m):
        field = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3.0)
        alpha = np.clip((field - field.mean()) * 40.0 + 0.5, 0.0, 1.0)
        rgb = rng.uniform(0.1, 0.9, 3).astype(np.float32)[:, None, None] * alpha
        texture = 0.8 + 0.2 * rng.random((h, w)).astype(np.float32)
        out[i, :3] = rgb * texture
        out[i, 3] = alpha
    return torch.from_numpy(out)


def appearance(**values: list[float] | list[list[float]]) -> Appearance:
    """An :class:`Appearance` of len(values) scenes, identity except for ``values``."""
    n = len(next(iter(values.values())))
    app = Appearance.identity(n)
    return dataclasses.replace(
        app, **{k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}
    )


def reference_match(layer: np.ndarray, scale: float, sigma: float, gain: np.ndarray) -> np.ndarray:
    """Slow per-scene OpenCV reference of :func:`match_layers` without noise.

    layer: float32 (4, H, W). Gain on colour; ``cv2.resize`` INTER_AREA to the native size
    ``round(H s) x round(W s)`` when s < 1; ``cv2.GaussianBlur`` (sigma native pixels,
    sigma / s rendered pixels when s >= 1); ``cv2.resize`` INTER_LINEAR back; colour
    clipped to [0, alpha].
    """
    _, h, w = layer.shape
    x = layer.transpose(1, 2, 0).copy()
    x[..., :3] *= gain
    if scale < 1:
        hn, wn = max(1, round(h * scale)), max(1, round(w * scale))
        x = cv2.resize(x, (wn, hn), interpolation=cv2.INTER_AREA)
    else:
        sigma = sigma / scale
    if sigma > 0:
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    if scale < 1:
        x = cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR)
    a = np.clip(x[..., 3:], 0.0, 1.0)
    x = np.concatenate([np.minimum(np.clip(x[..., :3], 0.0, None), a), a], axis=2)
    return x.transpose(2, 0, 1)


def test_match_layers_agrees_with_an_opencv_reference() -> None:
    """Batched (one matrix pair per scene) equals the per-scene OpenCV pipeline within 1e-5
    (values in [0, 1]), for native scales 0.23..2 (a 1-px-wide native image included),
    sigmas 0..3 and per-channel gains."""
    h, w = 64, 48
    scale = [0.3, 0.5, 1.0, 2.0, 0.77, 0.23, 0.02, 0.61]
    sigma = [0.8, 0.0, 1.3, 2.0, 2.7, 3.0, 0.5, 0.3]
    gain = [
        [0.5, 0.6, 0.7],
        [1, 1, 1],
        [0.9, 0.8, 1.2],
        [0.3, 0.3, 0.3],
        [1, 1, 1],
        [1.5, 1.0, 0.5],
        [1, 1, 1],
        [0.2, 0.4, 0.3],
    ]
    layer = leaf_layers(len(scale), h, w, seed=1)
    out = match_layers(layer, appearance(scale=scale, blur_sigma=sigma, gain=gain))
    for m in range(len(scale)):
        ref = reference_match(layer[m].numpy(), scale[m], sigma[m], np.asarray(gain[m], np.float32))
        np.testing.assert_allclose(out[m].numpy(), ref, atol=1e-5, err_msg=f"scene {m}")


def test_resampling_matrices_match_opencv_on_their_own() -> None:
    """Each 1-D operator equals OpenCV on a random signal (area down, Gaussian, bilinear up)."""
    rng = np.random.default_rng(2)
    sig = rng.random((1, 37)).astype(np.float32)
    area = area_matrices(torch.tensor([11]), 37, 11)[0].numpy()
    np.testing.assert_allclose(
        area @ sig[0], cv2.resize(sig, (11, 1), interpolation=cv2.INTER_AREA)[0], atol=1e-6
    )
    gauss = gaussian_matrices(torch.tensor([1.7]), torch.tensor([37]), 37)[0].numpy()
    ref = cv2.GaussianBlur(np.repeat(sig, 3, axis=0), (0, 0), 1.7)[1]
    np.testing.assert_allclose(gauss @ sig[0], ref, atol=1e-6)
    up = linear_matrices(torch.tensor([11]), 37, 11)[0].numpy()
    small = sig[:, :11]
    np.testing.assert_allclose(
        up @ small[0], cv2.resize(small, (37, 1), interpolation=cv2.INTER_LINEAR)[0], atol=1e-6
    )


def test_identity_parameters_leave_the_layer_unchanged() -> None:
    """Exactly, bit for bit, also for scenes next to changed ones; also cast_shadow."""
    layer = leaf_layers(3, 32, 32, seed=3)
    assert torch.equal(match_layers(layer, Appearance.identity(3)), layer)
    mixed = appearance(scale=[1.0, 0.5, 3.0], blur_sigma=[0.0, 1.0, 0.0])
    out = match_layers(layer, mixed)
    assert torch.equal(out[0], layer[0]) and torch.equal(out[2], layer[2])
    assert not torch.allclose(out[1], layer[1], atol=1e-3)
    images = torch.rand(3, 3, 32, 32)
    assert torch.equal(cast_shadow(images, layer, Appearance.identity(3)), images)


def test_gain_scales_colour_not_alpha() -> None:
    layer = leaf_layers(1, 16, 16, seed=4)
    out = match_layers(layer, appearance(gain=[[0.5, 0.25, 1.0]]))
    np.testing.assert_allclose(out[0, 0], layer[0, 0] * 0.5, atol=1e-7)
    np.testing.assert_allclose(out[0, 1], layer[0, 1] * 0.25, atol=1e-7)
    assert torch.equal(out[0, 3], layer[0, 3])


def test_noise_is_seeded_and_stays_inside_the_leaf() -> None:
    """Same seed -> identical tensor; another seed -> different. Where alpha is 0 nothing
    changes; on an opaque flat leaf the added noise has the asked sigma within 5 %."""
    h = w = 64
    layer = torch.zeros(2, 4, h, w)
    layer[:, :, :, : w // 2] = 0.5
    layer[:, 3, :, : w // 2] = 1.0
    app = appearance(noise_sigma=[0.05, 0.05])
    a = match_layers(layer, app, torch.Generator().manual_seed(7))
    b = match_layers(layer, app, torch.Generator().manual_seed(7))
    c = match_layers(layer, app, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(a[:, :, :, w // 2 + 1 :], layer[:, :, :, w // 2 + 1 :])
    residual = (a - layer)[:, :3, :, : w // 2 - 1]
    assert float(residual.std()) == pytest.approx(0.05, rel=0.05)
    with pytest.raises(ValueError, match="Generator"):
        match_layers(layer, app)


def test_noise_at_native_resolution_is_upsampled_with_the_leaf() -> None:
    """With scale 0.25 the noise is drawn on the 16x16 native grid: neighbouring rendered
    pixels are strongly correlated (> 0.6), as upsampled photo noise is."""
    layer = torch.zeros(1, 4, 64, 64)
    layer[:, :3] = 0.5
    layer[:, 3] = 1.0
    out = match_layers(
        layer, appearance(scale=[0.25], noise_sigma=[0.05]), torch.Generator().manual_seed(0)
    )
    r = (out - layer)[0, 0].numpy()
    corr = np.corrcoef(r[:, :-1].ravel(), r[:, 1:].ravel())[0, 1]
    assert corr > 0.6


def test_blur_softens_the_alpha_edge_and_keeps_the_leaf_mass() -> None:
    """A blurred opaque square keeps its total alpha (inside the frame) and gets a ramp."""
    layer = torch.zeros(1, 4, 48, 48)
    layer[:, :, 16:32, 16:32] = 1.0
    out = match_layers(layer, appearance(blur_sigma=[2.0]))
    assert float(out[0, 3].sum()) == pytest.approx(256.0, rel=1e-4)
    edge = out[0, 3, 24, 12:20].numpy()
    assert np.all(np.diff(edge) > 0) and 0.3 < edge[4] < 0.7


def test_cast_shadow_falls_away_from_the_light() -> None:
    """An opaque square's shadow at angle 0 lies to its right, at 90 above it (y down);
    its centroid moves by the asked distance within 0.1 px; it darkens by at most the
    strength and never where the shadow cannot reach."""
    h = w = 64
    layer = torch.zeros(2, 4, h, w)
    layer[:, 3, 24:40, 24:40] = 1.0
    app = appearance(
        shadow_angle=[0.0, 90.0],
        shadow_distance=[0.125, 0.125],
        shadow_blur=[0.02, 0.02],
        shadow_strength=[0.4, 0.4],
    )
    images = torch.ones(2, 3, h, w)
    out = cast_shadow(images, layer, app)
    dark = (1.0 - out[:, 0]).numpy()  # (2, H, W) darkening
    ys, xs = np.mgrid[:h, :w] + 0.5
    cx = [(dark[i] * xs).sum() / dark[i].sum() for i in range(2)]
    cy = [(dark[i] * ys).sum() / dark[i].sum() for i in range(2)]
    assert cx[0] == pytest.approx(32 + 8, abs=0.1) and cy[0] == pytest.approx(32, abs=0.1)
    assert cx[1] == pytest.approx(32, abs=0.1) and cy[1] == pytest.approx(32 - 8, abs=0.1)
    assert dark.max() <= 0.4 + 1e-6 and dark[0, 30, 34:40].min() > 0.39
    assert dark[0, :, :20].max() < 1e-6


def test_sample_shadows_is_seeded_and_in_range() -> None:
    base = Appearance.identity(50)
    a = sample_shadows(base, np.random.default_rng(3))
    b = sample_shadows(base, np.random.default_rng(3))
    assert torch.equal(a.shadow_angle, b.shadow_angle)
    assert float(a.shadow_angle.min()) >= 0 and float(a.shadow_angle.max()) < 360
    assert float(a.shadow_distance.min()) >= 0.01 and float(a.shadow_distance.max()) <= 0.03
    assert float(a.shadow_angle.std()) > 60  # directions spread around the circle
    with pytest.raises(ValueError, match="strength"):
        sample_shadows(base, np.random.default_rng(0), strength=(0.5, 0.2))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("scale", [0.0], r"scale has 0, expected values in \(0, 64\]"),
        ("blur_sigma", [-1.0], "blur_sigma has -1"),
        ("gain", [[1.0, 0.0, 1.0]], "gain has 0"),
        ("noise_sigma", [float("nan")], "non-finite"),
        ("shadow_strength", [1.5], "shadow_strength has 1.5"),
        ("gain", [1.0], r"gain has shape \(1,\), expected \(1, 3\)"),
    ],
    ids=["scale", "blur", "gain", "nan", "strength", "shape"],
)
def test_appearance_validates(field: str, value: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(
            Appearance.identity(1), **{field: torch.tensor(value, dtype=torch.float32)}
        )


def test_appearance_take_and_columns() -> None:
    app = appearance(scale=[0.5, 0.25], gain=[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    took = app.take(torch.tensor([1, 1, 0]))
    assert took.n == 3 and took.scale.tolist() == [0.25, 0.25, 0.5]
    cols = app.columns()
    assert list(cols)[:6] == ["scale", "blur_sigma", "gain_r", "gain_g", "gain_b", "noise_sigma"]
    np.testing.assert_allclose(cols["gain_b"], [0.3, 0.6], rtol=1e-6)


# --------------------------------------------------------------------------- palettes


def test_palette_tables_cover_every_class() -> None:
    assert set(GTSRB_PALETTES) == set(GTSRB_CLASSES)
    assert set(LISA_PALETTES) == set(LISA_CLASSES)
    assert set(GTSRB_PALETTES.values()) <= set(GTSRB_FAMILIES)
    assert set(LISA_PALETTES.values()) <= set(LISA_FAMILIES)
    assert GTSRB_PALETTES["Keep right"] == "blue_white"
    assert GTSRB_PALETTES["Stop"] == "red_white"


def test_sign_palettes_follow_the_labels_and_name_missing_classes() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    signs = SignSet((img, img), np.array([14, 38]), GTSRB_CLASSES, ("a.ppm", "b.ppm"))
    pals = sign_palettes(signs, GTSRB_PALETTES, GTSRB_FAMILIES)
    np.testing.assert_array_equal(pals[1], palette_array(GTSRB_FAMILIES["blue_white"]))
    assert pals[0].dtype == np.float32 and pals[0].shape == (2, 3)
    with pytest.raises(LeafattackError, match="'Keep right'"):
        sign_palettes(signs, {"Stop": "red_white"}, GTSRB_FAMILIES)
    with pytest.raises(LeafattackError, match="RGB integers"):
        palette_array([(0.5, 0.5, 0.5)])  # type: ignore[list-item]


# --------------------------------------------------------------------------- real photos


@pytest.fixture(scope="module")
def gtsrb_sample() -> tuple[SignSet, tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    from leafattack.data.faces import GTSRB_BORDER, GTSRB_SHAPES, derive_faces
    from leafattack.data.sources import load_gtsrb

    signs = load_gtsrb(Path(str(REAL_DATA)) / "gtsrb", max_per_class=1)
    faces = derive_faces(signs, GTSRB_SHAPES, GTSRB_BORDER)
    return signs, faces, sign_palettes(signs, GTSRB_PALETTES, GTSRB_FAMILIES)


@needs_real
def test_real_estimates_are_plausible_and_follow_brightness(
    gtsrb_sample: tuple[SignSet, tuple[np.ndarray, ...], tuple[np.ndarray, ...]],
) -> None:
    """On one photo per GTSRB class: every estimate finite; blur median 0.3..1.5 native px
    and all <= MAX_BLUR; noise under 0.08; gains in (0.02, 2); and the photos' mean face
    brightness orders their mean gains (Spearman rho > 0.8): darker photos get smaller
    gains, so a leaf on them is darkened more."""
    from scipy.stats import spearmanr

    signs, faces, pals = gtsrb_sample
    app = estimate_appearance(signs.images, faces, pals, size=64)
    cols = app.columns()
    for name, values in cols.items():
        assert np.all(np.isfinite(values)), name
    assert 0.3 <= float(np.median(cols["blur_sigma"])) <= 1.5
    assert float(cols["blur_sigma"].max()) <= 6.0
    assert float(cols["noise_sigma"].max()) < 0.08
    gains = app.gain.numpy()
    assert gains.min() > 0.02 and gains.max() < 2.0
    bright = [
        img[f].astype(np.float64).mean() / 255 for img, f in zip(signs.images, faces, strict=True)
    ]
    rho = spearmanr(bright, gains.mean(axis=1)).statistic
    assert rho > 0.8


@needs_real
def test_real_photos_darkened_and_blurred_read_so(
    gtsrb_sample: tuple[SignSet, tuple[np.ndarray, ...], tuple[np.ndarray, ...]],
) -> None:
    """Halving a real photo's exposure halves its gains (median ratio 0.5 within 10 %);
    blurring it by 1.5 px moves its blur estimate to about sqrt(s0^2 + 1.5^2) (median
    error within 0.35 px), on the ten largest photos."""
    signs, faces, pals = gtsrb_sample
    order = np.argsort([-img.shape[0] * img.shape[1] for img in signs.images])[:10]
    imgs = [signs.images[i] for i in order]
    fs, ps = [faces[i] for i in order], [pals[i] for i in order]
    base = estimate_appearance(imgs, fs, ps, size=64)
    dark = [np.round(img.astype(np.float32) * 0.5).astype(np.uint8) for img in imgs]
    ratio = estimate_exposure(dark, fs, ps) / base.gain.numpy()
    assert float(np.median(ratio)) == pytest.approx(0.5, rel=0.10)
    blurred = [
        np.clip(np.round(cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.5)), 0, 255).astype(
            np.uint8
        )
        for img in imgs
    ]
    expected = np.sqrt(base.blur_sigma.numpy() ** 2 + 1.5**2)
    error = estimate_blur(blurred, fs, ps) - expected
    assert abs(float(np.median(error))) <= 0.35
    assert math.isfinite(float(error.max()))
