"""PostgreSQL stopped for 60 s while devices publish: nothing is lost, detection goes on.

gridwatch acknowledges a QoS 1 message to the broker only once it is committed, or saved in
the on-disk spool: while the database is away every batch goes to the spool and is
acknowledged, and detection goes on over the spooled messages, so alarms reach the live
stream and the MQTT ``provisional`` topics at once, marked not yet recorded. When the
database returns the spool is written first, in order, through the usual detection, and
the grid events are opened then: none lost and none twice. Without a spool (or with a full
one) the broker holds the backlog instead. A worker stopped during the outage keeps its
spool and writes it when it starts again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest

from gridwatch.embedded import PostgresCluster
from gridwatch.mqtt_publish import BoundedPublisher
from storage.migrate import migrate
from tests.integration.conftest import make_settings, running_service
from tests.integration.test_outputs import MqttWatcher, SseClient
from tests.services import running_cluster

pytestmark = pytest.mark.integration

OUTAGE_S = 60.0
SENSORS = [f"WP-{i:02d}" for i in range(20)]
ALARMS = [f"SD-{i:02d}" for i in range(6)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: the test stops it."""
    with running_cluster() as own:

        async def prepare(name: str) -> None:
            own.create_database(name)
            async with await psycopg.AsyncConnection.connect(own.conninfo_for(name)) as conn:
                await migrate(conn)
                await conn.set_autocommit(False)
                rows = [(d, "water_pressure_sensor", "pump") for d in SENSORS]
                rows += [(d, "smoke_detector", f"site-{d}") for d in ALARMS]
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO devices (device_id, type, site) VALUES (%s, %s, %s)", rows
                    )
                await conn.commit()

        for name in ("outage", "restart"):
            asyncio.run(prepare(name))
        yield own


class Load:
    """Telemetry at ~200 messages/s, and an alarm per smoke detector when asked."""

    def __init__(self, url: str) -> None:
        self.publisher = BoundedPublisher(url, inflight=500)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.time() - 3600

    def _run(self) -> None:
        step = 0
        while not self._stop.wait(0.1):
            step += 1
            for i, sensor in enumerate(SENSORS):
                body = {"ts": int((self.t0 + step) * 1000) + i, "seq": step,
                        "values": {"pressure_mpa": 0.3}}  # fmt: skip
                self.publisher.publish(f"gridwatch/v1/up/{sensor}/telemetry", orjson.dumps(body))
                self.sent += 1

    def alarms(self) -> None:
        for device_id in ALARMS:
            body = {"ts": int(time.time() * 1000), "seq": 1, "event": "alarm"}
            self.publisher.publish(f"gridwatch/v1/up/{device_id}/event", orjson.dumps(body))

    def __enter__(self) -> Load:
        self.publisher.connect()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.publisher.close()


