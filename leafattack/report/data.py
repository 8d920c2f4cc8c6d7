"""The report's view of a run directory."""

from __future__ import annotations

import io
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pandas as pd

from leafattack import schema
from leafattack.analysis.summary import rate_table, signs_fooled, strongest, summarise
from leafattack.errors import LeafattackError
from leafattack.rundir import FLOAT_FORMAT, read_trials


@dataclass(frozen=True)
class RunData:
    """The tables of one run directory, read with the dtypes of :mod:`leafattack.schema`.

    Attributes:
        run_dir: the run directory.
        config: the parsed ``config.toml`` (with its ``fingerprints``/``versions`` tables).
        config_text: ``config.toml`` as written.
        clean: CLEAN_COLUMNS rows, or None when ``clean.csv`` is missing.
        trials: TRIAL_COLUMNS rows (empty when ``trials.csv`` is missing or header only).
        summary: SUMMARY_COLUMNS rows (computed from ``trials`` when the file is missing).
        overall: the ``overall`` row of summary.csv as the exact strings in the file
            (keys ``trials``, ``successes``, ``rate``, ``ci_low``, ``ci_high``); empty
            when there are no trials.
        fooled: the same for the ``signs_fooled`` row (signs fooled by at least one
            trial), computed from the trials for runs whose summary lacks it.
        best: best.csv rows (TRIAL_COLUMNS + ``image``), empty when there are none.
        edges: edges.csv (``trial_id`` + one column per metric), or None.
        correlation: correlation.csv (CORRELATION_COLUMNS), or None.
        complete: whether ``progress.json`` marks the attack as finished (None: no file).
        notes: remarks about missing or recomputed files, for the report.
    """

    run_dir: Path
    config: dict[str, Any]
    config_text: str
    clean: pd.DataFrame | None
    trials: pd.DataFrame
    summary: pd.DataFrame
    overall: dict[str, str]
    fooled: dict[str, str]
    best: pd.DataFrame
    edges: pd.DataFrame | None
    correlation: pd.DataFrame | None
    complete: bool | None
    notes: tuple[str, ...] = field(default=())

    @property
    def positions(self) -> tuple[int, int]:
        """``(N, M)``: N lattice columns x M rows, from config.toml's ``positions``."""
        return _parse_positions(self.config.get("positions", "5x5"))


def _parse_positions(value: Any) -> tuple[int, int]:
    from leafattack.grid import parse_positions

    if isinstance(value, str):
        return parse_positions(value)
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise LeafattackError(f"config.toml: positions {value!r}: expected NxM, e.g. 5x5")


def _read_csv(
    path: Path,
    dtypes: Mapping[str, str],
    *,
    data: bytes | None = None,
    as_text: bool = False,
) -> pd.DataFrame:
    """Read a run CSV, check it has the schema's columns, one-line errors on failure."""
    source: Path | io.BytesIO = io.BytesIO(data) if data is not None else path
    try:
        if as_text:
            df = pd.read_csv(source, dtype=str, keep_default_na=False)
        else:
            df = pd.read_csv(source, dtype=dict(dtypes))
    except pd.errors.EmptyDataError:
        raise LeafattackError(f"{path}: empty file (expected a CSV header)") from None
    except (ValueError, TypeError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeafattackError(f"{path}: unreadable CSV ({first})") from None
    missing = [c for c in dtypes if c not in df.columns]
    if missing:
        raise LeafattackError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def _empty(dtypes: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(dtype=v) for k, v in dtypes.items()})


_ROW_KEYS: Final[tuple[str, ...]] = ("trials", "successes", "rate", "ci_low", "ci_high")


def _row_strings(text: pd.DataFrame, factor: str) -> dict[str, str]:
    """The first summary row of ``factor`` as strings (empty dict when there is none)."""
    rows = text[text["factor"].astype(str) == factor]
    if rows.empty:
        return {}
    return {k: str(rows.iloc[0][k]) for k in _ROW_KEYS}


def _as_text(summary: pd.DataFrame, float_format: str) -> pd.DataFrame:
    """A numeric summary formatted the way summary.csv is written."""
    out = summary.astype({"trials": "int64", "successes": "int64"}).astype(
        {"trials": str, "successes": str}
    )
    for k in ("rate", "ci_low", "ci_high"):
        out[k] = [float_format % float(v) for v in summary[k]]
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; empty when the file is missing or not a JSON object."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


