"""Short clips around video raises: a pre-roll ring per camera, one clip collected at a time,
and the two encoders: Motion-JPEG in AVI (the default) and WebM VP8.

Every analysed frame is downscaled once (:func:`shrink`, 0.1–0.25 ms from 1280×720 to 480
wide, on the detectors' worker thread) and kept for ``pre_s`` seconds, except a *still* frame
(the detectors saw nothing move in it: :func:`pre_roll_frame`), for which the ring holds the
last still frame again, shrunk anew at least once a second (``still_refresh_s``) so that a
camera's clock keeps going and slow changes show; a quiet camera pays the downscale about
once a second instead of five times. A raise starts a clip from that pre-roll and collects
``post_s`` seconds more; a raise on the same camera while its clip is being collected joins
it (both cite the same clip), so a camera holds at most one clip in memory besides its
ring. A finished clip waits for the encoder in a bounded queue: when ``queue`` clips are
already waiting, it is skipped and counted, never holding back frames or hits.

Motion-JPEG (the default) costs ~7 ms of CPU for a 26-frame clip at 480×270: each frame a
JPEG (a still frame repeated is encoded once and its bytes written again), written into a
RIFF AVI here (OpenCV's own MJPG writer takes ~4× as long for the same frames, through a
temporary file, and its quality cannot be set). VP8 takes ~0.4 s at 320×180 and ~0.8 s at
480×270 (libvpx through OpenCV, whose deadline cannot be set), and is no smaller on a
camera's busy frames (851 KiB against 582 KiB at JPEG quality 75;
``bench/video_clip_cost.py``). Browsers do not play MJPEG AVI in ``<video>`` (the console
shows its JPEGs one by one); WebM plays in any browser.

:class:`ClipCollector` is pure bookkeeping (times are arguments, no I/O) so that the bounds
are tested frame by frame; the encoders are the CPU part, run on a worker thread.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

import cv2
import numpy as np

ClipFormat = Literal["mjpeg", "webm"]
FORMATS: Final[tuple[ClipFormat, ...]] = get_args(ClipFormat)
MJPEG_TYPE: Final = "video/x-msvideo"  # Motion-JPEG in AVI
WEBM_TYPE: Final = "video/webm"
CONTENT_TYPES: Final[dict[ClipFormat, str]] = {"mjpeg": MJPEG_TYPE, "webm": WEBM_TYPE}
# VP8 in WebM: what OpenCV's wheels encode that browsers play (VP9 is ~6× slower to encode).
FOURCC: Final = cv2.VideoWriter_fourcc(*"VP80")
# OpenCV's FFmpeg writer prints this on stderr at every WebM open (the container's tag table
# has no VP8 entry; the stream is written all the same), which would break JSON-line logs.
_TAG_WARNING: Final = b"OpenCV: FFMPEG: tag 0x30385056/'VP80' is not supported"
_stderr_lock = threading.Lock()
MIN_FPS: Final = 0.5
MAX_FPS: Final = 60.0


@dataclass(frozen=True, slots=True)
class ClipSettings:
    """``rate`` is the analysed frame rate (``video.sample_fps``; pass a camera's top rate
    when every frame is analysed): it bounds the frames a clip holds."""

    width: int = 480
    pre_s: float = 2.0
    post_s: float = 3.0
    rate: float = 5.0
    queue: int = 8
    quiet_s: float = 1.0  # a clip whose camera went silent is closed this long after its end
    format: ClipFormat = "mjpeg"
    quality: int = 75  # JPEG quality of MJPEG frames
    # a still frame shows the last still one while that is younger than this (0: never)
    still_refresh_s: float = 1.0
    # a frame is still when at most this share of the picture changed (and nothing moved):
    # under the smallest region the detectors count as motion (0.15 % of the picture)
    still_share: float = 0.001

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"clip format must be one of {', '.join(FORMATS)}")
        if not 1 <= self.quality <= 100:
            raise ValueError("clip quality must be 1–100")
        if self.width < 16:
            raise ValueError("clip width must be at least 16 px")
        if self.pre_s < 0 or self.post_s < 0 or self.quiet_s < 0:
            raise ValueError("clip durations must not be negative")
        if self.rate <= 0:
            raise ValueError("clip rate must be positive")
        if self.queue < 1:
            raise ValueError("clip queue must hold at least one clip")
        if self.still_refresh_s < 0 or not 0 <= self.still_share < 1:
            raise ValueError("still frames need a refresh ≥ 0 s and a share in [0, 1)")

    @property
    def pre_frames(self) -> int:
        """Frames of the pre-roll, the raising frame included."""
        return round(self.pre_s * self.rate) + 1

    @property
    def post_frames(self) -> int:
        return round(self.post_s * self.rate)

    @property
    def slack_s(self) -> float:
        """Half a frame interval: a frame this late still belongs to the window."""
        return 0.5 / self.rate


def shrink(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` at most ``width`` wide (even sides, as the encoders want), for the ring.

    Every analysed frame pays this. From more than twice the width (720p or 1080p to 480),
    the nearest pixel: ~0.085 ms where ``INTER_LINEAR`` costs ~0.2 ms, reading only 2×2 of
    each larger block anyway; edges get a little rougher, detail stays (a camera's time stamp
    is legible at 480 this way, not at 320 with ``INTER_LINEAR``). At twice the width or less
    (720p to 640, 360p to 480), ``INTER_LINEAR``: as cheap as the nearest pixel at exactly
    half, ~0.15 ms from 640 to 480 (a 640-wide ``width`` keeps such frames as they are).
    ``INTER_AREA`` would look best but costs 4–30× more. A frame already small enough is
    kept as it is (it is read-only and shared: no copy)."""
    h, w = image.shape[:2]
    if w <= width and w % 2 == 0 and h % 2 == 0:
        return image
    new_w = min(width, w) // 2 * 2
    new_h = max(2, round(h * new_w / w) // 2 * 2)
    interpolation = cv2.INTER_NEAREST if w > 2 * new_w else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interpolation)


