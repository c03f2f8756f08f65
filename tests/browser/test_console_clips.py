"""A video event's clip in the console: the event detail shows the snapshot at once, and
when the clip is added to the evidence (a few seconds later, as a new version on the live
stream) it appears beside it, fetched with the token: a Motion-JPEG AVI (the default) in the
console's own player, its JPEG frames in an ``<img>`` one after another, with play/pause and
a frame counter; a WebM clip in a ``<video>`` the browser plays. All under the console's CSP."""

from __future__ import annotations

import re
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
from playwright.async_api import Browser, Page, async_playwright, expect

from alerts.correlation import DeviceContext, correlate
from alerts.event import GridEvent
from detectors.base import Hit, condition_key
from ingest.clip_recorder import cite_clip, clip_url
from ingest.video_clips import MJPEG_TYPE, EncodedClip, encode_mjpeg, encode_webm
from storage.events import append_history, log_change, save_event
from storage.media import MediaItem, MediaStore
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


def frames(count: int, width: int = 320, height: int = 180) -> list[np.ndarray]:
    """A bright square crossing a dark picture."""
    out = []
    for i in range(count):
        image = np.full((height, width, 3), 40, np.uint8)
        image[60:120, 10 + 12 * i : 50 + 12 * i] = (60, 180, 240)
        out.append(image)
    return out


async def open_event(world: World, site: str) -> tuple[GridEvent, MediaItem]:
    """A zone intrusion at ``site`` (one open event a site) whose evidence cites its
    snapshot (no clip yet)."""
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
            category="video", severity="orange", phase="raised", ts=time.time(),
            condition_key=condition_key(CAMERA, "zones", "zone1"),
            evidence={"snapshot": snapshot.evidence(), "zone": "zone1"},
        )  # fmt: skip
        device = DeviceContext(device_id=CAMERA, site=site, grid_code=GRID)
        (change,) = correlate(hit, device, {}, datetime.now(UTC), entropy=secrets.randbits(80))
        event = change.event
        await save_event(conn, event, new=True)
        await append_history(conn, event.id, change.history)
        await log_change(conn, event, "opened")
        await world.media.attach(conn, snapshot.id, event.id)
    return event, snapshot


async def add_clip(world: World, event: GridEvent, snapshot: MediaItem, clip: EncodedClip) -> None:
    """The clip stored and cited by the snapshot's evidence item, as the recorder does."""
    async with await psycopg.AsyncConnection.connect(world.conninfo) as conn, conn.transaction():
        item = await world.media.save(
            conn, clip.data, content_type=clip.content_type, kind="clip",
            device_id=CAMERA, grid_code=GRID,
        )  # fmt: skip
        ref = {
            "media_id": item.id, "url": clip_url(item.id), "content_type": clip.content_type,
            "duration_s": clip.duration_s, "frames": clip.frames,
            "width": clip.width, "height": clip.height,
        }  # fmt: skip
        _, amended = await cite_clip(conn, [snapshot.id], ref)
        assert amended == [event.id]


async def detail_page(world: World, event: GridEvent, errors: list[str]) -> Page:
    """The event's detail, signed in, with the snapshot shown; page errors and CSP refusals
    go to ``errors``."""
    context = await world.browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.set_default_timeout(WAIT_MS)
    await page.goto(world.base + "/")
    await page.fill("#token-input", world.token)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#stream-status")).to_have_attribute("data-state", "live")
    await page.goto(f"{world.base}/#/event/{event.id}")
    await expect(page.locator("#event-snapshots img").first).to_be_visible(timeout=WAIT_MS)
    return page


async def test_the_event_detail_plays_an_mjpeg_clip_frame_by_frame(world: World) -> None:
    event, snapshot = await open_event(world, "gate-east")
    errors: list[str] = []
    page = await detail_page(world, event, errors)
    try:
        shots = page.locator("#event-snapshots")
        assert await shots.locator(".mjpeg").count() == 0

        clip = encode_mjpeg(frames(15, 480, 270), 5.0)
        assert clip.content_type == MJPEG_TYPE
        await add_clip(world, event, snapshot, clip)
        player = shots.locator(".mjpeg")
        await expect(player).to_have_count(1, timeout=WAIT_MS)
        assert await player.get_attribute("data-frames") == "15"
        assert await shots.locator("video").count() == 0  # browsers cannot play it there
        image = player.locator("img")
        # it plays by itself, looping: the picture is each frame's JPEG in turn
        await expect(player).to_have_attribute("data-state", "playing")
        seen: set[str] = set()
        for _ in range(3):
            handle = await page.wait_for_function(
                """([seen]) => {
                    const img = document.querySelector('#event-snapshots .mjpeg img');
                    return img && img.complete && img.naturalWidth > 0
                        && !seen.includes(img.src)
                        && [img.src, img.naturalWidth, img.naturalHeight];
                }""",
                arg=[sorted(seen)],
                timeout=WAIT_MS,
            )
            src, width, height = await handle.json_value()
            assert src.startswith("blob:") and (width, height) == (480, 270)
            seen.add(src)
        counter = player.locator(".clip-counter")
        await expect(counter).to_have_text(re.compile(r"^\d+ / 15$"))
        # paused, it holds one frame; played again, it moves on
        await player.locator("button.clip-play").click()
        await expect(player).to_have_attribute("data-state", "paused")
        held = await image.get_attribute("src")
        shown = await counter.text_content()
        await page.wait_for_timeout(600)  # three frame intervals: nothing may change
        assert await image.get_attribute("src") == held
        assert await counter.text_content() == shown
        await player.locator("button.clip-play").click()
        await expect(player).to_have_attribute("data-state", "playing")
        await expect(image).not_to_have_attribute("src", held or "")
        assert not errors, errors
    finally:
        await page.context.close()


async def test_the_event_detail_plays_a_webm_clip_in_a_video(world: World) -> None:
    event, snapshot = await open_event(world, "gate-west")
    errors: list[str] = []
    page = await detail_page(world, event, errors)
    try:
        shots = page.locator("#event-snapshots")
        assert await shots.locator("video").count() == 0
        await add_clip(world, event, snapshot, encode_webm(frames(15), 5.0))
        video = shots.locator("video")
        await expect(video).to_have_count(1, timeout=WAIT_MS)
        assert await shots.locator(".mjpeg").count() == 0
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
        await page.context.close()
