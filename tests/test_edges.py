"""Edge maps and edge metrics: OpenCV references, known answers, vectorisation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from leafattack.analysis.edges import (
    EDGE_METRICS,
    EdgeConfig,
    EdgeGeometry,
    auto_thresholds,
    border_band,
    canny_batch,
    dilate_batch,
    edge_metrics,
    resize_masks,
)
from leafattack.errors import LeafattackError

S = 128  # side of the known-answer scenes
GREY = (128, 128, 128)
RED = (200, 30, 30)
ORANGE = (230, 140, 20)
BLACK = (0, 0, 0)


# --------------------------------------------------------------------------- helpers


def reference_canny(image: np.ndarray, config: EdgeConfig) -> np.ndarray:
    """The documented per-image pipeline, straight OpenCV calls."""
    img = image
    if config.resolution is not None and img.shape[:2] != (config.resolution,) * 2:
        size = (config.resolution, config.resolution)
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if config.blur_ksize > 1:
        gray = cv2.GaussianBlur(gray, (config.blur_ksize, config.blur_ksize), config.blur_sigma)
    if config.auto:
        med = float(np.median(gray))
        low, high = max(0.0, (1 - config.sigma) * med), min(255.0, (1 + config.sigma) * med)
    else:
        low, high = config.low, config.high
    return cv2.Canny(gray, low, high) > 0


def sample_images(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Smooth random images plus a few sharp shapes: plenty of strong and weak edges."""
    noise = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    out = np.empty_like(noise)
    for i in range(n):
        out[i] = cv2.GaussianBlur(noise[i], (5, 5), 0) if i % 2 else noise[i]
        if h > 8 and w > 8:
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(out[i], centre, max(2, min(h, w) // 4), colour, -1)
    return out


def blank(colour: tuple[int, int, int] = GREY, size: int = S) -> np.ndarray:
    return np.full((size, size, 3), colour, dtype=np.uint8)


def circle_sign(*, text: str = "none", size: int = S) -> tuple[np.ndarray, np.ndarray]:
    """A red disc (radius 50) on grey; text "right" = bars in the right half, "wide" = long bars."""
    img = blank(size=size)
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (64, 64), 50, 255, -1)
    img[mask > 0] = RED
    if text == "right":
        for y in (48, 62, 76):
            cv2.rectangle(img, (76, y), (100, y + 5), BLACK, -1)
    elif text == "wide":
        for y in (44, 58, 72, 86):
            cv2.rectangle(img, (34, y), (93, y + 5), BLACK, -1)
    return img, mask > 0


def with_ellipse(
    img: np.ndarray, centre: tuple[int, int], axes: tuple[int, int], angle: float = 0.0
) -> np.ndarray:
    """A copy of ``img`` with an opaque orange ellipse (the "leaf")."""
    out = img.copy()
    cv2.ellipse(out, centre, axes, angle, 0, 360, ORANGE, -1)
    return out


def region_of(mask: np.ndarray) -> np.ndarray:
    """The documented sign region: the mask grown by one pixel (3 x 3), via cv2.dilate."""
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def one(arr: np.ndarray) -> np.ndarray:
    return arr[None]


# --------------------------------------------------------------------------- canny_batch

CONFIGS = {
    "default": EdgeConfig(),
    "no_blur": EdgeConfig(blur_ksize=0),
    "blur5_sigma": EdgeConfig(blur_ksize=5, blur_sigma=1.3),
    "blur7_thresholds": EdgeConfig(low=20.0, high=60.0, blur_ksize=7),
    "auto": EdgeConfig(auto=True),
    "auto_wide": EdgeConfig(auto=True, sigma=0.8, blur_ksize=5),
    "res32": EdgeConfig(resolution=32),
    "res13_auto": EdgeConfig(resolution=13, auto=True),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=list(CONFIGS))
@pytest.mark.parametrize("shape", [(32, 32), (17, 23), (64, 48), (3, 5), (1, 1)])
def test_canny_batch_matches_per_image_opencv(config: EdgeConfig, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    images = sample_images(rng, 12, *shape)
    got = canny_batch(images, config)
    side = config.resolution
    assert got.dtype == bool
    assert got.shape == (12, *((side, side) if side else shape))
    for i in range(len(images)):
        np.testing.assert_array_equal(got[i], reference_canny(images[i], config), err_msg=str(i))


def test_canny_batch_without_blur_is_cv2_canny_of_the_grayscale() -> None:
    rng = np.random.default_rng(7)
    images = sample_images(rng, 6, 40, 40)
    got = canny_batch(images, EdgeConfig(low=30.0, high=90.0, blur_ksize=1))
    for i, img in enumerate(images):
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        np.testing.assert_array_equal(got[i], cv2.Canny(gray, 30.0, 90.0) == 255)


def test_canny_batch_finds_a_step_and_nothing_on_flat_images() -> None:
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[0, :, 16:] = 255
    edges = canny_batch(images, EdgeConfig(blur_ksize=0))
    cols = np.flatnonzero(edges[0].any(axis=0))
    assert set(cols) <= {15, 16} and edges[0].sum() == 32
    assert not edges[1].any()


def test_auto_thresholds_follow_the_median() -> None:
    gray = np.zeros((2, 4, 4), np.uint8)
    gray[0, :2] = 100
    gray[0, 2:] = 200  # median 150
    gray[1] = 250  # median 250: high capped at 255
    low, high = auto_thresholds(gray, sigma=0.33)
    np.testing.assert_allclose(low, [0.67 * 150, 0.67 * 250])
    np.testing.assert_allclose(high, [1.33 * 150, 255.0])
    low0, high0 = auto_thresholds(np.zeros((1, 3, 3), np.uint8))
    assert (low0[0], high0[0]) == (0.0, 0.0)


def test_auto_canny_uses_each_images_own_thresholds() -> None:
    rng = np.random.default_rng(3)
    dark = (sample_images(rng, 3, 32, 32) // 4).astype(np.uint8)
    bright = sample_images(rng, 3, 32, 32)
    images = np.concatenate([dark, bright])
    config = EdgeConfig(auto=True, blur_ksize=0)
    got = canny_batch(images, config)
    for i, img in enumerate(images):
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        m = float(np.median(gray))
        ref = cv2.Canny(gray, max(0.0, 0.67 * m), min(255.0, 1.33 * m)) > 0
        np.testing.assert_array_equal(got[i], ref)
    fixed = canny_batch(images, EdgeConfig(blur_ksize=0))
    assert not np.array_equal(got[:3], fixed[:3])  # the dark images get lower thresholds


def test_resolution_resizes_with_inter_area_and_keeps_matching_sizes() -> None:
    rng = np.random.default_rng(4)
    big = sample_images(rng, 4, 128, 128)
    config = EdgeConfig(resolution=32)
    got = canny_batch(big, config)
    assert got.shape == (4, 32, 32)
    small = np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA) for im in big])
    np.testing.assert_array_equal(got, canny_batch(small, EdgeConfig()))
    np.testing.assert_array_equal(canny_batch(small, config), canny_batch(small, EdgeConfig()))


