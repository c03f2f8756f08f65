"""Real services for the test session: a mosquitto broker and a PostgreSQL cluster.

Never a system service: each session starts its own on free ports, with state in a fresh
directory under /tmp that is removed afterwards. The directory is made with
`tempfile.mkdtemp(dir="/tmp")` and opened to 0755 rather than taken from pytest's
`tmp_path`: under root, tmp_path lives in /tmp/pytest-of-root (0700), which the `mosquitto`
and `postgres` users the services drop to cannot enter (the services would then relocate
their state to /var/lib/gridwatch, which tests should not litter).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridwatch.embedded import MosquittoBroker, PortInUse, PostgresCluster

__all__ = [
    "free_tcp_port",
    "mosquitto_broker",
    "pg_cluster",
    "running_broker",
    "running_cluster",
    "service_root",
]

# A port found free can be taken by someone else before the broker binds it.
_PORT_ATTEMPTS = 5


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def service_root(prefix: str) -> Iterator[Path]:
    """A fresh directory under /tmp the service users can enter; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"gridwatch-{prefix}-", dir="/tmp"))
    try:
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


@contextlib.contextmanager
def running_broker(**options: Any) -> Iterator[MosquittoBroker]:
    """A broker on a free port with its own state dir, stopped and removed afterwards."""
    with service_root("mqtt") as root:
        for attempt in range(_PORT_ATTEMPTS):
            broker = MosquittoBroker(root / "mosquitto", port=free_tcp_port(), **options)
            try:
                broker.start()
                break
            except PortInUse:
                if attempt == _PORT_ATTEMPTS - 1:
                    raise
        try:
            yield broker
        finally:
            broker.stop()


@contextlib.contextmanager
def running_cluster(**options: Any) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster with its own state dir, stopped and removed afterwards.

    It listens on a unix socket only, so the port merely names the socket file; a free TCP
    port is still used so a person reading `ps` can tell clusters apart.
    """
    with service_root("pg") as root:
        cluster = PostgresCluster(root / "postgres", port=free_tcp_port(), **options)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def mosquitto_broker() -> Iterator[MosquittoBroker]:
    """The session's broker: `.url` is what gridwatch's config takes."""
    with running_broker() as broker:
        yield broker


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL: `.conninfo`, `.conninfo_for(db)`, `.create_database()`."""
    with running_cluster() as cluster:
        yield cluster
