"""Two gridwatch workers behind one broker with an MQTT 5 shared subscription and one
database: the load is split, every message is stored once, events are not doubled."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import psycopg
import pytest

from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.conftest import make_settings, running_service

pytestmark = pytest.mark.integration

DEVICES = [(f"EF-{i:03d}", "electrical_fire_monitor", f"shop-{i}") for i in range(40)]


@pytest.fixture(scope="module")
def registered(database: str) -> str:
    with psycopg.connect(database) as conn:
        conn.cursor().executemany(
            "INSERT INTO devices (device_id, type, site) VALUES (%s, %s, %s)", DEVICES
        )
    return database


async def test_two_workers_share_the_load_and_store_once(
    mosquitto_broker, registered: str, tmp_path: Path
) -> None:
    common = {"shared_group": "gridwatch"}
    one = make_settings(
        mosquitto_broker.url,
        registered,
        tmp_path / "a",
        mqtt={**common, "client_id": "gw-worker-1"},
    )
    two = make_settings(
        mosquitto_broker.url,
        registered,
        tmp_path / "b",
        mqtt={**common, "client_id": "gw-worker-2"},
    )
    start = time.time() - 3600
    messages = [
        (
            f"gridwatch/v1/up/EF-{i % 40:03d}/telemetry",
            orjson.dumps(
                {
                    "ts": int((start + i) * 1000),
                    "seq": i,
                    "values": {"residual_current_ma": 120.0 + i % 7},
                }
            ),
        )
        for i in range(2000)
    ]
    # one device leaks: its alarm must make exactly one event whichever worker sees it
    messages += [
        ("gridwatch/v1/up/EF-007/telemetry",
         orjson.dumps({"ts": int((start + 3000 + s) * 1000), "seq": 5000 + s,
                       "values": {"residual_current_ma": 450.0}}))
        for s in range(10)
    ]  # fmt: skip

    def publish() -> None:
        with BoundedPublisher(mosquitto_broker.url) as pub:
            for topic, payload in messages:
                pub.publish(topic, payload)

    async with running_service(one) as a, running_service(two) as b:
        everything = asyncio.Event()

        async def check(_batch: object) -> None:
            if a.handled() + b.handled() >= len(messages):
                everything.set()

        a.service.stored_listeners.append(check)
        b.service.stored_listeners.append(check)
        await asyncio.to_thread(publish)
        await asyncio.wait_for(everything.wait(), 30)
        shares = (a.handled(), b.handled())
    assert min(shares) > 0, f"one worker got everything: {shares}"
    async with await psycopg.AsyncConnection.connect(registered) as conn:
        cur = await conn.execute("SELECT count(*), count(DISTINCT (device_id, seq)) FROM readings")
        total, distinct = await cur.fetchone()
        cur = await conn.execute(
            "SELECT count(*) FROM grid_events WHERE type = 'residual_current_high'"
        )
        events = (await cur.fetchone())[0]
    assert total == distinct == len(messages)
    assert events == 1
