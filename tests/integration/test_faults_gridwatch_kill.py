"""`gridwatch run` killed with SIGKILL under load, then started again.

Devices keep publishing (QoS 1) through the whole test: telemetry from forty devices and
three alarms (each followed by a restore) from each of twelve smoke detectors at twelve
sites: one before the kill, one while gridwatch is dead, one after it is back. A webhook
subscriber and an MQTT feed subscriber listen throughout. One event was dispatched by a
person before the kill; the others wait for dispatch with a deadline that passes while
gridwatch is dead.

Afterwards: every reading is stored once; exactly twelve events, each counting exactly its
three alarms (none lost, none counted twice although the broker redelivered what was not
acknowledged); the dispatched event's workflow is as the person left it; every passed
deadline escalated each event once per rung, never before it passed; and every change in the
log reached the webhook and the MQTT feed (at least once; repeats carry the same id).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import psycopg
import pytest

from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.gridwatch_process import GRIDWATCH, GridwatchProcess, poll
from tests.integration.test_outputs import MqttWatcher, Receiver
from tests.services import free_tcp_port
from tests.unit.registry_data import collection, device, jsonl, sample_features, write

pytestmark = pytest.mark.integration

ALARMS = [f"SD-A{i:02d}" for i in range(12)]
SENSORS = [f"WP-{i:02d}" for i in range(40)]
DEADLINE_S = 4
SENSOR_READINGS = "SELECT count(*) FROM readings WHERE device_id LIKE 'WP-%'"
CONFIG = f"""
[alerts]
sweep_s = 1.0
[alerts.workflow.deadlines.dispatch]
orange = "PT{DEADLINE_S}S"
red = "PT{DEADLINE_S}S"
[outputs]
poll_s = 0.5
webhook_retry_min_s = 0.2
webhook_retry_max_s = 2.0
"""


class Load:
    """Devices publishing from a thread: telemetry at a steady rate, alarms when told."""

    def __init__(self, url: str) -> None:
        self.publisher = BoundedPublisher(url, inflight=500)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._seq = 0
        self.t0_ms = int((time.time() - 60) * 1000)

    def _run(self) -> None:
        t0 = time.time() - 600
        while not self._stop.is_set():
            started = time.monotonic()
            self._seq += 1
            for i, sensor in enumerate(SENSORS):
                body = {"ts": int((t0 + self._seq) * 1000) + i, "seq": self._seq,
                        "values": {"pressure_mpa": 0.3}}  # fmt: skip
                self.publisher.publish(f"gridwatch/v1/up/{sensor}/telemetry", orjson.dumps(body))
                self.sent += 1
            # ten rounds a second: 400 messages a second
            self._stop.wait(max(0.0, 0.1 - (time.monotonic() - started)))

    def alarm(self, n: int) -> None:
        """Round ``n``: each detector alarms and restores (a repeat alarm while the first
        is open would be the same hit), so each round is one more hit on its open event."""
        now = self.t0_ms + n * 10_000  # device time: ten seconds apart, an alarm then its restore
        for device_id in ALARMS:
            for seq, ts, event in ((2 * n, now, "alarm"), (2 * n + 1, now + 500, "restore")):
                body = {"ts": ts, "seq": 1000 + seq, "event": event}
                self.publisher.publish(f"gridwatch/v1/up/{device_id}/event", orjson.dumps(body))

    def __enter__(self) -> Load:
        self.publisher.connect()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.publisher.close()


@pytest.fixture
def gridwatch(database: str, mosquitto_broker, tmp_path: Path) -> Iterator[GridwatchProcess]:
    http_port = free_tcp_port()
    config = write(tmp_path / "gridwatch.toml", CONFIG)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")},
        "GRIDWATCH_MQTT_URL": mosquitto_broker.url,
        "GRIDWATCH_MQTT_CLIENT_ID": "gw-kill",
        "GRIDWATCH_DB_URL": database,
        "GRIDWATCH_DATA_DIR": str(tmp_path / "data"),
        "GRIDWATCH_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "GRIDWATCH_LOG_FORMAT": "text",
    }
    def cli(*args: str) -> None:
        done = subprocess.run(
            [GRIDWATCH, "--config", str(config), *args], env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    grids = collection(sample_features()).decode()
    cli("grids", "import", str(write(tmp_path / "g.geojson", grids)))
    rows = [device(d, grid=i % 3, site=f"site-{d}") for i, d in enumerate(ALARMS)]
    rows += [device(d, grid=0, type="water_pressure_sensor", site="pump") for d in SENSORS]
    cli("devices", "import", str(write(tmp_path / "d.jsonl", jsonl(rows))))
    process = GridwatchProcess(env, http_port, ("--config", str(config)))
    yield process
    if process.proc is not None:
        process.stop()


async def query(conninfo: str, sql: str, *params: object) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(sql, params)  # type: ignore[arg-type]
        return await cur.fetchall()


async def http(gw: GridwatchProcess, method: str, path: str, token: str, body: object) -> object:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.request(
        method, f"http://127.0.0.1:{gw.http_port}{path}", json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as response:  # fmt: skip
        assert response.status < 300, await response.text()
        return await response.json()


async def test_sigkill_under_load_loses_and_doubles_nothing(
    gridwatch: GridwatchProcess, database: str, mosquitto_broker, tmp_path: Path
) -> None:
    gw = gridwatch
    await asyncio.to_thread(gw.start)
    token = (tmp_path / "data" / "admin-token").read_text().strip()
    async with (
        Receiver() as receiver,
        MqttWatcher(mosquitto_broker.url, "gridwatch/v1/events/#") as feed,
    ):
        created = await http(gw, "POST", "/api/v1/subscriptions", token, {"url": receiver.url})
        receiver.secret = created["secret"]  # type: ignore[index]
        with Load(mosquitto_broker.url) as load:
            load.alarm(1)
            await asyncio.to_thread(
                gw.wait_health, lambda h: h["events_opened"] >= len(ALARMS), 30
            )
            (dispatched,) = await query(
                database, "SELECT id FROM grid_events WHERE %s = ANY(device_ids)", ALARMS[0]
            )
            dispatch = {"action": "dispatch", "assignee": {"id": "m10", "role": "grid_member"}}
            await http(gw, "POST", f"/api/v1/events/{dispatched[0]}/actions", token, dispatch)
            before = await query(
                database, "SELECT workflow, version FROM grid_events WHERE id = %s", dispatched[0]
            )
            await receiver.requests.at_least(len(ALARMS))  # deliveries are flowing

            assert await asyncio.to_thread(gw.kill) == -9
            load.alarm(2)  # gridwatch is dead: the broker queues for its session
            at_kill = load.sent
            await asyncio.to_thread(poll, lambda: load.sent >= at_kill + 1200, 30, "load")
            await asyncio.to_thread(gw.start)
            load.alarm(3)
            await asyncio.to_thread(
                gw.wait_health, lambda h: h["ingest"]["stored_messages"] >= 1200, 60
            )
        sent = load.sent

        seen: dict[str, object] = {}

        def settled() -> bool:
            with psycopg.connect(database) as conn:
                (count,) = conn.execute(SENSOR_READINGS).fetchone() or (0,)
                counts = conn.execute("SELECT alarm_count FROM grid_events").fetchall()
            seen.update(readings=count, sent=sent, alarm_counts=sorted(c for (c,) in counts))
            return count == sent and seen["alarm_counts"] == [3] * len(ALARMS)

        try:
            await asyncio.to_thread(poll, settled, 60, "every reading and alarm stored")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {seen}\n{''.join(gw.lines[-30:])}") from None

        # exactly one event per site, each counting its three alarms once
        events = await query(database, "SELECT id, device_ids, alarm_count FROM grid_events")
        assert sorted(d[0] for _, d, _ in events) == sorted(ALARMS)
        (readings,) = await query(
            database, "SELECT count(DISTINCT (device_id, seq)) FROM readings"
            " WHERE device_id LIKE 'WP-%%'",
        )  # fmt: skip
        assert readings == (sent,)

        # the person's dispatch is as they left it
        after = await query(
            database, "SELECT workflow, version FROM grid_events WHERE id = %s", dispatched[0]
        )
        for key in ("state", "assignee", "due", "dispatched_at", "level"):
            assert after[0][0][key] == before[0][0][key], key
        assert after[0][0]["state"] == "dispatched"

        # every passed dispatch deadline escalated its event once per rung, never early
        def escalated() -> bool:
            with psycopg.connect(database) as conn:
                levels = conn.execute(
                    "SELECT (workflow->>'level')::int FROM grid_events WHERE id <> %s",
                    dispatched,
                ).fetchall()
            return all(level >= 1 for (level,) in levels)

        await asyncio.to_thread(poll, escalated, 30, "overdue events escalated")
        rows = await query(
            database,
            "SELECT e.id, (e.workflow->>'level')::int, e.first_seen,"
            " array_agg(h.at ORDER BY h.id) FILTER (WHERE h.action = 'escalate')"
            " FROM grid_events e JOIN grid_event_history h ON h.event_id = e.id"
            " WHERE e.id <> %s GROUP BY e.id",
            dispatched[0],
        )
        assert len(rows) == len(ALARMS) - 1
        for event_id, level, first_seen, escalations in rows:
            escalations = escalations or []
            assert level >= 1 and len(escalations) == level, (event_id, level, escalations)
            assert escalations[0] >= first_seen + timedelta(seconds=DEADLINE_S), event_id

        # every change reached the webhook and the MQTT feed; repeats keep their id
        logged = {
            f"{event_id}:{seq}"
            for seq, event_id in await query(database, "SELECT seq, event_id FROM event_log")
        }
        await receiver.requests.wait_for(lambda _: logged <= set(receiver.acknowledged()), 60)
        await feed.messages.wait_for(lambda _: logged <= set(feed.ids()), 60)
        repeats = sum(n - 1 for n in Counter(receiver.acknowledged()).values())
        assert all(r.verified for r in receiver.requests.items)
        print(f"changes {len(logged)}, webhook repeats {repeats}, feed repeats "
              f"{len(feed.ids()) - len(set(feed.ids()))}, readings {sent}")  # fmt: skip
