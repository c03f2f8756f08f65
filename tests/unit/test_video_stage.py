"""The video stage between the capture fleet and the alert stage: frames in order, hits
applied between ingest batches, snapshots on raises only, back-pressure on a full inbox,
nothing lost when applying fails, unreachable cameras ticked, and which frames are still
(what the clips' pre-roll need not shrink)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from detectors.base import Hit
from detectors.video import VideoConfig
from detectors.video.motion import Box
from detectors.video.pipeline import CameraDetectors, CameraState, Hits
from detectors.video.zones import Figure
from devices.registry import Device, FramePolygon
from ingest.camera_capture import CameraEvent, CameraEventKind, CameraFrame
from ingest.video_stage import VideoStage, is_still
from simulators.scenes import Scene, SceneSpec, Walk

ZONE = FramePolygon(((0.3, 0.62), (0.82, 0.62), (0.9, 0.97), (0.22, 0.97)))
CAMERA = Device(device_id="CAM-1", type="camera", rtsp_url="rtsp://x/1", zones=(ZONE,))


class FakeConn:
    """Only what the stage uses of a connection: a transaction that can fail."""

    def __init__(self) -> None:
        self.fail = False
        self.transactions = 0

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.transactions += 1
        yield


class Sink:
    def __init__(self) -> None:
        self.applied: list[Hit] = []
        self.fail = False

    async def __call__(self, conn: object, hits: list[Hit], now: float) -> None:
        if self.fail:
            raise RuntimeError("database gone")
        self.applied.extend(hits)


async def snapshot(conn: object, jpeg: bytes, hit: Hit) -> dict[str, object]:
    assert jpeg[:2] == b"\xff\xd8"
    return {"media_id": "M1", "url": "/api/v1/snapshots/M1", "content_type": "image/jpeg"}


def stage_with(sink: Sink, **kw: object) -> VideoStage:
    stage = VideoStage(sink, config=VideoConfig(), save_snapshot=snapshot, **kw)  # type: ignore[arg-type]
    stage.set_cameras([CAMERA])
    return stage


async def feed_walk(stage: VideoStage, seconds: float = 25.0) -> None:
    scene = Scene(SceneSpec("t", 11, seconds, (Walk(3, ((-0.1, 0.8), (1.1, 0.82)), 0.1),), (ZONE,)))
    for seq, t in enumerate(scene.times(5.0), 1):
        await stage.on_frame(CameraFrame("CAM-1", scene.frame(t), t, seq))


async def test_a_walk_becomes_hits_with_a_snapshot_on_the_raise() -> None:
    sink = Sink()
    stage = stage_with(sink)
    await feed_walk(stage)
    conn = FakeConn()
    await stage.periodic(conn, 100.0)  # type: ignore[arg-type]
    kinds = [(h.type, h.phase) for h in sink.applied]
    assert ("zone_intrusion", "raised") in kinds and ("zone_intrusion", "cleared") in kinds
    for hit in sink.applied:
        assert ("snapshot" in hit.evidence) == hit.raised
    assert conn.transactions == 1 and stage.inbox_depth() == 0


async def test_hits_that_fail_to_apply_are_applied_next_time() -> None:
    sink = Sink()
    stage = stage_with(sink)
    await feed_walk(stage)
    sink.fail = True
    with pytest.raises(RuntimeError):
        await stage.periodic(FakeConn(), 100.0)  # type: ignore[arg-type]
    kept = stage.inbox_depth()
    assert kept > 0 and sink.applied == []
    sink.fail = False
    await stage.periodic(FakeConn(), 101.0)  # type: ignore[arg-type]
    assert stage.inbox_depth() == 0 and sink.applied


async def test_a_full_inbox_holds_the_camera_back_instead_of_dropping_hits() -> None:
    sink = Sink()
    stage = stage_with(sink, inbox_max=1)
    feeding = asyncio.create_task(feed_walk(stage))
    # the walk makes more than one batch of hits: the feeder blocks on the second
    await asyncio.wait({feeding}, timeout=2.0)
    assert not feeding.done() and stage.inbox_depth() == 1
    while not feeding.done():
        await stage.periodic(FakeConn(), 100.0)  # type: ignore[arg-type]
        await asyncio.sleep(0)
    await stage.periodic(FakeConn(), 100.0)  # type: ignore[arg-type]
    phases = [h.phase for h in sink.applied if h.type == "zone_intrusion"]
    assert phases[0] == "raised" and phases[-1] == "cleared"


async def test_a_camera_giving_no_frame_is_reported_unreachable_on_ticks() -> None:
    sink = Sink()
    stage = stage_with(sink)
    grey = np.full((360, 640, 3), 90, np.uint8)
    for seq in range(1, 6):
        await stage.on_frame(CameraFrame("CAM-1", grey, float(seq), seq))
    stage.on_event(CameraEvent("CAM-1", CameraEventKind.NO_FRAME, 10.0))
    for now in range(10, 200, 5):
        await stage.periodic(FakeConn(), float(now))  # type: ignore[arg-type]
    assert [(h.type, h.rule, h.phase) for h in sink.applied] == [
        ("camera_fault", "unreachable", "raised")
    ]
    assert stage.faults("CAM-1") == {"unreachable"}


async def test_cameras_removed_from_the_registry_are_forgotten() -> None:
    stage = stage_with(Sink())
    stage.set_cameras([])
    assert stage.detectors == {} and stage.faults("CAM-1") == frozenset()


def test_a_frame_is_still_only_when_the_detectors_judged_it_and_saw_nothing() -> None:
    detectors = CameraDetectors.for_device(CAMERA, VideoConfig())
    scene = Scene(SceneSpec("t", 11, 10.0, (), (ZONE,)))  # an empty street, sensor noise
    state = detectors.initial_state()
    for t in scene.times(5.0):
        state, hits = detectors.on_frame(scene.frame(t), state, t)
        assert not hits
    at = state.motion.last_ts
    assert at is not None and is_still(state, (), at, 0.001)
    assert not is_still(state, (), at + 0.2, 0.001)  # not the frame the detectors judged
    box = Box(10, 10, 30, 60, 800.0)
    for motion in (
        replace(state.motion, calibrating=3, looked=False),  # restarting: lights switched
        replace(state.motion, looked=False),  # the last frame of a restart
        replace(state.motion, boxes=(box,)),
        replace(state.motion, changed=0.002),
    ):
        assert not is_still(replace(state, motion=motion), (), at, 0.001)
    assert is_still(replace(state, motion=replace(state.motion, changed=0.002)), (), at, 0.005)
    assert not is_still(replace(state, figures=(Figure(box, ()),)), (), at, 0.001)
    cleared = Hit("CAM-1", "zones", "intrusion", "zone_intrusion", "video", "yellow",
                  "cleared", at, "CAM-1/zones/intrusion")  # fmt: skip
    assert not is_still(state, (cleared,), at, 0.001)


async def test_a_camera_removed_while_its_frame_is_analysed_leaves_nothing_behind() -> None:
    from ingest.clip_recorder import ClipRecorder
    from ingest.video_clips import ClipSettings
    from storage.media import MediaStore

    clips = ClipRecorder(ClipSettings(), MediaStore(Path("/nonexistent")))
    stage = stage_with(Sink(), clips=clips)
    detectors = stage.detectors["CAM-1"]
    started, release = threading.Event(), threading.Event()
    on_frame = detectors.on_frame

    def slow(frame: np.ndarray, state: CameraState, ts: float) -> tuple[CameraState, Hits]:
        started.set()
        release.wait(10)
        return on_frame(frame, state, ts)

    detectors.on_frame = slow  # type: ignore[method-assign]
    grey = np.full((360, 640, 3), 90, np.uint8)
    task = asyncio.create_task(stage.on_frame(CameraFrame("CAM-1", grey, 1.0, 1)))
    assert await asyncio.to_thread(started.wait, 10)
    stage.set_cameras([])  # removed from the registry (or taken by another worker) meanwhile
    release.set()
    await task
    assert stage.states == {} and stage.detectors == {}
    assert clips.collector.rings == {} and clips.collector.last == {}

