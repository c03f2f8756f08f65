"""Integration fixtures: a migrated database per test module, and gridwatch itself running
in-process against the session's real mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from gridwatch.config import Settings, load_settings
from gridwatch.endpoints import Endpoints
from gridwatch.service import Service
from ingest.pipeline import IngestBatch
from storage.migrate import migrate
from storage.timeseries import maintain

_counter = itertools.count()
TEMPLATE = "gw_template"


@pytest.fixture(scope="session")
def migrated_template(pg_cluster) -> str:
    """Migrate once, clone per module: CREATE DATABASE … TEMPLATE is far faster than migrating."""
    pg_cluster.create_database(TEMPLATE)

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(pg_cluster.conninfo_for(TEMPLATE)) as conn:
            await migrate(conn)
            await maintain(
                conn, now=datetime.now(UTC), retention_days=90, ahead_days=3, compress_after_days=7
            )

    asyncio.run(run())
    return TEMPLATE


@pytest.fixture(scope="module")
def database(pg_cluster, migrated_template: str) -> str:
    """A fresh, migrated database for one test module; returns its conninfo."""
    name = f"gw_test_{next(_counter)}"
    pg_cluster.create_database(name, template=migrated_template)
    return pg_cluster.conninfo_for(name)


class Running:
    """gridwatch running in this process, with a way to wait for what it stored."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.batches: list[IngestBatch] = []
        self.spooled: list[IngestBatch] = []  # saved to the spool while the database is away
        self._changed = asyncio.Condition()
        service.stored_listeners.append(self._record)
        service.spooled_listeners.append(self._record_spooled)

    async def _record(self, batch: IngestBatch) -> None:
        async with self._changed:
            self.batches.append(batch)
            self._changed.notify_all()

    async def _record_spooled(self, batch: IngestBatch) -> None:
        async with self._changed:
            self.spooled.append(batch)
            self._changed.notify_all()

    def handled(self) -> int:
        """Messages taken off MQTT and dealt with (stored, rejected or dropped as repeats)."""
        return sum(len(b) + b.duplicates for b in self.batches)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 20.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)


def make_settings(broker_url: str, conninfo: str, data_dir: Path, **sections: dict) -> Settings:
    base = {
        "mqtt": {
            "url": broker_url,
            "client_id": f"gw-test-{next(_counter)}",
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
        },
        "db": {"url": conninfo},
        "http": {"listen": "127.0.0.1:0"},
        "data_dir": data_dir,
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return load_settings(environ={}, **base)


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[Running]:
    assert settings.mqtt.url and settings.db.url
    service = Service(settings, Endpoints(settings.mqtt.url, settings.db.url))
    running = Running(service)
    ready = asyncio.Event()
    task = asyncio.create_task(service.run(on_ready=lambda _s: ready.set()))
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert ready.is_set(), "gridwatch did not start"
    assert service.source is not None
    subscribed = await asyncio.to_thread(service.source.subscribed.wait, 10)
    assert subscribed, "gridwatch did not subscribe"
    try:
        yield running
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 30)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "gridwatch"
