"""One camera's grabbing thread: OpenCV (FFmpeg) over RTSP/TCP, newest frame only.

The thread reads every frame the camera sends (``grab``: demux and decode, so the socket
never backs up and the picture never lags), and converts to BGR (``retrieve``) only the
frames picked by the sampling rate. A picked frame goes to ``deliver``, which must not
block (the fleet's one-slot mailbox). A failed open or a failed read closes the capture
and tries again after an exponential backoff with jitter (:class:`ingest.backoff.Backoff`),
reset once a frame has come through.

Timeouts come from the capture's own options: ``CAP_PROP_OPEN_TIMEOUT_MSEC`` bounds an
open, ``CAP_PROP_READ_TIMEOUT_MSEC`` bounds a read on a stream that went silent (measured:
a stalled RTSP stream fails after about twice the read timeout, FFmpeg retrying once).
``OPENCV_FFMPEG_CAPTURE_OPTIONS`` is process-wide and read at each open; see
:func:`configure_ffmpeg`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from ingest.backoff import Backoff

log = logging.getLogger(__name__)

FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# Without it OpenCV opens one FFmpeg stream at a time in the whole process: measured, a
# healthy camera's open waited 4.4 s behind one camera that accepted and never answered
# (0.6 s with it). FFmpeg's open has been thread-safe since FFmpeg 4.
FFMPEG_THREAD_SAFE_ENV = "OPENCV_FFMPEG_IS_THREAD_SAFE"
# FFmpeg prints every failed open of every unreachable camera on stderr, which would break
# one-JSON-object-a-line logs; the workers log the same things with the camera's id.
FFMPEG_LOGLEVEL_ENV = "OPENCV_FFMPEG_LOGLEVEL"
AV_LOG_QUIET = -8
_env_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """How cameras are pulled. Defaults suit 720p–1080p cameras at 15–25 fps."""

    sample_fps: float = 5.0  # frames a second handed to the detectors; 0 = every frame
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    no_frame_after_s: float = 15.0  # "no frame for T s": what the unreachable check hears
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    decode_threads: int = 1  # FFmpeg decoder threads per camera; 0 = FFmpeg's choice
    rtsp_transport: str = "tcp"
    analyzeduration_us: int = 500_000
    probesize: int = 100_000
    rate_window_s: float = 5.0
    jpeg_quality: int = 85
    quiet_native_logs: bool = True  # FFmpeg's and OpenCV's own stderr lines

    def __post_init__(self) -> None:
        for name in (
            "open_timeout_s",
            "read_timeout_s",
            "no_frame_after_s",
            "reconnect_min_s",
            "reconnect_max_s",
            "rate_window_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.sample_fps < 0:
            raise ValueError("sample_fps must be 0 (every frame) or positive")
        if self.rtsp_transport not in ("tcp", "udp"):
            raise ValueError(f"rtsp_transport must be tcp or udp, got {self.rtsp_transport!r}")

    def ffmpeg_options(self) -> str:
        return (
            f"rtsp_transport;{self.rtsp_transport}"
            f"|analyzeduration;{self.analyzeduration_us}|probesize;{self.probesize}"
        )

    def capture_params(self) -> list[int]:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
        ]
        if self.decode_threads > 0:
            params += [cv2.CAP_PROP_N_THREADS, self.decode_threads]
        return params

    def stop_within_s(self) -> float:
        """The longest a capture thread may take to notice a stop (it is inside a call)."""
        return self.open_timeout_s + 2 * self.read_timeout_s + 1.0


def configure_ffmpeg(settings: CaptureSettings) -> dict[str, str]:
    """Set OpenCV's FFmpeg environment for this process, keeping what the operator set.

    OpenCV reads these when it opens a capture (the thread-safety and log level at the
    first open only), so this runs before any capture thread starts: changing the
    environment while another thread opens a capture would also race.
    """
    wanted = {
        FFMPEG_OPTIONS_ENV: settings.ffmpeg_options(),
        FFMPEG_THREAD_SAFE_ENV: "1",
    }
    if settings.quiet_native_logs:
        wanted[FFMPEG_LOGLEVEL_ENV] = str(AV_LOG_QUIET)
    effective = {}
    with _env_lock:
        for key, value in wanted.items():
            current = os.environ.get(key)
            if current is None:
                os.environ[key] = current = value
            elif current != value:
                log.info("camera capture keeps %s=%s from the environment", key, current)
            effective[key] = current
        if settings.quiet_native_logs and "OPENCV_LOG_LEVEL" not in os.environ:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return effective


def encode_jpeg(image: np.ndarray, quality: int) -> bytes | None:
    """``image`` (BGR) as JPEG at ``quality``; None when OpenCV cannot encode it."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return encoded.tobytes() if ok else None