def stored(conninfo: str) -> tuple[int, int]:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT (SELECT count(DISTINCT (device_id, seq)) FROM readings),"
            " (SELECT count(*) FROM grid_events)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_a_60_s_database_outage_under_load_loses_nothing_and_alarms_still_show(
    cluster: PostgresCluster, mosquitto_broker, data_dir: Path
) -> None:
    conninfo = cluster.conninfo_for("outage")
    settings = make_settings(
        mosquitto_broker.url, conninfo, data_dir,
        mqtt={"client_id": "gw-db-outage"}, video={"enabled": False},
    )  # fmt: skip
    async with running_service(settings) as gw:
        pipeline = gw.service.pipeline
        assert pipeline is not None and pipeline.spool is not None
        spool = pipeline.spool
        token = gw.service.admin_token
        assert token is not None
        async with (
            SseClient(gw.service.http_url, token) as sse,
            MqttWatcher(mosquitto_broker.url, "gridwatch/v1/provisional/#") as watcher,
        ):
            with Load(mosquitto_broker.url) as load:
                await gw.wait_for(lambda: pipeline.stats.stored_messages >= 500)
                await asyncio.to_thread(cluster.stop)
                stopped_at = time.monotonic()
                load.alarms()  # alarms while the database is away
                await gw.wait_for(lambda: not pipeline.db_ok, within=30)
                # Detection goes on: each alarm shows at once on the stream and the feed.
                await sse.provisional.at_least(len(ALARMS), within=30)
                await watcher.messages.at_least(len(ALARMS), within=30)
                unacked_during = 0
                while time.monotonic() - stopped_at < OUTAGE_S:  # the outage, under load
                    await asyncio.sleep(1)
                    assert not gw.service.health()["components"]["database"]
                    unacked_during = max(
                        unacked_during,
                        load.sent - pipeline.stats.stored_messages - spool.spooled_messages,
                    )
                spooled = spool.spooled_messages
                on_disk = len(spool)
                await asyncio.to_thread(cluster.start)
                await gw.wait_for(lambda: pipeline.db_ok, within=60)
            sent = load.sent
            deadline = time.monotonic() + 120
            while True:
                seen = len(gw.batches)  # before the count: no commit slips in between
                if stored(conninfo) == (sent, len(ALARMS)):
                    break
                assert time.monotonic() < deadline, (stored(conninfo), sent)
                await gw.wait_for(lambda seen=seen: len(gw.batches) > seen, within=30)
            # The events themselves follow on the stream once they are recorded.
            await sse.events.wait_for(
                lambda items: len({ce["subject"] for _, ce in items}) >= len(ALARMS), within=30
            )
        assert gw.service.health()["components"]["database"]
        assert spool.empty() and not list(spool.root.glob("*.batch"))
        assert gw.service.health()["spool"]["provisional_active"] is False
    alarms = {ce["data"]["device_id"] for ce in sse.provisional.items}
    assert alarms == set(ALARMS)
    assert {ce["type"] for ce in sse.provisional.items} == {"gridwatch.provisional.raised"}
    assert all(ce["data"]["recorded"] is False for ce in sse.provisional.items)
    assert {t for t, _ in watcher.messages.items} == {"gridwatch/v1/provisional/unplaced"}
    # Acknowledged as it came: the broker held next to nothing for gridwatch.
    assert spooled > 10_000 and on_disk > 0
    assert unacked_during < 2_000, unacked_during
    with psycopg.connect(conninfo) as conn:
        total = conn.execute("SELECT count(*) FROM readings").fetchone()
        events = conn.execute("SELECT count(*), sum(alarm_count) FROM grid_events").fetchone()
    assert total == (sent,) and events == (len(ALARMS), len(ALARMS))
    print(f"sent {sent}; spooled {spooled} in {on_disk} files; unacknowledged at most"
          f" {unacked_during}")  # fmt: skip


async def test_a_worker_stopped_during_an_outage_writes_its_spool_when_it_starts_again(
    cluster: PostgresCluster, mosquitto_broker, data_dir: Path
) -> None:
    conninfo = cluster.conninfo_for("restart")
    settings = make_settings(
        mosquitto_broker.url, conninfo, data_dir,
        mqtt={"client_id": "gw-db-restart"}, video={"enabled": False},
    )  # fmt: skip
    async with running_service(settings) as gw:
        pipeline = gw.service.pipeline
        assert pipeline is not None and pipeline.spool is not None
        spool = pipeline.spool
        with Load(mosquitto_broker.url) as load:
            await gw.wait_for(lambda: pipeline.stats.stored_messages >= 200)
            await asyncio.to_thread(cluster.stop)
            load.alarms()
            await gw.wait_for(lambda: spool.spooled_messages >= 1000, within=60)
        sent = load.sent
        await gw.wait_for(
            lambda: pipeline.stats.stored_messages + spool.spooled_messages >= sent + len(ALARMS),
            within=30,
        )
    # Stopped with the database still away: what it took is on disk, acknowledged.
    left = sorted(spool.root.glob("*.batch"))
    assert left
    await asyncio.to_thread(cluster.start)
    async with running_service(settings) as again:
        restarted = again.service.pipeline
        assert restarted is not None and restarted.spool is not None
        assert len(restarted.spool) == len(left)
        deadline = time.monotonic() + 60
        while stored(conninfo) != (sent, len(ALARMS)):
            assert time.monotonic() < deadline, (stored(conninfo), sent)
            seen = len(again.batches)
            await again.wait_for(lambda seen=seen: len(again.batches) > seen, within=30)
        assert restarted.spool.empty()
