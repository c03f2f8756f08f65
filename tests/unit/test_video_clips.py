"""Clips around video raises: the pre-roll ring and the clip collector frame by frame (bounds,
joining, skipping when the encoder is behind, cameras that go quiet), the downscale and the
still frames that stand on the last one, the Motion-JPEG AVI and WebM encoders read back by
OpenCV (a repeated frame encoded once), choosing between them, and the video stage handing
clips their snapshots and shrinking only the frames it must."""

from __future__ import annotations

import contextlib
import itertools
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.base import Hit
from detectors.video import VideoConfig
from devices.registry import Device, FramePolygon
from gridwatch.config import VideoSection
from ingest.camera_capture import CameraFrame
from ingest.clip_recorder import ClipRecorder, StoredClip
from ingest.video_clips import (
    MJPEG_TYPE,
    WEBM_TYPE,
    Clip,
    ClipCollector,
    ClipSettings,
    EncodedClip,
    Small,
    encode_mjpeg,
    encode_webm,
    encoder_for,
    mjpeg_avi,
    pre_roll_frame,
    shrink,
)
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
    bad_ones = (
        {"rate": 0.0}, {"queue": 0}, {"pre_s": -1.0}, {"width": 8},
        {"format": "gif"}, {"quality": 0}, {"quality": 101}, {"still_refresh_s": -1.0},
        {"still_share": 1.0}, {"still_share": -0.1},
    )  # fmt: skip
    for bad in bad_ones:
        with pytest.raises(ValueError):
            ClipSettings(**bad)  # type: ignore[arg-type]


def test_shrink_keeps_the_aspect_with_even_sides_and_leaves_small_frames_alone() -> None:
    assert shrink(np.zeros((720, 1280, 3), np.uint8), 480).shape == (270, 480, 3)
    assert shrink(np.zeros((360, 640, 3), np.uint8), 480).shape == (270, 480, 3)
    assert shrink(np.zeros((1080, 1920, 3), np.uint8), 481).shape == (270, 480, 3)
    small = np.zeros((240, 320, 3), np.uint8)
    assert shrink(small, 480) is small
    assert shrink(np.zeros((241, 321, 3), np.uint8), 480).shape == (240, 320, 3)