def test_canny_batch_empty_batch_and_bad_input() -> None:
    assert canny_batch(np.zeros((0, 8, 9, 3), np.uint8)).shape == (0, 8, 9)
    assert canny_batch(np.zeros((0, 8, 9, 3), np.uint8), EdgeConfig(resolution=4)).shape == (
        0,
        4,
        4,
    )
    with pytest.raises(ValueError, match="uint8"):
        canny_batch(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        canny_batch(np.zeros((8, 8, 3), np.uint8))


# --------------------------------------------------------------------------- EdgeConfig


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"low": -1.0}, "low"),
        ({"low": math.nan}, "low"),
        ({"low": 100.0, "high": 50.0}, "high"),
        ({"high": math.inf}, "high"),
        ({"auto": 1}, "auto"),
        ({"sigma": 1.5}, "sigma"),
        ({"blur_ksize": 4}, "blur_ksize"),
        ({"blur_ksize": -3}, "blur_ksize"),
        ({"blur_ksize": 3.0}, "blur_ksize"),
        ({"blur_sigma": -0.1}, "blur_sigma"),
        ({"resolution": 2}, "resolution"),
        ({"resolution": 32.0}, "resolution"),
        ({"resolution": True}, "resolution"),
        ({"border_width": 0.0}, "border_width"),
        ({"border_width": 0.6}, "border_width"),
        ({"tolerance": -1}, "tolerance"),
        ({"tolerance": 1.5}, "tolerance"),
    ],
)
def test_edge_config_rejects_bad_values(kwargs: dict[str, object], field_name: str) -> None:
    with pytest.raises(ValueError, match=f"EdgeConfig.{field_name}="):
        EdgeConfig(**kwargs)  # type: ignore[arg-type]


