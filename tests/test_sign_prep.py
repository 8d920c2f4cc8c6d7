"""How a run prepares its signs: faces, square padding, leaf sizes relative to the face
(or in cm), and leaves matched to the photo's appearance (scenes issue, items 6-8)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from leafattack.cli import main
from leafattack.compose.appearance import Appearance
from leafattack.config import RunConfig
from leafattack.data.canvas import face_width, pad_square, square_canvas
from leafattack.data.faces import GTSRB_BORDER, GTSRB_SHAPES, derive_faces, sign_faces
from leafattack.data.signset import GTSRB_CLASSES, LISA_CLASSES, SignSet
from leafattack.data.sizes import FACE_WIDTH_CM, face_widths_cm
from leafattack.data.sources import load_signs
from leafattack.engine.evaluate import composite_trials
from leafattack.engine.preparation import build_plan, prepare
from leafattack.errors import LeafattackError
from leafattack.grid import GridSpec

REAL_DATA = os.environ.get("LEAFATTACK_REAL_DATA")
needs_real = pytest.mark.skipif(not REAL_DATA, reason="LEAFATTACK_REAL_DATA is unset")

SMALL = GridSpec(species=("maple",), sizes=(0.3, 0.5), angles=(0.0,), positions=(2, 2))


# -- padding -------------------------------------------------------------------------------


@pytest.mark.parametrize("h, w", [(10, 17), (17, 10), (9, 9), (1, 4)])
def test_pad_square_matches_numpy_edge_padding(h: int, w: int) -> None:
    rng = np.random.default_rng(h * 100 + w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = rng.random((h, w)) > 0.5
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    pads = ((top, side - h - top), (left, side - w - left))
    expected = np.pad(img, (*pads, (0, 0)), mode="edge")
    out, m = pad_square(img, mask)
    assert out.shape == (side, side, 3) and np.array_equal(out, expected)
    assert np.array_equal(m, np.pad(mask, pads, constant_values=False))


def test_square_canvas_keeps_a_circle_round() -> None:
    """A disc on a 40 x 80 crop stays a disc (squashing would make it 2:1 wide on 64 x 64)."""
    yy, xx = np.mgrid[:40, :80]
    disc = (xx - 39.5) ** 2 + (yy - 19.5) ** 2 <= 18**2
    img = np.where(disc[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    out, m = square_canvas(img, disc, 64)
    ys, xs = np.nonzero(out[..., 0] > 127)
    assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) <= 1
    assert not m[:10].any() and not m[-10:].any()  # padding rows are background


def test_face_width_is_the_bounding_box_width() -> None:
    m = np.zeros((20, 30), dtype=bool)
    m[3:9, 4:25] = True
    m[12, 2] = True
    assert face_width(m) == 23
    assert face_width(np.zeros((5, 7), dtype=bool)) == 7


# -- faces by source -------------------------------------------------------------------------


def test_sign_faces_keep_source_masks_and_fall_back_to_the_whole_image() -> None:
    img = np.zeros((12, 16, 3), dtype=np.uint8)
    masked = SignSet((img,), np.array([0]), ("thing",), ("a.png",), masks=(img[..., 0] > 0,))
    assert sign_faces(masked) == (masked, "masks of the source")
    unknown = SignSet((img,), np.array([0]), ("thing",), ("a.png",), source="/x")
    out, rule = sign_faces(unknown)
    assert rule == "whole image" and out.masks is not None and out.masks[0].all()


def test_sign_faces_by_class_name_for_folders() -> None:
    img = np.zeros((20, 20, 3), dtype=np.uint8)
    s = SignSet((img,), np.array([14]), GTSRB_CLASSES, ("stop.png",), source="/folder")
    out, rule = sign_faces(s)
    assert rule.startswith("GTSRB") and out.masks is not None
    assert np.array_equal(out.masks[0], derive_faces(s, GTSRB_SHAPES, 0.0)[0])


@needs_real
def test_gtsrb_runs_use_the_derived_faces() -> None:
    spec = f"gtsrb:{Path(str(REAL_DATA)) / 'gtsrb'}"
    cfg = RunConfig(signs=spec, model="fixture_models:gtsrb_mean", grid=SMALL, limit_signs=6,
                    device="cpu", quiet=True, appearance="raw", seed=3)
    prep = prepare(cfg)
    signs = load_signs(spec)
    faces = derive_faces(signs, GTSRB_SHAPES, GTSRB_BORDER)
    for j, i in enumerate(prep.sign_ids):
        _, expected = square_canvas(signs.images[i], faces[i], cfg.sign_size)
        assert np.array_equal(prep.sign_masks[j].numpy(), expected)
        assert prep.unit_px is not None and prep.unit_px[j] == face_width(expected)
    # lattice centres lie inside each face's bounding box
    plan = build_plan(prep, np.ones(len(prep.sign_ids), dtype=bool))
    for j, pos in enumerate(plan.positions):  # type: ignore[union-attr]
        ys, xs = np.nonzero(prep.sign_masks[j].numpy())
        px = pos[:, 0] * cfg.sign_size
        assert (px > xs.min()).all() and (px < xs.max() + 1).all()


# -- leaf sizes ------------------------------------------------------------------------------


def _leaf_extent(alpha: torch.Tensor) -> int:
    cols = np.flatnonzero(alpha.numpy().max(axis=0) > 0.02)
    rows = np.flatnonzero(alpha.numpy().max(axis=1) > 0.02)
    return int(max(cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1))


def _extents(cfg: RunConfig) -> tuple[list[int], list[np.ndarray], list[str]]:
    prep = prepare(cfg)
    plan = build_plan(prep, np.ones(len(prep.sign_ids), dtype=bool))
    d = plan.decode(0, plan.total_active)
    # one centred trial per sign: position index of the lattice cell nearest the middle
    pick = [int(np.flatnonzero(d["sign"] == j)[0]) for j in range(len(prep.sign_ids))]
    sub = {k: v[pick] for k, v in d.items()}
    sub["x"] = np.full(len(pick), 0.5)
    sub["y"] = np.full(len(pick), 0.5)
    _, _, alpha = composite_trials(prep, sub)
    names = [prep.signs.class_names[int(prep.signs.labels[i])] for i in prep.sign_ids]
    return [_leaf_extent(a) for a in alpha], list(prep.sign_masks.numpy()), names


def test_leaf_size_is_a_fraction_of_the_face_width(signs4: Path) -> None:
    """A size-0.5 leaf is half as long as the face is wide, on narrow and wide faces alike."""
    grid = GridSpec(species=("maple",), sizes=(0.5,), angles=(0.0,), positions=(1, 1))
    cfg = RunConfig(signs=str(signs4), model="fixture_models:template", grid=grid,
                    device="cpu", quiet=True)
    extents, masks, _ = _extents(cfg)
    widths = [int(np.ptp(np.nonzero(m)[1])) + 1 for m in masks]
    assert len(set(widths)) > 1  # the four signs differ in face width
    for e, w in zip(extents, widths, strict=True):
        assert abs(e - 0.5 * w) <= 1.5


def test_sizes_in_cm_follow_the_mutcd_table(signs4: Path) -> None:
    grid = GridSpec(species=("maple",), sizes=(20.0,), angles=(0.0,), positions=(1, 1),
                    size_unit="cm")
    cfg = RunConfig(signs=str(signs4), model="fixture_models:template", grid=grid,
                    device="cpu", quiet=True)
    extents, masks, names = _extents(cfg)
    inch = 2.54
    mutcd = {"stop": 30 * inch, "yield": 36 * inch, "keepRight": 24 * inch,
             "school": 36 * inch, "schoolSpeedLimit25": 24 * inch,
             **{f"speedLimit{v}": 24 * inch for v in (25, 30, 35, 45)}}
    for e, m, name in zip(extents, masks, names, strict=True):
        width_cm = mutcd.get(name, 30 * inch * np.sqrt(2))  # warning diamonds: the diagonal
        w = int(np.ptp(np.nonzero(m)[1])) + 1
        assert abs(e - 20.0 / width_cm * w) <= 1.5, name


def test_face_width_tables() -> None:
    assert set(FACE_WIDTH_CM) >= set(GTSRB_CLASSES) | set(LISA_CLASSES)
    assert face_widths_cm(["Stop", "Yield", "Speed limit (30km/h)"]).tolist() == [60, 90, 60]
    assert face_widths_cm(["Priority road"])[0] == pytest.approx(84.85, abs=0.01)
    with pytest.raises(LeafattackError, match="no standard face size.*'dragon'"):
        face_widths_cm(["dragon"])


def test_cli_sizes_flags(signs4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["run", "--signs", str(signs4), "--model", "fixture_models:template", "--quiet",
            "--out", str(tmp_path / "r")]
    assert main([*base, "--sizes", "0.3", "--sizes-cm", "12"]) == 2
    assert "error: --sizes and --sizes-cm" in capsys.readouterr().err
    assert main([*base, "--sizes-cm", "0,12"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: size 0.0 cm") and err.count("\n") == 1


# -- matched appearance ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gtsrb_preps() -> tuple[object, object]:
    if not REAL_DATA:
        pytest.skip("LEAFATTACK_REAL_DATA is unset")
    spec = f"gtsrb:{Path(str(REAL_DATA)) / 'gtsrb'}"
    base = dict(signs=spec, model="fixture_models:gtsrb_mean", grid=SMALL, limit_signs=5,
                device="cpu", quiet=True, seed=1)
    return prepare(RunConfig(**base)), prepare(RunConfig(**base, appearance="raw"))  # type: ignore[arg-type]


def test_appearance_defaults_by_source(signs4: Path, gtsrb_preps: tuple) -> None:
    matched, raw = gtsrb_preps
    assert matched.appearance is not None and matched.noise is not None
    assert raw.appearance is None
    builtin = prepare(RunConfig(signs=str(signs4), model="fixture_models:template", grid=SMALL,
                                device="cpu", quiet=True))
    assert builtin.appearance is None  # rendered signs with masks of their own stay raw


def test_matched_leaves_take_the_photo_exposure(gtsrb_preps: tuple) -> None:
    """With blur, noise and resampling switched off, a matched leaf is the raw leaf times
    its sign's estimated gain: exactly, where the leaf is opaque; and the sign is untouched
    where there is no leaf."""
    matched, raw = gtsrb_preps
    est = matched.appearance
    n = est.n
    z = torch.zeros(n)
    only_gain = Appearance(torch.ones(n), z, est.gain, z, z, z, z, z)
    prep = dataclasses.replace(matched, appearance=only_gain)
    plan = build_plan(raw, np.ones(len(raw.sign_ids), dtype=bool))
    d = plan.decode(0, plan.total_active)
    img_m, _, alpha = composite_trials(prep, d)
    img_r, _, _ = composite_trials(raw, d)
    gain = est.gain[torch.from_numpy(d["sign"])][:, :, None, None]
    opaque = (alpha == 1.0)[:, None].expand_as(img_m)
    expected = (gain * img_r).clamp(max=1.0)
    assert opaque.sum() > 1000
    assert torch.allclose(img_m[opaque], expected[opaque], atol=1e-6)
    clear = (alpha == 0.0)[:, None].expand_as(img_m)
    assert torch.equal(img_m[clear], img_r[clear])
    assert not torch.allclose(est.gain, torch.ones_like(est.gain), atol=0.05)


def test_matched_leaves_are_blurred_like_their_photo(gtsrb_preps: tuple) -> None:
    """The full match softens the leaf's edge: fewer pixels are fully opaque or fully
    clear than in the raw render (the photos are upscaled 4-7x and blurred)."""
    matched, raw = gtsrb_preps
    plan = build_plan(raw, np.ones(len(raw.sign_ids), dtype=bool))
    d = plan.decode(0, plan.total_active)
    img_m, _, _ = composite_trials(matched, d)
    img_r, _, _ = composite_trials(raw, d)
    grad = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert grad(img_m) < grad(img_r)


def test_matched_render_does_not_depend_on_batching(gtsrb_preps: tuple) -> None:
    matched, _ = gtsrb_preps
    plan = build_plan(matched, np.ones(len(matched.sign_ids), dtype=bool))
    d = plan.decode(0, plan.total_active)
    whole, _, _ = composite_trials(matched, d)
    parts = [composite_trials(matched, {k: v[i : i + 3] for k, v in d.items()})[0]
             for i in range(0, len(d["sign"]), 3)]
    assert torch.equal(whole, torch.cat(parts))


def test_render_reproduces_matched_trials(gtsrb_preps: tuple, tmp_path: Path) -> None:
    """``leafattack render`` prepares photo signs as the run does (faces, padding, face-width
    sizes, matched appearance with the run's seed): its images of a run's trials are the
    run's composites, up to the resampling difference of its leaf atlas (measured: mean
    <= 0.064 levels, max 3 of 255, at the alpha edge)."""
    from leafattack.api import render
    from leafattack.compose.functional import to_uint8_hwc
    from leafattack.imageio import read_rgb

    matched, _ = gtsrb_preps
    plan = build_plan(matched, np.ones(len(matched.sign_ids), dtype=bool))
    d = plan.decode(0, plan.total_active)
    pick = np.arange(0, len(d["sign"]), 3)
    sub = {k: v[pick] for k, v in d.items()}
    images, _, _ = composite_trials(matched, sub)
    expected = to_uint8_hwc(images).astype(int)
    sizes = np.asarray(matched.config.grid.sizes)[sub["size_idx"]]
    angles = np.asarray(matched.config.grid.angles)[sub["angle_idx"]]
    scenes = pd.DataFrame({
        "scene_id": sub["trial_id"],
        "sign_id": matched.sign_ids[sub["sign"]],
        "slot": 0,
        "leaf_id": [matched.variants[v].leaf_id for v in sub["variant"]],
        "colour": [matched.variants[v].colour for v in sub["variant"]],
        "size": sizes,
        "angle": angles,
        "x": sub["x"],
        "y": sub["y"],
    })
    scenes.to_csv(tmp_path / "scenes.csv", index=False, float_format="%.9g")
    paths = render(tmp_path / "scenes.csv", tmp_path / "out", signs=matched.config.signs,
                   device="cpu", quiet=True, seed=matched.config.seed)
    by_name = {p.stem: p for p in paths}
    assert len(by_name) == len(expected)
    for tid, exp in zip(sub["trial_id"], expected, strict=True):
        p = by_name[str(tid)]
        diff = np.abs(read_rgb(p).astype(int) - exp)
        assert diff.mean() < 0.5 and diff.max() <= 12, p.name
