"""Clips around video raises: the pre-roll ring and the clip collector frame by frame (bounds,
joining, skipping when the encoder is behind, cameras that go quiet), the downscale, the
WebM encoder read back by OpenCV, and the video stage handing clips their snapshots."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.base import Hit
from detectors.video import VideoConfig
from devices.registry import Device, FramePolygon
from ingest.camera_capture import CameraFrame
from ingest.clip_recorder import ClipRecorder, StoredClip
from ingest.video_clips import Clip, ClipCollector, ClipSettings, EncodedClip, encode_webm, shrink
from ingest.video_stage import VideoStage
from simulators.scenes import Scene, SceneSpec, Walk
from storage.media import MediaStore

RATE = 5.0
SETTINGS = ClipSettings(width=64, pre_s=2.0, post_s=3.0, rate=RATE, queue=2)
PRE, POST = SETTINGS.pre_frames, SETTINGS.post_frames  # 11 (the raising frame too), 15


def tiny(value: int) -> np.ndarray:
    return np.full((36, 64, 3), value % 256, np.uint8)


def feed(collector: ClipCollector, camera: str, start: float, count: int) -> float:
    """``count`` frames at RATE from ``start``; returns the time of the last one."""
    at = start
    for i in range(count):
        at = start + i / RATE
        collector.push(camera, tiny(i), at)
    return at


def test_a_clip_is_its_pre_roll_then_its_post_roll() -> None:
    c = ClipCollector(SETTINGS)
    raised = feed(c, "cam", 0.0, 40)  # more than the ring holds
    assert len(c.rings["cam"]) == PRE
    clip = c.on_raise("cam", raised)
    assert len(clip.frames) == PRE and clip.times[-1] == raised
    assert clip.times[0] == pytest.approx(raised - SETTINGS.pre_s)
    feed(c, "cam", raised + 1 / RATE, POST - 1)
    assert c.finished == [] and c.collecting["cam"] is clip
    feed(c, "cam", raised + POST / RATE, 5)  # the last post frame, then frames for no clip
    assert c.take_finished() == [clip] and "cam" not in c.collecting
    assert len(clip.frames) == PRE + POST == 26
    assert clip.times == sorted(clip.times) and clip.times[-1] == pytest.approx(raised + 3.0)
    assert clip.fps(99.0) == pytest.approx(RATE)
    assert c.in_flight == 1 and c.started == 1


def test_the_pre_roll_holds_only_the_last_seconds_across_a_gap() -> None:
    c = ClipCollector(SETTINGS)
    feed(c, "cam", 0.0, 8)
    c.push("cam", tiny(99), 30.0)  # the stream came back after a gap
    clip = c.on_raise("cam", 30.0)
    assert clip.times == [30.0]


def test_a_raise_while_a_clip_is_collected_joins_it() -> None:
    c = ClipCollector(SETTINGS)
    raised = feed(c, "cam", 0.0, 20)
    first = c.on_raise("cam", raised)
    later = feed(c, "cam", raised + 0.2, 5)
    assert c.on_raise("cam", later) is first
    assert first.raises == 2 and c.joined == 1 and c.started == 1
    end = feed(c, "cam", later + 0.2, 20)
    assert c.take_finished() == [first]
    assert len(first.frames) == PRE + POST  # joining does not make it longer
    # after the clip ended, a raise starts another one, with its own pre-roll
    second = c.on_raise("cam", end)
    assert second is not first and len(second.frames) == PRE


def test_cameras_collect_their_own_clips() -> None:
    c = ClipCollector(SETTINGS)
    for camera in ("a", "b"):
        feed(c, camera, 0.0, 12)
    clip_a = c.on_raise("a", 11 / RATE)
    feed(c, "b", 12 / RATE, 20)
    assert c.take_finished() == [] and len(clip_a.frames) == PRE  # b's frames are not a's
    assert c.on_raise("b", 40.0).camera_id == "b"


def test_a_clip_is_skipped_and_counted_while_the_encoder_queue_is_full() -> None:
    c = ClipCollector(SETTINGS)  # queue=2
    clips: list[Clip] = []
    for n, camera in enumerate(("a", "b", "c")):
        raised = feed(c, camera, 100.0 * n, 12)
        clips.append(c.on_raise(camera, raised))
        feed(c, camera, raised + 0.2, POST)
    assert c.take_finished() == clips[:2] and c.skipped == 1
    assert clips[2].skipped and clips[2].frames == [] and c.in_flight == 2
    c.release(clips[0])  # stored: room for the next one
    assert c.in_flight == 1 and clips[0].frames == []
    raised = feed(c, "c", 500.0, 12)
    again = c.on_raise("c", raised)
    feed(c, "c", raised + 0.2, POST)
    assert c.take_finished() == [again] and c.skipped == 1


def test_a_camera_that_goes_quiet_finishes_its_clip_with_what_it_has() -> None:
    c = ClipCollector(SETTINGS)
    raised = feed(c, "cam", 0.0, 12)
    clip = c.on_raise("cam", raised)
    feed(c, "cam", raised + 0.2, 4)
    c.close_quiet(raised + SETTINGS.post_s)  # not yet: frames may still come
    assert c.finished == []
    c.close_quiet(raised + SETTINGS.post_s + SETTINGS.quiet_s + 1.0)
    assert c.take_finished() == [clip] and len(clip.frames) == PRE + 4


def test_a_forgotten_camera_hands_over_its_clip_and_drops_its_ring() -> None:
    c = ClipCollector(SETTINGS)
    raised = feed(c, "cam", 0.0, 12)
    clip = c.on_raise("cam", raised)
    c.forget("cam")
    assert c.take_finished() == [clip] and "cam" not in c.rings
    # a frame late after the raise, far past its end, closes it without joining it
    c2 = ClipCollector(SETTINGS)
    raised = feed(c2, "cam", 0.0, 3)
    late = c2.on_raise("cam", raised)
    c2.push("cam", tiny(1), raised + 60.0)
    assert c2.take_finished() == [late] and len(late.frames) == 3


def test_no_post_roll_finishes_the_clip_at_the_raise() -> None:
    c = ClipCollector(ClipSettings(pre_s=1.0, post_s=0.0, rate=RATE))
    raised = feed(c, "cam", 0.0, 10)
    clip = c.on_raise("cam", raised)
    assert c.take_finished() == [clip] and len(clip.frames) == 6


def test_settings_refuse_what_cannot_bound_a_clip() -> None:
    for bad in ({"rate": 0.0}, {"queue": 0}, {"pre_s": -1.0}, {"width": 8}):
        with pytest.raises(ValueError):
            ClipSettings(**bad)  # type: ignore[arg-type]


def test_shrink_keeps_the_aspect_with_even_sides_and_leaves_small_frames_alone() -> None:
    assert shrink(np.zeros((720, 1280, 3), np.uint8), 480).shape == (270, 480, 3)
    assert shrink(np.zeros((360, 640, 3), np.uint8), 480).shape == (270, 480, 3)
    assert shrink(np.zeros((1080, 1920, 3), np.uint8), 481).shape == (270, 480, 3)
    small = np.zeros((240, 320, 3), np.uint8)
    assert shrink(small, 480) is small
    assert shrink(np.zeros((241, 321, 3), np.uint8), 480).shape == (240, 320, 3)


def test_encode_webm_writes_vp8_that_opencv_reads_back(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    scene = Scene(SceneSpec("clip", 3, 4.0, (Walk(0, ((0.0, 0.8), (1.0, 0.8)), 0.12),), ()))
    frames = [shrink(scene.frame(i / RATE), 480) for i in range(17)]
    encoded = encode_webm(frames, RATE)
    assert encoded.data[:4] == b"\x1a\x45\xdf\xa3"  # EBML
    assert b"webm" in encoded.data[:64]  # the WebM doctype, not plain Matroska
    assert (encoded.frames, encoded.width, encoded.height) == (17, 480, 270)
    assert encoded.duration_s == pytest.approx(3.4)
    path = tmp_path / "clip.webm"
    path.write_bytes(encoded.data)
    capture = cv2.VideoCapture(str(path))
    read = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        read.append(image)
    capture.release()
    assert len(read) == 17 and read[0].shape == (270, 480, 3)
    # lossy, but the same picture: the walker's frames differ from each other more
    assert np.abs(read[8].astype(int) - frames[8].astype(int)).mean() < 8
    assert "is not supported" not in capfd.readouterr().err  # the writer's tag warning


def test_frames_of_another_size_are_fitted_to_the_first() -> None:
    frames = [np.zeros((270, 480, 3), np.uint8), np.zeros((360, 640, 3), np.uint8)]
    assert encode_webm(frames, 5.0).frames == 2
    with pytest.raises(ValueError):
        encode_webm([], 5.0)


# -- the video stage hands each clip the snapshots of the raises citing it ---------------

ZONE = FramePolygon(((0.3, 0.62), (0.82, 0.62), (0.9, 0.97), (0.22, 0.97)))
CAMERA = Device(device_id="CAM-1", type="camera", rtsp_url="rtsp://x/1", zones=(ZONE,))


class FakeConn:
    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


class Recorder(ClipRecorder):
    """Stores in a list instead of the database."""

    def __init__(self, settings: ClipSettings) -> None:
        super().__init__(settings, MediaStore(Path("/nonexistent")))
        self.kept: list[tuple[Clip, EncodedClip]] = []

    async def _store(self, conn: object, clip: Clip, encoded: EncodedClip) -> StoredClip:  # type: ignore[override]
        self.kept.append((clip, encoded))
        self.stored += 1
        return StoredClip(f"MD{len(self.kept)}", clip.camera_id, ())


async def test_the_stage_cites_each_raise_s_snapshot_and_stores_the_clip_once() -> None:
    applied: list[Hit] = []
    snapshots = iter(range(1, 100))

    async def sink(conn: object, hits: list[Hit], now: float) -> None:
        applied.extend(hits)

    async def snapshot(conn: object, jpeg: bytes, hit: Hit) -> dict[str, object]:
        media_id = f"MS{next(snapshots)}"
        return {"media_id": media_id, "url": f"/api/v1/snapshots/{media_id}"}

    recorder = Recorder(ClipSettings(width=320, rate=RATE))
    stage = VideoStage(sink, config=VideoConfig(), save_snapshot=snapshot, clips=recorder)  # type: ignore[arg-type]
    stage.set_cameras([CAMERA])
    heard: list[StoredClip] = []
    recorder.listeners.append(heard.append)
    walk = Walk(3, ((-0.1, 0.8), (1.1, 0.82)), 0.1)
    scene = Scene(SceneSpec("t", 11, 25.0, (walk,), (ZONE,)))
    try:
        for seq, t in enumerate(scene.times(RATE), 1):
            await stage.on_frame(CameraFrame("CAM-1", scene.frame(t), t, seq))
            await stage.periodic(FakeConn(), t)  # type: ignore[arg-type]
        await recorder.encoded()
        await stage.periodic(FakeConn(), 100.0)  # type: ignore[arg-type]
    finally:
        await recorder.aclose()
    raises = [h for h in applied if h.raised]
    assert raises and len(recorder.kept) == recorder.collector.started >= 1
    clip, encoded = recorder.kept[0]
    cited = {h.evidence["snapshot"]["media_id"] for h in raises if h.ts <= clip.times[-1]}
    assert clip.ready_to_cite and set(clip.snapshot_ids) == cited
    assert encoded.frames == PRE + POST and encoded.width == 320
    assert clip.times[0] < raises[0].ts < clip.times[-1]
    assert [s.media_id for s in heard] == [f"MD{i}" for i in range(1, len(recorder.kept) + 1)]
    assert recorder.collector.in_flight == 0 and recorder.stats()["skipped"] == 0


async def test_a_clip_waits_for_all_its_raises_and_a_failed_encoding_is_counted() -> None:
    def fake_encode(frames: list[np.ndarray], fps: float) -> EncodedClip:
        if frames[0][0, 0, 0] == 7:
            raise RuntimeError("encoder broke")
        return EncodedClip(b"webm", len(frames), fps, 64, 36)

    recorder = Recorder(SETTINGS)
    recorder._encode = fake_encode  # type: ignore[method-assign]
    try:
        for i in range(12):
            recorder.push("cam", tiny(i), i / RATE)
        clip = recorder.on_raise("cam", 11 / RATE)
        assert recorder.on_raise("cam", 11 / RATE) is clip  # a second raise, same frame
        for i in range(12, 30):
            recorder.push("cam", tiny(i), i / RATE)
        await recorder.encoded()
        recorder.applied(clip, ["MS1"])
        await recorder.periodic(FakeConn(), 10.0)  # type: ignore[arg-type]
        assert recorder.kept == [] and recorder.collector.in_flight == 1  # one raise to go
        recorder.applied(clip, ["MS1", "MS2"])
        await recorder.periodic(FakeConn(), 10.0)  # type: ignore[arg-type]
        assert [c for c, _ in recorder.kept] == [clip] and clip.snapshot_ids == ["MS1", "MS2"]
        assert recorder.collector.in_flight == 0 and clip.frames == []

        for i in range(40, 52):
            recorder.push("cam", tiny(7), i / RATE)  # the encoder fails on these
        broken = recorder.on_raise("cam", 51 / RATE)
        recorder.collector.forget("cam")
        recorder.push("cam", tiny(1), 60.0)  # hands the finished clip to the encoder
        await recorder.encoded()
        recorder.applied(broken, ["MS3"])
        await recorder.periodic(FakeConn(), 70.0)  # type: ignore[arg-type]
        assert recorder.stats()["failed"] == 1 and recorder.collector.in_flight == 0
        assert len(recorder.kept) == 1
    finally:
        await recorder.aclose()
