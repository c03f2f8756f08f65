"""A raise just before gridwatch stops keeps its clip: at shutdown the clip still collecting
ends with the frames it has, is encoded, stored and cited in its event's evidence."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.video_clips import MJPEG_TYPE
from simulators.rtsp_process import RtspSimulator
from tests.integration.conftest import make_settings, running_service
from tests.integration.test_video_clips import CAMERA, TOWN, _one, _world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspSimulator]:
    with RtspSimulator(
        cameras=1, names=(CAMERA,), width=640, height=360, fps=10,
        scene="tests.integration.test_video_clips:crossing",
    ) as sim:  # fmt: skip
        yield sim


async def test_a_clip_still_collecting_at_shutdown_is_stored_and_cited(
    camera: RtspSimulator, database: str, mosquitto_broker, tmp_path: Path
) -> None:
    await _world(database, camera)
    settings = make_settings(
        mosquitto_broker.url, database, tmp_path / "gw",
        video={"lease_s": 1.0, "reconnect_max_s": 1.0, "clip_post_s": 30.0},
    )  # fmt: skip
    async with running_service(settings) as running:
        video = running.service.video
        assert video is not None and video.clips is not None
        clips = video.clips
        applied = asyncio.Event()
        video.applied_listeners.append(applied.set)
        async with asyncio.timeout(60):  # a raise applied, its clip still collecting
            while not (video.hits and clips.collector.collecting):
                await applied.wait()
                applied.clear()
        assert clips.stored == 0  # 30 s of post-roll: nothing would be stored before the stop
    # stopped: the clip ended early, with what it had
    assert clips.stored == 1
    (count,) = await _one(database, "SELECT count(*) FROM media WHERE kind = 'clip'")
    assert count == 1
    media_id, event_id, content_type = await _one(
        database, "SELECT id, event_id, content_type FROM media WHERE kind = 'clip'"
    )
    assert content_type == MJPEG_TYPE and event_id is not None
    event_type, grid, evidence = await _one(
        database, "SELECT type, grid_code, evidence FROM grid_events WHERE id = %s", event_id
    )
    assert event_type == "zone_intrusion" and grid == TOWN
    cited = [e["detail"]["clip"] for e in evidence if "clip" in e["detail"]]
    assert cited and cited[0]["media_id"] == media_id
    assert 0 < cited[0]["frames"] < 10 + 150  # pre-roll plus part of the 30 s post-roll