def test_edge_config_border_pixels() -> None:
    assert EdgeConfig().border_pixels(32, 32) == 2
    assert EdgeConfig().border_pixels(128, 128) == 6
    assert EdgeConfig(border_width=0.1).border_pixels(128, 100) == 10
    assert EdgeConfig(border_width=0.01).border_pixels(32, 32) == 1  # at least one pixel


# --------------------------------------------------------------------------- morphology


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 4),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    radius=st.integers(0, 4),
    density=st.floats(0.0, 0.5),
)
def test_dilate_and_band_match_scipy_per_image(
    seed: int, n: int, h: int, w: int, radius: int, density: float
) -> None:
    rng = np.random.default_rng(seed)
    maps = rng.random((n, h, w)) < density
    size = 2 * radius + 1
    dilated = dilate_batch(maps, radius)
    band = border_band(maps, radius)
    for i in range(n):
        grown = ndimage.maximum_filter(maps[i], size=size, mode="constant", cval=False)
        # outside the image counts as mask for the band: the frame is no contour
        shrunk = ndimage.minimum_filter(maps[i], size=size, mode="constant", cval=True)
        np.testing.assert_array_equal(dilated[i], grown)
        np.testing.assert_array_equal(band[i], grown & ~shrunk)


def test_border_band_of_a_disc_is_a_ring() -> None:
    _, mask = circle_sign()
    band = border_band(one(mask), 3)[0]
    yy, xx = np.mgrid[0:S, 0:S]
    dist = np.hypot(yy - 64, xx - 64)
    assert band[dist < 45].sum() == 0 and band[dist > 55].sum() == 0
    assert band[(dist > 48.5) & (dist < 51.5)].all()


def test_resize_masks() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :, :4] = True
    masks[1, :2, :2] = True
    small = resize_masks(masks, 4)
    assert small.dtype == bool and small.shape == (2, 4, 4)
    assert small[0].tolist() == [[True, True, False, False]] * 4
    assert small[1].sum() == 1
    alpha = resize_masks(masks.astype(np.float64) * 0.5, 2)
    assert alpha.dtype == np.float32
    np.testing.assert_allclose(alpha[0], [[0.5, 0.0], [0.5, 0.0]])
    assert resize_masks(masks, None) is masks


# --------------------------------------------------------------------------- known answers


@dataclass
class Scenario:
    clean: np.ndarray  # bool (H, W)
    attacked: np.ndarray
    leaf: np.ndarray  # float (H, W)
    sign: np.ndarray  # bool (H, W)
    expected: dict[str, tuple[float, float]] = field(default_factory=dict)  # value, abs tol


def edges_of(*images: np.ndarray) -> np.ndarray:
    return canny_batch(np.stack(images), EdgeConfig())


def _identical() -> Scenario:
    img, mask = circle_sign(text="right")
    e = edges_of(img)[0]
    exact = {"edges_lost": 0.0, "edges_added": 0.0, "edge_density_change": 0.0}
    exact |= {"edge_iou": 1.0, "chamfer": 0.0}
    exact |= {"border_edges_lost": 0.0, "interior_edges_lost": 0.0}
    return Scenario(e, e.copy(), np.zeros((S, S)), mask, {k: (v, 0.0) for k, v in exact.items()})