@dataclass(frozen=True, eq=False, slots=True)
class Small:
    """A frame of the pre-roll: ``frame`` (shared by the ring and clips, never changed),
    downscaled at ``at`` from a frame of ``source`` size (rows, columns); ``still`` when the
    detectors saw nothing move in that frame, so that it may stand for the still frames
    after it."""

    frame: np.ndarray
    source: tuple[int, int]
    at: float
    still: bool


def pre_roll_frame(
    image: np.ndarray, at: float, settings: ClipSettings, *, still: bool, last: Small | None
) -> Small:
    """The pre-roll's frame for ``image`` (analysed at ``at``): ``last`` itself (the same
    array, no copy) when this frame and ``last`` are both still, of the same source size, and
    ``last`` was shrunk less than ``still_refresh_s`` before (less half a frame interval, so
    that at 5 fps a still picture is shrunk every fifth frame); else ``image`` shrunk.

    A frame after motion is shrunk even if still: the last one may show who just left. Only
    the detectors' plane is judged, so what changes under the camera's masks (its clock) and
    changes below their threshold show at the refresh; a changed size, a gap in the stream or
    a clock going back is shrunk anew."""
    source = (int(image.shape[0]), int(image.shape[1]))
    if (
        still
        and last is not None
        and last.still
        and last.source == source
        and 0 <= at - last.at < settings.still_refresh_s - settings.slack_s
    ):
        return last
    return Small(shrink(image, settings.width), source, at, still)


@dataclass(eq=False, slots=True)
class Clip:
    """One clip: its frames (shared with the ring, not copied) and the raises citing it.

    ``raises`` counts the raises that started or joined it, ``applied`` those already
    applied to grid events (the video stage adds their snapshots' media ids), so the clip is
    cited once all of them are known."""

    camera_id: str
    raised_at: float
    end: float
    frames: list[np.ndarray]
    times: list[float]
    raises: int = 1
    applied: int = 0
    snapshot_ids: list[str] = field(default_factory=list)
    post: int = 0
    skipped: bool = False

    @property
    def ready_to_cite(self) -> bool:
        return self.applied >= self.raises

    def fps(self, default: float) -> float:
        """The rate the frames came at (the analysed rate varies with the camera)."""
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return default
        measured = (len(self.times) - 1) / (self.times[-1] - self.times[0])
        return min(MAX_FPS, max(MIN_FPS, measured))


