"""Fuzzing every text input: TOML configs, grid flags, sign source and model specs, sign and
leaf manifests, GTSRB and LISA annotation files.

Every outcome is a valid result or a :class:`LeafattackError`: never another exception and
never a hang (each call runs under an alarm). Inputs that parse must give exactly the values
they spell (no silently wrong grid, no crop other than the annotated box). A sample of bad
inputs goes through ``leafattack.cli.main``: exit status 2 and one ``error:`` line.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import signal
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from rel_support import assert_one_error_line, run_args

from leafattack.cli import main
from leafattack.config import RunConfig, config_from_mapping, load_config
from leafattack.data.signset import SignSet
from leafattack.data.sources import load_gtsrb, load_lisa, load_signs
from leafattack.errors import LeafattackError
from leafattack.grid import parse_angles, parse_float_list, parse_positions
from leafattack.leaves.library import load_leaves
from leafattack.models.classifier import Classifier
from leafattack.models.loading import load_model

T = TypeVar("T")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
EXAMPLES = int(os.environ.get("LEAFATTACK_FUZZ_EXAMPLES", "60"))  # raise it for a deep run
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class Hang(Exception):
    pass


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def ring(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(fn: Callable[[], T], seconds: float = 20) -> T | LeafattackError:
    """``fn()``'s value, or the LeafattackError it raised; anything else fails the test."""
    with _alarm(seconds):
        try:
            value = fn()
        except LeafattackError as exc:
            message = str(exc)
            assert message and "\n" not in message
            with contextlib.suppress(Exception):  # outside @given (the CLI cases)
                event("LeafattackError")
            return exc
    with contextlib.suppress(Exception):
        event(f"valid {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------- TOML config

CONFIG_KEYS = (
    "signs", "leaves", "model", "out", "leaf_ids", "species", "colours", "sizes", "angles",
    "positions", "on_sign_only", "target", "min_confidence", "limit_signs", "batch_size",
    "device", "seed", "sign_size", "quiet", "overwrite", "trust_torchscript", "edges",
    "report", "executor", "address", "workers", "gpus_per_worker", "chunk_size",
)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(["0.3,0.5", "0:360:45", "3x3", "5x", "builtin", "cpu", "cuda:9", "maple",
                     "natural", "", " , ", "nan", "1e309", "-1", "ray", "local", "a\0b"]),
    st.dates(), st.datetimes(), st.times(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6,
)
DOCS = st.dictionaries(st.sampled_from((*CONFIG_KEYS, "bogus", "run", "versions")), VALUES,
                       max_size=5)


@st.composite
def toml_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["doc", "doc", "truncated", "spliced", "text", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    try:
        text = tomli_w.dumps(draw(DOCS))
    except (TypeError, ValueError):  # something tomli_w cannot write
        text = ""
    if kind == "truncated":
        text = text[: draw(st.integers(0, len(text)))]
    elif kind == "spliced":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=6)) + text[at:]
    return text.encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=toml_bytes())
@example(data=b"sizes = " + b"[" * 3000 + b"]" * 3000)  # nesting deeper than recursion
@example(data=b"batch_size = " + b"9" * 5000)  # more digits than int() takes
@example(data=b"seed = 0x" + b"f" * 40)  # beyond 64 bits
@example(data=b"min_confidence = 100000000000000000000000000000000000000000000000000000" * 8)
@example(data=b'out = "a\\u0000b"')
@example(data=b"angles = \"-1e308:1e308:1e307\"")
@example(data=b"batch_size = 8\nbatch_size = 16\n")  # contradictory: the same key twice
@example(data=b"batch_size = 8\nchunk_size = 12\n")  # contradictory: not a multiple
@example(data=b"[grid]\nsizes = 1\n[grid]\nsizes = 2\n")
def test_config_file_is_valid_or_one_line_error(scratch: Path, data: bytes) -> None:
    path = scratch / "config.toml"
    path.write_bytes(data)
    got = outcome(lambda: load_config(path))
    if isinstance(got, LeafattackError):
        return
    config = outcome(lambda: config_from_mapping(got))
    assert isinstance(config, RunConfig)  # load_config validated it already


def accepted(fn: Callable[[], T]) -> T:
    """``fn()``'s value; a refusal of a known-valid input fails the test, naming the reason.
    (The fuzzers above accept any refusal: these companions show the loaders accept.)"""
    got = outcome(fn)
    assert not isinstance(got, LeafattackError), f"a valid input was refused: {got}"
    return got


