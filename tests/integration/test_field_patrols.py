"""Patrol tags in the running service: a tag nobody scans opens a ``patrol_overdue`` event on
a tick (without ever sending a message), the next check-in — given over the HTTP API, which
publishes it on the tag's uplink topic — closes it; a check-in over MQTT whose checklist
fails opens a ``fire_hazard`` event at the tag's site with the checklist as evidence."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.conftest import make_settings, running_service
from tests.integration.field_world import G1, MARKET, World, auth, build_world, rows

pytestmark = pytest.mark.integration

TAG = "PT-M1"
# a 2 s patrol interval with 1 s of grace, so that a period passes within the test
PROFILE = {"patrol_interval": "PT2S", "detectors": {"patrol": {"grace": "PT1S"}}}


@pytest.fixture(scope="module")
def world(database: str) -> World:
    return build_world(database, [(TAG, "patrol_tag", G1, "market-1", *MARKET, PROFILE)])


async def test_a_missed_patrol_opens_an_event_and_the_next_checkin_closes_it(
    mosquitto_broker, world: World, data_dir: Path
) -> None:
    settings = make_settings(
        mosquitto_broker.url, world.conninfo, data_dir, mqtt={"client_id": "gw-patrol"}
    )
    async with running_service(settings) as gw, aiohttp.ClientSession() as session:
        alerts = gw.service.alerts
        assert alerts is not None
        changes: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        alerts.listeners.append(
            lambda c: changes.put_nowait((c.event.type, c.event.state.value, c.event.id))
        )

        async def next_change(kind: str) -> tuple[str, str, str]:
            while True:
                change = await asyncio.wait_for(changes.get(), 20)
                if change[0] == kind:
                    return change

        # the tag never sent anything: the tick finds the missed period by itself
        _, state, overdue_id = await next_change("patrol_overdue")
        assert state == "reported"
        ((grid, category, devices, evidence),) = await rows(
            world.conninfo,
            "SELECT grid_code, category, device_ids, evidence FROM grid_events WHERE id = %s",
            overdue_id,
        )
        assert (grid, category, devices) == (G1, "patrol", [TAG])
        assert evidence[0]["detail"]["interval_s"] == 2.0 and evidence[0]["detail"]["due_by"]

        url = gw.service.http_url + "/api/v1/patrols/checkins"
        # other grids' workers and viewers cannot check this tag in
        async with session.post(url, json={"tag_id": TAG}, headers=auth(world.tokens["m3"])) as r:
            assert r.status == 404
        async with session.post(
            url, json={"tag_id": TAG}, headers=auth(world.tokens["viewer"])
        ) as r:
            assert r.status == 403
        async with session.post(url, json={"tag": TAG}, headers=auth(world.tokens["m1"])) as r:
            assert r.status == 400 and (await r.json())["error"] == "bad_request"
        # the grid worker checks it in from the phone
        async with session.post(url, json={"tag_id": TAG}, headers=auth(world.tokens["m1"])) as r:
            assert r.status == 202, await r.text()
            accepted = await r.json()
        assert accepted["worker_id"] == "m1" and accepted["topic"].endswith(f"/{TAG}/event")
        while True:
            _, state, event_id = await next_change("patrol_overdue")
            if event_id == overdue_id:
                break
        assert state == "closed"
        ((actions,),) = await rows(
            world.conninfo,
            "SELECT array_agg(action ORDER BY id) FROM grid_event_history WHERE event_id = %s",
            overdue_id,
        )
        assert actions == ["report", "auto_close"]
        ((worker, source),) = await rows(
            world.conninfo,
            "SELECT detail->>'worker_id', detail->>'source' FROM device_events"
            " WHERE device_id = %s AND event = 'checkin'",
            TAG,
        )
        assert (worker, source) == ("m1", "api")

        # a reader at the market publishes a round whose checklist fails
        checkin = {
            "ts": int(time.time() * 1000),
            "event": "checkin",
            "detail": {
                "worker_id": "m1",
                "checklist": {"exits_clear": True, "extinguisher_ok": False},
                "note": "灭火器过期",
            },
        }
        with BoundedPublisher(mosquitto_broker.url) as pub:
            pub.publish(f"gridwatch/v1/up/{TAG}/event", orjson.dumps(checkin))
        _, state, hazard_id = await next_change("fire_hazard")
        assert state == "reported"
    ((category, site, evidence),) = await rows(
        world.conninfo,
        "SELECT category, site, evidence FROM grid_events WHERE id = %s",
        hazard_id,
    )
    assert (category, site) == ("fire", "market-1")
    detail = evidence[-1]["detail"]
    assert detail["failed"] == ["extinguisher_ok"] and detail["note"] == "灭火器过期"
    assert detail["checklist"] == {"exits_clear": True, "extinguisher_ok": False}
