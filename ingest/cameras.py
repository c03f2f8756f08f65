"""Camera ingest: a fleet of RTSP capture threads feeding asyncio, newest frame wins.

One thread per camera (:mod:`ingest.camera_capture`) reads the stream and samples frames
at ``CaptureSettings.sample_fps``. Each camera has a one-frame mailbox towards the event
loop: a sampled frame replaces one not yet taken (counted as dropped), so a slow detector
never builds a backlog nor delays the picture. One task per camera awaits
``on_frame(frame)`` for each frame it takes, one at a time, so a camera's detectors see
its frames in order and never concurrently.

Camera health reaches ``on_event`` (called on the event loop): ``connected``,
``disconnected``, ``no_frame`` once no frame has come for ``no_frame_after_s`` (also when
the camera was never reachable) and ``frames_resumed``. :meth:`CameraFleet.stats` gives
per-camera figures for the health endpoint and metrics.

    fleet = CameraFleet(sources, settings, on_frame=handle, on_event=health)
    await fleet.start()
    ...
    await fleet.stop()        # threads joined, captures released
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from devices.registry import Device
from ingest.camera_capture import (
    CameraEvent,
    CameraEventKind,
    CameraFrame,
    CameraSource,
    CameraState,
    CaptureSettings,
    CaptureWorker,
    RateMeter,
    configure_ffmpeg,
    encode_jpeg,
    redact,
)

log = logging.getLogger(__name__)

FrameHandler = Callable[[CameraFrame], Awaitable[None]]
EventHandler = Callable[[CameraEvent], None]

__all__ = [
    "CameraEvent",
    "CameraEventKind",
    "CameraFleet",
    "CameraFrame",
    "CameraSource",
    "CameraState",
    "CameraStats",
    "CaptureSettings",
    "FrameSlot",
    "cameras_in",
]


def cameras_in(devices: Iterable[Device]) -> list[CameraSource]:
    """The registry's devices that have a stream to pull."""
    return [CameraSource(d.device_id, d.rtsp_url) for d in devices if d.rtsp_url]


