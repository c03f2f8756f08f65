"""Read what a PostgreSQL data directory says about itself, without running anything.

`postmaster.pid` tells whether a server is running on the directory, on which port and
socket directory, and whether it is ready: enough to attach to a running cluster instead
of failing to start a second one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PidFile", "cluster_version", "process_alive", "read_pidfile", "running_server"]


@dataclass(frozen=True, slots=True)
class PidFile:
    """The fields of postmaster.pid we use (PostgreSQL 10 and later)."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str  # "starting", "stopping", "ready" or "standby"


def cluster_version(data_dir: Path) -> str | None:
    """The major version that created the cluster, or None if it is not initialised."""
    try:
        return (data_dir / "PG_VERSION").read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_pidfile(data_dir: Path) -> PidFile | None:
    """Parse postmaster.pid; None when absent or half-written."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        pid = int(lines[0])
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else 0
    except (IndexError, ValueError):
        return None  # being written right now, or garbage: treat as not running
    socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4].strip() else None
    status = lines[7].strip() if len(lines) > 7 else "starting"
    return PidFile(pid, port, socket_dir, status)


def running_server(data_dir: Path) -> PidFile | None:
    """The pid file of a live server on `data_dir`, or None."""
    pidfile = read_pidfile(data_dir)
    return pidfile if pidfile is not None and process_alive(pidfile.pid) else None


def process_alive(pid: int) -> bool:
    """True if `pid` is a live (not zombie) postgres process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    # A stale postmaster.pid can name a pid the system has since reused, or a postmaster
    # that died and is a zombie nobody has reaped yet (PID 1 in containers is often slow to).
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    command = stat_line[stat_line.find("(") + 1 : stat_line.rfind(")")]
    state = stat_line[stat_line.rfind(")") + 2 :][:1]
    return state != "Z" and command.startswith(("postgres", "postmaster"))