def load_run(run_dir: str | os.PathLike[str]) -> RunData:
    """Read every table of a run directory.

    Args:
        run_dir: a directory written by ``leafattack run``.

    Returns:
        :class:`RunData`. Missing optional files (trials, summary, best, edges,
        correlation) give empty tables or None; a missing summary/best is recomputed
        from the trials.

    Raises:
        LeafattackError: not a run directory (no ``config.toml``), an unreadable
            ``config.toml``, or a CSV without the schema's columns.
    """
    rd = Path(run_dir)
    cfg_path = rd / "config.toml"
    if not rd.is_dir():
        raise LeafattackError(f"{rd}: not a run directory (no such folder)")
    if not cfg_path.is_file():
        raise LeafattackError(
            f"{rd}: not a run directory (expected config.toml written by leafattack run)"
        )
    try:
        config_text = cfg_path.read_text(encoding="utf-8")
        config = tomllib.loads(config_text)
    except (OSError, UnicodeDecodeError) as exc:
        raise LeafattackError(f"{cfg_path}: cannot read ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise LeafattackError(f"{cfg_path}: invalid TOML ({exc})") from None

    notes: list[str] = []
    progress = read_json(rd / "progress.json")
    complete = progress.get("complete") if isinstance(progress.get("complete"), bool) else None

    clean_path = rd / "clean.csv"
    clean = _read_csv(clean_path, schema.CLEAN_COLUMNS) if clean_path.exists() else None
    trials = read_trials(rd)

    summary_path = rd / "summary.csv"
    text = _empty({k: "string" for k in schema.SUMMARY_COLUMNS})
    header: list[str] = (
        list(pd.read_csv(summary_path, nrows=0).columns) if summary_path.exists() else []
    )
    if summary_path.exists() and "wilson_trial_low" not in header and len(trials):
        summary = summarise(trials)  # written before sign-level intervals
        text = _as_text(summary, FLOAT_FORMAT)
        notes.append(
            "summary.csv predates sign-level intervals; success rates were recomputed from "
            "trials.csv."
        )
    elif summary_path.exists():
        text = _read_csv(summary_path, schema.SUMMARY_COLUMNS, as_text=True)
        summary = _read_csv(summary_path, schema.SUMMARY_COLUMNS)
    else:
        summary = summarise(trials)
        if len(trials):
            notes.append("summary.csv is missing; success rates were computed from trials.csv.")
    overall = _row_strings(text, "overall")
    fooled = _row_strings(text, "signs_fooled")
    if len(trials) and not overall:
        summary = summarise(trials)
        overall = _row_strings(_as_text(summary, FLOAT_FORMAT), "overall")
    if len(trials) and not fooled:  # summaries written before signs_fooled existed
        per_sign = signs_fooled(trials)
        row = rate_table(per_sign["success"], pd.Series("all", index=per_sign.index)).iloc[0]
        fooled = {
            "trials": str(int(row["trials"])),
            "successes": str(int(row["successes"])),
            **{key: FLOAT_FORMAT % float(row[key]) for key in ("rate", "ci_low", "ci_high")},
        }

    best_path = rd / "best.csv"
    scene_run = "n_leaves" in trials.columns
    columns = schema.SCENE_TRIAL_COLUMNS if scene_run else schema.TRIAL_COLUMNS
    best_dtypes = {**columns, "image": "string"}
    if best_path.exists():
        best = _read_csv(best_path, columns)
        best = best.astype({"image": "string"}) if "image" in best.columns else best
    else:
        best = strongest(trials) if len(trials) else _empty(best_dtypes)

    edges: pd.DataFrame | None = None
    edges_path = rd / "edges.csv"
    if edges_path.exists():
        edges = _read_csv(edges_path, {"trial_id": "int64"})
    correlation: pd.DataFrame | None = None
    corr_path = rd / "correlation.csv"
    if corr_path.exists():
        correlation = _read_csv(corr_path, schema.CORRELATION_COLUMNS)
    return RunData(
        run_dir=rd,
        config=config,
        config_text=config_text,
        clean=clean,
        trials=trials,
        summary=summary,
        overall=overall,
        fooled=fooled,
        best=best,
        edges=edges,
        correlation=correlation,
        complete=complete,
        notes=tuple(notes),
    )
