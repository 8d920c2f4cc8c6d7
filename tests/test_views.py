"""Tests of the viewing transforms (leafattack.compose.views): the registry's coverage,
identity, analytic properties of each transform, per-image parameters, the ViewSpec and
its parser, and determinism."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch

from leafattack.compose.views import (
    NEUTRAL_KELVIN,
    TRANSFORM_PARAMS,
    VIEW_PARAMETERS,
    VIEW_TRANSFORMS,
    ViewSpec,
    apply_views,
    sample_views,
)
from leafattack.errors import LeafattackError

# Three non-identity parameter sets per registered transform (keys: TRANSFORM_PARAMS).
CASES: dict[str, tuple[dict[str, float], ...]] = {
    "perspective": ({"yaw": 25, "pitch": 0}, {"yaw": -15, "pitch": 10}, {"yaw": 0, "pitch": -20}),
    "rotation": ({"rotation": 30}, {"rotation": -90}, {"rotation": 7.5}),
    "distance": ({"distance": 2}, {"distance": 3.3}, {"distance": 1.5}),
    "defocus": ({"blur": 1}, {"blur": 2.5}, {"blur": 0.7}),
    "motion_blur": (
        {"motion": 5, "motion_angle": 0},
        {"motion": 3, "motion_angle": 45},
        {"motion": 8, "motion_angle": -120},
    ),
    "brightness": ({"brightness": 0.5}, {"brightness": 1.3}, {"brightness": 2.0}),
    "temperature": ({"temperature": 3000}, {"temperature": 9000}, {"temperature": 2000}),
    "contrast": ({"contrast": 0.5}, {"contrast": 1.5}, {"contrast": 3.0}),
    "gamma": ({"gamma": 0.5}, {"gamma": 1.8}, {"gamma": 3.0}),
    "noise": ({"noise": 0.01}, {"noise": 0.05}, {"noise": 0.2}),
    "jpeg": ({"jpeg": 90}, {"jpeg": 50}, {"jpeg": 10}),
}

NAMES = list(VIEW_TRANSFORMS)


def scene(n: int = 1, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """float32 (n, 3, h, w) in [0, 1]: smooth random colours with a white square."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(1, h // 4), max(1, w // 4), generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    img[:, :, h // 4 : h // 2, w // 4 : w // 2] = 1.0
    return img.clamp(0, 1).contiguous()


def params_for(values: list[dict[str, float]]) -> dict[str, torch.Tensor]:
    """Full per-image parameters for ``len(values)`` images, identity where not given."""
    out = {}
    for name, p in VIEW_PARAMETERS.items():
        col = [float(v.get(name, p.identity)) for v in values]
        out[name] = torch.tensor(col, dtype=torch.float32)
    return out


