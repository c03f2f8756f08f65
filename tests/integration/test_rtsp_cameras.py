"""Camera ingest against real RTSP: the simulator (GStreamer's RTSP server under Debian's
python3, H.264 from x264) serves two cameras, the fleet pulls them with OpenCV over TCP as
it would pull a Hikvision camera, and the simulator takes cameras away and gives them back.

Every wait is on a condition (frames or events handed over by the fleet, events from the
simulator) with a time limit; no test sleeps to let something happen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from ingest.cameras import (
    CameraEventKind,
    CameraFleet,
    CameraFrame,
    CameraSource,
    CaptureSettings,
)
from simulators.rtsp_control import DropMode
from simulators.rtsp_pattern import MovingBox, read_stamp
from simulators.rtsp_process import RtspSimulator
from tests.unit.test_cameras import Recorder

pytestmark = pytest.mark.integration

W, H, FPS, SAMPLE = 640, 360, 15, 5.0
CAM1, CAM2 = "cam-001", "cam-002"
SETTINGS = CaptureSettings(
    sample_fps=SAMPLE,
    open_timeout_s=3.0,
    read_timeout_s=1.0,
    no_frame_after_s=2.5,
    reconnect_min_s=0.1,
    reconnect_max_s=0.5,
)
CONNECTED, DISCONNECTED = CameraEventKind.CONNECTED, CameraEventKind.DISCONNECTED


@pytest.fixture(scope="module")
def simulator() -> Iterator[RtspSimulator]:
    with RtspSimulator(cameras=2, width=W, height=H, fps=FPS) as sim:
        yield sim


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) == before, "a camera thread outlived the fleet"


def fleet_for(sim: RtspSimulator, rec: Recorder, **overrides: Any) -> CameraFleet:
    settings = dataclasses.replace(SETTINGS, **overrides)
    sources = [CameraSource(name, url) for name, url in sim.urls.items()]
    return CameraFleet(sources, settings, on_frame=rec.on_frame, on_event=rec.on_event)


def frames_of(rec: Recorder, camera_id: str) -> list[CameraFrame]:
    return [f for f in rec.frames if f.camera_id == camera_id]


async def test_frames_arrive_at_the_sampling_rate(
    simulator: RtspSimulator, no_thread_leak: None
) -> None:
    rec = Recorder()
    async with fleet_for(simulator, rec) as fleet:
        # a window of 4 s after the first second (opening reads a short burst)
        def window_done(camera_id: str) -> bool:
            frames = frames_of(rec, camera_id)
            return len(frames) > 1 and frames[-1].at - frames[0].at >= 5.0

        await rec.until(lambda: window_done(CAM1) and window_done(CAM2), within=15)
        stats = {s.camera_id: s for s in fleet.stats()}
        jpeg = fleet.latest_jpeg(CAM1)

    for camera_id in (CAM1, CAM2):
        frames = frames_of(rec, camera_id)
        assert {f.size for f in frames} == {(W, H)}
        window = [f for f in frames if f.at >= frames[0].at + 1.0]
        fps = (len(window) - 1) / (window[-1].at - window[0].at)
        assert 0.8 * SAMPLE <= fps <= 1.2 * SAMPLE, f"{camera_id} analysed {fps:.2f} fps"
        stamps = [read_stamp(f.image) for f in frames]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # fresh, in order
        latency = window[-1].at - (simulator.t0 + stamps[-1] / 1000)
        assert 0 <= latency < 2.0, f"{camera_id}: {latency:.3f} s from render to frame"
        s = stats[camera_id]
        assert s.connected and s.width == W and s.height == H and s.reconnects == 0
        assert 0.6 * FPS <= s.fps_in <= 1.4 * FPS, s
        assert s.frames_dropped == 0 and s.frames_in > s.frames_analysed
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"


async def test_a_dropped_camera_is_reported_and_reconnects_when_back(
    simulator: RtspSimulator, no_thread_leak: None
) -> None:
    rec = Recorder()
    async with fleet_for(simulator, rec) as fleet:
        await rec.until(lambda: len(frames_of(rec, CAM1)) >= 3 and len(frames_of(rec, CAM2)) >= 3)
        try:
            await asyncio.to_thread(simulator.drop, CAM1)
            await rec.until(lambda: rec.count(DISCONNECTED, CAM1) == 1)
            dropped_at = len(frames_of(rec, CAM1))
            last_stamp = read_stamp(frames_of(rec, CAM1)[-1].image)
            stats = fleet.stats_of(CAM1)
            assert stats is not None and not stats.connected
            # the other camera does not notice
            others = len(frames_of(rec, CAM2))
            await rec.until(lambda: len(frames_of(rec, CAM2)) >= others + 5)
            assert len(frames_of(rec, CAM1)) == dropped_at
        finally:
            await asyncio.to_thread(simulator.restore, CAM1)
        await rec.until(lambda: rec.count(CONNECTED, CAM1) == 2)
        await rec.until(lambda: len(frames_of(rec, CAM1)) >= dropped_at + 3)
        stats = fleet.stats_of(CAM1)
    assert stats is not None and stats.connected and stats.reconnects >= 1
    assert read_stamp(frames_of(rec, CAM1)[-1].image) > last_stamp
    assert rec.count(DISCONNECTED, CAM2) == 0


async def test_a_stalled_stream_times_out_and_says_no_frame(
    simulator: RtspSimulator, no_thread_leak: None
) -> None:
    rec = Recorder()
    async with fleet_for(simulator, rec) as fleet:
        await rec.until(lambda: len(frames_of(rec, CAM1)) >= 3 and len(frames_of(rec, CAM2)) >= 3)
        try:
            await asyncio.to_thread(simulator.drop, CAM2, None, DropMode.STALL)
            stalled_at = len(frames_of(rec, CAM1))
            # the connection stays open: only the read timeout notices
            await rec.until(lambda: rec.count(DISCONNECTED, CAM2) == 1)
            await rec.until(lambda: rec.count(CameraEventKind.NO_FRAME, CAM2) == 1)
            stats = fleet.stats_of(CAM2)
            assert stats is not None and stats.no_frame and not stats.connected
            assert stats.frame_age_s is not None and stats.frame_age_s >= SETTINGS.no_frame_after_s
            # a camera hung in a read holds up no other camera
            assert len(frames_of(rec, CAM1)) >= stalled_at + 5
        finally:
            await asyncio.to_thread(simulator.restore, CAM2)
        await rec.until(lambda: rec.count(CameraEventKind.FRAMES_RESUMED, CAM2) == 1)
        stats = fleet.stats_of(CAM2)
    assert stats is not None and stats.connected and not stats.no_frame
    assert stats.reconnects >= 1


async def test_a_timed_outage_ends_by_itself(
    simulator: RtspSimulator, no_thread_leak: None
) -> None:
    rec = Recorder()
    async with fleet_for(simulator, rec):
        await rec.until(lambda: rec.count(CONNECTED, CAM1) == 1)
        seen = len(simulator.events)
        await asyncio.to_thread(simulator.drop, CAM1, 1.0)
        restored = await asyncio.to_thread(
            simulator.wait_event,
            lambda e: e.get("event") == "restored" and e.get("camera") == CAM1,
            5.0,
            seen,
        )
        assert restored["camera"] == CAM1
        await rec.until(lambda: rec.count(CONNECTED, CAM1) == 2)
    assert rec.count(DISCONNECTED, CAM1) == 1


async def test_stopping_the_fleet_releases_everything(simulator: RtspSimulator) -> None:
    threads_before = set(threading.enumerate())
    native_before = len(os.listdir("/proc/self/task"))
    seen = len(simulator.events)
    rec = Recorder()
    fleet = fleet_for(simulator, rec)
    await fleet.start()
    await rec.until(lambda: len(frames_of(rec, CAM1)) >= 2 and len(frames_of(rec, CAM2)) >= 2)
    assert {t.name for t in threading.enumerate()} >= {f"camera-{CAM1}", f"camera-{CAM2}"}
    await fleet.stop()
    assert set(threading.enumerate()) == threads_before
    # The OS threads go too (FFmpeg's included): a joined thread may still be leaving the
    # kernel for a moment, and nothing signals that, so this one wait polls /proc.
    async with asyncio.timeout(5):
        while len(os.listdir("/proc/self/task")) > native_before:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    # and the cameras see their client go
    for camera_id in (CAM1, CAM2):
        gone = {"event": "client_closed", "camera": camera_id, "clients": 0}
        await asyncio.to_thread(simulator.wait_event, gone.__eq__, 5.0, seen)
    await fleet.stop()  # twice is harmless


class Blinking:
    """A scene whose stream is gone from 3 s to 4.5 s, as :class:`simulators.scenes.Drop`."""

    def __init__(self, width: int, height: int) -> None:
        self.box = MovingBox(width, height)

    def frame(self, t: float) -> np.ndarray:
        return self.box.frame(t)

    def online(self, t: float) -> bool:
        return not 3.0 <= t < 4.5


def blinking(name: str, width: int, height: int, index: int) -> Blinking:
    return Blinking(width, height)


async def test_a_scene_scripts_its_own_outage(no_thread_leak: None) -> None:
    rec = Recorder()
    sim = RtspSimulator(cameras=1, width=320, height=180, scene=f"{__name__}:blinking")
    await asyncio.to_thread(sim.start)
    try:
        async with fleet_for(sim, rec):
            await rec.until(lambda: rec.count(DISCONNECTED, CAM1) == 1)
            await rec.until(lambda: rec.count(CONNECTED, CAM1) == 2)
        dropped = sim.wait_event(lambda e: e.get("event") == "dropped", 0)
        assert dropped["camera"] == CAM1
        offline = [read_stamp(f.image) for f in frames_of(rec, CAM1)]
        assert not any(3000 < stamp < 4500 for stamp in offline)
    finally:
        await asyncio.to_thread(sim.stop)
