"""leafattack: fall-leaf occlusion attacks on traffic-sign classifiers.

Public API::

    import leafattack
    result = leafattack.run(leafattack.RunConfig(limit_signs=4))
    result.summary  # success rates with sign-level intervals
    found = leafattack.search(leafattack.SearchConfig(method="evolution", budget=500))
    found.curve     # signs fooled and robust accuracy against queries

See the README for concepts, the CLI and accepted data layouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leafattack.version import __version__

__all__ = [
    "GridSpec",
    "LeafattackError",
    "RunConfig",
    "RunResult",
    "SearchConfig",
    "SearchResult",
    "__version__",
    "run",
    "search",
]

if TYPE_CHECKING:
    from leafattack.api import RunResult, SearchResult, run, search
    from leafattack.config import RunConfig, SearchConfig
    from leafattack.errors import LeafattackError
    from leafattack.grid import GridSpec


def __getattr__(name: str) -> Any:
    # Lazy imports keep `import leafattack` (and the CLI's start-up) light.
    if name in ("RunResult", "run", "SearchResult", "search"):
        from leafattack import api

        return getattr(api, name)
    if name in ("RunConfig", "SearchConfig"):
        from leafattack import config

        return getattr(config, name)
    if name == "GridSpec":
        from leafattack.grid import GridSpec

        return GridSpec
    if name == "LeafattackError":
        from leafattack.errors import LeafattackError

        return LeafattackError
    raise AttributeError(f"module 'leafattack' has no attribute {name!r}")
