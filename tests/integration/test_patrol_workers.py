"""Patrol tags behind two gridwatch workers on the real mosquitto and PostgreSQL. Worker A
starts first and owns patrol deadlines but never receives a check-in (it listens under
another topic root); worker B receives them all. A tag B's worker scans gets no
``patrol_overdue``; a tag nobody scans gets one event, from A alone, which B's next check-in
closes; when A stops, B takes the deadlines over."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from detectors.base import CLEARED, RAISED, Hit
from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.conftest import Running, make_settings, running_service
from tests.integration.field_world import G1, MARKET, World, build_world, rows

pytestmark = pytest.mark.integration

SCANNED, IDLE = "PT-W1", "PT-W2"
INTERVAL = 4.0
# 4 s periods with 2 s of grace, so that periods pass within the test; a short settling time
# after a takeover
PROFILE = {
    "patrol_interval": "PT4S",
    "detectors": {"patrol": {"grace": "PT2S", "settle_s": 1}},
}


@pytest.fixture(scope="module")
def world(database: str) -> World:
    return build_world(
        database,
        [
            (SCANNED, "patrol_tag", G1, "market-1", *MARKET, PROFILE),
            (IDLE, "patrol_tag", G1, "market-2", *MARKET, PROFILE),
        ],
    )


class Hits:
    """The hits one worker hands to its grid events, and a way to wait for one."""

    def __init__(self, running: Running) -> None:
        self.hits: list[Hit] = []
        self._changed = asyncio.Event()
        running.service.hit_sinks.append(self._sink)

    async def _sink(self, _conn: object, hits: list[Hit], _now: float) -> None:
        self.hits.extend(hits)
        self._changed.set()

    def overdue(self, device_id: str, phase: str) -> list[Hit]:
        return [
            h
            for h in self.hits
            if h.type == "patrol_overdue" and h.device_id == device_id and h.phase == phase
        ]

    async def until(self, predicate: Callable[[], bool], within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def checkin() -> bytes:
    return orjson.dumps(
        {"ts": int(time.time() * 1000), "event": "checkin", "detail": {"worker_id": "m1"}}
    )


async def scan_rounds(pub: BoundedPublisher, stop: asyncio.Event) -> None:
    """A worker on rounds at the market: the tag is scanned every half second (pacing, not
    synchronisation: each scan is a message like any other)."""
    while not stop.is_set():
        await asyncio.to_thread(pub.publish, f"gridwatch/v1/up/{SCANNED}/event", checkin())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def owns(running: Running) -> bool:
    detection = running.service.detection
    return detection is not None and detection.owner.owned


async def until_owner(running: Running, within: float = 15.0) -> None:
    """Wait for the worker's tick to take the deadline lock (nothing announces it)."""
    async with asyncio.timeout(within):
        while not owns(running):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_one_worker_owns_patrol_deadlines_and_another_takes_over(
    mosquitto_broker, world: World, tmp_path: Path
) -> None:
    settings_a = make_settings(
        mosquitto_broker.url,
        world.conninfo,
        tmp_path / "a",
        mqtt={"client_id": "gw-patrol-a", "topic_root": "elsewhere/v1"},
    )
    settings_b = make_settings(
        mosquitto_broker.url, world.conninfo, tmp_path / "b", mqtt={"client_id": "gw-patrol-b"}
    )
    stop_scanning = asyncio.Event()
    async with contextlib.AsyncExitStack() as worker_a:
        a = await worker_a.enter_async_context(running_service(settings_a))
        hits_a = Hits(a)
        await until_owner(a)  # A's first tick takes the lock (and starts both tags' duty)
        pub = BoundedPublisher(mosquitto_broker.url)
        async with running_service(settings_b) as b:
            pub.connect()
            hits_b = Hits(b)
            rounds = asyncio.create_task(scan_rounds(pub, stop_scanning))
            try:
                # the tag nobody scans: A declares it overdue, once
                await hits_a.until(lambda: bool(hits_a.overdue(IDLE, RAISED)))
                (raised,) = hits_a.overdue(IDLE, RAISED)
                assert not owns(b)
                # A decides the scanned tag at later deadlines from the check-ins B stored
                detection_a = a.service.detection
                assert detection_a is not None

                def a_knows_the_scans() -> bool:
                    state = detection_a.runtime.states[SCANNED].detectors["patrol"]
                    return (state.done_until or 0.0) >= raised.ts + 2 * INTERVAL

                await b.wait_for(a_knows_the_scans, within=30)
                assert detection_a.deadlines.replayed > 0
                assert hits_a.overdue(SCANNED, RAISED) == []
                assert [h for h in hits_b.hits if h.type == "patrol_overdue"] == []

                # the idle tag is scanned at last, through B: B closes A's event
                pub.publish(f"gridwatch/v1/up/{IDLE}/event", checkin())
                await hits_b.until(lambda: bool(hits_b.overdue(IDLE, CLEARED)))
                assert hits_b.overdue(IDLE, RAISED) == []
                events = await rows(
                    world.conninfo,
                    "SELECT state, evidence FROM grid_events WHERE type = 'patrol_overdue'"
                    " AND %s = ANY(device_ids)",
                    IDLE,
                )
                assert len(events) == 1
                state, evidence = events[0]
                assert state == "closed"
                assert [e["phase"] for e in evidence] == ["raised", "cleared"]

                # A stops; B owns the deadlines now, and the scanned tag, left alone, is
                # declared overdue by B
                stop_scanning.set()
                await rounds
                await worker_a.aclose()
                await until_owner(b)
                await hits_b.until(lambda: bool(hits_b.overdue(SCANNED, RAISED)))
            finally:
                stop_scanning.set()
                await rounds
                pub.close()
    (count,) = (
        await rows(
            world.conninfo,
            "SELECT count(*) FROM grid_events WHERE type = 'patrol_overdue'"
            " AND %s = ANY(device_ids)",
            SCANNED,
        )
    )[0]
    assert count == 1
    assert hits_a.overdue(SCANNED, RAISED) == []
