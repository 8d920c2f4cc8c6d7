"""User-facing errors.

Every problem caused by the user's input (a corrupt image, a bad grid value, a
checkpoint of the wrong kind, ...) is raised as :class:`LeafattackError` with a
one-line message that names the offending thing and says what was expected.
The CLI prints that line and exits with status 2, without a traceback.
"""

from __future__ import annotations


class LeafattackError(ValueError):
    """A one-line, user-facing error. The CLI turns it into ``error: ...`` and exit code 2."""

    def __init__(self, message: str) -> None:
        # Keep the message on one line whatever the caller passed.
        super().__init__(" ".join(str(message).split()))


class RunLockedError(LeafattackError):
    """Another live process holds the lock of a run directory."""