def test_shrink_takes_the_nearest_pixel_beyond_twice_the_width_and_blends_up_to_it() -> None:
    rng = np.random.default_rng(1)
    hd = rng.integers(0, 256, (720, 1280, 3), np.uint8)
    nearest = cv2.resize(hd, (480, 270), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(shrink(hd, 480), nearest)  # the cheap one, where every frame pays
    half = cv2.resize(hd, (640, 360), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(shrink(hd, 640), half)  # exactly half: 2×2 means, as cheap
    sd = rng.integers(0, 256, (360, 640, 3), np.uint8)
    linear = cv2.resize(sd, (480, 270), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(shrink(sd, 480), linear)  # 4:3 of the pixels: nearest would drop one


# -- still frames: the pre-roll shows the last still frame again, refreshed every second ----

HD = (720, 1280, 3)


def hd(value: int, shape: tuple[int, int, int] = HD) -> np.ndarray:
    """A frame whose every pixel is ``value``: which frame a small one came from shows."""
    image = np.full(shape, value, np.uint8)
    image.setflags(write=False)  # as the capture hands them over
    return image


def shown(small: Small) -> int:
    return int(small.frame[0, 0, 0])


def test_a_still_frame_shows_the_last_still_one_until_that_is_a_second_old() -> None:
    settings = ClipSettings(width=480, rate=RATE)
    first = pre_roll_frame(hd(10), 0.0, settings, still=True, last=None)
    assert first.frame.shape == (270, 480, 3) and first.still and first.source == (720, 1280)
    smalls = [first]
    for i in range(1, 11):
        smalls.append(pre_roll_frame(hd(10 + i), i / RATE, settings, still=True, last=smalls[-1]))
    # frames 1–4 show frame 0 (the same array, no copy); frame 5, a second on, is shrunk
    # anew and shown by 6–9; frame 10 is shrunk anew
    assert [shown(s) for s in smalls] == [10] * 5 + [15] * 5 + [20]
    assert all(s is first for s in smalls[:5]) and all(s is smalls[5] for s in smalls[5:10])
    # never older than the refresh, whatever the rate: every other frame at 2 fps, every
    # frame at 1 fps
    for rate, pattern in ((2.0, [0, 0, 2, 2, 4]), (1.0, [0, 1, 2, 3, 4])):
        slow = ClipSettings(width=480, rate=rate)
        smalls = [pre_roll_frame(hd(0), 0.0, slow, still=True, last=None)]
        for i in range(1, 5):
            smalls.append(pre_roll_frame(hd(i), i / rate, slow, still=True, last=smalls[-1]))
        assert [shown(s) for s in smalls] == pattern
    off = ClipSettings(width=480, rate=RATE, still_refresh_s=0.0)
    assert pre_roll_frame(hd(2), 0.2, off, still=True, last=first) is not first


def test_a_frame_with_motion_is_shrunk_and_so_is_the_still_frame_after_it() -> None:
    settings = ClipSettings(width=480, rate=RATE)
    still = pre_roll_frame(hd(1), 0.0, settings, still=True, last=None)
    moving = pre_roll_frame(hd(2), 0.2, settings, still=False, last=still)
    assert shown(moving) == 2 and not moving.still
    # the frame after motion is still, but the last one may show who just left: shrunk
    after = pre_roll_frame(hd(3), 0.4, settings, still=True, last=moving)
    assert shown(after) == 3 and after.still
    assert pre_roll_frame(hd(4), 0.6, settings, still=True, last=after) is after
    assert pre_roll_frame(hd(4), 0.6, settings, still=False, last=after) is not after


def test_a_still_frame_is_shrunk_anew_after_a_change_of_size_a_gap_or_a_clock_going_back() -> None:
    settings = ClipSettings(width=480, rate=RATE)

    def still(image: np.ndarray, at: float, last: Small) -> Small:
        return pre_roll_frame(image, at, settings, still=True, last=last)

    last = pre_roll_frame(hd(1), 10.0, settings, still=True, last=None)
    bigger = still(hd(2, (1080, 1920, 3)), 10.2, last)
    assert shown(bigger) == 2 and bigger.source == (1080, 1920)
    assert bigger.frame.shape == last.frame.shape == (270, 480, 3)  # the same small size
    assert still(hd(3, (1080, 1920, 3)), 10.4, bigger) is bigger
    assert shown(still(hd(4), 10.4, bigger)) == 4  # back to 720p
    assert shown(still(hd(5), 30.0, last)) == 5  # a gap in the stream
    assert shown(still(hd(6), 9.8, last)) == 6  # the camera's clock went back


def test_the_ring_and_the_clip_share_a_still_frame_and_a_forgotten_camera_drops_it() -> None:
    recorder = ClipRecorder(ClipSettings(width=480, rate=RATE), MediaStore(Path("/nonexistent")))
    c = recorder.collector
    for i in range(12):  # 0.0–2.2 s, all still: shrunk at 0, 1 and 2 s
        recorder.push("cam", recorder.shrink("cam", hd(i), i / RATE, still=True), i / RATE)
    ring = [frame for _, frame in c.rings["cam"]]
    assert len(ring) == PRE and [int(f[0, 0, 0]) for f in ring] == [0] * 4 + [5] * 5 + [10] * 2
    assert len({id(f) for f in ring}) == 3  # the same arrays, not copies
    clip = recorder.on_raise("cam", 11 / RATE)
    assert clip.frames == ring and clip.frames[0] is clip.frames[3]
    recorder.push("cam", recorder.shrink("cam", hd(12), 12 / RATE, still=False), 12 / RATE)
    assert int(clip.frames[-1][0, 0, 0]) == 12 and not c.last["cam"].still
    recorder.forget("cam")
    assert "cam" not in c.last and "cam" not in c.rings and c.take_finished() == []  # encoding
    assert recorder.collector.in_flight == 1


def test_the_format_picks_the_encoder_and_mjpeg_is_the_default() -> None:
    frames = [tiny(i * 40) for i in range(3)]
    default = encoder_for(ClipSettings())(frames, RATE)
    assert default.content_type == MJPEG_TYPE and default.data[:4] == b"RIFF"
    assert encoder_for(ClipSettings(format="webm")) is encode_webm
    recorder = ClipRecorder(ClipSettings(format="webm"), MediaStore(Path("/nonexistent")))
    assert recorder._encode is encode_webm
    # quality is the mjpeg frames': a lower one makes a smaller clip of the same frames
    noisy = [np.random.default_rng(i).integers(0, 256, (36, 64, 3), np.uint8) for i in range(3)]
    low = encoder_for(ClipSettings(quality=30))(noisy, RATE)
    high = encoder_for(ClipSettings(quality=95))(noisy, RATE)
    assert len(low.data) < len(high.data)
    # the service's settings: mjpeg at 480 px by default, webm on demand, nothing else
    video = VideoSection()
    assert (video.clip_format, video.clip_width) == ("mjpeg", 480)
    assert VideoSection(clip_format="webm").clip_format == "webm"
    with pytest.raises(ValueError):
        VideoSection(clip_format="mp4")  # type: ignore[arg-type]


def read_back(path: Path, api: int = cv2.CAP_ANY) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path), api)
    assert capture.isOpened()
    fps = capture.get(cv2.CAP_PROP_FPS)
    read = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        read.append(image)
    capture.release()
    return read, fps


def riff_chunks(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(tag, offset of the data, size) of the chunks in data[start:end], LISTs as their form."""
    out = []
    while start + 8 <= end:
        tag, size = struct.unpack_from("<4sI", data, start)
        out.append((data[start + 8 : start + 12] if tag == b"LIST" else tag, start + 8, size))
        start += 8 + size + (size & 1)
    return out


def test_encode_mjpeg_writes_an_avi_that_opencv_and_its_own_reader_read_back(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    scene = Scene(SceneSpec("clip", 3, 4.0, (Walk(0, ((0.0, 0.8), (1.0, 0.8)), 0.12),), ()))
    frames = [shrink(scene.frame(i / RATE), 480) for i in range(26)]
    encoded = encode_mjpeg(frames, 4.87, quality=80)
    assert encoded.content_type == MJPEG_TYPE
    assert (encoded.frames, encoded.width, encoded.height) == (26, 480, 270)
    assert encoded.duration_s == pytest.approx(26 / 4.87, abs=0.01)
    data = encoded.data
    assert data[:4] == b"RIFF" and data[8:12] == b"AVI "
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    path = tmp_path / "clip.avi"
    path.write_bytes(data)
    # FFmpeg's AVI reader and OpenCV's own Motion-JPEG one (stricter about the layout)
    for api in (cv2.CAP_FFMPEG, cv2.CAP_OPENCV_MJPEG):
        read, fps = read_back(path, api)
        assert len(read) == 26 and read[0].shape == (270, 480, 3)
        assert fps == pytest.approx(4.87, abs=0.01)
        # lossy, but the same picture: the closest of all the frames to what was read
        errors = [np.abs(read[13].astype(int) - f.astype(int)).mean() for f in frames]
        assert errors[13] < 8 and int(np.argmin(errors)) == 13
    # the layout the console's player walks: hdrl, then movi of 00dc JPEGs, then idx1
    top = riff_chunks(data, 12, len(data))
    assert [tag for tag, _, _ in top] == [b"hdrl", b"movi", b"idx1"]
    _, movi, movi_size = top[1]
    jpegs = riff_chunks(data, movi + 4, movi + movi_size)
    assert [tag for tag, _, _ in jpegs] == [b"00dc"] * 26
    for _, at, size in jpegs:
        assert data[at : at + 2] == b"\xff\xd8" and data[at + size - 2 : at + size] == b"\xff\xd9"
    first = cv2.imdecode(np.frombuffer(data[jpegs[0][1] : jpegs[0][1] + jpegs[0][2]], np.uint8), 1)
    assert first.shape == (270, 480, 3)  # each frame a JPEG on its own
    _, idx1, idx1_size = top[2]  # offsets count from the 'movi' tag, to each chunk's header
    offsets = [struct.unpack_from("<4sIII", data, idx1 + 16 * i) for i in range(idx1_size // 16)]
    assert [(tag, movi + at, size) for tag, _, at, size in offsets] == [
        (b"00dc", at - 8, size) for _, at, size in jpegs
    ]
    assert capfd.readouterr().err == ""  # no writer or reader complaint on stderr


def test_a_repeated_frame_is_encoded_once_and_the_avi_holds_every_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded_arrays: list[int] = []
    imencode = cv2.imencode

    def counting(ext: str, image: np.ndarray, params: list[int]) -> tuple[bool, np.ndarray]:
        encoded_arrays.append(id(image))
        return imencode(ext, image, params)

    monkeypatch.setattr(cv2, "imencode", counting)
    rng = np.random.default_rng(3)
    a = np.full((270, 480, 3), 40, np.uint8)
    b = cv2.GaussianBlur(rng.integers(0, 256, (270, 480, 3), np.uint8), (9, 9), 3)
    frames = [a, a, a, b, b, a.copy(), a]  # a copy is another array: encoded again
    encoded = encode_mjpeg(frames, RATE)
    assert len(encoded_arrays) == 4 and encoded.frames == 7
    assert encoded.duration_s == pytest.approx(7 / RATE)
    data = encoded.data
    top = riff_chunks(data, 12, len(data))
    _, movi, movi_size = top[1]
    jpegs = [data[at : at + size] for _, at, size in riff_chunks(data, movi + 4, movi + movi_size)]
    assert len(jpegs) == 7 and jpegs[0] == jpegs[1] == jpegs[2] and jpegs[3] == jpegs[4]
    path = tmp_path / "repeated.avi"
    path.write_bytes(data)
    for api in (cv2.CAP_FFMPEG, cv2.CAP_OPENCV_MJPEG):
        read, fps = read_back(path, api)
        assert len(read) == 7 and fps == pytest.approx(RATE)
        near_a = [np.abs(r.astype(int) - a.astype(int)).mean() < 3 for r in read]
        assert near_a == [True, True, True, False, False, True, True]


def test_mjpeg_avi_pads_odd_frames_and_refuses_an_empty_clip(tmp_path: Path) -> None:
    ok, jpeg = cv2.imencode(".jpg", tiny(200))
    odd = jpeg.tobytes() + (b"" if len(jpeg) % 2 else b"\0")  # trailing bytes after EOI
    assert ok and len(odd) % 2 == 1
    data = mjpeg_avi([odd, odd, odd], 2.0, 64, 36)
    # each odd chunk is padded: the next chunk starts where a reader looks for it
    assert [tag for tag, _, _ in riff_chunks(data, 12, len(data))] == [b"hdrl", b"movi", b"idx1"]
    path = tmp_path / "odd.avi"
    path.write_bytes(data)
    read, fps = read_back(path)
    assert len(read) == 3 and fps == pytest.approx(2.0) and read[0].shape == (36, 64, 3)
    with pytest.raises(ValueError):
        mjpeg_avi([], 5.0, 64, 36)


def test_encode_webm_writes_vp8_that_opencv_reads_back(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    scene = Scene(SceneSpec("clip", 3, 4.0, (Walk(0, ((0.0, 0.8), (1.0, 0.8)), 0.12),), ()))
    frames = [shrink(scene.frame(i / RATE), 480) for i in range(17)]
    encoded = encode_webm(frames, RATE)
    assert encoded.data[:4] == b"\x1a\x45\xdf\xa3"  # EBML
    assert b"webm" in encoded.data[:64]  # the WebM doctype, not plain Matroska
    assert (encoded.frames, encoded.width, encoded.height) == (17, 480, 270)
    assert encoded.content_type == WEBM_TYPE
    assert encoded.duration_s == pytest.approx(3.4)
    path = tmp_path / "clip.webm"
    path.write_bytes(encoded.data)
    read, _ = read_back(path)
    assert len(read) == 17 and read[0].shape == (270, 480, 3)
    # lossy, but the same picture: the walker's frames differ from each other more
    assert np.abs(read[8].astype(int) - frames[8].astype(int)).mean() < 8
    assert "is not supported" not in capfd.readouterr().err  # the writer's tag warning


def test_frames_of_another_size_are_fitted_to_the_first(tmp_path: Path) -> None:
    frames = [np.zeros((270, 480, 3), np.uint8), np.zeros((360, 640, 3), np.uint8)]
    assert encode_webm(frames, 5.0).frames == 2
    mjpeg = encode_mjpeg(frames, 5.0)
    path = tmp_path / "fitted.avi"
    path.write_bytes(mjpeg.data)
    read, _ = read_back(path)
    assert [image.shape for image in read] == [(270, 480, 3)] * 2
    for encode in (encode_webm, encode_mjpeg):
        with pytest.raises(ValueError):
            encode([], 5.0)


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


class Watching(Recorder):
    """Keeps what the stage asked of the pre-roll: each frame's time, whether it was still,
    and the small frame it got."""

    def __init__(self, settings: ClipSettings) -> None:
        super().__init__(settings)
        self.asked: list[tuple[float, bool, Small]] = []

    def shrink(self, camera_id: str, image: np.ndarray, at: float, *, still: bool) -> Small:
        small = super().shrink(camera_id, image, at, still=still)
        self.asked.append((at, still, small))
        return small


async def test_the_stage_shrinks_what_moves_and_lets_still_frames_stand_on_the_last() -> None:
    async def sink(conn: object, hits: list[Hit], now: float) -> None:
        pass

    recorder = Watching(ClipSettings(width=320, rate=RATE))
    stage = VideoStage(sink, config=VideoConfig(), clips=recorder)  # type: ignore[arg-type]
    stage.set_cameras([CAMERA])
    walk = Walk(8, ((-0.1, 0.8), (1.1, 0.82)), 0.1)  # 8 s of an empty street first
    scene = Scene(SceneSpec("t", 11, 20.0, (walk,), (ZONE,)))
    moving_at: list[float] = []
    try:
        for seq, t in enumerate(scene.times(RATE), 1):
            await stage.on_frame(CameraFrame("CAM-1", scene.frame(t), t, seq))
            if stage.states["CAM-1"].motion.boxes:
                moving_at.append(t)
    finally:
        await recorder.aclose()
    asked = recorder.asked
    assert len(asked) == 100 and [a for a, _, _ in asked] == list(scene.times(RATE))
    # what moved is shrunk from its own frame, and so is the first still frame after it
    assert moving_at and all(small.at == at for at, still, small in asked if at in moving_at)
    assert all(not still for at, still, _ in asked if at in moving_at)
    for (_, before, _), (at, _, small) in itertools.pairwise(asked):
        if not before:
            assert small.at == at
    # still frames show a still frame shrunk less than a second before, the same array
    reused = [(at, small) for at, _, small in asked if small.at != at]
    assert all(small.still and 0 < at - small.at < 1.0 for at, small in reused)
    # on the empty street, after the detectors' first frames, four frames in five
    empty = [small.at == at for at, _, small in asked if 2.0 <= at < 7.0]
    assert sum(empty) == 5 and len(empty) == 25
    ring = recorder.collector.rings["CAM-1"]
    assert len(ring) == PRE and all(frame.shape == (180, 320, 3) for _, frame in ring)
