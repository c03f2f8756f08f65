"""Cameras through the whole service: real RTSP streams (GStreamer's server), gridwatch
pulling them, the video detectors, grid events with JPEG evidence, and the camera API.

Camera 1 shows a person crossing its zone: one ``zone_intrusion`` event whose evidence
cites a snapshot served at ``/api/v1/snapshots/{id}``. Camera 2 is covered for a while: a
``camera_fault`` event that closes by itself once the picture is back. Every wait is on a
condition with a time limit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest

from devices.registry import Device
from devices.registry_store import upsert_devices
from simulators.rtsp_process import RtspSimulator
from simulators.scenes import (
    DEMO_ZONE,
    OSD_MASK,
    Cover,
    Drop,
    Event,
    Lights,
    Scene,
    SceneSpec,
    Walk,
)
from storage.tokens import create_token
from tests.integration.conftest import make_settings, running_service

pytestmark = pytest.mark.integration

CROSSING, COVERED, LIT, DROPPING = "cam-001", "cam-002", "cam-003", "cam-004"
GRACE_S = 3.0  # video.detectors.health.unreachable_after_s in these tests
SCRIPTS: dict[int, tuple[Event, ...]] = {
    0: (Walk(4, ((-0.08, 0.8), (1.08, 0.84)), 0.12),),  # a person crosses the zone
    1: (Cover(6, 16),),  # the lens is covered for 10 s
    2: (Lights(5, True), Lights(15, False)),  # the street light switched on and off
    3: (Drop(10, 11.5), Drop(16, 26)),  # a drop shorter than the grace, then a long one
}


def scripted(name: str, width: int, height: int, index: int) -> Scene:
    """Each camera's script, repeated every 32 s."""
    spec = SceneSpec(
        name, 7 + index, 32.0, SCRIPTS[index], (DEMO_ZONE,), width=width, height=height,
        loop=True,
    )  # fmt: skip
    return Scene(spec)


@pytest.fixture(scope="module")
def cameras() -> Iterator[RtspSimulator]:
    with RtspSimulator(
        cameras=4, width=640, height=360, fps=10, scene=f"{__name__}:scripted"
    ) as sim:
        yield sim


async def _register(conninfo: str, sim: RtspSimulator) -> None:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        await upsert_devices(
            conn,
            [
                Device(
                    device_id=name,
                    type="camera",
                    site=f"gate-{name}",
                    rtsp_url=url,
                    zones=(DEMO_ZONE,),
                    masks=(OSD_MASK,),
                )
                for name, url in sim.urls.items()
            ],
        )
        await conn.commit()


async def _events(conninfo: str) -> list[tuple[str, str, str, str]]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(
            "SELECT id, type, state, device_ids[1] FROM grid_events ORDER BY first_seen"
        )
        return [tuple(r) for r in await cur.fetchall()]  # type: ignore[misc]


