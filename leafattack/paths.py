"""One containment policy for the relative paths listed in manifests.

Every loader that reads a file name out of a table (sign ``manifest.csv``, leaf
``manifest.csv``, GTSRB ``GT-*.csv``, LISA ``allAnnotations.csv``) turns it into a
path with :func:`resolve_inside`, so a name is accepted or refused the same way
whichever kind of folder it comes from.

The policy, for an entry ``rel`` listed in a manifest under the folder ``root``:

* Surrounding blanks are dropped (as the CSV readers do); an empty entry is refused.
* An entry containing a NUL character is refused.
* Backslashes are path separators on every OS, so a manifest written on Windows
  (``sub\\x.png``) reads the same on Linux; a file whose name contains a backslash
  cannot be listed.
* Absolute paths are refused: POSIX (``/abs/x.png``), rooted Windows paths
  (``\\x.png``), drive letters (``C:\\x.png``, ``C:/x.png``, ``C:x.png``) and UNC
  paths (``\\\\server\\share\\x.png``).
* The entry is normalised lexically: ``.`` and empty components are dropped and
  each ``..`` removes the component before it. **``sub/../x.png`` is accepted** and
  means ``root/x.png`` (``sub`` need not exist). An entry whose ``..`` would climb
  above ``root`` at any point (``../x.png``, ``sub/../../x.png``) is refused, even
  if it would come back in; so is one that normalises to ``root`` itself
  (``sub/..``).
* Symlinks may be used as long as they stay inside: the normalised path is
  resolved (following every symlink) and must lie inside the resolved ``root``
  (:meth:`pathlib.Path.is_relative_to`); a symlink, file or folder, that points
  outside is refused.

The returned path is ``root`` joined with the normalised components (symlinks not
replaced by their targets), so file names and leaf ids keep the names the manifest
used. Every refusal is a one-line :class:`~leafattack.errors.LeafattackError` that
starts with ``where`` (e.g. ``".../manifest.csv line 3"``), quotes the entry and
says what is expected.

This module sits in the bottom layer: it imports only :mod:`leafattack.errors` and
the standard library.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PureWindowsPath

from leafattack.errors import LeafattackError

__all__ = ["resolve_inside"]


def resolve_inside(root: Path, rel: str, where: str) -> Path:
    """The file that the manifest entry ``rel`` names inside ``root`` (see the module policy).

    Args:
        root: the folder the entry is relative to (as given; resolved only for the check).
        rel: the entry, as read from the manifest.
        where: where the entry came from, for the error message (``"<manifest> line 3"``).

    Returns:
        ``root`` joined with the lexically normalised entry.

    Raises:
        LeafattackError: an empty entry, a NUL character, an absolute path, a ``..``
            that climbs above ``root``, an entry naming ``root`` itself, or a path that
            resolves (through symlinks) outside ``root``.
    """
    text = rel.strip()
    if not text:
        raise LeafattackError(f"{where}: empty path (expected a file path relative to {root})")
    if "\0" in text:  # os calls raise ValueError on it
        raise LeafattackError(
            f"{where}: path {text!r} contains a NUL character "
            f"(expected a file path relative to {root})"
        )
    slashed = text.replace("\\", "/")
    if slashed.startswith("/") or PureWindowsPath(text).drive or os.path.isabs(text):
        raise LeafattackError(
            f"{where}: absolute path {text!r} escapes {root} (expected a path relative to {root})"
        )
    parts: list[str] = []
    for part in slashed.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            target = os.path.normpath(os.path.join(root, *slashed.split("/")))
            raise LeafattackError(
                f"{where}: path {text!r} resolves to {target}, outside {root}: it escapes "
                f"through '..' (expected a path inside {root})"
            )
    if not parts:
        raise LeafattackError(
            f"{where}: path {text!r} names the folder {root} itself "
            "(expected a file path inside it)"
        )
    path = root.joinpath(*parts)
    try:
        real = path.resolve()
        root_real = root.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise LeafattackError(
            f"{where}: path {text!r} cannot be resolved ({type(exc).__name__}: {exc}; "
            f"expected a file inside {root})"
        ) from None
    if not real.is_relative_to(root_real):
        raise LeafattackError(
            f"{where}: path {text!r} resolves to {real}, outside {root}: it escapes "
            f"through a symlink (expected a path inside {root})"
        )
    return path


def safe_name(text: str) -> str:
    """``text`` as one flat, portable file-name part: runs of characters other than ASCII
    letters, digits, ``_`` and ``-`` become ``_`` (``"Speed limit (20km/h)"`` ->
    ``"Speed_limit_20km_h"``); never empty, and no ``.``, so never ``..``."""
    out = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return out or "sign"
