"""The data dir as the meeting point of a running gridwatch and the commands beside it.

``gridwatch run`` holds an exclusive lock on ``run/gridwatch.lock`` for its lifetime (the
kernel drops it if the process dies, so a crash never leaves a stale lock) and writes
``run/instance.json`` with the endpoints it is using; other commands read that file to find
the broker, the database and the HTTP server of the running instance.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson


class AlreadyRunning(RuntimeError):
    """Another gridwatch holds this data dir."""


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    pid: int
    mqtt_url: str
    db_conninfo: str
    http_url: str


def run_dir(data_dir: Path) -> Path:
    return data_dir / "run"


class InstanceLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = run_dir(data_dir) / "gridwatch.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.path.read_text().strip() or "another process"
            raise AlreadyRunning(
                f"gridwatch is already running on data dir {self.data_dir} (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            info_path(self.data_dir).unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(data_dir: Path) -> bool:
    path = run_dir(data_dir) / "gridwatch.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def info_path(data_dir: Path) -> Path:
    return run_dir(data_dir) / "instance.json"


def write_info(data_dir: Path, info: InstanceInfo) -> None:
    path = info_path(data_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(asdict(info), option=orjson.OPT_INDENT_2))
    tmp.replace(path)


def read_info(data_dir: Path) -> InstanceInfo | None:
    """The running instance's endpoints, or None when no gridwatch runs on this data dir."""
    path = info_path(data_dir)
    if not path.exists() or not is_locked(data_dir):
        return None
    return InstanceInfo(**orjson.loads(path.read_bytes()))
