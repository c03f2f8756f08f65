"""Camera capture without a camera: the pure parts with time given, and the fleet reading a
short clip written by the test (OpenCV's FFmpeg reads a file as it reads RTSP; the end of
the file is a lost stream, so the fleet reconnects)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from devices.registry import Device
from ingest import camera_capture
from ingest.camera_capture import (
    CameraEvent,
    CameraEventKind,
    CameraFrame,
    CameraSource,
    CaptureSettings,
    CaptureWorker,
    FrameSampler,
    RateMeter,
    configure_ffmpeg,
    redact,
)
from ingest.cameras import CameraFleet, FrameSlot, cameras_in

W, H = 160, 96


# -- pure parts ---------------------------------------------------------------------------


def test_sampler_keeps_the_configured_rate_from_a_faster_jittery_stream() -> None:
    sampler = FrameSampler(5.0)
    rng = np.random.default_rng(1)
    t, taken = 0.0, 0
    while t < 60.0:
        taken += sampler.take(t)
        t += 1 / 15 + rng.uniform(-0.01, 0.01)
    assert 299 <= taken <= 301


@pytest.mark.parametrize("camera_fps", [25.0, 12.5])
def test_sampler_rate_does_not_depend_on_the_camera_rate(camera_fps: float) -> None:
    sampler = FrameSampler(5.0)
    taken = sum(sampler.take(i / camera_fps) for i in range(int(20 * camera_fps)))
    assert 99 <= taken <= 101


def test_sampler_takes_every_frame_of_a_slower_stream_and_after_a_gap_no_burst() -> None:
    sampler = FrameSampler(5.0)
    assert all(sampler.take(i * 0.5) for i in range(10))  # 2 fps < 5 fps: all
    sampler = FrameSampler(5.0)
    assert sampler.take(0.0)
    # a 30 s outage, then frames at 30 fps: one at once, then 5 a second again
    taken = [sampler.take(30.0 + i / 30) for i in range(30)]
    assert taken[0] and sum(taken) == 5


def test_sampler_zero_means_every_frame() -> None:
    sampler = FrameSampler(0.0)
    assert all(sampler.take(0.001 * i) for i in range(100))


def test_rate_meter_over_its_window() -> None:
    meter = RateMeter(5.0)
    assert meter.rate(0.0) == 0.0
    for i in range(51):
        meter.record(i * 0.2)  # 5 a second for 10 s
    assert meter.rate(10.0) == pytest.approx(5.0)
    assert meter.rate(100.0) == 0.0  # the window has passed: nothing recent


def test_redact_hides_the_password_only() -> None:
    assert redact("rtsp://admin:s3cret@10.1.2.3:554/Streaming/101") == (
        "rtsp://admin:***@10.1.2.3:554/Streaming/101"
    )
    assert redact("rtsp://127.0.0.1:8554/cam-001") == "rtsp://127.0.0.1:8554/cam-001"


def test_settings_refuse_nonsense_and_build_capture_params() -> None:
    with pytest.raises(ValueError, match="read_timeout_s"):
        CaptureSettings(read_timeout_s=0)
    with pytest.raises(ValueError, match="rtsp_transport"):
        CaptureSettings(rtsp_transport="http")
    s = CaptureSettings(open_timeout_s=2.5, read_timeout_s=1.0, decode_threads=1)
    assert s.ffmpeg_options().startswith("rtsp_transport;tcp|")
    params = s.capture_params()
    pairs = dict(zip(params[::2], params[1::2], strict=True))
    assert pairs[cv2.CAP_PROP_OPEN_TIMEOUT_MSEC] == 2500
    assert pairs[cv2.CAP_PROP_READ_TIMEOUT_MSEC] == 1000
    assert pairs[cv2.CAP_PROP_N_THREADS] == 1


def test_configure_ffmpeg_keeps_what_the_operator_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(camera_capture.FFMPEG_OPTIONS_ENV, "rtsp_transport;udp")
    monkeypatch.delenv(camera_capture.FFMPEG_THREAD_SAFE_ENV, raising=False)
    effective = configure_ffmpeg(CaptureSettings())
    assert effective[camera_capture.FFMPEG_OPTIONS_ENV] == "rtsp_transport;udp"
    assert os.environ[camera_capture.FFMPEG_THREAD_SAFE_ENV] == "1"


def test_cameras_in_the_registry_are_those_with_a_stream() -> None:
    devices = [
        Device("CAM-1", "camera", rtsp_url="rtsp://127.0.0.1:8554/cam-001"),
        Device("SD-1", "smoke_detector"),
    ]
    assert cameras_in(devices) == [CameraSource("CAM-1", "rtsp://127.0.0.1:8554/cam-001")]


def _frame(seq: int) -> CameraFrame:
    return CameraFrame("c", np.zeros((2, 2, 3), np.uint8), float(seq), seq)


async def test_frame_slot_newest_wins_and_counts_what_it_replaced() -> None:
    slot = FrameSlot(asyncio.get_running_loop())
    for seq in (1, 2, 3):
        slot.put(_frame(seq))
    got = await asyncio.wait_for(slot.get(), 1)
    assert got is not None and got.seq == 3
    assert slot.replaced == 2
    slot.put(_frame(4))
    got = await asyncio.wait_for(slot.get(), 1)
    assert got is not None and got.seq == 4 and slot.replaced == 2


async def test_frame_slot_from_another_thread_and_close() -> None:
    slot = FrameSlot(asyncio.get_running_loop())

    def put_many() -> None:
        for i in range(1, 101):
            slot.put(_frame(i))

    putter = threading.Thread(target=put_many)
    putter.start()
    got = await asyncio.wait_for(slot.get(), 2)
    putter.join()
    assert got is not None
    last = await asyncio.wait_for(slot.get(), 2) if got.seq != 100 else got
    assert last is not None and last.seq == 100
    slot.close()
    assert await asyncio.wait_for(slot.get(), 1) is None
    slot.put(_frame(101))  # after close: ignored, no error
    assert await asyncio.wait_for(slot.get(), 1) is None


# -- the fleet on a clip ------------------------------------------------------------------


@pytest.fixture
def clip(tmp_path: Path) -> str:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 15, (W, H))
    assert writer.isOpened()
    for i in range(15):
        image = np.full((H, W, 3), 40, np.uint8)
        cv2.rectangle(image, (i * 8, 30), (i * 8 + 20, 60), (0, 200, 255), -1)
        writer.write(image)
    writer.release()
    return str(path)


FAST = CaptureSettings(
    sample_fps=0,
    open_timeout_s=2,
    read_timeout_s=2,
    no_frame_after_s=0.4,
    reconnect_min_s=0.01,
    reconnect_max_s=0.05,
)


class Recorder:
    """Collects what a fleet hands over and lets a test wait for a condition on it. Frames
    and events arrive on the event loop, so checking then waiting cannot miss a change."""

    def __init__(self) -> None:
        self.frames: list[CameraFrame] = []
        self.events: list[CameraEvent] = []
        self._changed = asyncio.Event()

    async def on_frame(self, frame: CameraFrame) -> None:
        self.frames.append(frame)
        self._changed.set()

    def on_event(self, event: CameraEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def count(self, kind: CameraEventKind, camera_id: str | None = None) -> int:
        return sum(1 for e in self.events if e.kind is kind and camera_id in (None, e.camera_id))

    async def until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


async def test_fleet_reads_a_clip_reconnects_at_its_end_and_stops_clean(clip: str) -> None:
    before = set(threading.enumerate())
    rec = Recorder()
    fleet = CameraFleet(
        [CameraSource("clip", clip)], FAST, on_frame=rec.on_frame, on_event=rec.on_event
    )
    await fleet.start()
    try:
        await rec.until(lambda: rec.count(CameraEventKind.CONNECTED) >= 3)
        assert {f.size for f in rec.frames} == {(W, H)}
        assert not rec.frames[0].image.flags.writeable  # shared with the snapshot: read-only
        stats = fleet.stats_of("clip")
        assert stats is not None
        assert stats.reconnects >= 2 and stats.frames_in >= 30 and stats.width == W
        jpeg = fleet.latest_jpeg("clip")
        assert jpeg is not None
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None and decoded.shape == (H, W, 3)
        assert fleet.latest_jpeg("nope") is None
    finally:
        await fleet.stop()
    assert set(threading.enumerate()) == before
    assert fleet.stats() == []


async def test_a_failing_frame_handler_is_counted_and_frames_go_on(clip: str) -> None:
    seen: list[int] = []
    more = asyncio.Event()

    async def flaky(frame: CameraFrame) -> None:
        seen.append(frame.seq)
        if len(seen) == 1:
            raise RuntimeError("detector bug")
        if len(seen) >= 5:
            more.set()

    fleet = CameraFleet([CameraSource("clip", clip)], FAST, on_frame=flaky)
    async with fleet:
        await asyncio.wait_for(more.wait(), 10)
        stats = fleet.stats_of("clip")
    assert stats is not None and stats.handler_errors == 1
    assert stats.frames_analysed >= 5


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_camera_reports_no_frame_and_stops_promptly() -> None:
    rec = Recorder()
    url = f"rtsp://127.0.0.1:{_closed_port()}/cam-001"
    fleet = CameraFleet(
        [CameraSource("gone", url)], FAST, on_frame=rec.on_frame, on_event=rec.on_event
    )
    await fleet.start()
    try:
        await rec.until(lambda: rec.count(CameraEventKind.NO_FRAME, "gone") == 1)
        stats = fleet.stats_of("gone")
        assert stats is not None
        assert not stats.connected and stats.no_frame and stats.open_failures >= 1
        assert stats.last_frame_at is None and not fleet.all_connected()
        assert fleet.latest_jpeg("gone") is None
    finally:
        await asyncio.wait_for(fleet.stop(), FAST.stop_within_s())
    assert rec.frames == [] and rec.count(CameraEventKind.CONNECTED) == 0


async def test_sync_follows_the_registry(clip: str) -> None:
    before = set(threading.enumerate())
    rec = Recorder()
    fleet = CameraFleet(
        [CameraSource("a", clip)], FAST, on_frame=rec.on_frame, on_event=rec.on_event
    )
    async with fleet:
        await rec.until(lambda: rec.count(CameraEventKind.CONNECTED, "a") >= 1)
        await fleet.sync([CameraSource("b", clip)])
        assert fleet.camera_ids == ["b"]
        await rec.until(lambda: any(f.camera_id == "b" for f in rec.frames))
        assert [s.camera_id for s in fleet.stats()] == ["b"]
        assert {t.name for t in threading.enumerate()} - {t.name for t in before} == {"camera-b"}
    assert set(threading.enumerate()) == before


async def test_a_worker_that_crashes_is_started_again(
    clip: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = CaptureWorker._open
    calls = 0

    def broken_once(self: CaptureWorker) -> cv2.VideoCapture | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the capture path")
        return real_open(self)

    monkeypatch.setattr(CaptureWorker, "_open", broken_once)
    before = set(threading.enumerate())
    rec = Recorder()
    fleet = CameraFleet(
        [CameraSource("clip", clip)], FAST, on_frame=rec.on_frame, on_event=rec.on_event
    )
    async with fleet:
        await rec.until(lambda: len(rec.frames) >= 3)
    assert fleet.crashes == {"clip": 1}
    assert set(threading.enumerate()) == before