def test_config_file_fuzzer_companion_valid_file_loads(scratch: Path) -> None:
    path = scratch / "known_valid.toml"
    path.write_text('signs = "builtin"\nspecies = ["maple", "oak"]\ncolours = "red, brown"\n'
                    'sizes = [0.2, 0.35]\nangles = "0:360:90"\npositions = "7x5"\n'
                    "on_sign_only = true\nbatch_size = 16\nseed = 3\nmin_confidence = 0.25\n")
    data = accepted(lambda: load_config(path))
    config = accepted(lambda: config_from_mapping(data))
    g = config.grid
    assert (g.species, g.colours) == (("maple", "oak"), ("red", "brown"))
    assert (g.sizes, g.angles, g.positions) == ((0.2, 0.35), (0.0, 90.0, 180.0, 270.0), (7, 5))
    assert g.on_sign_only is True and config.signs == "builtin"
    assert (config.batch_size, config.seed, config.min_confidence) == (16, 3, 0.25)


NAME = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=8)


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    sizes = draw(st.lists(st.floats(0.001, 2.0), min_size=1, max_size=4, unique=True))
    angles = draw(st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=4, unique=True))
    n, m = draw(st.integers(1, 1000)), draw(st.integers(1, 1000))
    doc["sizes"] = draw(st.sampled_from([sizes, ",".join(map(repr, sizes))]))
    doc["angles"] = draw(st.sampled_from([angles, " , ".join(map(repr, angles))]))
    doc["positions"] = draw(st.sampled_from([f"{n}x{m}", f" {n} X {m} ", [n, m]]))
    doc["species"] = draw(st.lists(NAME, min_size=1, max_size=3, unique=True))
    doc["batch_size"] = draw(st.integers(1, 1_000_000))
    doc["seed"] = draw(st.integers(0, 2**63 - 1))
    doc["sign_size"] = draw(st.integers(16, 1024))
    doc["min_confidence"] = draw(st.floats(0.0, 1.0))
    doc["on_sign_only"] = draw(st.booleans())
    doc["target"] = draw(NAME)
    keep = draw(st.sets(st.sampled_from(sorted(doc)), min_size=1))
    return {k: doc[k] for k in keep}, {"sizes": sizes, "angles": angles, "positions": (n, m)}


@FUZZ
@given(case=valid_configs())
def test_valid_config_gives_exactly_its_values(scratch: Path, case: tuple) -> None:
    doc, spelled = case
    path = scratch / "valid.toml"
    path.write_text(tomli_w.dumps(doc))
    config = config_from_mapping(load_config(path))
    g = config.grid
    for key in ("sizes", "angles"):
        if key in doc:
            assert getattr(g, key) == tuple(spelled[key]), key
    if "positions" in doc:
        assert g.positions == spelled["positions"]
    if "species" in doc:
        assert g.species == tuple(doc["species"])
    for key in ("batch_size", "seed", "sign_size", "min_confidence", "target"):
        if key in doc:
            assert getattr(config, key) == doc[key], key
    if "on_sign_only" in doc:
        assert g.on_sign_only is doc["on_sign_only"]


# ----------------------------------------------------------------------------- grid flags

NUMBER_TEXT = st.one_of(
    st.floats().map(repr), st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["nan", "-inf", "1e-320", "1_000", "0x10", " 4 ", "", "1e309", "٣"]),
)


def documented_list(text: str) -> tuple[float, ...] | None:
    """A comma-separated list of numbers as the README spells it (``--sizes LIST``,
    ``--angles LIST``), read independently of leafattack.grid: items split at commas, blank
    items ignored, each other item read by Python's ``float()``; None when an item is not a
    number or no item is left."""
    values = []
    for item in text.split(","):
        if item.isspace() or not item:
            continue
        try:
            values.append(float(item))
        except ValueError:
            return None
    return tuple(values) or None


MAX_ANGLES = 100_000
"""The documented limit of a range (README: "too many" is refused)."""


@dataclass(frozen=True)
class AngleRange:
    """What ``START:STOP:STEP`` must give, from the documented rules alone (README, grid
    docs): ``START + i*STEP`` for every ``i >= 0`` whose exact value lies before STOP (stop
    exclusive, so at least START), to 1e-9 degrees; refused when a part is not a finite
    number, ``STEP <= 0``, ``STOP <= START``, more than 100000 angles, or duplicates after the
    rounding. ``verdict``: "valid", "refused", or "either" where the rules leave it open
    (float rounding at the exclusive end, angles closer than the rounding grid, a span that
    overflows a float)."""

    verdict: str
    start: Fraction = Fraction(0)
    step: Fraction = Fraction(0)
    n: int = 0  # angles in the exact rational sense
    n_alt: int = 0  # also accepted for "either" at the end: the last angle within 1e-9 STEP
    slack: float = 0.0  # float rounding allowed on each angle, beyond the 1e-9 grid


