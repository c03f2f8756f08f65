"""Response resources: imported like devices (row by row, idempotent), listed within scope,
and carried by a fire event as the nearest micro fire stations and hydrants — the hydrant
with the last pressure its sensor reported."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson
import psycopg
import pytest

from devices.resource_store import import_resource_file
from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.conftest import make_settings, running_service
from tests.integration.field_world import G1, G2, G3, World, api_app, build_world, get_json

pytestmark = pytest.mark.integration

CSV = """resource_id,kind,name,lat,lon,address,grid_code,contact,phone,sensor_id,detail
MFS-1,micro_fire_station,东村微站,22.9070,113.3080,市场北,,刘站长,075512345678,,"{""staff"": 6}"
MFS-3,micro_fire_station,东村二网格微站,22.9020,113.3150,,,,,,
MFS-2,micro_fire_station,西村微型消防站,22.9050,113.4050,,,,,,
HY-1,fire_hydrant,市场东消火栓,22.9060,113.3060,,,,,WP-H1,
HY-2,fire_hydrant,市场西消火栓,22.9040,113.3040,,,,,,
HY-3,fire_hydrant,新装消火栓,22.9030,113.3030,,,,,WP-NEW,
DT-1,duty_team,东村巡防队,22.9055,113.3055,,,陈队长,13800000000,,
DT-OUT,duty_team,县道巡逻队,22.9500,113.3500,,,,,,
BAD-1,fire_station,?,22.9,113.3,,,,,,
BAD-2,micro_fire_station,no position,,,,,,,,
BAD-3,micro_fire_station,wrong grid,22.905,113.305,,440999001001-09,,,,
BAD-4,micro_fire_station,sensor on a station,22.905,113.305,,,,,WP-H1,
MFS-1,micro_fire_station,again,22.9,113.3,,,,,,
"""


@pytest.fixture(scope="module")
def world(database: str, tmp_path_factory: pytest.TempPathFactory) -> World:
    made = build_world(database)
    path = tmp_path_factory.mktemp("resources") / "resources.csv"
    path.write_text(CSV, encoding="utf-8")

    async def load() -> None:
        async with await psycopg.AsyncConnection.connect(database) as conn:
            report = await import_resource_file(conn, path)
            assert (report.counts.inserted, report.counts.updated) == (8, 0)
            errors = {i.key: i.reason for i in report.errors}
            assert set(errors) == {"BAD-1", "BAD-2", "BAD-3", "BAD-4", "MFS-1"}
            assert "not one of" in errors["BAD-1"] and "duplicate" in errors["MFS-1"]
            assert "sensor_id is for fire hydrants" in errors["BAD-4"]
            warned = {i.key: i.reason for i in report.warnings}
            assert "WP-NEW is not registered" in warned["HY-3"]
            assert "no registered basic grid" in warned["DT-OUT"]
            again = await import_resource_file(conn, path)  # the same file: nothing changes
            assert (again.counts.inserted, again.counts.updated, again.counts.unchanged) == (
                0, 0, 8,
            )  # fmt: skip
            await conn.commit()

    asyncio.run(load())
    return made


async def test_resources_are_listed_within_scope(world: World, tmp_path: Path) -> None:
    async with api_app(world.conninfo, tmp_path) as base, aiohttp.ClientSession() as session:
        url = base + "/api/v1/resources"
        status, page = await get_json(session, url, world.tokens["admin"])
        assert status == 200
        assert [r["resource_id"] for r in page["items"]] == sorted(
            ["MFS-1", "MFS-2", "MFS-3", "HY-1", "HY-2", "HY-3", "DT-1", "DT-OUT"]
        )
        status, page = await get_json(session, url, world.tokens["m1"])
        assert {r["resource_id"] for r in page["items"]} == {
            "MFS-1",
            "HY-1",
            "HY-2",
            "HY-3",
            "DT-1",
        }
        mfs1 = next(r for r in page["items"] if r["resource_id"] == "MFS-1")
        assert mfs1["grid_code"] == G1 and mfs1["phone"] == "075512345678"
        assert mfs1["detail"] == {"staff": 6}
        status, page = await get_json(
            session, url, world.tokens["town1"], kind="fire_hydrant", limit=2
        )
        assert [r["resource_id"] for r in page["items"]] == ["HY-1", "HY-2"]
        assert page["next_offset"] == 2
        status, page = await get_json(session, url, world.tokens["town1"], grid=G2)
        assert [r["resource_id"] for r in page["items"]] == ["MFS-3"]
        status, _ = await get_json(session, url, world.tokens["m1"], grid=G3)
        assert status == 403
        status, _ = await get_json(session, url, world.tokens["m1"], kind="fire_station")
        assert status == 400


async def test_a_fire_event_lists_the_nearest_station_and_the_hydrant_with_its_pressure(
    mosquitto_broker, world: World, data_dir: Path
) -> None:
    settings = make_settings(
        mosquitto_broker.url,
        world.conninfo,
        data_dir,
        mqtt={"client_id": "gw-resources"},
        field={"nearest_within_m": 5000},
    )
    async with running_service(settings) as gw, aiohttp.ClientSession() as session:
        alerts = gw.service.alerts
        assert alerts is not None
        opened: asyncio.Queue[str] = asyncio.Queue()
        alerts.listeners.append(
            lambda c: opened.put_nowait(c.event.id) if c.kind == "opened" else None
        )
        now = int(time.time() * 1000)
        with BoundedPublisher(mosquitto_broker.url) as pub:
            pub.publish(
                "gridwatch/v1/up/WP-H1/telemetry",
                orjson.dumps({"ts": now, "values": {"pressure_mpa": 0.32}}),
            )
            pub.publish("gridwatch/v1/up/SD-M1/event", orjson.dumps({"ts": now, "event": "alarm"}))
        event_id = await asyncio.wait_for(opened.get(), 20)
        status, event = await get_json(
            session, f"{gw.service.http_url}/api/v1/events/{event_id}", world.tokens["m1"]
        )
    assert status == 200 and event["category"] == "fire"
    near = event["resources"]
    stations = near["micro_fire_station"]
    # the nearest two within 5 km, nearest first; the station 10 km away is not listed
    assert [s["resource_id"] for s in stations] == ["MFS-1", "MFS-3"]
    assert stations[0]["contact"] == "刘站长" and 300 < stations[0]["distance_m"] < 400
    assert stations[0]["water"] is None
    hydrants = near["fire_hydrant"]
    assert [h["resource_id"] for h in hydrants] == ["HY-1", "HY-2"]
    water = hydrants[0]["water"]
    assert water["pressure_mpa"] == pytest.approx(0.32)
    assert water["measured_at"] is not None and water["alarm"] is False
    assert hydrants[1]["water"] == {
        "pressure_mpa": None, "measured_at": None, "sensor_status": None, "alarm": None,
    }  # fmt: skip
    assert [t["resource_id"] for t in near["duty_team"]] == ["DT-1"]  # the other is 6.8 km off
