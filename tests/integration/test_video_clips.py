"""A short clip around a video hit, through the whole service: a real RTSP stream (GStreamer's
server) shows a person crossing the camera's zone; gridwatch opens a ``zone_intrusion`` event
with its snapshot at once, then adds a clip (Motion-JPEG AVI, the default) to the same
evidence item a few seconds later, as a new version in the change log. OpenCV reads the clip
back frame by frame; the API serves it as ``video/x-msvideo`` within the camera's grid, with
byte ranges as players ask. (The WebM encoder is tested on its own in the unit tests.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import cv2
import psycopg
import pytest

from devices.registry import Device
from devices.registry_store import upsert_devices
from ingest.clip_recorder import StoredClip
from ingest.video_clips import MJPEG_TYPE, ClipSettings
from simulators.rtsp_process import RtspSimulator
from simulators.scenes import DEMO_ZONE, OSD_MASK, Scene, SceneSpec, Walk
from storage.tokens import create_token
from tests.integration.conftest import make_settings, running_service

pytestmark = pytest.mark.integration

COUNTY, TOWN, OTHER = "440999", "440999001", "440999002"
CAMERA = "cam-clip"
FULL = ClipSettings()  # the defaults: 2 s before, 3 s after, at 5 analysed frames a second


def crossing(name: str, width: int, height: int, index: int) -> Scene:
    """A person crosses the zone 2 s into every 16 s."""
    walk = Walk(2, ((-0.08, 0.8), (1.08, 0.84)), 0.14)
    spec = SceneSpec(name, 21, 16.0, (walk,), (DEMO_ZONE,), width=width, height=height, loop=True)
    return Scene(spec)


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspSimulator]:
    with RtspSimulator(
        cameras=1, names=(CAMERA,), width=640, height=360, fps=10,
        scene=f"{__name__}:crossing",
    ) as sim:  # fmt: skip
        yield sim


async def _world(conninfo: str, sim: RtspSimulator) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        await conn.execute(
            "INSERT INTO grids (code, name, level, parent, ancestors) VALUES"
            " (%s, '示范县', 'county', NULL, '{}'), (%s, '城关镇', 'town', %s, %s),"
            " (%s, '北陡镇', 'town', %s, %s)",
            (COUNTY, TOWN, COUNTY, [COUNTY], OTHER, COUNTY, [COUNTY]),
        )
        await upsert_devices(
            conn,
            [
                Device(
                    device_id=CAMERA, type="camera", grid_code=TOWN, site="gate-clip",
                    rtsp_url=sim.urls[CAMERA], zones=(DEMO_ZONE,), masks=(OSD_MASK,),
                )
            ],
        )  # fmt: skip
        tokens = {
            "admin": await create_token(conn, name="admin", role="admin", scope="*"),
            "town": await create_token(conn, name="town", role="town_centre", scope=TOWN),
            "other": await create_token(conn, name="other", role="town_centre", scope=OTHER),
        }
        await conn.commit()
    return {name: t.text for name, t in tokens.items()}


async def _one(conninfo: str, query: str, *args: object) -> tuple:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(query, args)
        row = await cur.fetchone()
    assert row is not None, query
    return row


async def test_a_zone_intrusion_gets_a_clip_that_plays_and_is_served_with_ranges(
    camera: RtspSimulator, database: str, mosquitto_broker, tmp_path: Path
) -> None:
    tokens = await _world(database, camera)
    settings = make_settings(
        mosquitto_broker.url, database, tmp_path / "gw",
        video={"lease_s": 1.0, "reconnect_max_s": 1.0},
    )  # fmt: skip
    async with running_service(settings) as running:
        service = running.service
        assert service.video is not None and service.video.clips is not None
        stored: list[StoredClip] = []
        heard = asyncio.Event()

        def on_stored(clip: StoredClip) -> None:
            stored.append(clip)
            heard.set()

        service.video.clips.listeners.append(on_stored)
        async with asyncio.timeout(60):
            while not any(s.event_ids for s in stored):
                await heard.wait()
                heard.clear()
        clip_stored = next(s for s in stored if s.event_ids)
        (event_id,) = clip_stored.event_ids

        # the event's evidence: the raise cites its snapshot and, now, its clip
        event_type, version, evidence = await _one(
            database, "SELECT type, version, evidence FROM grid_events WHERE id = %s", event_id
        )
        assert event_type == "zone_intrusion" and version >= 2
        with_clip = [e["detail"] for e in evidence if "clip" in e["detail"]]
        assert with_clip and all(d["snapshot"]["content_type"] == "image/jpeg" for d in with_clip)
        ref = with_clip[0]["clip"]
        assert ref["media_id"] == clip_stored.media_id
        assert ref["url"] == f"/api/v1/media/{ref['media_id']}"
        width = service.settings.video.clip_width  # the 640×360 camera, downscaled to it
        assert service.settings.video.clip_format == "mjpeg"  # the default
        assert ref["content_type"] == MJPEG_TYPE == "video/x-msvideo"
        assert (ref["width"], ref["height"]) == (width, width * 360 // 640 // 2 * 2)
        assert FULL.post_frames < ref["frames"] <= FULL.pre_frames + FULL.post_frames
        assert ref["duration_s"] == pytest.approx(ref["frames"] / 5.0, rel=0.35)
        # linked to its event (retention keeps it while the event is open), in the grid
        assert await _one(
            database, "SELECT kind, content_type, event_id, grid_code FROM media WHERE id = %s",
            ref["media_id"],
        ) == ("clip", MJPEG_TYPE, event_id, TOWN)  # fmt: skip
        # the amendment is a change like any other: the stream, feed and webhooks carry it
        (logged,) = await _one(
            database,
            "SELECT payload FROM event_log WHERE event_id = %s AND change = 'updated'"
            " AND payload->>'version' = %s::text",
            event_id, str(version),
        )  # fmt: skip
        assert any(e["detail"].get("clip") == ref for e in logged["evidence"])

        async with aiohttp.ClientSession(service.http_url) as http:
            admin = {"Authorization": f"Bearer {tokens['admin']}"}
            async with http.get(ref["url"], headers=admin) as resp:
                assert resp.status == 200 and resp.content_type == MJPEG_TYPE
                assert resp.headers["Accept-Ranges"] == "bytes"
                etag = resp.headers["ETag"]
                body = await resp.read()
            assert body[:4] == b"RIFF" and body[8:12] == b"AVI "
            assert len(body) == int(resp.headers["Content-Length"])
            path = tmp_path / "clip.avi"
            path.write_bytes(body)
            capture = cv2.VideoCapture(str(path))
            frames = []
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                frames.append(image)
            fps = capture.get(cv2.CAP_PROP_FPS)
            capture.release()
            assert len(frames) == ref["frames"]
            assert {f.shape for f in frames} == {(ref["height"], ref["width"], 3)}
            assert fps == pytest.approx(ref["frames"] / ref["duration_s"], rel=0.05)

            town = {"Authorization": f"Bearer {tokens['town']}"}
            async with http.get(ref["url"], headers={**town, "Range": "bytes=0-99"}) as resp:
                assert resp.status == 206 and resp.content_type == MJPEG_TYPE
                assert resp.headers["Content-Range"] == f"bytes 0-99/{len(body)}"
                assert await resp.read() == body[:100]
            async with http.get(ref["url"], headers={**town, "Range": "bytes=-10"}) as resp:
                assert resp.status == 206 and await resp.read() == body[-10:]
            async with http.get(
                ref["url"], headers={**town, "Range": "bytes=100-", "If-Range": etag}
            ) as resp:
                assert resp.status == 206 and await resp.read() == body[100:]
            stale = {**town, "Range": "bytes=100-", "If-Range": '"0000"'}
            async with http.get(ref["url"], headers=stale) as resp:
                assert resp.status == 200 and await resp.read() == body  # not the client's copy
            past = {**town, "Range": f"bytes={len(body)}-"}
            async with http.get(ref["url"], headers=past) as resp:
                assert resp.status == 416
                assert resp.headers["Content-Range"] == f"bytes */{len(body)}"
            async with http.get(ref["url"], headers={**town, "If-None-Match": etag}) as resp:
                assert resp.status == 304
            other = {"Authorization": f"Bearer {tokens['other']}"}
            async with http.get(ref["url"], headers=other) as resp:
                assert resp.status == 404  # another town's centre: as if it did not exist
            async with http.get("/healthz") as resp:
                clips = (await resp.json())["cameras"]["clips"]
            assert clips["stored"] >= 1 and clips["skipped"] == 0 and clips["failed"] == 0