def redact(url: str) -> str:
    """``url`` without its password (cameras are often ``rtsp://admin:pass@host/...``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@dataclass(frozen=True, slots=True)
class CameraSource:
    """A camera to pull: its registry device id and its stream."""

    camera_id: str
    rtsp_url: str


@dataclass(frozen=True, slots=True)
class CameraFrame:
    """A sampled frame: ``image`` is H×W×3 uint8 BGR and read-only (shared with the API's
    snapshot); ``at`` is when it was read (epoch seconds); ``seq`` counts sampled frames of
    this camera from 1."""

    camera_id: str
    image: np.ndarray
    at: float
    seq: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return int(self.image.shape[1]), int(self.image.shape[0])


class CameraEventKind(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    NO_FRAME = "no_frame"  # no frame for no_frame_after_s (also when never connected)
    FRAMES_RESUMED = "frames_resumed"


@dataclass(frozen=True, slots=True)
class CameraEvent:
    camera_id: str
    kind: CameraEventKind
    at: float  # epoch seconds
    detail: str = ""


class CameraState(StrEnum):
    CONNECTING = "connecting"  # not connected yet, or trying again
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # lost; waiting before the next try
    STOPPED = "stopped"


class RateMeter:
    """Events a second over a sliding window; time is given, never read."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def record(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        times = self._times
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else 0.0

    def _trim(self, now: float) -> None:
        times, horizon = self._times, now - self.window_s
        while times and times[0] < horizon:
            times.popleft()


class FrameSampler:
    """Picks frames at ``fps`` from a faster stream, keeping the average rate exact; after
    a gap (a reconnect) it starts afresh instead of catching up in a burst."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps if fps > 0 else 0.0
        self._due: float | None = None

    def take(self, now: float) -> bool:
        if self.interval == 0.0:
            return True
        due = self._due
        if due is None or now - due > self.interval:
            self._due = now + self.interval
            return True
        if now >= due:
            self._due = due + self.interval
            return True
        return False


class CaptureWorker:
    """The thread pulling one camera. Counters are written by the thread and read under
    ``lock`` by :meth:`snapshot`-style readers in the fleet."""

    def __init__(
        self,
        source: CameraSource,
        settings: CaptureSettings,
        *,
        deliver: Callable[[CameraFrame], None],
        emit: Callable[[CameraEvent], None],
        done: Callable[[], None],
    ) -> None:
        self.source = source
        self.settings = settings
        self._deliver = deliver
        self._emit = emit
        self._done = done
        self._backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"camera-{source.camera_id}", daemon=True
        )
        self.lock = threading.Lock()
        self.state = CameraState.CONNECTING
        self.frames_in = 0
        self.frames_sampled = 0
        self.reconnects = 0
        self.open_failures = 0
        self.last_error = ""
        self.last_frame_at: float | None = None  # epoch
        self.last_frame_mono: float | None = None
        self.started_mono = 0.0
        self.width = 0
        self.height = 0
        self.latest: CameraFrame | None = None
        self.rate_in = RateMeter(settings.rate_window_s)
        self.crashed: BaseException | None = None

    def start(self) -> None:
        self.started_mono = time.monotonic()
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        ever_connected = False
        try:
            while not self._stop.is_set():
                capture = self._open()
                if capture is None:
                    self._wait_backoff()
                    continue
                try:
                    if ever_connected:
                        self.reconnects += 1
                    ever_connected = True
                    self.last_error = ""
                    self._set_state(CameraState.CONNECTED, f"{self.width}x{self.height}")
                    why = self._stream(capture)
                finally:
                    capture.release()
                if self._stop.is_set():
                    break
                self.last_error = why
                self._set_state(CameraState.DISCONNECTED, why)
                self._wait_backoff()
        except Exception as exc:  # a bug, not a camera problem: say so loudly, keep it
            self.crashed = exc
            log.exception("camera worker crashed", extra={"device_id": self.source.camera_id})
        finally:
            with self.lock:
                self.state = CameraState.STOPPED
            self._done()

    def _open(self) -> cv2.VideoCapture | None:
        capture = cv2.VideoCapture(
            self.source.rtsp_url, cv2.CAP_FFMPEG, self.settings.capture_params()
        )
        if capture.isOpened():
            with self.lock:
                self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
                self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            return capture
        capture.release()
        with self.lock:
            self.open_failures += 1
            self.last_error = "cannot open stream"
        return None

    def _stream(self, capture: cv2.VideoCapture) -> str:
        """Read until the stream fails or a stop is asked; returns why it ended."""
        sampler = FrameSampler(self.settings.sample_fps)
        camera_id = self.source.camera_id
        first = True
        while not self._stop.is_set():
            if not capture.grab():
                return "stream ended or read timed out"
            mono, now = time.monotonic(), time.time()
            with self.lock:
                self.frames_in += 1
                self.last_frame_at = now
                self.last_frame_mono = mono
                self.rate_in.record(mono)
            if first:
                self._backoff.reset()
                first = False
            if not sampler.take(mono):
                continue
            ok, image = capture.retrieve()
            if not ok or image is None:
                continue
            image.flags.writeable = False
            with self.lock:
                self.frames_sampled += 1
                frame = CameraFrame(camera_id, image, now, self.frames_sampled)
                self.latest = frame
            self._deliver(frame)
        return "stopped"

    def _set_state(self, state: CameraState, detail: str) -> None:
        with self.lock:
            before, self.state = self.state, state
        if before is state:
            return
        kind = (
            CameraEventKind.CONNECTED
            if state is CameraState.CONNECTED
            else CameraEventKind.DISCONNECTED
        )
        extra = {"device_id": self.source.camera_id, "url": redact(self.source.rtsp_url)}
        if state is CameraState.CONNECTED:
            log.info("camera connected (%s)", detail, extra=extra)
        else:
            log.warning("camera disconnected: %s", detail, extra=extra)
        self._emit(CameraEvent(self.source.camera_id, kind, time.time(), detail))

    def _wait_backoff(self) -> None:
        self._stop.wait(self._backoff.next_delay())