def call(
    name: str, images: torch.Tensor, values: list[dict[str, float]], seed: int = 0
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return VIEW_TRANSFORMS[name](images, params_for(values), gen)


def delta(h: int = 41, w: int = 41) -> torch.Tensor:
    x = torch.zeros(1, 3, h, w)
    x[..., h // 2, w // 2] = 1.0
    return x


# --------------------------------------------------------------------------- the registry


def test_every_transform_is_in_the_table() -> None:
    assert set(CASES) == set(VIEW_TRANSFORMS), "a registered view transform has no test case"
    for name, cases in CASES.items():
        for case in cases:
            assert set(case) == set(TRANSFORM_PARAMS[name]), name


def test_registry_order_and_parameters() -> None:
    assert NAMES == [
        *("perspective", "rotation", "distance"),  # geometry
        *("defocus", "motion_blur"),  # optics
        *("brightness", "temperature", "contrast", "gamma"),  # photometry
        "noise",
        "jpeg",
    ]
    assert list(TRANSFORM_PARAMS) == NAMES
    read = [p for names in TRANSFORM_PARAMS.values() for p in names]
    assert sorted(read) == sorted(VIEW_PARAMETERS), "each parameter is read by one transform"
    assert [f.name for f in dataclasses.fields(ViewSpec)] == list(VIEW_PARAMETERS)


@pytest.mark.parametrize("name", NAMES)
def test_identity_gives_the_input_back(name: str) -> None:
    x = scene(3)
    out = call(name, x, [{}, {}, {}])
    assert torch.equal(out, x)


@pytest.mark.parametrize("name", NAMES)
def test_cases_change_the_image_and_stay_in_range(name: str) -> None:
    x = scene(3, 32, 40)
    out = call(name, x, list(CASES[name]))
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    for i in range(3):
        assert float((out[i] - x[i]).abs().max()) > 1e-3, (name, CASES[name][i])


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_single_image_calls(name: str) -> None:
    """Per-image parameters: a mixed batch (with one identity image) equals the single calls.

    The noise is drawn for the whole batch (its documented formula is checked instead)."""
    values = [*CASES[name], {}]
    x = scene(4, 24, 32, seed=1)
    batch = call(name, x, values, seed=5)
    assert torch.equal(batch[3], x[3])
    if name == "noise":
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
        sigma = torch.tensor([v.get("noise", 0.0) for v in values]).view(-1, 1, 1, 1)
        torch.testing.assert_close(batch, (x + sigma * z).clamp(0, 1), atol=1e-6, rtol=0)
        return
    singles = torch.cat([call(name, x[i : i + 1], [v]) for i, v in enumerate(values)])
    torch.testing.assert_close(batch, singles, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- analytic checks


def test_brightness_scales_values_then_clips() -> None:
    x = scene(2) * 0.5
    out = call("brightness", x, [{"brightness": 1.6}, {"brightness": 3.0}])
    assert torch.equal(out[0], x[0] * 1.6)
    assert torch.equal(out[1], (x[1] * 3.0).clamp(0, 1))


def test_gamma_maps_a_quarter_to_its_power() -> None:
    gs = [0.5, 2.0, 3.0]
    out = call("gamma", torch.full((3, 3, 8, 8), 0.25), [{"gamma": g} for g in gs])
    for i, g in enumerate(gs):
        torch.testing.assert_close(out[i], torch.full((3, 8, 8), 0.25**g), atol=1e-6, rtol=0)


def test_contrast_keeps_the_mean_and_scales_deviations() -> None:
    x = 0.3 + 0.4 * scene(2, seed=3)
    out = call("contrast", x, [{"contrast": 1.5}, {"contrast": 0.0}])
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3), keepdim=True), m, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[0] - m[0], 1.5 * (x[0] - m[0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], m[1].expand_as(x[1]), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("angle", "k"), [(90, 1), (-90, -1), (180, 2)])
def test_rotation_by_quarter_turns_is_rot90(angle: float, k: int) -> None:
    """Counter-clockwise, like torch.rot90 over (H, W); compared in the interior."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = call("rotation", x, [{"rotation": angle}])
    ref = torch.rot90(x, k, dims=(-2, -1))
    torch.testing.assert_close(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_geometry_keeps_shapes_on_non_square_images_and_extremes_stay_finite() -> None:
    """Angles are measured in pixels: a centred square rotated by 90 degrees on a wide image
    is still a square; the most extreme perspective stays finite and in range."""
    x = torch.zeros(1, 3, 24, 40)
    x[..., 8:16, 16:24] = 1.0
    out = call("rotation", x, [{"rotation": 90}])[0, 0]
    rows = (out > 0.5).any(dim=1).nonzero().squeeze(1)
    cols = (out > 0.5).any(dim=0).nonzero().squeeze(1)
    assert len(rows) == 8 and len(cols) == 8
    extreme = call("perspective", scene(2, 24, 40), [{"yaw": 60, "pitch": 60}, {"yaw": -60}])
    assert torch.isfinite(extreme).all()
    assert float(extreme.min()) >= 0.0 and float(extreme.max()) <= 1.0


@pytest.mark.parametrize(("h", "w"), [(32, 32), (24, 40)])
def test_distance_two_is_area_down_then_bilinear_up(h: int, w: int) -> None:
    """Against OpenCV on one image, done independently: INTER_AREA down, INTER_LINEAR up."""
    x = scene(1, h, w, seed=2)
    out = call("distance", x, [{"distance": 2.0}])
    img = x[0].permute(1, 2, 0).numpy()
    small = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    ref = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), ref, atol=1e-5)
    assert torch.equal(call("distance", x, [{"distance": 1.0}]), x)


def test_defocus_keeps_a_constant_and_blurs_an_impulse_to_a_disc() -> None:
    flat = torch.full((1, 3, 20, 20), 0.4)
    torch.testing.assert_close(call("defocus", flat, [{"blur": 3}]), flat, atol=1e-6, rtol=0)

    r = 5.0
    out = call("defocus", delta(), [{"blur": r}])[0, 0]
    yy, xx = torch.meshgrid(torch.arange(41.0) - 20, torch.arange(41.0) - 20, indexing="ij")
    d = torch.sqrt(yy**2 + xx**2)
    peak = out.max()
    assert float(out[d > r + 0.5].abs().max()) == 0.0  # nothing outside the disc
    torch.testing.assert_close(out[d <= r - 0.5], peak.expand(int((d <= r - 0.5).sum())))
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-5)  # mass kept
    assert float(out.sum() / peak) == pytest.approx(math.pi * r * r, rel=0.05)  # its area


@pytest.mark.parametrize("length", [4.0, 9.0])
def test_motion_blur_turns_an_impulse_into_a_line(length: float) -> None:
    yy, xx = torch.meshgrid(torch.arange(41.0) - 20, torch.arange(41.0) - 20, indexing="ij")
    horiz = call("motion_blur", delta(), [{"motion": length, "motion_angle": 0}])[0, 0]
    assert float(horiz[yy != 0].abs().max()) < 1e-6  # one row
    assert float(horiz.sum() / horiz.max()) == pytest.approx(length, abs=1e-4)  # its length
    assert float(horiz.sum()) == pytest.approx(1.0, abs=1e-5)

    vert = call("motion_blur", delta(), [{"motion": length, "motion_angle": 90}])[0, 0]
    assert float(vert[xx != 0].abs().max()) < 1e-6  # one column
    assert float(vert.sum() / vert.max()) == pytest.approx(length, abs=1e-4)

    diag = call("motion_blur", delta(), [{"motion": length, "motion_angle": 45}])[0, 0]
    up_right = diag[(xx * yy) < 0].sum()  # on screen, +45 degrees points up and right
    down_right = diag[(xx * yy) > 0].sum()
    assert float(up_right) > 0.3 and float(down_right) < 1e-6


def test_noise_has_the_requested_std_and_follows_the_seed() -> None:
    x = torch.full((2, 3, 64, 64), 0.5)
    values = [{"noise": 0.05}, {"noise": 0.0}]
    out = call("noise", x, values, seed=7)
    e = out[0] - 0.5
    assert float(e.std()) == pytest.approx(0.05, rel=0.03)  # sampling error ~0.6%
    assert abs(float(e.mean())) < 0.002
    assert torch.equal(out[1], x[1])
    assert torch.equal(call("noise", x, values, seed=7), out)
    assert not torch.equal(call("noise", x, values, seed=8), out)
    with pytest.raises(LeafattackError, match="Generator"):
        VIEW_TRANSFORMS["noise"](x, params_for(values), None)


def white_square(n: int = 64) -> torch.Tensor:
    x = torch.zeros(1, 3, n, n)
    x[..., n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = 1.0
    return x


def extent(line: torch.Tensor) -> tuple[int, int]:
    """First and last index where a 1-D profile is white (> 0.5)."""
    idx = (line > 0.5).nonzero().squeeze(1)
    return int(idx[0]), int(idx[-1])


def test_perspective_zero_is_identity_and_yaw_pitch_narrow_one_side() -> None:
    x = white_square()
    assert torch.equal(call("perspective", x, [{"yaw": 0, "pitch": 0}]), x)

    # yaw > 0 turns the right edge away: the square is narrower overall and shorter on the right
    out = call("perspective", x, [{"yaw": 30, "pitch": 0}])[0, 0]
    left, right = extent(out[32])
    assert right - left + 1 < 32 - 2
    a0, a1 = extent(out[:, left + 2])
    b0, b1 = extent(out[:, right - 2])
    assert (b1 - b0) < (a1 - a0) - 2

    # pitch > 0 turns the top edge away: measured as the square's width along two rows
    out = call("perspective", x, [{"yaw": 0, "pitch": 30}])[0, 0]
    top, bottom = extent(out[:, 32])
    t0, t1 = extent(out[top + 2])
    b0, b1 = extent(out[bottom - 2])
    assert (t1 - t0) < (b1 - b0) - 2


def test_jpeg_quality_orders_the_error() -> None:
    """Quality 100 is close (on saturated colours 4:2:0 chroma subsampling still costs a
    little, as with OpenCV), quality 10 far."""
    colour = scene(1, 48, 48, seed=4)
    grey = colour.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    for x, close in ((colour, 0.03), (grey, 0.003)):
        err = {}
        for q in (100, 10):
            out = call("jpeg", x, [{"jpeg": q}])
            err[q] = float((out - x).abs().mean())
        assert err[100] < close
        assert err[10] > 3 * err[100] and err[10] > 0.02


def test_temperature_warms_and_cools_grey() -> None:
    grey = torch.full((2, 3, 4, 4), 0.5)
    out = call("temperature", grey, [{"temperature": 3000}, {"temperature": 10000}])
    warm, cool = out[0, :, 0, 0], out[1, :, 0, 0]
    assert warm[0] > warm[1] > warm[2]
    assert cool[2] > cool[0]
    luma = torch.tensor([0.299, 0.587, 0.114])
    for rgb in (warm, cool):
        assert float(rgb @ luma) == pytest.approx(0.5, abs=1e-5)
    assert torch.equal(call("temperature", grey, [{"temperature": NEUTRAL_KELVIN}] * 2), grey)


# --------------------------------------------------------------------------- ViewSpec


def test_the_default_spec_is_the_identity() -> None:
    spec = ViewSpec()
    assert spec.is_identity and spec.to_text() == ""
    params = sample_views(spec, 5, np.random.default_rng(0))
    for name, p in VIEW_PARAMETERS.items():
        assert params[name].tolist() == [p.identity] * 5, name
    x = scene(5)
    assert torch.equal(apply_views(x, params, seed=0), x)
    assert torch.equal(apply_views(x, {}, seed=0), x)


def test_the_approach_preset() -> None:
    spec = ViewSpec.approach()
    assert spec.distance == (1.0, 4.0)
    assert spec.yaw == (-30.0, 30.0) and spec.pitch == (-10.0, 10.0)
    assert spec.brightness == (0.6, 1.4)
    assert spec.blur == (0.0, 1.5) and spec.noise == (0.0, 0.03)
    assert spec.rotation == (0.0, 0.0) and spec.jpeg == (0.0, 0.0)
    assert ViewSpec.parse(spec.to_text()) == spec


def test_parse_the_cli_string() -> None:
    text = (
        "yaw=-30:30,pitch=-10:10,distance=1:4,brightness=0.6:1.4,blur=0:2,noise=0:0.03,jpeg=60:100"
    )
    spec = ViewSpec.parse(text)
    assert spec.yaw == (-30.0, 30.0) and spec.pitch == (-10.0, 10.0)
    assert spec.distance == (1.0, 4.0) and spec.brightness == (0.6, 1.4)
    assert spec.blur == (0.0, 2.0) and spec.noise == (0.0, 0.03) and spec.jpeg == (60.0, 100.0)
    assert spec.gamma == (1.0, 1.0)  # not named: identity
    assert ViewSpec.parse(" rotation = 15 , temperature=3000:9000 ").rotation == (15.0, 15.0)
    assert ViewSpec.parse("") == ViewSpec()
    assert ViewSpec.parse(spec.to_text()) == spec
    odd = ViewSpec(noise=(1e-5, 0.1 + 0.2), rotation=(-1 / 3, -1 / 3))
    assert ViewSpec.parse(odd.to_text()) == odd  # exact round trip


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("foo=1:2", "unknown view parameter 'foo'"),
        ("yaw=abc", "yaw.*not a number"),
        ("yaw=1:2:3", "yaw.*not a number"),
        ("yaw", "not NAME=LOW:HIGH"),
        ("yaw=1:2,yaw=3:4", "yaw is given twice"),
        ("yaw=30:-30", "yaw.*low <= high"),
        ("yaw=-100:0", "yaw.*-60 <= low"),
        ("distance=0.5:2", "distance"),
        ("noise=nan:0.1", "noise"),
        ("blur=0:inf", "blur"),
        ("gamma=0:1", "gamma"),
        ("jpeg=60.5:90", "jpeg.*integers"),
        ("jpeg=0:90", "jpeg.*0 \\(off\\)"),
    ],
)
def test_parse_rejects_bad_input_in_one_line(text: str, match: str) -> None:
    with pytest.raises(LeafattackError, match=match) as info:
        ViewSpec.parse(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"yaw": (10, -10)},
        {"blur": (0, math.inf)},
        {"brightness": "12"},
        {"contrast": (1, 2, 3)},
        {"jpeg": (50, 40)},
    ],
)
def test_spec_validates_its_ranges(kwargs: dict[str, object]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(LeafattackError, match=name):
        ViewSpec(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- sampling


def full_spec() -> ViewSpec:
    return ViewSpec.parse(
        "yaw=-30:30,pitch=-10:10,rotation=-15:15,distance=1:4,blur=0:2,motion=0:6,"
        "motion_angle=-180:180,brightness=0.6:1.4,temperature=3000:10000,contrast=0.7:1.3,"
        "gamma=0.7:1.5,noise=0:0.03,jpeg=60:100"
    )


def test_sample_views_draws_within_the_ranges() -> None:
    spec = full_spec()
    params = sample_views(spec, 200, np.random.default_rng(0))
    assert list(params) == list(VIEW_PARAMETERS)
    for name, (lo, hi) in spec.ranges().items():
        v = params[name]
        assert v.shape == (200,) and lo <= v.min() and v.max() <= hi, name
        assert v.max() - v.min() > 0.5 * (hi - lo), name
    assert params["jpeg"].dtype == np.int64
    assert set(params["jpeg"].tolist()) <= set(range(60, 101))
    assert sample_views(spec, 0, np.random.default_rng(0))["yaw"].shape == (0,)
    with pytest.raises(LeafattackError, match="number of views"):
        sample_views(spec, -1, np.random.default_rng(0))


def test_sample_views_is_seeded_and_streams_are_stable() -> None:
    spec = ViewSpec.approach()
    a = sample_views(spec, 10, np.random.default_rng(3))
    b = sample_views(spec, 10, np.random.default_rng(3))
    c = sample_views(spec, 10, np.random.default_rng(4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["yaw"], c["yaw"])
    # Widening one range changes no other parameter's values.
    d = sample_views(dataclasses.replace(spec, gamma=(0.5, 2.0)), 10, np.random.default_rng(3))
    assert all(np.array_equal(a[k], d[k]) for k in a if k != "gamma")


# --------------------------------------------------------------------------- applying


def test_apply_views_is_deterministic_with_a_seed() -> None:
    x = scene(6, 32, 32, seed=9)

    def run(seed: int) -> tuple[dict[str, np.ndarray], bytes]:
        rng = np.random.default_rng(seed)
        params = sample_views(full_spec(), 6, rng)
        out = apply_views(x, params, seed=int(rng.integers(2**31)))
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        return params, out.numpy().tobytes()

    p1, o1 = run(11)
    p2, o2 = run(11)
    p3, o3 = run(12)
    assert all(np.array_equal(p1[k], p2[k]) for k in p1)
    assert o1 == o2
    assert o1 != o3


def test_apply_views_applies_the_registry_in_order() -> None:
    """apply_views equals chaining the registry's transforms by hand."""
    x = scene(4, seed=6)
    params = sample_views(full_spec(), 4, np.random.default_rng(1))
    tensors = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in params.items()}
    gen = torch.Generator().manual_seed(3)
    ref = x
    for fn in VIEW_TRANSFORMS.values():
        ref = fn(ref, tensors, gen)
    assert torch.equal(apply_views(x, params, seed=3), ref)


@pytest.mark.parametrize(
    ("images", "params", "seed", "match"),
    [
        (scene(2), {"zoom": [1, 1]}, 0, "unknown view parameter 'zoom'"),
        (scene(2), {"yaw": [1, 2, 3]}, 0, "yaw has 3 values for 2 images"),
        (scene(2), {"distance": [0.5, 1]}, 0, "distance = 0.5 is out of range"),
        (scene(2), {"jpeg": [50.5, 0]}, 0, "jpeg = 50.5"),
        (scene(2), {"noise": [math.nan, 0]}, 0, "noise"),
        ((scene(2) * 255).to(torch.uint8), {}, 0, "expected float32"),
        (torch.zeros(2, 4, 8, 8), {}, 0, "expected float32 \\(N, 3, H, W\\)"),
        (scene(2), {}, -1, "seed"),
    ],
    ids=["unknown", "length", "range", "jpeg-int", "nan", "uint8", "channels", "seed"],
)
def test_apply_views_rejects_bad_input(
    images: torch.Tensor, params: dict[str, object], seed: int, match: str
) -> None:
    with pytest.raises(LeafattackError, match=match):
        apply_views(images, params, seed=seed)  # type: ignore[arg-type]
