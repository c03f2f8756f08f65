"""Field reports (``POST /api/v1/reports``) and evidence media: a report with a photo becomes a
grid event seen on the live stream and the MQTT feed, its photo served within scope with a
content-addressed ETag; a report at a place where a smoke detector is alarming joins that
event; bad uploads are refused with nothing stored; the media store itself."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import orjson
import psycopg
import pytest

from gridwatch.mqtt_publish import BoundedPublisher
from storage.media import MediaStore
from tests.integration.conftest import make_settings, running_service
from tests.integration.field_world import (
    G1,
    G3,
    MARKET,
    World,
    api_app,
    auth,
    build_world,
    get_json,
    rows,
)
from tests.integration.test_outputs import MqttWatcher, SseClient

pytestmark = pytest.mark.integration


def jpeg(shade: int = 90, size: int = 16) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((size, size, 3), shade, np.uint8))
    assert ok
    return data.tobytes()


def form(report: dict[str, Any], *media: tuple[bytes, str, str]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("report", orjson.dumps(report).decode(), content_type="application/json")
    for body, content_type, name in media:
        data.add_field("media", body, filename=name, content_type=content_type)
    return data


async def post_report(
    session: aiohttp.ClientSession, base: str, token: str, body: aiohttp.FormData | dict[str, Any]
) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"json": body} if isinstance(body, dict) else {"data": body}
    async with session.post(base + "/api/v1/reports", headers=auth(token), **kwargs) as r:
        return r.status, await r.json()


@pytest.fixture(scope="module")
def world(database: str) -> World:
    return build_world(database)


async def test_a_report_with_a_photo_is_an_event_on_the_stream_and_the_feed_and_its_photo_is_served(
    mosquitto_broker, world: World, data_dir: Path
) -> None:
    settings = make_settings(
        mosquitto_broker.url, world.conninfo, data_dir, mqtt={"client_id": "gw-reports"}
    )
    photo = jpeg()
    report = {
        "category": "safety",
        "type": "blocked_exit",
        "description": "东门消防通道被货车堵住",
        "location": {"lat": 22.9085, "lon": 113.3015, "address": "东村市场东门"},
    }
    async with (
        running_service(settings) as gw,
        aiohttp.ClientSession() as session,
        MqttWatcher(mosquitto_broker.url, "gridwatch/v1/events/#") as feed,
        SseClient(gw.service.http_url, world.tokens["town1"]) as stream,
    ):
        base = gw.service.http_url
        status, filed = await post_report(
            session, base, world.tokens["m1"], form(report, (photo, "image/jpeg", "exit.jpg"))
        )
        assert status == 201, filed
        event_id = filed["event_id"]
        event = filed["event"]
        assert (event["grid_code"], event["category"], event["type"]) == (
            G1, "safety", "blocked_exit",
        )  # fmt: skip
        assert event["state"] == "reported" and event["device_ids"] == [filed["report_id"]]
        (media,) = filed["media"]
        assert media["url"] == f"/api/v1/snapshots/{media['media_id']}"
        assert media["content_type"] == "image/jpeg"
        assert event["evidence"][0]["detail"]["media"] == [media]
        assert event["evidence"][0]["detail"]["reporter"] == {"id": "m1", "role": "grid_member"}

        def opened(items: list[Any], where: int) -> bool:
            return any(
                i[where]["subject"] == event_id and i[where]["type"] == "gridwatch.event.opened"
                for i in items
            )

        await stream.events.wait_for(lambda items: opened(items, 1))
        await feed.messages.wait_for(lambda items: opened(items, 1))
        topic = next(t for t, ce in feed.messages.items if ce["subject"] == event_id)
        assert topic.endswith(f"/{G1}")
        streamed = next(ce for _, ce in stream.events.items if ce["subject"] == event_id)
        assert (
            streamed["data"]["evidence"][0]["detail"]["media"][0]["media_id"] == media["media_id"]
        )

        # the photo, as the evidence cites it, and under /media as well
        for path in (media["url"], f"/api/v1/media/{media['media_id']}"):
            async with session.get(base + path, headers=auth(world.tokens["town1"])) as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == "image/jpeg"
                assert await r.read() == photo
                etag = r.headers["ETag"]
                assert etag == f'"{hashlib.sha256(photo).hexdigest()}"'
                assert "immutable" in r.headers["Cache-Control"]
        headers = {**auth(world.tokens["m1"]), "If-None-Match": etag}
        async with session.get(base + media["url"], headers=headers) as r:
            assert r.status == 304
        status, _ = await get_json(session, base + media["url"], world.tokens["m3"])
        assert status == 404  # another grid's worker: as if it did not exist

        # the event as the API reads it, and the report and media rows behind it
        status, detail = await get_json(
            session, f"{base}/api/v1/events/{event_id}", world.tokens["m1"]
        )
        assert status == 200 and detail["history"][0]["actor_id"] == "m1"
        assert detail["resources"] is None  # not a fire or electrical event
    ((report_event, media_ids),) = await rows(
        world.conninfo, "SELECT event_id, media_ids FROM field_reports WHERE id = %s",
        filed["report_id"],
    )  # fmt: skip
    assert report_event == event_id and media_ids == [media["media_id"]]
    ((attached, grid),) = await rows(
        world.conninfo, "SELECT event_id, grid_code FROM media WHERE id = %s", media["media_id"]
    )
    assert (attached, grid) == (event_id, G1)


async def test_a_report_at_an_alarming_site_joins_the_device_event(
    mosquitto_broker, world: World, data_dir: Path
) -> None:
    settings = make_settings(
        mosquitto_broker.url, world.conninfo, data_dir, mqtt={"client_id": "gw-reports-2"}
    )
    async with running_service(settings) as gw, aiohttp.ClientSession() as session:
        alerts = gw.service.alerts
        assert alerts is not None
        opened: asyncio.Queue[str] = asyncio.Queue()
        alerts.listeners.append(
            lambda c: opened.put_nowait(c.event.id) if c.kind == "opened" else None
        )
        alarm = orjson.dumps({"ts": int(time.time() * 1000), "event": "alarm"})
        with BoundedPublisher(mosquitto_broker.url) as pub:
            pub.publish("gridwatch/v1/up/SD-M1/event", alarm)
        device_event = await asyncio.wait_for(opened.get(), 20)
        # no site given: the location, a few metres from the smoke detector, gives it
        status, filed = await post_report(
            session,
            gw.service.http_url,
            world.tokens["m1"],
            {
                "category": "fire",
                "type": "smoke_seen",
                "description": "市场二楼冒烟",
                "location": {"lat": MARKET[0], "lon": MARKET[1]},
            },
        )
        assert status == 201, filed
    assert filed["event_id"] == device_event
    event = filed["event"]
    assert event["site"] == "market-1" and event["device_ids"] == ["SD-M1", filed["report_id"]]
    assert event["severity"] == "red"  # two sources at one site
    ((actions,),) = await rows(
        world.conninfo,
        "SELECT array_agg(action || ':' || actor_id ORDER BY id) FROM grid_event_history"
        " WHERE event_id = %s",
        device_event,
    )
    assert "comment:m1" in actions


async def test_bad_reports_are_refused_and_nothing_is_stored(world: World, tmp_path: Path) -> None:
    limits = {"max_photo_bytes": 1024, "max_files": 2}
    counts = (
        "SELECT (SELECT count(*) FROM grid_events), (SELECT count(*) FROM media),"
        " (SELECT count(*) FROM field_reports), (SELECT count(*) FROM audit_log)"
    )
    before = await rows(world.conninfo, counts)
    good = {"category": "fire", "type": "fire_hazard", "description": "电动车楼道充电"}
    small, big = jpeg(size=8), jpeg(size=8) + b"\0" * 2048
    png_bytes = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    cases: list[tuple[str, aiohttp.FormData | dict[str, Any], int, str]] = [
        ("m1", form(good, (png_bytes, "image/jpeg", "a.jpg")), 415, "unsupported_media_type"),
        ("m1", form(good, (b"GIF89a....", "image/gif", "a.gif")), 415, "unsupported_media_type"),
        ("m1", form(good, (small, "image/jpeg", "a.jpg"), (big, "image/jpeg", "b.jpg")), 413,
         "too_large"),
        ("m1", form(good, *[(small, "image/jpeg", f"{n}.jpg") for n in range(3)]), 413,
         "too_many_files"),
        ("m1", form({**good, "category": "weather"}, (small, "image/jpeg", "a.jpg")), 400,
         "bad_report"),
        ("m1", form({**good, "extra": 1}), 400, "bad_report"),
        ("m1", {**good, "description": " "}, 400, "bad_report"),
        ("admin", good, 422, "unplaced"),  # no grid of its own and no location
        ("town1", {**good, "location": {"lat": 22.905, "lon": 113.405}}, 403, "outside_scope"),
        ("viewer", good, 403, "read_only"),
    ]  # fmt: skip
    async with (
        api_app(world.conninfo, tmp_path, field=limits) as base,
        aiohttp.ClientSession() as session,
    ):
        for token, body, status, code in cases:
            got, answer = await post_report(session, base, world.tokens[token], body)
            assert (got, answer["error"]) == (status, code), answer
            assert answer["reason"]
        async with session.post(
            base + "/api/v1/reports", headers=auth(world.tokens["m1"]), data=b"x",
        ) as r:  # fmt: skip
            assert r.status == 415
    assert await rows(world.conninfo, counts) == before
    assert not list((tmp_path / "media").glob("*/*"))


async def test_the_media_store_keeps_bytes_once_and_removes_what_no_row_cites(
    world: World, tmp_path: Path
) -> None:
    store = MediaStore(tmp_path / "media")
    photo = jpeg(shade=200)
    async with await psycopg.AsyncConnection.connect(world.conninfo) as conn:
        async with conn.transaction():
            one = await store.save(conn, photo, content_type="image/jpeg", kind="snapshot",
                                   device_id="SD-M1", grid_code=G3)  # fmt: skip
            two = await store.save(conn, photo, content_type="image/jpeg", kind="snapshot")
        assert one.id != two.id and one.sha256 == two.sha256 == hashlib.sha256(photo).hexdigest()
        assert store.path_of(one) == store.path_of(two)
        assert store.path_of(one).read_bytes() == photo
        assert len(list((tmp_path / "media").rglob("*"))) == 2  # one directory, one file
        assert await store.get(conn, one.id) == one and await store.get(conn, "MDnone") is None
        await store.attach(conn, one.id, "GE-X")
        assert (await store.get(conn, one.id)).event_id == "GE-X"  # type: ignore[union-attr]
        with pytest.raises(LookupError):
            await store.attach(conn, "MDnone", "GE-X")
        await conn.commit()
        # a transaction that saved and then failed leaves a file no row cites
        other = jpeg(shade=10)
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                lost = await store.save(conn, other, content_type="image/jpeg", kind="snapshot")
                raise RuntimeError("the event could not be written")
        assert store.path_of(lost).is_file()
        assert await store.discard_unreferenced(conn, [lost.sha256, one.sha256]) == 1
        assert not store.path_of(lost).exists() and store.path_of(one).is_file()
