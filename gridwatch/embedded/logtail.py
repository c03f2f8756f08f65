"""Read the end of a service's log for an error message.

A start-up failure is only actionable with the service's own words ("Address already in
use", "could not create lock file"), so errors carry the last lines of the log written
since the start attempt began.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["tail"]

_MAX_BYTES = 64 * 1024


def tail(path: Path, lines: int = 30, since: int = 0) -> str:
    """Return the last `lines` lines of `path` written after byte offset `since`."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(since, size - _MAX_BYTES))
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"
