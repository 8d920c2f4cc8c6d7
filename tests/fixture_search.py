"""The small search both the search and the EOT tests run (template model, small grid)."""

from __future__ import annotations

from pathlib import Path

from leafattack.config import RunConfig, SearchConfig
from leafattack.grid import GridSpec

GRID = GridSpec(species=("maple", "oak"), sizes=(0.3, 0.5), angles=(0.0, 90.0), positions=(3, 3))


def search_config(out: Path, signs: Path, **kw: object) -> SearchConfig:
    """A small search of the template model; keyword arguments go to SearchConfig when it
    has them, else to its RunConfig."""
    run_kw: dict[str, object] = dict(
        model="fixture_models:template", out=str(out), grid=GRID, signs=str(signs),
        quiet=True, batch_size=48, device="cpu",
    )
    # leaves as large as the face-width sizes need to fool the template model quickly
    kw.setdefault("size_range", (0.3, 0.7))
    search_kw = {k: kw.pop(k) for k in list(kw) if k in SearchConfig.__slots__}
    run_kw.update(kw)
    return SearchConfig(run=RunConfig(**run_kw), **search_kw)  # type: ignore[arg-type]