def _blanked() -> Scenario:
    img, mask = circle_sign(text="right")
    clean, attacked = edges_of(img, blank())
    region = region_of(mask)
    n_clean = (clean & region).sum()
    assert n_clean > 300 and not attacked.any()
    expected = {
        "edges_lost": (1.0, 0.0),
        "edges_added": (0.0, 0.0),
        "edge_density_change": (-n_clean / region.sum(), 1e-12),
        "edge_iou": (0.0, 0.0),
        "chamfer": (math.hypot(S, S), 1e-9),
        "border_edges_lost": (1.0, 0.0),
        "interior_edges_lost": (1.0, 0.0),
    }
    return Scenario(clean, attacked, mask.astype(float), mask, expected)


def _leaf_on_flat_interior() -> Scenario:
    img, mask = circle_sign()
    centre, axes, angle = (64, 64), (14, 8), 30.0
    clean, attacked = edges_of(img, with_ellipse(img, centre, axes, angle))
    # Independent count of the leaf's own outline: the same leaf on a plain red field.
    leaf_alone = edges_of(with_ellipse(blank(RED), centre, axes, angle))[0]
    n_leaf = int(leaf_alone.sum())
    a, b = axes
    ramanujan = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    assert abs(n_leaf - ramanujan) / ramanujan < 0.25  # the outline, about one pixel thick
    region = region_of(mask)
    n_clean = int((clean & region).sum())
    leaf = np.zeros((S, S), np.uint8)
    cv2.ellipse(leaf, centre, axes, angle, 0, 360, 1, -1)
    expected = {
        "edges_lost": (0.0, 0.0),
        "edges_added": (n_leaf / n_clean, 1e-12),
        "edge_density_change": (n_leaf / region.sum(), 1e-12),
        "edge_iou": (n_clean / (n_clean + n_leaf), 1e-12),
        "chamfer": (0.0, 0.0),
        "border_edges_lost": (0.0, 0.0),
        "interior_edges_lost": (math.nan, 0.0),  # a plain disc has no interior edges
    }
    return Scenario(clean, attacked, leaf.astype(float), mask, expected)


def _half_border_covered() -> Scenario:
    img, mask = circle_sign(text="right")
    # A huge ellipse whose right end runs almost straight down x = 64.
    attacked_img = with_ellipse(img, (64 - 400, 64), (400, 1200))
    clean, attacked = edges_of(img, attacked_img)
    expected = {
        "border_edges_lost": (0.5, 0.1),
        "interior_edges_lost": (0.0, 0.02),  # the text is in the right half
    }
    # Independent estimate: the share of outline edge pixels left of the leaf's edge.
    band = (ndimage.distance_transform_edt(mask) <= 6) & (
        ndimage.distance_transform_edt(~mask) <= 6
    )
    outline = clean & band
    cols = np.nonzero(outline)[1]
    share_left = float((cols < 63).mean())
    assert abs(share_left - 0.5) < 0.05
    expected["edges_lost"] = (
        (outline & (np.arange(S) < 63)).sum() / (clean & region_of(mask)).sum(),
        0.03,
    )
    return Scenario(
        clean, attacked, (attacked_img != img).any(axis=2).astype(float), mask, expected
    )


def _text_partly_covered() -> Scenario:
    img, mask = circle_sign(text="wide")
    # Bars span x = 34..93 (60 px); the leaf's right end is at x = 58: 40 % of their length.
    attacked_img = with_ellipse(img, (58 - 400, 64), (400, 1200))
    clean, attacked = edges_of(img, attacked_img)
    interior = clean & region_of(mask) & ~border_band(one(mask), 6)[0]
    cols = np.nonzero(interior)[1]
    covered = float((cols < 58).mean())  # independent: share of interior edges under the leaf
    assert abs(covered - 0.42) < 0.03
    return Scenario(
        clean,
        attacked,
        (attacked_img != img).any(axis=2).astype(float),
        mask,
        {"interior_edges_lost": (covered, 0.05)},
    )


