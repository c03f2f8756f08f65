"""Detection inside the ingest transaction, with real services: hits come out of stored
readings, their detector state is saved with them, and replays change nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import psycopg
import pytest

from detectors.base import Hit
from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.conftest import make_settings, running_service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registered(database: str) -> str:
    with psycopg.connect(database) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, type, site) VALUES"
            " ('EF-1', 'electrical_fire_monitor', 'market'), ('SD-1', 'smoke_detector', 'market')"
        )
    return database


def leak(seq: int, ts: float, ma: float) -> bytes:
    return orjson.dumps({"ts": int(ts * 1000), "seq": seq, "values": {"residual_current_ma": ma}})


async def test_leak_ramp_raises_once_and_state_is_saved(
    mosquitto_broker, registered: str, data_dir: Path
) -> None:
    settings = make_settings(mosquitto_broker.url, registered, data_dir)
    start = time.time() - 120
    ramp = [150 + 10 * i for i in range(30)]  # 150 → 440 mA, one reading a second
    messages = [
        ("gridwatch/v1/up/EF-1/telemetry", leak(i, start + i, ma)) for i, ma in enumerate(ramp)
    ]
    messages += messages[-5:]  # a device resending its last readings
    messages.append(
        (
            "gridwatch/v1/up/SD-1/event",
            orjson.dumps({"ts": int(start * 1000) + 500, "event": "alarm"}),
        )
    )
    seen: list[Hit] = []

    async def sink(_conn: object, hits: list[Hit], _now: float) -> None:
        seen.extend(hits)

    async with running_service(settings) as gw:
        gw.service.hit_sinks.append(sink)
        await asyncio.to_thread(_publish, mosquitto_broker.url, messages)
        await gw.wait_for(lambda: gw.handled() >= len(messages))

    raised = [(h.device_id, h.type) for h in seen if h.raised]
    assert raised.count(("EF-1", "residual_current_high")) == 1
    assert ("SD-1", "smoke_alarm") in raised
    async with await psycopg.AsyncConnection.connect(registered) as conn:
        cur = await conn.execute("SELECT state FROM detector_state WHERE device_id = 'EF-1'")
        row = await cur.fetchone()
    assert row is not None and "residual_current" in orjson.dumps(row[0]).decode()


def _publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    with BoundedPublisher(url) as pub:
        for topic, payload in messages:
            pub.publish(topic, payload)