class ClipCollector:
    """Per camera: the pre-roll ring and the clip being collected; finished clips wait in
    :attr:`finished` until taken, and count as in flight until :meth:`release`."""

    def __init__(self, settings: ClipSettings) -> None:
        self.settings = settings
        self.rings: dict[str, deque[tuple[float, np.ndarray]]] = {}
        self.last: dict[str, Small] = {}  # per camera: what a still frame may show again
        self.collecting: dict[str, Clip] = {}
        self.finished: list[Clip] = []
        self.in_flight = 0
        self.started = 0
        self.joined = 0
        self.skipped = 0

    def push(self, camera_id: str, frame: np.ndarray | Small, at: float) -> None:
        """An analysed frame (already shrunk; a :class:`Small` is also kept for the still
        frames after it), in the camera's order."""
        if isinstance(frame, Small):
            self.last[camera_id] = frame
            frame = frame.frame
        s = self.settings
        ring = self.rings.get(camera_id)
        if ring is None:
            ring = self.rings[camera_id] = deque(maxlen=s.pre_frames)
        ring.append((at, frame))
        oldest = at - s.pre_s - s.slack_s
        while ring and ring[0][0] < oldest:
            ring.popleft()  # a gap in the stream: older frames are not this raise's pre-roll
        clip = self.collecting.get(camera_id)
        if clip is None or at <= clip.raised_at:
            return
        if at > clip.end:
            self._finish(clip)
            return
        clip.frames.append(frame)
        clip.times.append(at)
        clip.post += 1
        if clip.post >= s.post_frames:
            self._finish(clip)

    def on_raise(self, camera_id: str, at: float) -> Clip:
        """The clip a raise at ``at`` cites: the one being collected, or a new one made of the
        pre-roll (call after :meth:`push` of the raising frame)."""
        clip = self.collecting.get(camera_id)
        if clip is not None:
            clip.raises += 1
            self.joined += 1
            return clip
        s = self.settings
        ring = self.rings.get(camera_id, ())
        clip = Clip(
            camera_id,
            raised_at=at,
            end=at + s.post_s + s.slack_s,
            frames=[f for t, f in ring if t <= at],
            times=[t for t, _ in ring if t <= at],
        )
        self.started += 1
        if s.post_frames == 0:
            self._finish(clip)
        else:
            self.collecting[camera_id] = clip
        return clip

    def close_quiet(self, now: float) -> None:
        """Finish the clips of cameras that stopped giving frames, with what they hold."""
        quiet = self.settings.quiet_s
        for clip in [c for c in self.collecting.values() if now > c.end + quiet]:
            self._finish(clip)

    def finish_all(self) -> None:
        """Shutdown: every clip still collecting ends with the frames it holds."""
        for clip in list(self.collecting.values()):
            self._finish(clip)

    def forget(self, camera_id: str) -> None:
        """A camera gone from this worker: finish its clip with what it holds, drop its ring."""
        self.rings.pop(camera_id, None)
        self.last.pop(camera_id, None)
        clip = self.collecting.get(camera_id)
        if clip is not None:
            self._finish(clip)

    def take_finished(self) -> list[Clip]:
        taken, self.finished = self.finished, []
        return taken

    def release(self, clip: Clip) -> None:
        """A taken clip is stored, or given up: it no longer counts against the queue."""
        clip.frames = []
        self.in_flight -= 1

    def _finish(self, clip: Clip) -> None:
        if self.collecting.get(clip.camera_id) is clip:
            del self.collecting[clip.camera_id]
        if not clip.frames:
            clip.skipped = True  # nothing was seen (a camera forgotten at once)
            self.skipped += 1
        elif self.in_flight >= self.settings.queue:
            clip.skipped = True  # the encoder is behind: no clip rather than late frames
            clip.frames = []
            self.skipped += 1
        else:
            self.in_flight += 1
            self.finished.append(clip)


@dataclass(frozen=True, slots=True)
class EncodedClip:
    data: bytes
    frames: int
    fps: float
    width: int
    height: int
    content_type: str = WEBM_TYPE

    @property
    def duration_s(self) -> float:
        return round(self.frames / self.fps, 2)


Encoder = Callable[[Sequence[np.ndarray], float], EncodedClip]


def encoder_for(settings: ClipSettings) -> Encoder:
    """The encoder of ``settings.format``."""
    if settings.format == "webm":
        return encode_webm
    quality = settings.quality
    return lambda frames, fps: encode_mjpeg(frames, fps, quality=quality)


# RIFF AVI 1.0 (the layout every player reads): the file is one 'RIFF' chunk of form 'AVI '
# holding LIST 'hdrl' (the main header 'avih' and, for the one stream, LIST 'strl' with its
# header 'strh' and format 'strf', a BITMAPINFOHEADER of compression 'MJPG'), LIST 'movi'
# with one '00dc' chunk per frame (a whole JPEG, padded to an even size), and the index
# 'idx1' (each frame a key frame, offsets from the 'movi' tag). Integers are little-endian.
_AVIF_HASINDEX: Final = 0x10
_AVIIF_KEYFRAME: Final = 0x10
_FRAME_TAG: Final = b"00dc"
_RIFF_MAX: Final = 2**30  # AVI 1.0 readers expect a RIFF chunk under 1 GiB


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def _list(form: bytes, *chunks: bytes) -> bytes:
    body = form + b"".join(chunks)
    return b"LIST" + struct.pack("<I", len(body)) + body