def _lines(shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    e = np.zeros((S, S), bool)
    for col in (20, 50, 80):
        e[10:110, col] = True
    return np.roll(e, shift, axis=(0, 1))


def _translated(k: int) -> Callable[[], Scenario]:
    def build() -> Scenario:
        clean, attacked = _lines(), _lines((0, k))
        far = k > 1  # beyond the 1-pixel tolerance
        expected = {
            "chamfer": (float(k), 1e-6),
            "edges_lost": (1.0 if far else 0.0, 0.0),
            "edges_added": (1.0 if far else 0.0, 0.0),
            "edge_iou": (0.0 if far else 1.0, 0.0),
            "edge_density_change": (0.0, 0.0),
            "interior_edges_lost": (1.0 if far else 0.0, 0.0),
            "border_edges_lost": (math.nan, 0.0),  # a full-frame mask has no contour
        }
        ones = np.ones((S, S), bool)
        return Scenario(clean, attacked, np.zeros((S, S)), ones, expected)

    return build


def _diagonal_point() -> Scenario:
    clean = np.zeros((S, S), bool)
    attacked = np.zeros((S, S), bool)
    clean[40, 40] = True
    attacked[43, 44] = True  # Euclidean distance 5
    expected = {"chamfer": (5.0, 0.1), "edges_lost": (1.0, 0.0), "edges_added": (1.0, 0.0)}
    return Scenario(clean, attacked, np.zeros((S, S)), np.ones((S, S), bool), expected)


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "identical": _identical,
    "blanked": _blanked,
    "leaf_on_flat_interior": _leaf_on_flat_interior,
    "half_border_covered": _half_border_covered,
    "text_partly_covered": _text_partly_covered,
    "translated_1px": _translated(1),
    "translated_3px": _translated(3),
    "translated_5px": _translated(5),
    "diagonal_point": _diagonal_point,
}


@pytest.fixture(scope="module")
def scenarios() -> dict[str, Scenario]:
    return {name: build() for name, build in SCENARIOS.items()}


@pytest.fixture(scope="module")
def scenario_results(scenarios: dict[str, Scenario]) -> dict[str, dict[str, float]]:
    out = {}
    for name, sc in scenarios.items():
        values = edge_metrics(one(sc.clean), one(sc.attacked), one(sc.leaf), one(sc.sign))
        out[name] = {k: float(v[0]) for k, v in values.items()}
    return out


def test_every_registry_metric_has_a_known_answer(scenarios: dict[str, Scenario]) -> None:
    covered = {
        metric
        for sc in scenarios.values()
        for metric, (value, _) in sc.expected.items()
        if not math.isnan(value)
    }
    missing = [name for name in EDGE_METRICS if name not in covered]
    assert not missing, f"edge metrics without a known-answer case: {missing}"
    unknown = {m for sc in scenarios.values() for m in sc.expected} - set(EDGE_METRICS)
    assert not unknown


def test_registry_names_and_order() -> None:
    assert list(EDGE_METRICS) == [
        "edges_lost",
        "edges_added",
        "edge_density_change",
        "edge_iou",
        "chamfer",
        "border_edges_lost",
        "interior_edges_lost",
    ]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_known_answers(
    name: str,
    scenarios: dict[str, Scenario],
    scenario_results: dict[str, dict[str, float]],
) -> None:
    got = scenario_results[name]
    for metric, (value, tol) in scenarios[name].expected.items():
        if math.isnan(value):
            assert math.isnan(got[metric]), (metric, got[metric])
        else:
            assert got[metric] == pytest.approx(value, abs=tol), (metric, got[metric], value)


@pytest.mark.parametrize("name", list(EDGE_METRICS))
def test_each_metric_alone_equals_the_batched_call(
    name: str, scenarios: dict[str, Scenario]
) -> None:
    """Vectorisation: one batch of every scenario (plus repeats, so that the shared
    per-sign work is deduplicated) gives what each metric gives for each trial alone."""
    order = list(scenarios) * 3
    batch = [np.stack([getattr(scenarios[k], a) for k in order]) for a in ("clean", "attacked")]
    leaf = np.stack([scenarios[k].leaf for k in order])
    sign = np.stack([scenarios[k].sign for k in order])
    batched = edge_metrics(batch[0], batch[1], leaf, sign, names=[name])[name]
    assert batched.dtype == np.float64 and batched.shape == (len(order),)
    for i, k in enumerate(order):
        sc = scenarios[k]
        alone = EDGE_METRICS[name](one(sc.clean), one(sc.attacked), one(sc.leaf), one(sc.sign))
        np.testing.assert_allclose(batched[i], alone[0], rtol=1e-12, err_msg=k)