class Signal:
    """Set by the service (an event changed, a lease round ended); a condition is checked
    again each time it is set."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __call__(self, *_: object) -> None:
        self.event.set()

    async def until(self, check: Callable[[], Awaitable[bool]], within: float) -> None:
        async with asyncio.timeout(within):
            while not await check():
                await self.event.wait()
                self.event.clear()


async def test_cameras_raise_events_with_snapshots_and_faults_close_themselves(
    cameras: RtspSimulator,
    database: str,
    mosquitto_broker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alerts.incidents")
    threads_before = set(threading.enumerate())
    await _register(database, cameras)
    settings = make_settings(
        mosquitto_broker.url,
        database,
        tmp_path / "gw",
        video={
            "lease_s": 1.0,
            "reconnect_max_s": 1.0,
            "detectors": {"health": {"unreachable_after_s": GRACE_S}},
        },
    )
    async with running_service(settings) as running:
        service = running.service
        assert service.alerts is not None
        changed = Signal()
        service.alerts.listeners.append(changed)
        async with await psycopg.AsyncConnection.connect(database) as conn:
            token = (await create_token(conn, name="console", role="admin", scope="*")).text
            await conn.commit()
        headers = {"Authorization": f"Bearer {token}"}

        async def intrusion_and_closed_faults() -> bool:
            events = await _events(database)
            kinds = {(t, s, d) for _, t, s, d in events}
            return {
                ("zone_intrusion", "reported", CROSSING),
                ("camera_fault", "closed", COVERED),
                ("camera_fault", "closed", DROPPING),
            } <= kinds

        await changed.until(intrusion_and_closed_faults, within=90)
        assert service.cameras is not None and service.cameras.held() == set(cameras.urls)
        events = await _events(database)
        # the lights switched on and off raised nothing; the short drop raised no fault
        assert [e for e in events if e[3] == LIT] == []
        dropped = [e for e in events if e[3] == DROPPING]
        assert [(t, s) for _, t, s, _ in dropped] == [("camera_fault", "closed")]
        async with await psycopg.AsyncConnection.connect(database) as conn:
            cur = await conn.execute(
                "SELECT evidence FROM grid_events WHERE id = %s", (dropped[0][0],)
            )
            (fault_evidence,) = await cur.fetchone()  # type: ignore[misc]
        raised = [e["detail"] for e in fault_evidence if e["phase"] == "raised"]
        assert raised[0]["fault"] == "unreachable" and raised[0]["no_frame_s"] >= GRACE_S

        async with await psycopg.AsyncConnection.connect(database) as conn:
            cur = await conn.execute(
                "SELECT evidence FROM grid_events WHERE type = 'zone_intrusion'"
            )
            (evidence,) = await cur.fetchone()  # type: ignore[misc]
        snapshots = [e["detail"]["snapshot"] for e in evidence if "snapshot" in e["detail"]]
        assert snapshots, evidence
        async with await psycopg.AsyncConnection.connect(database) as conn:
            cur = await conn.execute(
                "SELECT m.kind, e.type FROM media m JOIN grid_events e ON e.id = m.event_id"
                " WHERE m.id = %s",
                (snapshots[0]["media_id"],),
            )
            # linked to its event, so that retention keeps it while the event is open
            assert await cur.fetchone() == ("snapshot", "zone_intrusion")
        async with aiohttp.ClientSession(service.http_url, headers=headers) as http:
            async with http.get(snapshots[0]["url"]) as resp:
                assert resp.status == 200 and resp.content_type == "image/jpeg"
                assert (await resp.read())[:2] == b"\xff\xd8"
            async with http.get(f"/api/v1/cameras/{CROSSING}/latest.jpg") as resp:
                assert resp.status == 200 and (await resp.read())[:2] == b"\xff\xd8"
            async with http.get("/api/v1/cameras/cam-404/latest.jpg") as resp:
                assert resp.status == 404
            listed: dict[str, dict] = {}

            async def listed_healthy() -> bool:
                async with http.get("/api/v1/cameras") as resp:
                    listed.update(
                        {i["device"]["device_id"]: i for i in (await resp.json())["items"]}
                    )
                return all(i["status"] and not i["status"]["faults"] for i in listed.values())

            rounds = Signal()
            service.cameras.listeners.append(rounds)
            await rounds.until(listed_healthy, within=10)  # reported on the next lease round
        assert set(listed) == set(cameras.urls)
        assert listed[DROPPING]["status"]["reconnects"] >= 1
        assert all(i["pulled"] and i["status"]["state"] == "connected" for i in listed.values())
    # the log says what happened to which event, by id
    logged = {
        (r.getMessage(), r.event_type, r.device_ids[0])  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "event_id", "").startswith("GE")
    }
    assert ("grid event opened", "zone_intrusion", CROSSING) in logged
    assert ("grid event opened", "camera_fault", COVERED) in logged
    assert {
        t for t in threading.enumerate() if t.name.startswith("camera-")
    } - threads_before == set()


async def test_two_workers_share_the_cameras_and_one_takes_over_when_the_other_stops(
    cameras: RtspSimulator, database: str, mosquitto_broker, tmp_path: Path
) -> None:
    await _register(database, cameras)

    def worker(name: str) -> object:
        return make_settings(
            mosquitto_broker.url,
            database,
            tmp_path / name,
            mqtt={"client_id": name, "shared_group": "gw"},
            video={"lease_s": 0.5},
        )

    async with running_service(worker("gw-a")) as a:
        assert a.service.cameras is not None
        async with running_service(worker("gw-b")) as b:
            assert b.service.cameras is not None
            ca, cb = a.service.cameras, b.service.cameras
            rounds = Signal()
            ca.listeners.append(rounds)
            cb.listeners.append(rounds)

            async def split() -> bool:
                return len(ca.held()) == 2 and len(cb.held()) == 2

            await rounds.until(split, within=20)
            assert ca.held() | cb.held() == set(cameras.urls)

        async def all_on_a() -> bool:
            return ca.held() == set(cameras.urls)

        await rounds.until(all_on_a, within=20)