@dataclass(frozen=True, slots=True)
class CameraStats:
    camera_id: str
    url: str  # password redacted
    state: CameraState
    connected: bool
    fps_in: float  # frames decoded a second (the camera's rate)
    fps_analysed: float  # frames handed to on_frame and done with, a second
    frames_in: int
    frames_analysed: int
    frames_dropped: int  # sampled but replaced before on_frame took them
    reconnects: int
    open_failures: int
    handler_errors: int
    last_frame_at: float | None  # epoch seconds
    frame_age_s: float | None  # since the last frame; None before the first
    no_frame: bool  # no frame for no_frame_after_s
    width: int
    height: int
    last_error: str

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class FrameSlot:
    """A one-frame mailbox from a capture thread to the event loop; the newest frame wins.

    ``put`` never blocks and may be called from any thread; ``get`` is awaited by one task.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._frame: CameraFrame | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self.replaced = 0

    def put(self, frame: CameraFrame) -> None:
        with self._lock:
            if self._closed:
                return
            before, self._frame = self._frame, frame
            if before is not None:
                self.replaced += 1
        if before is None:
            self._wake()

    def close(self) -> None:
        """Wake the reader for good: :meth:`get` returns ``None`` from now on."""
        with self._lock:
            self._closed = True
            self._frame = None
        self._wake()

    async def get(self) -> CameraFrame | None:
        """The newest frame, waiting for one; ``None`` once closed."""
        while True:
            with self._lock:
                if self._closed:
                    return None
                frame, self._frame = self._frame, None
            if frame is not None:
                return frame
            # Nothing between the check and the wait can run: a put's wake-up is a callback
            # on this loop, so it comes after we wait, never lost in between.
            await self._ready.wait()
            self._ready.clear()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to wake
            self._loop.call_soon_threadsafe(self._ready.set)


class _Camera:
    """A worker plus its event-loop side: mailbox, consumer task, figures."""

    def __init__(self, worker: CaptureWorker, slot: FrameSlot, finished: asyncio.Future[None]):
        self.worker = worker
        self.slot = slot
        self.finished = finished
        self.consumer: asyncio.Task[None] | None = None
        self.analysed = 0
        self.handler_errors = 0
        self.rate_analysed = RateMeter(worker.settings.rate_window_s)
        self.no_frame = False
        self.jpeg: tuple[int, int, bytes] | None = None  # (seq, quality, bytes)
        self.jpeg_lock = threading.Lock()


class CameraFleet:
    """Starts, watches and stops the capture workers of a set of cameras."""

    def __init__(
        self,
        cameras: Iterable[CameraSource],
        settings: CaptureSettings | None = None,
        *,
        on_frame: FrameHandler | None = None,
        on_event: EventHandler | None = None,
    ) -> None:
        self.settings = settings or CaptureSettings()
        self.on_frame = on_frame
        self.on_event = on_event
        self._sources: dict[str, CameraSource] = {}
        for source in cameras:
            if source.camera_id in self._sources:
                raise ValueError(f"camera {source.camera_id} given twice")
            self._sources[source.camera_id] = source
        self._cameras: dict[str, _Camera] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.crashes: dict[str, int] = {}
        self._last_restart: dict[str, float] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop is not None:
            raise RuntimeError("camera fleet already started")
        self._loop = asyncio.get_running_loop()
        configure_ffmpeg(self.settings)
        for source in self._sources.values():
            self._start_camera(source)
        self._watchdog = asyncio.create_task(self._watch(), name="camera-watchdog")
        log.info("camera fleet started", extra={"cameras": len(self._cameras)})

    async def stop(self) -> None:
        """Stop every worker, let each camera's ``on_frame`` in progress finish, join the
        threads (their captures are released on their way out)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        cameras = list(self._cameras.values())
        self._cameras.clear()
        await self._stop_cameras(cameras)
        self._loop = None

    async def __aenter__(self) -> CameraFleet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def sync(self, cameras: Iterable[CameraSource]) -> None:
        """Follow the registry: start new cameras, stop removed ones, restart changed URLs."""
        wanted = {c.camera_id: c for c in cameras}
        gone = [cid for cid, s in self._sources.items() if wanted.get(cid) != s]
        self._sources = wanted
        if self._loop is None:
            return
        await self._stop_cameras([self._cameras.pop(cid) for cid in gone if cid in self._cameras])
        for cid, source in wanted.items():
            if cid not in self._cameras:
                self._start_camera(source)

    def _start_camera(self, source: CameraSource) -> None:
        loop = self._loop
        assert loop is not None
        slot = FrameSlot(loop)
        finished: asyncio.Future[None] = loop.create_future()

        def done() -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, finished)

        def emit(event: CameraEvent) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._emit, event)

        worker = CaptureWorker(source, self.settings, deliver=slot.put, emit=emit, done=done)
        camera = _Camera(worker, slot, finished)
        self._cameras[source.camera_id] = camera
        camera.consumer = asyncio.create_task(
            self._consume(camera), name=f"camera-frames-{source.camera_id}"
        )
        worker.start()

    async def _stop_cameras(self, cameras: list[_Camera]) -> None:
        if not cameras:
            return
        for camera in cameras:
            camera.worker.request_stop()
            camera.slot.close()
        consumers = [c.consumer for c in cameras if c.consumer is not None]
        if consumers:
            _, late = await asyncio.wait(consumers, timeout=self.settings.stop_within_s())
            for task in late:
                task.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)
        _, stuck = await asyncio.wait(
            [c.finished for c in cameras], timeout=self.settings.stop_within_s()
        )
        for camera in cameras:
            if camera.finished in stuck:
                log.error(
                    "camera thread did not stop in time; left as a daemon",
                    extra={"device_id": camera.worker.source.camera_id},
                )
                camera.finished.cancel()
            else:
                camera.worker.join(1.0)  # it has signalled its end: this returns at once

    # -- event loop side -------------------------------------------------------------------

    async def _consume(self, camera: _Camera) -> None:
        camera_id = camera.worker.source.camera_id
        while (frame := await camera.slot.get()) is not None:
            if self.on_frame is not None:
                try:
                    await self.on_frame(frame)
                except Exception:
                    camera.handler_errors += 1
                    log.exception("camera frame handler failed", extra={"device_id": camera_id})
            camera.analysed += 1
            camera.rate_analysed.record(time.monotonic())

    def _emit(self, event: CameraEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            log.exception("camera event handler failed", extra={"device_id": event.camera_id})

    async def _watch(self) -> None:
        """Say when a camera has given no frame for ``no_frame_after_s``, and when it has again."""
        limit = self.settings.no_frame_after_s
        tick = min(1.0, limit / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for camera_id, camera in list(self._cameras.items()):
                worker = camera.worker
                if worker.crashed is not None and camera.finished.done():
                    await self._restart_crashed(camera_id, camera, now)
                    continue
                with worker.lock:
                    last = worker.last_frame_mono
                age = now - (last if last is not None else worker.started_mono)
                if age >= limit and not camera.no_frame:
                    camera.no_frame = True
                    log.warning(
                        "camera gives no frame",
                        extra={"device_id": camera_id, "for_s": round(age, 1)},
                    )
                    self._emit(
                        CameraEvent(
                            camera_id,
                            CameraEventKind.NO_FRAME,
                            time.time(),
                            f"no frame for {age:.1f} s",
                        )
                    )
                elif age < limit and camera.no_frame:
                    camera.no_frame = False
                    log.info("camera frames resumed", extra={"device_id": camera_id})
                    self._emit(CameraEvent(camera_id, CameraEventKind.FRAMES_RESUMED, time.time()))

    async def _restart_crashed(self, camera_id: str, camera: _Camera, now: float) -> None:
        """A worker that died of a bug is started again, at most once per reconnect_max_s."""
        if now - self._last_restart.get(camera_id, -1e9) < self.settings.reconnect_max_s:
            return
        self._last_restart[camera_id] = now
        self.crashes[camera_id] = self.crashes.get(camera_id, 0) + 1
        log.error(
            "restarting crashed camera worker",
            extra={"device_id": camera_id, "crashes": self.crashes[camera_id]},
        )
        await self._stop_cameras([self._cameras.pop(camera_id)])
        self._start_camera(self._sources[camera_id])

    # -- what the API and health checks read ------------------------------------------------

    @property
    def camera_ids(self) -> list[str]:
        return list(self._sources)

    def stats(self) -> list[CameraStats]:
        return [self._stats(camera) for camera in self._cameras.values()]

    def stats_of(self, camera_id: str) -> CameraStats | None:
        camera = self._cameras.get(camera_id)
        return self._stats(camera) if camera is not None else None

    def all_connected(self) -> bool:
        """For ``/readyz``: every camera streaming (true for an empty fleet)."""
        return all(c.worker.state is CameraState.CONNECTED for c in self._cameras.values())

    def latest_frame(self, camera_id: str) -> CameraFrame | None:
        camera = self._cameras.get(camera_id)
        if camera is None:
            return None
        with camera.worker.lock:
            return camera.worker.latest

    def latest_jpeg(self, camera_id: str, quality: int | None = None) -> bytes | None:
        """The newest sampled frame as JPEG, or ``None`` (unknown camera, no frame yet).

        Encoding a 720p frame takes milliseconds: from a coroutine, call it through
        ``asyncio.to_thread``. The last encoding is kept until a newer frame comes.
        """
        camera = self._cameras.get(camera_id)
        frame = self.latest_frame(camera_id)
        if camera is None or frame is None:
            return None
        q = self.settings.jpeg_quality if quality is None else quality
        with camera.jpeg_lock:
            cached = camera.jpeg
            if cached is not None and cached[0] == frame.seq and cached[1] == q:
                return cached[2]
            data = encode_jpeg(frame.image, q)
            if data is None:
                return None
            camera.jpeg = (frame.seq, q, data)
            return data

    def _stats(self, camera: _Camera) -> CameraStats:
        worker = camera.worker
        mono = time.monotonic()
        with worker.lock:
            last_mono = worker.last_frame_mono
            return CameraStats(
                camera_id=worker.source.camera_id,
                url=redact(worker.source.rtsp_url),
                state=worker.state,
                connected=worker.state is CameraState.CONNECTED,
                fps_in=round(worker.rate_in.rate(mono), 2),
                fps_analysed=round(camera.rate_analysed.rate(mono), 2),
                frames_in=worker.frames_in,
                frames_analysed=camera.analysed,
                frames_dropped=camera.slot.replaced,
                reconnects=worker.reconnects,
                open_failures=worker.open_failures,
                handler_errors=camera.handler_errors,
                last_frame_at=worker.last_frame_at,
                frame_age_s=None if last_mono is None else round(mono - last_mono, 3),
                no_frame=camera.no_frame,
                width=worker.width,
                height=worker.height,
                last_error=worker.last_error,
            )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