# --------------------------------------------------------------------------- definitions


def reference_metrics(
    clean: np.ndarray, attacked: np.ndarray, sign: np.ndarray, tol: int, border: int
) -> dict[str, float]:
    """The documented definitions for one trial, written with scipy.ndimage."""
    square = np.ones((3, 3), bool)
    region = ndimage.binary_dilation(sign, square) if sign.any() else sign
    c, a = clean & region, attacked & region
    grow = np.ones((2 * tol + 1, 2 * tol + 1), bool)
    near_a = ndimage.binary_dilation(a, grow) if tol and a.any() else a
    near_c = ndimage.binary_dilation(c, grow) if tol and c.any() else c
    size = 2 * border + 1
    band = ndimage.maximum_filter(sign, size=size, mode="constant", cval=False) & ~(
        ndimage.minimum_filter(sign, size=size, mode="constant", cval=True)
    )
    nc, na = c.sum(), a.sum()
    kept, matched = (c & near_a).sum(), (a & near_c).sum()
    nb, kb = (c & band).sum(), (c & near_a & band).sum()

    def ratio(x: float, y: float) -> float:
        return x / y if y else math.nan

    m = (kept + matched) / 2
    if not nc:
        ch = math.nan
    elif not na:
        ch = math.hypot(*sign.shape)
    else:
        ch = float(ndimage.distance_transform_edt(~a)[c].mean())
    return {
        "edges_lost": ratio(nc - kept, nc),
        "edges_added": ratio(na - matched, nc),
        "edge_density_change": ratio(na - nc, region.sum()),
        "edge_iou": 1.0 if nc + na == 0 else m / (nc + na - m),
        "chamfer": ch,
        "border_edges_lost": ratio(nb - kb, nb),
        "interior_edges_lost": ratio((nc - nb) - (kept - kb), nc - nb),
    }


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), tol=st.integers(0, 2), border_width=st.floats(0.05, 0.3))
def test_metrics_follow_their_definitions_on_random_maps(
    seed: int, tol: int, border_width: float
) -> None:
    rng = np.random.default_rng(seed)
    n, h, w = 6, 20, 24
    clean = rng.random((n, h, w)) < rng.uniform(0.0, 0.3, (n, 1, 1))
    attacked = rng.random((n, h, w)) < rng.uniform(0.0, 0.3, (n, 1, 1))
    yy, xx = np.mgrid[0:h, 0:w]
    radius = rng.uniform(0, 12, (n, 1, 1))
    sign = np.hypot(yy - h / 2, xx - w / 2) < radius
    sign[0] = True  # full-frame mask
    config = EdgeConfig(tolerance=tol, border_width=border_width)
    got = edge_metrics(clean, attacked, np.zeros((n, h, w)), sign, config=config)
    for i in range(n):
        ref = reference_metrics(clean[i], attacked[i], sign[i], tol, config.border_pixels(h, w))
        for name in EDGE_METRICS:
            # chamfer: a 5x5 chamfer mask, within 2 % of the exact Euclidean distance
            rtol = 0.02 if name == "chamfer" else 1e-12
            np.testing.assert_allclose(got[name][i], ref[name], rtol=rtol, err_msg=name)


def test_exact_iou_with_zero_tolerance() -> None:
    rng = np.random.default_rng(11)
    clean = rng.random((5, 16, 16)) < 0.3
    attacked = rng.random((5, 16, 16)) < 0.3
    sign = np.ones((5, 16, 16), bool)
    iou = edge_metrics(
        clean, attacked, np.zeros((5, 16, 16)), sign, ["edge_iou"], config=EdgeConfig(tolerance=0)
    )["edge_iou"]
    jaccard = (clean & attacked).sum(axis=(1, 2)) / (clean | attacked).sum(axis=(1, 2))
    np.testing.assert_allclose(iou, jaccard, rtol=1e-12)


