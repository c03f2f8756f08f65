"""Where the broker and the database are: configured URLs, or embedded services that
gridwatch starts under its data dir and stops when it is done."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gridwatch.broker_files import EmbeddedAuth, embedded_state_dir, stage_embedded
from gridwatch.config import Settings
from gridwatch.embedded.mosquitto import MosquittoBroker
from gridwatch.embedded.postgres import PostgresCluster
from gridwatch.instance import AlreadyRunning, InstanceLock, read_info

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Endpoints:
    mqtt_url: str
    db_conninfo: str


def embedded_broker(settings: Settings) -> MosquittoBroker:
    access = EmbeddedAuth(None, None, "")
    if settings.broker.auth or settings.broker.tls_port is not None:
        access = stage_embedded(settings)
    return MosquittoBroker(
        embedded_state_dir(settings),
        host=settings.embedded.mqtt_host,
        port=settings.embedded.mqtt_port,
        password_file=access.password_file,
        acl_file=access.acl_file,
        extra_conf=access.extra_conf,
    )


def embedded_postgres(settings: Settings) -> PostgresCluster:
    return PostgresCluster(settings.data_dir.resolve() / "postgres", port=settings.embedded.pg_port)


@contextlib.contextmanager
def service_endpoints(settings: Settings) -> Iterator[Endpoints]:
    """Start what is not configured, yield the endpoints, stop what was started."""
    with contextlib.ExitStack() as stack:
        mqtt_url = settings.mqtt.url
        if mqtt_url is None:
            broker = embedded_broker(settings)
            broker.start()
            stack.callback(broker.stop)
            mqtt_url = broker.url
            log.info("embedded mosquitto started", extra={"url": mqtt_url})
        db = settings.db.url
        if db is None:
            cluster = embedded_postgres(settings)
            cluster.start()
            stack.callback(cluster.stop)
            db = cluster.conninfo
            log.info("embedded PostgreSQL started", extra={"data_dir": str(settings.data_dir)})
        yield Endpoints(mqtt_url, db)


@contextlib.contextmanager
def command_database(settings: Settings) -> Iterator[str]:
    """A database for a one-off command: the configured one, the running instance's, or the
    embedded cluster started just for this command (and stopped after it)."""
    if settings.db.url is not None:
        yield settings.db.url
        return
    info = read_info(Path(settings.data_dir))
    if info is not None:
        yield info.db_conninfo
        return
    # Hold the instance lock meanwhile, so that a `gridwatch run` starting now waits its turn
    # instead of attaching to a cluster this command is about to stop.
    lock = InstanceLock(Path(settings.data_dir))
    try:
        lock.acquire()
    except AlreadyRunning:
        info = read_info(Path(settings.data_dir))
        if info is None:
            raise
        yield info.db_conninfo
        return
    cluster = embedded_postgres(settings)
    try:
        cluster.start()
        yield cluster.conninfo
    finally:
        cluster.stop()
        lock.release()


def command_broker_url(settings: Settings) -> str | None:
    """The broker a one-off command should publish to, or None when none is reachable."""
    if settings.mqtt.url is not None:
        return settings.mqtt.url
    info = read_info(Path(settings.data_dir))
    return info.mqtt_url if info is not None else None