def documented_range(text: str) -> AngleRange:
    parts = text.split(":")
    if len(parts) != 3:
        return AngleRange("refused")
    try:
        start, stop, step = (float(t) for t in parts)
    except ValueError:
        return AngleRange("refused")
    if not all(math.isfinite(v) for v in (start, stop, step)) or step <= 0 or stop <= start:
        return AngleRange("refused")
    a0, end, da = Fraction(start), Fraction(stop), Fraction(step)
    ratio = (end - a0) / da
    n = -(-ratio.numerator // ratio.denominator)  # ceil: i = 0 .. n-1 lie before STOP
    near_end = ratio - (n - 1) <= Fraction(1e-8) + ratio * Fraction(1e-15)
    n_alt = max(1, n - 1) if near_end else n
    if min(n, n_alt) > MAX_ANGLES:
        return AngleRange("refused")
    slack = 4 * math.ulp(max(abs(start), abs(stop)))
    verdict = "valid"
    if max(n, n_alt) > MAX_ANGLES or n != n_alt:
        verdict = "either"
    if step < 2e-9 or step < 8 * slack:  # neighbours may collide on the 1e-9 grid
        verdict = "either"
    if not (math.isfinite(stop - start) and math.isfinite((stop - start) / step)):
        verdict = "either"  # a float span that overflows may be refused as "too many"
    return AngleRange(verdict, a0, da, n, n_alt, slack)


def assert_spells_the_range(got: tuple[float, ...], want: AngleRange, text: str) -> None:
    assert len(got) in (want.n, want.n_alt), (text, len(got), want)
    for i, a in enumerate(got):
        exact = want.start + i * want.step
        assert abs(Fraction(a) - exact) <= Fraction(1e-9) + Fraction(want.slack), (text, i, a)


@FUZZ
@given(text=st.one_of(st.text(max_size=40),
                      st.lists(NUMBER_TEXT, max_size=5).map(":".join),
                      st.lists(NUMBER_TEXT, max_size=5).map(",".join)))
@example(text="-1e308:1e308:1e307")
@example(text="0:1:1e-320")
@example(text="0:1e-10:1e-11")
@example(text="0:360:45")
@example(text=" -90 : 90.5 : 30 ")
@example(text="10:10.3:0.1")
@example(text="0:1:1e-5")  # exactly the limit
@example(text="0:1:9.99e-6")  # one angle too many
@example(text="0, 90 ,,180,")
@example(text="0,90,0.0")  # a duplicate
@example(text="1_0,٣,inf")
def test_angles_flag_is_exact_or_refused(text: str) -> None:
    """``--angles`` against an oracle written from the documentation (``documented_list``,
    ``documented_range``): exactly the spelled angles, or a one-line refusal where the
    rules refuse, and never a refusal of a valid value."""
    got = outcome(lambda: parse_angles(text))
    config = outcome(lambda: config_from_mapping({"angles": text}))
    if ":" not in text:
        values = documented_list(text)
        if values is None:
            assert isinstance(got, LeafattackError), (text, got)
        else:  # the parser reads any float; the grid refuses the non-finite ones
            assert isinstance(got, tuple) and list(map(repr, got)) == list(map(repr, values))
        valid = (values is not None and all(math.isfinite(v) for v in values)
                 and len(set(values)) == len(values))
        if valid:
            assert isinstance(config, RunConfig), (text, str(config))
            assert list(map(repr, config.grid.angles)) == list(map(repr, values))
        else:
            assert isinstance(config, LeafattackError), (text, config)
        return
    want = documented_range(text)
    if want.verdict == "refused":
        assert isinstance(config, LeafattackError), (text, config)
    elif want.verdict == "valid":
        assert isinstance(config, RunConfig), (text, str(config))
    if isinstance(config, RunConfig):
        assert isinstance(got, tuple) and config.grid.angles == got
        assert_spells_the_range(config.grid.angles, want, text)


@FUZZ
@given(start=st.floats(-1e6, 1e6), span=st.floats(1e-6, 1e7), step=st.floats(1e-7, 1e6))
@example(start=0.0, span=360.0, step=45.0)
@example(start=0.0, span=0.3, step=0.1)
@example(start=0.0, span=3e-9, step=1.5e-9)
def test_angle_ranges_give_exactly_the_spelled_angles(start: float, span: float,
                                                      step: float) -> None:
    stop = start + span
    assume(stop > start)
    text = f"{start!r}:{stop!r}:{step!r}"
    config = outcome(lambda: config_from_mapping({"angles": text}))
    count = (stop - start) / step
    if isinstance(config, LeafattackError):
        # Refused only for too many angles, or angles closer than the 1e-9 degree grid.
        assert count > 99_999 or step < 2e-9, (text, str(config))
        return
    got = config.grid.angles
    n = len(got)
    assert n >= 1
    a0, da, end = Fraction(start), Fraction(step), Fraction(stop)  # exact arithmetic
    for i, a in enumerate(got):  # START + i * STEP, rounded to 1e-9 degrees
        assert abs(Fraction(a) - (a0 + i * da)) <= Fraction(1e-9) + 2 * Fraction(math.ulp(a)), (
            text, i, a)
    assert a0 + (n - 1) * da < end  # every angle lies before STOP ...
    assert a0 + n * da >= end - Fraction(2e-9) * da  # ... and none before STOP is missing
    if text == "0.0:360.0:45.0":
        assert got == (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)


@FUZZ
@given(text=st.one_of(st.text(max_size=30), st.lists(NUMBER_TEXT, max_size=5).map(",".join)))
@example(text="0.2, 0.35,,2")
@example(text="0.3,0.30")  # a duplicate
@example(text="2.0000000000000004")  # just beyond 2
@example(text="5e-324")  # the smallest positive float is a size
@example(text="1_0e-1,٠.٥")
def test_sizes_flag_is_exact_or_refused(text: str) -> None:
    """``--sizes`` against the documented rules (``documented_list``; each size a fraction
    of the sign width in (0, 2], no size twice): exactly those values, or a refusal."""
    values = documented_list(text)
    got = outcome(lambda: parse_float_list(text, "sizes"))
    if values is None:
        assert isinstance(got, LeafattackError), (text, got)
    else:
        assert isinstance(got, tuple) and list(map(repr, got)) == list(map(repr, values))
    config = outcome(lambda: config_from_mapping({"sizes": text}))
    if values is not None and all(0 < v <= 2 for v in values) and len(set(values)) == len(values):
        assert isinstance(config, RunConfig), (text, str(config))
        assert list(map(repr, config.grid.sizes)) == list(map(repr, values))
    else:
        assert isinstance(config, LeafattackError), (text, config)


@FUZZ
@given(n=st.integers(0, 10**6), m=st.integers(0, 10**6), sep=st.sampled_from("xX×"),
       pad=st.sampled_from(["", " ", "\t", "  "]), noise=st.text(max_size=12))
def test_positions_flag_is_exact_or_refused(n: int, m: int, sep: str, pad: str,
                                            noise: str) -> None:
    assert parse_positions(f"{pad}{n}{pad}{sep}{pad}{m}{pad}") == (n, m)
    config = outcome(lambda: config_from_mapping({"positions": f"{n}{sep}{m}"}))
    if isinstance(config, RunConfig):
        assert config.grid.positions == (n, m) and 1 <= n <= 1000 and 1 <= m <= 1000
    else:
        assert not (1 <= n <= 1000 and 1 <= m <= 1000)
    for text in (noise, f"{n}{sep}{m}{noise}", f"{noise}{n}{sep}{m}"):
        got = outcome(lambda text=text: parse_positions(text))
        if isinstance(got, tuple):
            assert len(got) == 2 and all(isinstance(v, int) and v >= 0 for v in got)


# ----------------------------------------------------------------------------- datasets

def _png(path: Path, w: int, h: int, mode: str = "RGB", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    if mode == "RGBA":
        arr[..., 3] = 255
    Image.fromarray(arr, mode).save(path)
    return path


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data for the loaders: sign images, leaves, a GTSRB tree and a LISA folder."""
    root = tmp_path_factory.mktemp("sandbox")
    for name, (w, h) in {"a.png": (20, 16), "b.png": (12, 30), "m.png": (20, 16)}.items():
        _png(root / "signs" / name, w, h)
    (root / "signs" / "stop").mkdir()
    _png(root / "signs" / "stop" / "c.png", 9, 9)
    for i in range(1, 7):
        _png(root / "leaves" / f"l{i}.png", 10, 14, "RGBA", seed=i)
    _png(root / "leaves" / "opaque.png", 10, 14)
    cls = root / "gtsrb" / "Final_Training" / "Images" / "00014"
    for name, (w, h) in {"00000_00000.ppm": (40, 30), "00000_00001.ppm": (25, 25)}.items():
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
                        ).save(cls / name)
    _png(root / "lisa" / "scene" / "s1.png", 50, 40)
    _png(root / "lisa" / "scene" / "s2.png", 30, 30)
    return root


CELL = st.one_of(
    st.sampled_from(["a.png", "b.png", "m.png", "stop/c.png", "missing.png", "../a.png",
                     "/etc/passwd", "stop", "yield", "0", "1", "-1", "2.5", "1e400", "",
                     "maple", "oak", "red", "natural", "l1.png", "l2.png", "opaque.png",
                     "x", '"a.png"', "a.png;b", " ", "\u2028", "\x1c", "a\0.png"]),
    st.text(max_size=8),
)


@st.composite
def tables(draw: st.DrawFn, columns: tuple[str, ...], good_row: st.SearchStrategy[dict],
           delimiter: str, optional: tuple[str, ...] = ()) -> bytes:
    """A table that is mostly well formed: the expected header (in any order, optional
    columns or not) and plausible rows, then damaged: a wrong cell, missing or extra cells,
    a junk column, truncated text; or plain random bytes."""
    if draw(st.integers(0, 12)) == 0:
        return draw(st.binary(max_size=300))
    header = list(columns)
    if optional:
        header += draw(st.lists(st.sampled_from(optional), unique=True))
    header = list(draw(st.permutations(header)))
    if draw(st.integers(0, 8)) == 0:
        header = draw(st.lists(st.sampled_from((*header, "junk", "")), min_size=1, max_size=6))
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        good = draw(good_row)
        row = [good.get(c, "") for c in header]
        damage = draw(st.integers(0, 12))
        if damage == 0 and row:
            row[draw(st.integers(0, len(row) - 1))] = draw(CELL)
        elif damage == 1:
            row = row[: draw(st.integers(0, len(row)))]
        elif damage == 2:
            row += draw(st.lists(CELL, min_size=1, max_size=2))
        rows.append(row)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    text = buf.getvalue()
    if draw(st.integers(0, 10)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode("utf-8", "surrogatepass")


def _rows(data: bytes, delimiter: str) -> list[dict[str, str]]:
    """The non-blank rows of a table as the loaders read it (header names stripped)."""
    lines = list(csv.reader(data.decode("utf-8-sig").splitlines(), delimiter=delimiter))
    lines = [ln for ln in lines if any(c.strip() for c in ln)]
    header = [c.strip() for c in lines[0]]
    return [{h: (ln[i].strip() if i < len(ln) else "") for i, h in enumerate(header)}
            for ln in lines[1:]]


SIGN_SIZES = {"a.png": (20, 16), "b.png": (12, 30), "stop/c.png": (9, 9), "m.png": (20, 16)}


@st.composite
def good_sign_rows(draw: st.DrawFn) -> dict[str, str]:
    file = draw(st.sampled_from(["a.png", "b.png", "stop/c.png"]))
    name = draw(st.sampled_from(["stop", "yield"]))
    mask = "m.png" if file == "a.png" and draw(st.booleans()) else ""
    return {"file": file, "name": name, "label": str(["stop", "yield"].index(name)),
            "mask": mask}


@FUZZ
@given(data=tables(("file", "name"), good_sign_rows(), ",", ("label", "mask")))
@example(data=b"file,name\n" + b"a" * 200_000 + b",stop\n")  # a field beyond csv's limit
@example(data=b"file,name\na.png,stop\n\xff\xfe,x\n")
@example(data=b"file,name,mask\na.png,stop,b.png\n")  # a mask of another size
@example(data=b"file,name,mask\na.png,stop,\0m.png\n")  # NUL in a path
def test_sign_manifest_is_valid_or_one_line_error(sandbox: Path, data: bytes) -> None:
    folder = sandbox / "signs"
    (folder / "manifest.csv").write_bytes(data)
    got = outcome(lambda: load_signs(str(folder)))
    if isinstance(got, SignSet):
        rows = _rows(data, ",")
        assert len(got) == len(rows) >= 1
        assert (got.masks is not None) == ("mask" in rows[0])
        for i, row in enumerate(rows):
            # Each sign is the file its row names, at its own size, with its own class.
            w, h = SIGN_SIZES[got.files[i]]
            assert got.files[i] == row["file"] and got.images[i].shape == (h, w, 3)
            assert got.class_names[got.labels[i]] == row["name"]
            if got.masks is not None:
                assert got.masks[i].shape == (h, w)


@st.composite
def good_leaf_rows(draw: st.DrawFn) -> dict[str, str]:
    from leafattack.leaves.colours import FALL_COLOURS

    files = [f"l{i}.png" for i in range(1, 7)]
    return {"file": draw(st.sampled_from(files) | st.just("opaque.png")),
            "species": draw(NAME),
            "colour": draw(st.sampled_from(["natural", *FALL_COLOURS])),
            "source": draw(st.text(max_size=6))}


@FUZZ
@given(data=tables(("file", "species", "colour", "source"), good_leaf_rows(), ","))
@example(data=b"file,species,colour,source\nopaque.png,oak,red,x\n")
@example(data=b"file,species,colour,source\n\0l1.png,oak,red,x\n")
@example(data=b"file,species,colour,source\n" + b"l" * 200_000 + b",oak,red,x\n")
def test_leaf_manifest_is_valid_or_one_line_error(sandbox: Path, data: bytes) -> None:
    folder = sandbox / "leaves"
    (folder / "manifest.csv").write_bytes(data)
    got = outcome(lambda: load_leaves(folder))
    if isinstance(got, tuple):
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        assert len(got) == len(rows) >= 1
        for leaf, row in zip(got, rows, strict=True):
            assert leaf.leaf_id == Path(row["file"].strip()).stem != "opaque"
            assert leaf.species == row["species"].strip() and leaf.rgba.shape == (14, 10, 4)


GTSRB_HEADER = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2",
                "ClassId")
GTSRB_SIZES = {"00000_00000.ppm": (40, 30), "00000_00001.ppm": (25, 25)}


@st.composite
def good_box(draw: st.DrawFn, w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
    return x1, y1, draw(st.integers(x1 + 1, w)), draw(st.integers(y1 + 1, h))


@st.composite
def good_gtsrb_rows(draw: st.DrawFn) -> dict[str, str]:
    name = draw(st.sampled_from(sorted(GTSRB_SIZES)))
    w, h = GTSRB_SIZES[name]
    box = draw(good_box(w, h))
    cells = [str(v) for v in (w, h, *box, 14)]
    return dict(zip(GTSRB_HEADER, [name, *cells], strict=True))


@FUZZ
@given(data=tables(GTSRB_HEADER, good_gtsrb_rows(), ";"))
@example(data=b"Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
              b"00000_00000.ppm;40;30;5;5;x;20;14\n")  # a non-numeric ROI
@example(data=b"Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
              b"\0;40;30;0;0;1;1;14\n")  # NUL in a path
def test_gtsrb_annotations_are_valid_or_one_line_error(sandbox: Path, data: bytes) -> None:
    root = sandbox / "gtsrb"
    (root / "Final_Training" / "Images" / "00014" / "GT-00014.csv").write_bytes(data)
    got = outcome(lambda: load_gtsrb(root))
    if isinstance(got, SignSet):
        rows = _rows(data, ";")
        assert len(got) == len(rows) >= 1
        for img, row in zip(got.images, rows, strict=True):
            x1, y1, x2, y2 = (int(float(row[c])) for c in GTSRB_HEADER[3:7])
            if (int(float(row["Width"])), int(float(row["Height"]))) == GTSRB_SIZES[
                    Path(row["Filename"]).name]:
                assert img.shape == (y2 - y1, x2 - x1, 3)  # exactly the annotated box


LISA_HEADER = ("Filename", "Annotation tag", "Upper left corner X", "Upper left corner Y",
               "Lower right corner X", "Lower right corner Y")
LISA_SIZES = {"scene/s1.png": (50, 40), "scene/s2.png": (30, 30)}


@st.composite
def good_lisa_rows(draw: st.DrawFn) -> dict[str, str]:
    name = draw(st.sampled_from(sorted(LISA_SIZES)))
    box = draw(good_box(*LISA_SIZES[name]))
    tag = draw(st.sampled_from(["stop", "yield", "speedLimit25", "notATag"]))
    return {"Filename": name, "Annotation tag": tag, "Occluded,On another road": "0,0",
            **dict(zip(LISA_HEADER[2:], map(str, box), strict=True))}


@FUZZ
@given(data=tables(LISA_HEADER, good_lisa_rows(), ";", ("Occluded,On another road",)))
def test_lisa_annotations_are_valid_or_one_line_error(sandbox: Path, data: bytes) -> None:
    root = sandbox / "lisa"
    (root / "allAnnotations.csv").write_bytes(data)
    got = outcome(lambda: load_lisa(root))
    if isinstance(got, SignSet):
        rows = [r for r in _rows(data, ";") if r.get("Annotation tag") in
                ("stop", "yield", "speedLimit25")]
        assert len(got) == len(rows) >= 1
        for img, file, row in zip(got.images, got.files, rows, strict=True):
            x1, y1, x2, y2 = (int(float(row[c])) for c in LISA_HEADER[2:])
            assert img.shape == (y2 - y1, x2 - x1, 3)  # exactly the annotated box
            assert file == f"{row['Filename']}#{x1},{y1},{x2},{y2}"


# The companions of the dataset fuzzers: known-valid inputs load, with the expected content
# (pixels compared with PIL's reading of the files).


def _pixels(path: Path, mode: str = "RGB") -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert(mode))


@pytest.fixture(scope="module")
def valid_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Well-formed inputs of every loader, apart from the fuzzers' sandbox."""
    root = tmp_path_factory.mktemp("valid")
    signs = root / "signs"
    _png(signs / "a.png", 20, 16, seed=1)
    _png(signs / "stop" / "c.png", 9, 9, seed=2)
    mask = np.zeros((16, 20), np.uint8)
    mask[2:14, 3:17] = 255
    Image.fromarray(mask, "L").save(signs / "a_mask.png")
    (signs / "manifest.csv").write_text("file,name,mask\na.png,stop,a_mask.png\n"
                                        "stop/c.png,yield,\n")
    leaves = root / "leaves"
    for i in (1, 2):
        _png(leaves / f"l{i}.png", 10, 14, "RGBA", seed=10 + i)
    (leaves / "manifest.csv").write_text("file,species,colour,source\nl1.png,oak,red,x\n"
                                         "l2.png,maple,natural,\n")
    cls = root / "gtsrb" / "Final_Training" / "Images" / "00014"
    cls.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
                    ).save(cls / "00000_00000.ppm")
    (cls / "GT-00014.csv").write_text(";".join(GTSRB_HEADER) + "\n"
                                      "00000_00000.ppm;40;30;5;6;25;20;14\n")
    _png(root / "lisa" / "scene" / "s1.png", 50, 40, seed=4)
    (root / "lisa" / "allAnnotations.csv").write_text(
        ";".join(LISA_HEADER) + "\nscene/s1.png;stop;3;4;23;30\n"
        "scene/s1.png;notATag;0;0;5;5\nscene/s1.png;yield;10;0;50;40\n")
    return root


def test_sign_manifest_fuzzer_companion_valid_manifest_loads(valid_data: Path) -> None:
    folder = valid_data / "signs"
    got = accepted(lambda: load_signs(str(folder)))
    assert got.files == ("a.png", "stop/c.png")
    assert [got.class_names[k] for k in got.labels] == ["stop", "yield"]
    for img, file in zip(got.images, got.files, strict=True):
        np.testing.assert_array_equal(img, _pixels(folder / file))
    assert got.masks is not None
    np.testing.assert_array_equal(got.masks[0], _pixels(folder / "a_mask.png", "L") == 255)
    assert got.masks[1].shape == (9, 9) and got.masks[1].all()  # an empty cell: no mask


def test_leaf_manifest_fuzzer_companion_valid_manifest_loads(valid_data: Path) -> None:
    folder = valid_data / "leaves"
    got = accepted(lambda: load_leaves(folder))
    assert [(lf.leaf_id, lf.species, lf.colour) for lf in got] == [
        ("l1", "oak", "red"), ("l2", "maple", "natural")]
    for leaf in got:
        np.testing.assert_array_equal(leaf.rgba, _pixels(folder / f"{leaf.leaf_id}.png", "RGBA"))


def test_gtsrb_fuzzer_companion_valid_annotations_load(valid_data: Path) -> None:
    root = valid_data / "gtsrb"
    got = accepted(lambda: load_gtsrb(root))
    assert len(got) == 1 and got.class_names[got.labels[0]] == "Stop"  # GTSRB class 14
    ppm = _pixels(root / "Final_Training" / "Images" / "00014" / "00000_00000.ppm")
    np.testing.assert_array_equal(got.images[0], ppm[6:20, 5:25])  # the half-open ROI


def test_lisa_fuzzer_companion_valid_annotations_load(valid_data: Path) -> None:
    root = valid_data / "lisa"
    got = accepted(lambda: load_lisa(root))
    assert got.files == ("scene/s1.png#3,4,23,30", "scene/s1.png#10,0,50,40")
    assert [got.class_names[k] for k in got.labels] == ["stop", "yield"]
    scene = _pixels(root / "scene" / "s1.png")
    np.testing.assert_array_equal(got.images[0], scene[4:30, 3:23])
    np.testing.assert_array_equal(got.images[1], scene[0:40, 10:50])


# ----------------------------------------------------------------------------- specs


@FUZZ
@given(spec=st.one_of(
    st.text(max_size=30),
    st.tuples(st.sampled_from(["", "gtsrb:", "lisa:", "folder:", "x:", "C:", "builtin:"]),
              st.sampled_from(["", "signs", "gtsrb", "lisa", "leaves", "nope", "signs/a.png",
                               "..", "a\0b", "signs/stop"]),
              st.text(max_size=5)).map("".join),
))
@example(spec="builtin")
@example(spec="gtsrb:")
def test_sign_source_spec_is_valid_or_one_line_error(sandbox: Path, spec: str) -> None:
    assume(not os.path.isabs(spec.partition(":")[2] or spec) and ".." not in spec)
    before = os.getcwd()
    os.chdir(sandbox)
    try:
        # A folder with a manifest that fails, so that "signs" errors name a line.
        (sandbox / "signs" / "manifest.csv").write_text("file,name\na.png,stop\nb.png,yield\n")
        got = outcome(lambda: load_signs(spec))
    finally:
        os.chdir(before)
    if isinstance(got, SignSet):
        assert len(got) >= 1 and got.source == spec


def test_sign_source_spec_fuzzer_companion_valid_specs_load(valid_data: Path) -> None:
    builtin = accepted(lambda: load_signs("builtin"))
    assert len(builtin) == 16 and builtin.source == "builtin"
    for spec, n in ((str(valid_data / "signs"), 2), (f"folder:{valid_data / 'signs'}", 2),
                    (f"gtsrb:{valid_data / 'gtsrb'}", 1), (f"lisa:{valid_data / 'lisa'}", 2)):
        got = accepted(lambda spec=spec: load_signs(spec))
        assert len(got) == n and got.source == spec, spec


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) checkpoint to mutate."""
    from leafattack.models.architectures import build_model
    from leafattack.models.classifier import Preprocess
    from leafattack.models.loading import save_checkpoint

    folder = tmp_path_factory.mktemp("models")
    import torch

    torch.manual_seed(0)
    module = build_model("lisacnn", 3)
    # arch names the architecture, so that the file loads (see the companion test below).
    save_checkpoint(folder / "good.pt",
                    Classifier(module, ["a", "b", "c"], Preprocess(), arch="lisacnn"))
    return folder


SAFE_MODULES = ("fixture_models", "rel_models", "leafattack.grid", "no_such_module")


@FUZZ
@given(kind=st.sampled_from(["text", "factory", "factory", "bytes", "mutated", "truncated"]),
       text=st.text(max_size=25), name=st.sampled_from(
           ["template", "template", "template_bilinear", "nan_model", "TemplateModel",
            "META", "F", "torch", "_templates", "needs_arguments", "bad_metadata",
            "text_mean", "parse_names", "GridSpec", "x"]),
       module=st.sampled_from(SAFE_MODULES), blob=st.binary(max_size=300),
       where=st.integers(0, 10**9), byte=st.integers(0, 255))
def test_model_spec_is_valid_or_one_line_error(model_files: Path, kind: str, text: str,
                                               name: str, module: str, blob: bytes,
                                               where: int, byte: int) -> None:
    if kind == "text":  # anything typed, as long as it cannot name a real importable module
        prefix, sep, _ = text.partition(":")
        assume(not sep or prefix.split(".")[0] not in ("os", "sys", "shutil", "subprocess"))
        assume(not sep or not prefix or not _importable(prefix))
        spec = text
    elif kind == "factory":
        spec = f"{module}:{name}"
    else:
        good = (model_files / "good.pt").read_bytes()
        if kind == "bytes":
            data = blob
        elif kind == "mutated":
            i = where % len(good)
            data = good[:i] + bytes([byte]) + good[i + 1:]
        else:
            data = good[: where % len(good)]
        path = model_files / "fuzzed.pt"
        path.write_bytes(data)
        spec = str(path) if where % 2 else f"torchscript:{path}"
    got = outcome(lambda: load_model(spec, "cpu"))
    if isinstance(got, Classifier):
        assert got.num_classes >= 1


def test_model_spec_fuzzer_companion_valid_specs_load(model_files: Path) -> None:
    import torch

    from leafattack.models.architectures import build_model

    template = accepted(lambda: load_model("fixture_models:template", "cpu"))
    assert template.num_classes == 16 and template.class_names[0] == "addedLane"
    good = accepted(lambda: load_model(str(model_files / "good.pt"), "cpu"))
    assert good.class_names == ("a", "b", "c")
    torch.manual_seed(0)  # the module model_files saved
    want = build_model("lisacnn", 3).state_dict()
    got = good.module.state_dict()
    assert list(got) == list(want)
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name.split(".")[0]) is not None
    except (ValueError, ImportError):
        return False


# ----------------------------------------------------------------------------- the CLI


CLI_BAD = {
    "toml_truncated": (["--config", "{cfg}"], b"sizes = [0.3, 0.", "invalid TOML"),
    "toml_type": (["--config", "{cfg}"], b'batch_size = "eight"', "batch_size"),
    "toml_deep": (["--config", "{cfg}"], b"angles = " + b"[" * 4000 + b"]" * 4000,
                  "nested too deeply"),
    "toml_huge_int": (["--config", "{cfg}"], b"seed = " + b"7" * 30, "64-bit"),
    "toml_nul": (["--config", "{cfg}"], b'out = "x\\u0000y"', "NUL"),
    "toml_bytes": (["--config", "{cfg}"], b"\xff\xfe\x00garbage", "cannot read config"),
    "angles_overflow": (["--angles", "-1e308:1e308:1e307"], None, "angles"),
    "angles_dupes": (["--angles", "0:1e-10:1e-11"], None, "duplicates"),
    "positions": (["--positions", "3y3"], None, "positions"),
    "sizes_empty": (["--sizes", " , "], None, "sizes"),
    "batch_text": (["--batch-size", "eight"], None, "--batch-size"),
    "unknown_flag": (["--sizzes", "0.3"], None, "--sizzes"),
    "signs_prefix": (["--signs", "gtsrb:"], None, "gtsrb:PATH"),
    "model_factory": (["--model", "fixture_models:TemplateModel"], None, "TemplateModel"),
    "device_meta": (["--device", "meta"], None, "meta"),
}


@pytest.mark.parametrize("case", sorted(CLI_BAD))
def test_cli_bad_input_is_one_error_line(
    tmp_path: Path, signs4: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    flags, config, needle = CLI_BAD[case]
    cfg = tmp_path / "bad.toml"
    if config is not None:
        cfg.write_bytes(config)
    args = run_args(tmp_path / "out", signs4)
    with _alarm(60):
        code = main([*args, *(f.format(cfg=cfg) for f in flags)])
    assert_one_error_line(code, capsys.readouterr().err, needle)
    assert not (tmp_path / "out" / "trials.csv").exists()


@settings(max_examples=max(10, EXAMPLES // 3), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=toml_bytes())
def test_cli_with_fuzzed_config_exits_2_with_one_line(scratch: Path, data: bytes) -> None:
    path = scratch / "cli.toml"
    path.write_bytes(data)
    assume(isinstance(outcome(lambda: load_config(path)), LeafattackError))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), _alarm(60):
        code = main(["run", "--config", str(path), "--out", str(scratch / "never"), "--quiet"])
    assert_one_error_line(code, err.getvalue(), str(path))
    assert not (scratch / "never").exists()