def test_empty_denominators() -> None:
    n = 3
    empty = np.zeros((n, 16, 16), bool)
    some = empty.copy()
    some[:, 4:12, 8] = True
    ones = np.ones((n, 16, 16), bool)
    leaf = np.zeros((n, 16, 16))
    no_clean = edge_metrics(empty, some, leaf, ones)
    for name in ("edges_lost", "edges_added", "chamfer", "border_edges_lost"):
        assert np.isnan(no_clean[name]).all(), name
    assert (no_clean["edge_iou"] == 0.0).all()
    np.testing.assert_allclose(no_clean["edge_density_change"], 8 / 256)
    both_empty = edge_metrics(empty, empty, leaf, ones)
    assert (both_empty["edge_iou"] == 1.0).all()
    no_sign = edge_metrics(some, some, leaf, empty)
    assert np.isnan(no_sign["edge_density_change"]).all()
    assert np.isnan(no_sign["edges_lost"]).all()  # nothing of the sign to lose


def test_edge_metrics_selection_errors_and_empty_batch() -> None:
    e = np.zeros((2, 8, 8), bool)
    leaf = np.zeros((2, 8, 8))
    out = edge_metrics(e, e, leaf, e, names=["chamfer", "edges_lost"])
    assert list(out) == ["chamfer", "edges_lost"]
    with pytest.raises(LeafattackError, match="unknown edge metric 'sharpness'"):
        edge_metrics(e, e, leaf, e, names=["sharpness"])
    with pytest.raises(ValueError, match="expected one common"):
        edge_metrics(e, e[:1], leaf, e)
    with pytest.raises(ValueError, match="dtype float"):
        edge_metrics(e.astype(float), e, leaf, e)
    z = np.zeros((0, 8, 8), bool)
    assert all(v.shape == (0,) for v in edge_metrics(z, z, np.zeros((0, 8, 8)), z).values())


def test_uint8_edge_maps_from_cv2_are_accepted() -> None:
    e = np.zeros((1, 16, 16), np.uint8)
    e[0, 3:13, 5] = 255
    ones = np.ones((1, 16, 16), bool)
    assert edge_metrics(e, e, np.zeros((1, 16, 16)), ones)["edges_lost"][0] == 0.0


def test_geometry_is_shared_and_honours_config() -> None:
    clean = _lines()[None]
    attacked = _lines((0, 2))[None]
    ones = np.ones_like(clean)
    leaf = np.zeros(clean.shape)
    lost_t1 = edge_metrics(clean, attacked, leaf, ones)["edges_lost"]
    lost_t2 = edge_metrics(clean, attacked, leaf, ones, config=EdgeConfig(tolerance=2))
    assert lost_t1[0] == 1.0 and lost_t2["edges_lost"][0] == 0.0
    geometry = EdgeGeometry(clean, attacked, leaf, ones, EdgeConfig(tolerance=2))
    assert EDGE_METRICS["edges_lost"](clean, attacked, leaf, ones, geometry=geometry)[0] == 0.0


def test_internal_blocks_do_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(21)
    images = sample_images(rng, 11, 24, 24)
    signs = np.zeros((11, 24, 24), bool)
    signs[:, 3:21, 3:21] = True
    signs[::3, 8:, :] = False  # a second sign shape
    whole_canny = {c: canny_batch(images, EdgeConfig(auto=c)) for c in (False, True)}
    clean = whole_canny[False][::-1].copy()
    whole = edge_metrics(clean, whole_canny[False], np.zeros((11, 24, 24)), signs)
    monkeypatch.setattr("leafattack.analysis.edges.CHUNK_PIXELS", 3 * 24 * 24)  # blocks of 3 images
    for auto in (False, True):
        np.testing.assert_array_equal(canny_batch(images, EdgeConfig(auto=auto)), whole_canny[auto])
    blocked = edge_metrics(clean, whole_canny[False], np.zeros((11, 24, 24)), signs)
    for name in EDGE_METRICS:
        np.testing.assert_array_equal(blocked[name], whole[name], err_msg=name)


def test_docstring_examples() -> None:
    import doctest

    import leafattack.analysis.edges

    result = doctest.testmod(leafattack.analysis.edges, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20 and result.failed == 0
