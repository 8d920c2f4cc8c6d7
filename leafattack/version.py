"""The package version (one place; ``leafattack.__version__`` re-exports it)."""

__version__ = "0.1.0"
