"""A video event's clip in the console: the event detail shows the snapshot at once, and
when the clip is added to the evidence (a few seconds later, as a new version on the live
stream) a ``<video>`` appears beside it, fetched with the token, that the browser can play."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import cv2
import numpy as np
import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright, expect

from alerts.correlation import DeviceContext, correlate
from detectors.base import Hit, condition_key
from ingest.clip_recorder import cite_clip, clip_url
from ingest.video_clips import CONTENT_TYPE, encode_webm
from storage.events import append_history, log_change, save_event
from storage.media import MediaStore
from storage.tokens import create_token
from tests.browser.conftest import CHROMIUM, VIEWPORT, WAIT_MS
from tests.integration.conftest import make_settings, running_service

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

CAMERA, GRID = "cam-gate", "440999001"


@dataclass
class World:
    base: str
    browser: Browser
    conninfo: str
    media: MediaStore
    token: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    mosquitto_broker: object, database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with await psycopg.AsyncConnection.connect(database) as conn:
        await conn.execute(
            "INSERT INTO grids (code, name, level, parent, ancestors) VALUES"
            " ('440999', '示范县', 'county', NULL, '{}'), (%s, '城关镇', 'town', '440999', %s)",
            (GRID, ["440999"]),
        )
        token = (await create_token(conn, name="admin", role="admin", scope="*")).text
        await conn.commit()
    settings = make_settings(
        mosquitto_broker.url,  # type: ignore[attr-defined]
        database,
        tmp_path_factory.mktemp("gridwatch"),
        video={"enabled": False},
    )
    async with running_service(settings) as running, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield World(running.service.http_url, browser, database, running.service.media, token)
        finally:
            await browser.close()


def frames(count: int) -> list[np.ndarray]:
    """A bright square crossing a dark picture."""
    out = []
    for i in range(count):
        image = np.full((180, 320, 3), 40, np.uint8)
        image[60:120, 10 + 12 * i : 50 + 12 * i] = (60, 180, 240)
        out.append(image)
    return out


async def test_the_event_detail_plays_the_clip_added_after_the_snapshot(world: World) -> None:
    now = time.time()
    ok, jpeg = cv2.imencode(".jpg", frames(1)[0])
    assert ok
    connect = psycopg.AsyncConnection.connect
    async with await connect(world.conninfo) as conn, conn.transaction():
        snapshot = await world.media.save(
            conn, jpeg.tobytes(), content_type="image/jpeg", kind="snapshot",
            device_id=CAMERA, grid_code=GRID,
        )  # fmt: skip
        hit = Hit(
            device_id=CAMERA, detector="zones", rule="zone1", type="zone_intrusion",
            category="video", severity="orange", phase="raised", ts=now,
            condition_key=condition_key(CAMERA, "zones", "zone1"),
            evidence={"snapshot": snapshot.evidence(), "zone": "zone1"},
        )  # fmt: skip
        device = DeviceContext(device_id=CAMERA, site="gate", grid_code=GRID)
        (change,) = correlate(hit, device, {}, datetime.now(UTC), entropy=secrets.randbits(80))
        event = change.event
        await save_event(conn, event, new=True)
        await append_history(conn, event.id, change.history)
        await log_change(conn, event, "opened")
        await world.media.attach(conn, snapshot.id, event.id)

    context = await world.browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(WAIT_MS)
        await page.goto(world.base + "/")
        await page.fill("#token-input", world.token)
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#stream-status")).to_have_attribute("data-state", "live")
        await page.goto(f"{world.base}/#/event/{event.id}")
        shots = page.locator("#event-snapshots")
        await expect(shots.locator("img").first).to_be_visible(timeout=WAIT_MS)
        assert await shots.locator("video").count() == 0

        # the clip is ready: stored, and cited by the same evidence item (a new version)
        encoded = encode_webm(frames(15), 5.0)
        async with await connect(world.conninfo) as conn, conn.transaction():
            clip = await world.media.save(
                conn, encoded.data, content_type=CONTENT_TYPE, kind="clip",
                device_id=CAMERA, grid_code=GRID,
            )  # fmt: skip
            ref = {"media_id": clip.id, "url": clip_url(clip.id), "content_type": CONTENT_TYPE,
                   "duration_s": encoded.duration_s, "frames": encoded.frames}  # fmt: skip
            _, amended = await cite_clip(conn, [snapshot.id], ref)
            assert amended == [event.id]
        video = shots.locator("video")
        await expect(video).to_have_count(1, timeout=WAIT_MS)
        assert await video.get_attribute("controls") is not None
        assert await video.evaluate("v => v.muted && v.src.startsWith('blob:')")
        # the browser read the WebM's header: it knows the length and the picture size
        await page.wait_for_function(
            "() => { const v = document.querySelector('#event-snapshots video');"
            " return v && v.readyState >= 1; }",
            timeout=WAIT_MS,
        )
        size = await video.evaluate("v => [v.videoWidth, v.videoHeight, v.duration]")
        assert size[:2] == [320, 180] and size[2] == pytest.approx(3.0, abs=0.3)
        assert not errors, errors
    finally:
        await context.close()
