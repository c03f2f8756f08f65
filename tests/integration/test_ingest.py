"""Devices → mosquitto → gridwatch → PostgreSQL, with real services."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest

from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.conftest import make_settings, running_service

pytestmark = pytest.mark.integration

DEVICES = [(f"EF-{i:03d}", "electrical_fire_monitor") for i in range(20)] + [
    (f"SD-{i:03d}", "smoke_detector") for i in range(10)
]


@pytest.fixture(scope="module")
def registered(database: str) -> str:
    with psycopg.connect(database) as conn:
        conn.cursor().executemany(
            "INSERT INTO devices (device_id, type, site) VALUES (%s, %s, 'site-1')", DEVICES
        )
    return database


def telemetry(seq: int, ts: float, current: float) -> bytes:
    return orjson.dumps(
        {
            "ts": int(ts * 1000),
            "seq": seq,
            "values": {"residual_current_ma": current, "cable_temp_c_1": 40.0 + seq % 5},
        }
    )


def publish_all(url: str, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    with BoundedPublisher(url) as pub:
        for topic, payload in messages:
            pub.publish(topic, payload, qos=qos)


async def scalar(conninfo: str, query: str, *params: object) -> object:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        return row[0] if row else None


async def test_devices_publish_rows_stored(
    mosquitto_broker, registered: str, data_dir: Path
) -> None:
    settings = make_settings(mosquitto_broker.url, registered, data_dir)
    now = time.time()
    messages = [
        (f"gridwatch/v1/up/EF-{i:03d}/telemetry", telemetry(seq, now - 60 + seq, 30.0 + seq))
        for i in range(20)
        for seq in range(10)
    ]
    messages += [
        (
            "gridwatch/v1/up/SD-001/event",
            orjson.dumps(
                {"ts": int(now * 1000), "seq": 99, "event": "alarm", "detail": {"channel": "smoke"}}
            ),
        ),
        ("gridwatch/v1/up/SD-002/heartbeat", orjson.dumps({"values": {"battery_pct": 77}})),
        ("gridwatch/v1/up/SD-003/status", b"offline"),
    ]
    async with running_service(settings) as gw:
        await asyncio.to_thread(publish_all, mosquitto_broker.url, messages)
        await gw.wait_for(lambda: gw.handled() >= len(messages))

    assert (
        await scalar(registered, "SELECT count(*) FROM readings WHERE device_id LIKE 'EF-%%'")
        == 400
    )
    assert (
        await scalar(
            registered,
            "SELECT value FROM readings WHERE device_id='EF-003' AND metric=%s AND seq=9",
            "residual_current_ma",
        )
        == 39.0
    )
    assert (
        await scalar(registered, "SELECT event FROM device_events WHERE device_id='SD-001'")
        == "alarm"
    )
    assert (
        await scalar(registered, "SELECT status FROM device_state WHERE device_id='SD-003'")
        == "offline"
    )
    assert (
        await scalar(
            registered,
            "SELECT last_values->>'battery_pct' FROM device_state WHERE device_id='SD-002'",
        )
        == "77.0"
    )
    # the heartbeat had no ts: stored with arrival time, and marked so
    assert (
        await scalar(registered, "SELECT ts_from_arrival FROM readings WHERE device_id='SD-002'")
        is True
    )
    state = await scalar(registered, "SELECT last_seq FROM device_state WHERE device_id='EF-007'")
    assert state == 9


async def test_bad_payloads_dead_lettered_and_service_keeps_running(
    mosquitto_broker, registered: str, data_dir: Path
) -> None:
    settings = make_settings(mosquitto_broker.url, registered, data_dir)
    now = time.time()
    bad = [
        ("gridwatch/v1/up/EF-001/telemetry", b"\x00\xffgarbage"),
        ("gridwatch/v1/up/GHOST-1/telemetry", telemetry(1, now, 10.0)),
        (
            "gridwatch/v1/up/EF-002/telemetry",
            orjson.dumps({"values": {"residual_current_ma": 1e9}}),
        ),
        (
            "gridwatch/v1/up/EF-002/telemetry",
            orjson.dumps({"ts": int((now + 86400) * 1000), "values": {"residual_current_ma": 1}}),
        ),
        ("gridwatch/v1/up/EF-002/telemetry", b"x" * 70000),
    ]
    good = [("gridwatch/v1/up/EF-010/telemetry", telemetry(500, now, 12.0))]
    async with running_service(settings) as gw:
        await asyncio.to_thread(publish_all, mosquitto_broker.url, bad + good)
        await gw.wait_for(lambda: gw.handled() >= len(bad) + len(good))
        assert gw.service.pipeline is not None
        components = gw.service.health()["components"]
        assert components["mqtt"] and components["database"]

    async with await psycopg.AsyncConnection.connect(registered) as conn:
        cur = await conn.execute("SELECT reason, device_id, payload FROM dead_letters ORDER BY id")
        letters = await cur.fetchall()
        cur = await conn.execute("SELECT device_id, reason, count FROM reject_counts ORDER BY 1, 2")
        counts = await cur.fetchall()
    assert [r[0] for r in letters] == [
        "not_json",
        "unknown_device",
        "out_of_range",
        "future_timestamp",
        "oversize",
    ]
    assert letters[0][2] == b"\x00\xffgarbage"
    assert ("EF-002", "out_of_range", 1) in counts and ("GHOST-1", "unknown_device", 1) in counts
    assert (
        await scalar(
            registered, "SELECT count(*) FROM readings WHERE device_id='EF-010' AND seq=500"
        )
        == 2
    )


async def test_restart_while_devices_publish_loses_nothing_stores_nothing_twice(
    mosquitto_broker, registered: str, data_dir: Path
) -> None:
    """A publisher keeps sending QoS 1 while gridwatch stops and starts again: the broker
    queues for the persistent session, and every message is stored exactly once."""
    settings = make_settings(
        mosquitto_broker.url, registered, data_dir, mqtt={"client_id": "gw-restart"}
    )
    start = time.time() - 3600
    total = 3000
    messages = [
        (f"gridwatch/v1/up/EF-{i % 20:03d}/telemetry", telemetry(1000 + i, start + i, 5.0))
        for i in range(total)
    ]
    # every 10th message is sent twice, as devices do after an outage
    messages += [messages[i] for i in range(0, total, 10)]
    publisher = BoundedPublisher(mosquitto_broker.url)
    publisher.connect()
    sent = 0

    def send(upto: int) -> None:
        nonlocal sent
        for topic, payload in messages[sent:upto]:
            publisher.publish(topic, payload, qos=1)
        sent = upto

    try:
        async with running_service(settings) as gw:
            await asyncio.to_thread(send, 1000)
            await gw.wait_for(lambda: gw.handled() >= 200)
        # gridwatch is down: the broker queues for its session
        await asyncio.to_thread(send, 2200)
        async with running_service(settings) as gw:
            await asyncio.to_thread(send, len(messages))
            await asyncio.to_thread(publisher.flush)

            async def stored() -> int:
                return int(
                    await scalar(  # type: ignore[arg-type]
                        registered, "SELECT count(*) FROM readings WHERE seq >= 1000"
                    )
                )

            async with asyncio.timeout(30):
                while True:
                    seen = len(gw.batches)
                    if await stored() >= total * 2:
                        break
                    await gw.wait_for(lambda seen=seen: len(gw.batches) > seen)
    finally:
        publisher.close()
    assert (
        await scalar(
            registered,
            "SELECT count(*) FROM (SELECT device_id, seq FROM readings WHERE seq >= 1000"
            " GROUP BY 1, 2 HAVING count(*) <> 2) x",
        )
        == 0
    )
    assert (
        await scalar(registered, "SELECT count(DISTINCT seq) FROM readings WHERE seq >= 1000")
        == total
    )


async def test_writer_stores_a_replayed_batch_once(registered: str) -> None:
    """The fast path (COPY straight into readings) meets the unique key on a replay and falls
    back to the staging path: the second write adds nothing and fails nothing."""
    from devices.messages import Reading
    from storage.ingest_writer import IngestBatch, IngestWriter

    now = time.time()
    batch = IngestBatch(
        readings=[
            Reading("SD-009", now - i, 7000 + i, {"smoke_obscuration_db_m": 0.01 * i}, now)
            for i in range(50)
        ]
    )
    async with await psycopg.AsyncConnection.connect(registered) as conn:
        writer = IngestWriter(conn)
        first = await writer.write(batch)
        partly_new = IngestBatch(
            readings=[
                *batch.readings[:10],
                Reading("SD-009", now + 1, 8000, {"temperature_c": 21.0}, now),
            ]
        )
        fresh: list[list[object]] = []

        async def collect(_conn: object, items: list[object]) -> None:
            fresh.append(items)

        second = await writer.write(partly_new, then=collect)
    assert (first.readings_rows, second.readings_rows) == (50, 1)
    assert fresh == [[partly_new.readings[-1]]]  # only what was new goes on to detection
    assert writer.replayed_batches == 1
    assert await scalar(registered, "SELECT count(*) FROM readings WHERE device_id='SD-009'") == 51
    # the device's message count counts each message once, replays or not
    assert await scalar(
        registered, "SELECT messages FROM device_state WHERE device_id='SD-009'") == 51


async def test_replay_on_the_staging_path_meets_the_rows_the_direct_path_stored(
    registered: str,
) -> None:
    """Python's ``datetime.fromtimestamp`` and PostgreSQL's ``to_timestamp(float8)`` round
    about one device timestamp in sixteen to different microseconds. Both write paths must
    render the same key, or a replay that takes the staging path is stored twice."""
    from devices.messages import Reading
    from storage.ingest_writer import IngestBatch, IngestWriter

    def rounded_apart(ts: float) -> bool:  # PostgreSQL: rint((ts - 2000-01-01) × 10⁶)
        pg = round((ts - 946_684_800) * 1e6) + 946_684_800 * 10**6
        py = (datetime.fromtimestamp(ts, UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
            microseconds=1
        )
        return pg != py

    rng = random.Random(7)
    base = time.time() - 3600
    stamps = [ts for ts in (base + rng.random() * 600 for _ in range(5000)) if rounded_apart(ts)]
    readings = [
        Reading("SD-009", ts, 20_000 + i, {"battery_pct": 90.0}, base)
        for i, ts in enumerate(sorted(stamps)[:100])
    ]
    assert len(readings) == 100
    async with await psycopg.AsyncConnection.connect(registered) as conn:
        writer = IngestWriter(conn)
        await writer.write(IngestBatch(readings=readings))
        extra = Reading("SD-009", base - 1, 21_000, {"battery_pct": 91.0}, base)
        again = await writer.write(IngestBatch(readings=[*readings, extra]))
    assert again.readings_rows == 1
    stored = await scalar(
        registered,
        "SELECT count(*) FROM readings WHERE device_id='SD-009' AND metric='battery_pct'",
    )
    assert stored == 101
