"""Scenes files: read a scenes CSV, resolve its leaves, and render it to PNGs.

A scenes CSV has one row per leaf (a run's ``leaves.csv`` and a grid run's ``best.csv``
read as scenes files too: ``trial_id`` is then the scene id, and a missing ``slot`` is 0)::

    scene_id,sign_id,slot,leaf_id,colour,size,angle,x,y
    0,3,0,maple_red_0,red,0.4,30,0.5,0.4
    0,3,1,oak_green_0@brown,brown,0.25,0,0.3,0.6

``sign_id`` is the sign's index in the sign set (as in ``clean.csv``); ``x``, ``y``,
``size`` and ``angle`` follow ``trials.csv`` (leaf centre as fractions of the sign image,
longest side as a fraction of the sign width, degrees counter-clockwise). A ``leaf_id``
is a leaf of the library as shipped (its ``colour`` is then the shipped colour or
``natural``) or ``<leaf id>@<fall colour>``, the leaf recoloured, exactly as a run writes
them into ``trials.csv`` and ``best.csv``. Leaves of one scene stack in ``slot`` order.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from leafattack.compose.functional import to_uint8_hwc
from leafattack.compose.scenes import SceneBatch, VariantBank, build_variant_bank, render_scenes
from leafattack.compose.views import ViewSpec, apply_views, sample_views
from leafattack.data import SignSet
from leafattack.data.faces import sign_faces
from leafattack.engine.preparation import leaf_units, photo_conditions, resize_signs
from leafattack.errors import LeafattackError
from leafattack.imageio import write_png
from leafattack.leaves import FALL_COLOURS, NATURAL, Leaf, recolour
from leafattack.paths import safe_name

log = logging.getLogger(__name__)

SCENE_COLUMNS: tuple[str, ...] = (
    "scene_id",
    "sign_id",
    "slot",
    "leaf_id",
    "colour",
    "size",
    "angle",
    "x",
    "y",
)
"""Columns of a scenes CSV, one row per leaf."""

MAX_LEAVES_PER_SCENE = 16
"""The most leaves one scene may hold."""


@dataclass(frozen=True, slots=True)
class SceneTable:
    """A validated scenes file.

    Attributes:
        scene_ids: (N,) the scene ids, sorted (as strings, as written).
        batch: the scenes as a :class:`SceneBatch` (on the CPU), slot k = k-th leaf by slot.
        variants: (V,) the distinct leaf ids the batch's ``variant`` indexes.
        rows: the CSV rows, sorted by scene and slot.
    """

    scene_ids: tuple[str, ...]
    batch: SceneBatch
    variants: tuple[str, ...]
    rows: pd.DataFrame


def _row_error(path: Path, line: int, what: str) -> LeafattackError:
    return LeafattackError(f"{path}, line {line}: {what}")


def read_scenes(path: str | os.PathLike[str], n_signs: int, leaves: dict[str, Leaf]) -> SceneTable:
    """Read and check a scenes CSV against a sign set of ``n_signs`` signs and a library.

    Raises:
        LeafattackError: one line naming the file and row: a missing column, an unknown
            sign or leaf id, a colour that does not match the leaf, a non-finite or
            out-of-range value, a repeated slot, or more than 16 leaves in a scene.
    """
    p = Path(path)
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise LeafattackError(f"{p}: scenes file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeafattackError(f"{p}: not a readable scenes CSV ({first})") from None
    if "scene_id" not in df.columns and "trial_id" in df.columns:
        df = df.rename(columns={"trial_id": "scene_id"})  # a run's leaves.csv or best.csv
    if "slot" not in df.columns and "scene_id" in df.columns:
        df["slot"] = "0"  # one leaf per scene (a grid run's best.csv)
    missing = [c for c in SCENE_COLUMNS if c not in df.columns]
    if missing:
        raise LeafattackError(
            f"{p}: missing column(s) {', '.join(missing)} (expected {','.join(SCENE_COLUMNS)})"
        )
    if df.empty:
        raise LeafattackError(f"{p}: holds no scenes (expected one row per leaf)")
    df = df[list(SCENE_COLUMNS)].copy()
    df["line"] = np.arange(len(df)) + 2  # the header is line 1

    def number(col: str, integer: bool) -> np.ndarray:
        out = np.empty(len(df), dtype=np.float64)
        for i, (text, line) in enumerate(zip(df[col], df["line"], strict=True)):
            try:
                v = float(text)
            except ValueError:
                raise _row_error(p, line, f"{col} {text!r} is not a number") from None
            limit = 2.0**53 if integer else 1e9
            bad_int = integer and (not v.is_integer() or v < 0)
            if not math.isfinite(v) or bad_int or abs(v) > limit:
                kind = (
                    "a non-negative integer below 2**53"
                    if integer
                    else "a finite number of magnitude at most 1e9"
                )
                raise _row_error(p, line, f"{col} {text!r}: expected {kind}")
            out[i] = v
        return out

    sign = number("sign_id", True).astype(np.int64)
    slot = number("slot", True).astype(np.int64)
    size = number("size", False)
    number("angle", False)  # checked here, read below
    x = number("x", False)
    y = number("y", False)
    lines = df["line"].to_numpy()
    for name, bad, expected in (
        ("sign_id", sign >= n_signs, f"a sign index below {n_signs}"),
        ("size", (size <= 0) | (size > 2), "a fraction of the sign width in (0, 2]"),
        ("x", (x < -1) | (x > 2), "a fraction of the sign width in [-1, 2]"),
        ("y", (y < -1) | (y > 2), "a fraction of the sign height in [-1, 2]"),
    ):
        if bad.any():
            i = int(np.argmax(bad))
            value = df[name].iloc[i]
            raise _row_error(p, int(lines[i]), f"{name} {value!r}: expected {expected}")
    for i, (leaf_id, colour) in enumerate(zip(df["leaf_id"], df["colour"], strict=True)):
        base, at, level = leaf_id.partition("@")
        leaf = leaves.get(base)
        if leaf is None:
            raise _row_error(p, int(lines[i]), f"unknown leaf id {base!r} (not in the library)")
        if at and level not in FALL_COLOURS:
            raise _row_error(
                p,
                int(lines[i]),
                f"leaf id {leaf_id!r}: expected <leaf id>@<one of {', '.join(FALL_COLOURS)}>",
            )
        expected = level if at else leaf.colour
        if colour not in (expected, NATURAL if not at else expected):
            raise _row_error(
                p,
                int(lines[i]),
                f"colour {colour!r} does not match leaf {leaf_id!r} (expected {expected!r})",
            )
    df["sign_i"], df["slot_i"] = sign, slot
    df = df.sort_values(["scene_id", "slot_i"], kind="mergesort").reset_index(drop=True)
    dup = df.duplicated(["scene_id", "slot_i"])
    if dup.any():
        row = df[dup].iloc[0]
        raise _row_error(
            p, int(row["line"]), f"scene {row['scene_id']!r} repeats slot {row['slot']}"
        )
    per_scene = df.groupby("scene_id", sort=True)
    if (per_scene["sign_i"].nunique() > 1).any():
        sid = str(per_scene["sign_i"].nunique().idxmax())
        raise LeafattackError(f"{p}: scene {sid!r} names more than one sign_id")
    counts = per_scene.size()
    if counts.max() > MAX_LEAVES_PER_SCENE:
        raise LeafattackError(
            f"{p}: scene {str(counts.idxmax())!r} has {int(counts.max())} leaves "
            f"(expected 1 to {MAX_LEAVES_PER_SCENE})"
        )
    scene_ids = tuple(str(s) for s in counts.index)
    n, k = len(scene_ids), int(counts.max())
    index = {s: i for i, s in enumerate(scene_ids)}
    variants = tuple(dict.fromkeys(df["leaf_id"]))
    vindex = {v: i for i, v in enumerate(variants)}
    row_scene = np.array([index[s] for s in df["scene_id"]], dtype=np.int64)
    row_slot = per_scene.cumcount().to_numpy()
    arrays = {name: np.zeros((n, k), np.float32) for name in ("size", "angle", "x", "y")}
    variant = np.zeros((n, k), np.int64)
    present = np.zeros((n, k), bool)
    for name in arrays:
        arrays[name][row_scene, row_slot] = df[name].astype(np.float64).to_numpy()
    variant[row_scene, row_slot] = [vindex[v] for v in df["leaf_id"]]
    present[row_scene, row_slot] = True
    arrays["size"][~present] = 1.0
    signs = np.zeros(n, np.int64)
    signs[row_scene] = df["sign_i"].to_numpy()
    batch = SceneBatch(
        sign=torch.from_numpy(signs),
        variant=torch.from_numpy(variant),
        size=torch.from_numpy(arrays["size"]),
        angle=torch.from_numpy(arrays["angle"]),
        x=torch.from_numpy(arrays["x"]),
        y=torch.from_numpy(arrays["y"]),
        present=torch.from_numpy(present),
    )
    return SceneTable(scene_ids, batch, variants, df.drop(columns=["sign_i", "slot_i"]))


def variant_images(variants: tuple[str, ...], leaves: dict[str, Leaf]) -> list[np.ndarray]:
    """RGBA images of leaf ids as a run names them (``id`` as shipped, ``id@colour``
    recoloured).

    Returns:
        uint8 (h, w, 4) per variant, in order.
    """
    out = []
    for v in variants:
        base, at, level = v.partition("@")
        leaf = leaves[base]
        out.append(recolour(leaf, level).rgba if at else leaf.rgba)
    return out


def render_scene_table(
    table: SceneTable,
    signs: SignSet,
    leaves: dict[str, Leaf],
    out: Path,
    *,
    sign_size: int = 128,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    quiet: bool = False,
    views: ViewSpec | None = None,
    seed: int = 0,
    size_unit: str = "face",
    appearance: str = "auto",
    shadow: bool = False,
) -> list[Path]:
    """Render every scene of ``table`` to ``OUT/<scene_id>.png`` at ``sign_size`` pixels.

    Signs are prepared as a run prepares them: faces from :func:`~leafattack.data.faces.
    sign_faces`, crops padded to squares, leaf sizes in ``size_unit`` (fractions of the face
    width, or cm), and with ``appearance`` matched on photo sources (estimates, shadows and
    noise fields seeded by ``seed`` and the sign's index, as in a run with that seed).

    With a non-identity ``views`` spec, each scene is seen under one viewing transform
    drawn with ``seed`` (:func:`~leafattack.compose.views.sample_views`), applied after
    compositing, and its parameters are written to ``OUT/views.csv`` (one row per scene).

    Returns:
        The written paths, in scene order.
    """
    photo = signs.masks is None or appearance == "matched"
    signs, _ = sign_faces(signs)
    used = np.unique(table.batch.sign.numpy())
    imgs, masks = resize_signs(signs, used, sign_size)
    units = np.zeros(len(signs), dtype=np.float64)
    units[used] = leaf_units(signs, used, masks, size_unit)
    conditions = photo_conditions(
        signs,
        used,
        appearance,
        photo=photo,
        sign_size=sign_size,
        seed=seed,
        shadow=shadow,
        device=device,
    )
    local = np.full(len(signs), -1, dtype=np.int64)
    local[used] = np.arange(len(used))
    sign_t = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous().to(device)
    mask_t = torch.from_numpy(masks).to(device)
    bank: VariantBank = build_variant_bank(
        variant_images(table.variants, leaves), sign_size, device=device
    )
    b = table.batch
    out.mkdir(parents=True, exist_ok=True)
    names = [safe_name(s) for s in table.scene_ids]
    if len(set(names)) != len(names):
        raise LeafattackError("scene ids collide once made file names (use plain ids)")
    spec = views if views is not None and not views.is_identity else None
    params = sample_views(spec, b.n_scenes, np.random.default_rng(seed)) if spec else {}
    paths: list[Path] = []
    for s0 in tqdm(range(0, b.n_scenes, batch_size), disable=quiet, desc="render", unit="batch"):
        s1 = min(b.n_scenes, s0 + batch_size)
        part = SceneBatch(
            sign=torch.from_numpy(local[b.sign[s0:s1].numpy()]),
            variant=b.variant[s0:s1],
            size=(
                b.size[s0:s1].double()
                * torch.from_numpy(units[b.sign[s0:s1].numpy()])[:, None]
                / sign_size
            ).float(),
            angle=b.angle[s0:s1],
            x=b.x[s0:s1],
            y=b.y[s0:s1],
            present=b.present[s0:s1],
        ).to(device)
        with torch.inference_mode():
            images, _ = render_scenes(
                sign_t,
                mask_t,
                bank,
                part,
                appearance=None if conditions is None else conditions[0],
                noise=None if conditions is None else conditions[1],
            )
            if spec is not None:
                chunk = {k: v[s0:s1] for k, v in params.items()}
                batch_seed = int(np.random.SeedSequence([seed, s0]).generate_state(1)[0])
                images = apply_views(images, chunk, batch_seed)
        for name, img in zip(names[s0:s1], to_uint8_hwc(images), strict=True):
            path = out / f"{name}.png"
            write_png(path, img)
            paths.append(path)
    if spec is not None:
        table_out = pd.DataFrame({"scene_id": list(table.scene_ids), **params})
        table_out.to_csv(out / "views.csv", index=False, float_format="%.6g")
    return paths
