"""Scripted device scenarios through mosquitto → grid events in PostgreSQL, with a restart
and a full replay in the middle that must change nothing."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest

from alerts.incidents import AlertStage
from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.conftest import make_settings, running_service

pytestmark = pytest.mark.integration

DEVICES = [
    ("SD-A", "smoke_detector", "building-1"),
    ("SD-B", "smoke_detector", "building-1"),
    ("SD-C", "smoke_detector", "building-9"),
    ("EF-1", "electrical_fire_monitor", "shop-2"),
    ("EF-2", "electrical_fire_monitor", "shop-3"),
    ("WP-1", "water_pressure_sensor", "hydrant-4"),
]


@pytest.fixture(scope="module")
def registered(database: str) -> str:
    with psycopg.connect(database) as conn:
        conn.cursor().executemany(
            "INSERT INTO devices (device_id, type, site) VALUES (%s, %s, %s)", DEVICES
        )
    return database


def msg(device: str, kind: str, body: dict, ts: float | None = None) -> tuple[str, bytes]:
    if ts is not None:
        body = {"ts": int(ts * 1000), **body}
    return f"gridwatch/v1/up/{device}/{kind}", orjson.dumps(body)


def scenario(t0: float) -> list[tuple[str, bytes]]:
    out = [
        msg("SD-A", "event", {"seq": 1, "event": "alarm"}, t0),
        msg("SD-B", "event", {"seq": 1, "event": "alarm"}, t0 + 20),
    ]
    # residual-current leak ramp, one reading a second: 150 → 440 mA
    out += [
        msg(
            "EF-1",
            "telemetry",
            {"seq": 10 + i, "values": {"residual_current_ma": 150 + 10 * i}},
            t0 + i,
        )
        for i in range(30)
    ]
    # a single spike between normal readings: no alarm
    out += [
        msg("EF-2", "telemetry", {"seq": 10 + i, "values": {"residual_current_ma": ma}}, t0 + i)
        for i, ma in enumerate([160, 170, 650, 165, 160, 158])
    ]
    # burst pipe: steady 0.35 MPa, then down to 0.08 within two minutes
    levels = [0.35] * 6 + [0.30, 0.24, 0.18, 0.12, 0.08, 0.08, 0.08, 0.08]
    out += [
        msg("WP-1", "telemetry", {"seq": 10 + i, "values": {"pressure_mpa": p}}, t0 + 10 * i)
        for i, p in enumerate(levels)
    ]
    # a detector drops off the network (its will), then speaks again
    out.append(("gridwatch/v1/up/SD-C/status", b"offline"))
    out.append(msg("SD-C", "heartbeat", {"seq": 5, "values": {"battery_pct": 90}}))
    return out


async def rows(conninfo: str) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(
            "SELECT category, type, severity, state, device_ids, site, alarm_count"
            " FROM grid_events ORDER BY first_seen, category"
        )
        return await cur.fetchall()


def publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    with BoundedPublisher(url) as pub:
        for topic, payload in messages:
            pub.publish(topic, payload)


async def test_scenarios_make_exactly_the_expected_events(
    mosquitto_broker, registered: str, data_dir: Path
) -> None:
    settings = make_settings(
        mosquitto_broker.url, registered, data_dir, mqtt={"client_id": "gw-ev"}
    )
    messages = scenario(time.time() - 600)
    async with running_service(settings) as gw:
        await asyncio.to_thread(publish, mosquitto_broker.url, messages)
        await gw.wait_for(lambda: gw.handled() >= len(messages))
    first = await rows(registered)

    by_site = {r[5]: r for r in first}
    assert set(by_site) == {"building-1", "shop-2", "hydrant-4", ""} or set(by_site) >= {
        "building-1",
        "shop-2",
        "hydrant-4",
    }
    fire = by_site["building-1"]
    assert fire[:3] == ("fire", "smoke_alarm", "red") and sorted(fire[4]) == ["SD-A", "SD-B"]
    assert fire[3] == "reported"
    leak = by_site["shop-2"]
    assert leak[:3] == ("electrical", "residual_current_high", "orange") and leak[4] == ["EF-1"]
    water = by_site["hydrant-4"]
    assert water[0] == "water" and water[2] in ("orange", "red")
    assert "shop-3" not in by_site  # the spike
    offline = [r for r in first if r[1] == "device_offline"]
    assert len(offline) == 1 and offline[0][4] == ["SD-C"] and offline[0][3] == "closed"

    # restart and replay every message: nothing changes
    async with running_service(settings) as gw:
        await asyncio.to_thread(publish, mosquitto_broker.url, messages)
        await gw.wait_for(lambda: gw.handled() >= len(messages))
    assert await rows(registered) == first

    async with await psycopg.AsyncConnection.connect(registered) as conn:
        cur = await conn.execute(
            "SELECT e.type, array_agg(h.action ORDER BY h.id) FROM grid_events e"
            " JOIN grid_event_history h ON h.event_id = e.id GROUP BY e.type"
        )
        history = dict(await cur.fetchall())
        cur = await conn.execute("SELECT change, count(*) FROM event_log GROUP BY 1")
        log = dict(await cur.fetchall())
    assert history["device_offline"] == ["report", "auto_close"]
    assert log["opened"] == len(first) and log["closed"] == 1


async def test_passed_deadlines_escalate_up_the_grid_tree(registered: str) -> None:
    """The sweep, against the database: a red event not dispatched in 10 min goes up a rung,
    and again when the next deadline passes; a second sweep at the same time does nothing."""
    stage = AlertStage(dict)
    async with await psycopg.AsyncConnection.connect(registered) as conn:
        cur = await conn.execute(
            "SELECT id, first_seen FROM grid_events WHERE severity = 'red' AND state = 'reported'"
        )
        event_id, _first = (await cur.fetchall())[0]
        now = datetime.now(UTC)
        assert await stage.sweep(conn, now) == 0
        assert await stage.sweep(conn, now + timedelta(minutes=11)) == 1
        assert await stage.sweep(conn, now + timedelta(minutes=11)) == 0
        assert await stage.sweep(conn, now + timedelta(minutes=22)) == 1
        cur = await conn.execute(
            "SELECT (workflow->>'level')::int, version FROM grid_events WHERE id = %s", (event_id,)
        )
        level, version = await cur.fetchone()
        cur = await conn.execute(
            "SELECT count(*) FROM grid_event_history WHERE event_id = %s AND action = 'escalate'",
            (event_id,),
        )
        escalations = (await cur.fetchone())[0]
    assert level == 2 and escalations == 2 and version >= 3


async def test_a_device_that_goes_silent_is_offline_and_closes_itself_when_back(
    mosquitto_broker, registered: str, data_dir: Path
) -> None:
    """Missed heartbeats (interval shortened to 1 s for this device in the registry): the tick
    raises device_offline without any message; the next message closes it."""
    with psycopg.connect(registered) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, type, site, profile) VALUES"
            " ('SD-L', 'smoke_detector', 'building-7', %s)",
            (orjson.dumps({"detectors": {"liveness": {"interval_s": 1}}}).decode(),),
        )
    settings = make_settings(
        mosquitto_broker.url, registered, data_dir, mqtt={"client_id": "gw-live"}
    )
    async with running_service(settings) as gw:
        alerts = gw.service.alerts
        assert alerts is not None
        changes: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        alerts.listeners.append(lambda c: changes.put_nowait((c.event.type, c.event.state.value)))
        beat = msg("SD-L", "heartbeat", {"values": {"battery_pct": 80}})
        await asyncio.to_thread(publish, mosquitto_broker.url, [beat])
        assert await asyncio.wait_for(changes.get(), 20) == ("device_offline", "reported")
        await asyncio.to_thread(publish, mosquitto_broker.url, [beat])
        assert await asyncio.wait_for(changes.get(), 20) == ("device_offline", "closed")