def mjpeg_avi(jpegs: Sequence[bytes], fps: float, width: int, height: int) -> bytes:
    """JPEG frames as a Motion-JPEG AVI at ``fps`` (stored as a rate over a scale of 1000,
    as the analysed rate is rarely whole)."""
    if not jpegs:
        raise ValueError("a clip needs at least one frame")
    scale = 1000
    rate = max(1, round(fps * scale))
    gcd = math.gcd(rate, scale)
    rate, scale = rate // gcd, scale // gcd
    largest = max(len(j) for j in jpegs)
    count = len(jpegs)
    usec = round(1_000_000 * scale / rate)
    avih = struct.pack(
        "<10I16x",
        usec, round(sum(map(len, jpegs)) * rate / scale / count), 0, _AVIF_HASINDEX,
        count, 0, 1, largest, width, height,
    )  # fmt: skip
    strh = struct.pack(
        "<4s4sIHHIIIIIIiI4h",
        b"vids", b"MJPG", 0, 0, 0, 0, scale, rate, 0, count, largest, -1, 0,
        0, 0, width, height,
    )  # fmt: skip
    strf = struct.pack(
        "<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", width * height * 3, 0, 0, 0, 0
    )
    frames = []
    index = []
    offset = 4  # after the 'movi' tag
    for jpeg in jpegs:
        chunk = _chunk(_FRAME_TAG, jpeg)
        frames.append(chunk)
        index.append(struct.pack("<4sIII", _FRAME_TAG, _AVIIF_KEYFRAME, offset, len(jpeg)))
        offset += len(chunk)
    header = _list(
        b"hdrl", _chunk(b"avih", avih), _list(b"strl", _chunk(b"strh", strh), _chunk(b"strf", strf))
    )
    body = b"AVI " + header + _list(b"movi", *frames) + _chunk(b"idx1", b"".join(index))
    if len(body) > _RIFF_MAX:
        raise ValueError(f"a clip of {len(body)} bytes is too large for an AVI")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def encode_mjpeg(frames: Sequence[np.ndarray], fps: float, *, quality: int = 75) -> EncodedClip:
    """The frames (BGR, the first one's size) as Motion-JPEG in AVI at ``fps``: each frame a
    baseline JPEG (4:2:0, Huffman tables included, so that browsers decode each alone); a
    frame that is the same array as the one before (a still frame of the pre-roll) is not
    encoded again, its JPEG is written again. Blocking, CPU-bound (but ~100× less than VP8):
    run it on a worker thread."""
    if not frames:
        raise ValueError("a clip needs at least one frame")
    height, width = frames[0].shape[:2]
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    jpegs: list[bytes] = []
    previous = None
    for frame in frames:
        if frame is previous:
            jpegs.append(jpegs[-1])
            continue
        previous = frame
        if frame.shape[:2] != (height, width):  # the camera changed resolution
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
        ok, jpeg = cv2.imencode(".jpg", frame, params)
        if not ok:
            raise RuntimeError("OpenCV cannot encode JPEG here")
        jpegs.append(jpeg.tobytes())
    data = mjpeg_avi(jpegs, fps, width, height)
    return EncodedClip(data, len(frames), fps, width, height, MJPEG_TYPE)


def encode_webm(frames: Sequence[np.ndarray], fps: float) -> EncodedClip:
    """The frames (BGR, the first one's size) as WebM VP8 at ``fps``. Blocking, CPU-bound:
    run it on a worker thread. OpenCV writes only to files: a temporary one, read back."""
    if not frames:
        raise ValueError("a clip needs at least one frame")
    height, width = frames[0].shape[:2]
    with tempfile.TemporaryDirectory(prefix="gridwatch-clip-") as tmp:
        path = Path(tmp) / "clip.webm"
        with _stderr_lock, _stderr_without(_TAG_WARNING):
            writer = cv2.VideoWriter(str(path), FOURCC, fps, (width, height))
        try:
            if not writer.isOpened():
                raise RuntimeError("OpenCV cannot write WebM VP8 here")
            for frame in frames:
                if frame.shape[:2] != (height, width):  # the camera changed resolution
                    frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
                writer.write(frame)
        finally:
            writer.release()
        data = path.read_bytes()
    if not data:
        raise RuntimeError("the WebM writer wrote nothing")
    return EncodedClip(data, len(frames), fps, width, height, WEBM_TYPE)


@contextlib.contextmanager
def _stderr_without(prefix: bytes) -> Iterator[None]:
    """Catch what is written to file descriptor 2 meanwhile and write it back without the
    lines starting with ``prefix``: other threads' lines are delayed by a few ms, not lost."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                yield
            finally:
                with contextlib.suppress(AttributeError, ValueError, OSError):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                caught.seek(0)
                kept = b"".join(
                    line
                    for line in caught.read().splitlines(keepends=True)
                    if not line.startswith(prefix)
                )
                if kept:
                    os.write(2, kept)
    finally:
        os.close(saved)
