"""Simulated RTSP cameras: GStreamer's RTSP server with one mount per camera.

Each camera renders its frames in Python (any :class:`~simulators.rtsp_pattern.FrameSource`)
on its own thread at the camera's frame rate, as a real camera runs whether or not anyone
watches, and pushes them into ``appsrc ! videoconvert ! x264enc ! rtph264pay``. The media
is shared, so every client of a mount sees one encode, as with a real camera. Frames are
rendered only while a client is connected; a client pulls ``rtsp://HOST:PORT/cam-001`` as
it would pull a Hikvision or Dahua camera (DESCRIBE, SETUP, PLAY, RTP over TCP or UDP).

Needs Debian's GStreamer bindings (``python3-gi``, ``gir1.2-gst-rtsp-server-1.0``): this
module runs under ``/usr/bin/python3``, started by :mod:`simulators.rtsp_process`. All
control methods run on the GLib main loop's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

from simulators.rtsp_control import CameraSimStatus, ControlError, DropMode  # noqa: E402
from simulators.rtsp_pattern import FrameSource  # noqa: E402

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CameraSpec:
    name: str
    width: int = 640
    height: int = 360
    fps: int = 15
    bitrate_kbps: int = 1024

    def launch(self) -> str:
        # key-int-max = one second: a client that joins decodes within a second.
        # threads=1: x264 slice threads cost more than they give at these sizes, and the
        # per-camera cost stays predictable when a process serves dozens of cameras.
        return (
            "( appsrc name=src is-live=true do-timestamp=true format=time"
            " leaky-type=downstream max-buffers=2"
            f" caps=video/x-raw,format=BGR,width={self.width},height={self.height},"
            f"framerate={self.fps}/1"
            " ! videoconvert ! video/x-raw,format=I420"
            " ! x264enc tune=zerolatency speed-preset=ultrafast threads=1"
            f" key-int-max={self.fps} bitrate={self.bitrate_kbps}"
            " ! video/x-h264,profile=constrained-baseline"
            " ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )


EventSink = Callable[[dict[str, Any]], None]


class _Camera:
    """One mount: its factory, its render thread, and the clients watching it."""

    def __init__(
        self,
        spec: CameraSpec,
        source: FrameSource,
        url: str,
        on_scene_online: Callable[[str, bool], None],
    ) -> None:
        self.spec = spec
        self.source = source
        self.url = url
        self._on_scene_online = on_scene_online
        self._scene_online = True
        self.path = f"/{spec.name}"
        self.factory = GstRtspServer.RTSPMediaFactory()
        self.factory.set_launch(spec.launch())
        self.factory.set_shared(True)
        self.factory.connect("media-configure", self._on_media_configure)
        self.serving = True
        self.stalled = False
        self.frames_pushed = 0
        self.clients: set[GstRtspServer.RTSPClient] = set()
        self.restore_timer: int | None = None
        self._appsrcs: list[Gst.Element] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._render, name=f"render-{spec.name}")

    def start(self, t0: float) -> None:
        self._t0 = t0
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _on_media_configure(
        self, factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia
    ) -> None:
        appsrc = media.get_element().get_by_name("src")
        media.connect("unprepared", self._on_unprepared, appsrc)
        with self._lock:
            self._appsrcs.append(appsrc)

    def _on_unprepared(self, media: GstRtspServer.RTSPMedia, appsrc: Gst.Element) -> None:
        with self._lock:
            if appsrc in self._appsrcs:
                self._appsrcs.remove(appsrc)

    def _render(self) -> None:
        period = 1.0 / self.spec.fps
        online = getattr(self.source, "online", None)  # scenes script their own outages
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due += period
            now = time.monotonic()
            if due < now:  # fell behind (a busy machine): skip, as a camera drops frames
                due = now + period
            t = time.time() - self._t0
            if online is not None and bool(online(t)) is not self._scene_online:
                self._scene_online = not self._scene_online
                self._on_scene_online(self.spec.name, self._scene_online)
            with self._lock:
                targets = list(self._appsrcs) if not self.stalled else []
            if not targets:
                continue
            image = self.source.frame(t)
            buffer = Gst.Buffer.new_wrapped(image.tobytes())
            for appsrc in targets:
                appsrc.emit("push-buffer", buffer)
            self.frames_pushed += 1

    def set_stalled(self, stalled: bool) -> None:
        with self._lock:
            self.stalled = stalled


class CameraServer:
    """Many simulated cameras behind one RTSP listener."""

    def __init__(
        self,
        cameras: list[tuple[CameraSpec, FrameSource]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 64,
        on_event: EventSink | None = None,
    ) -> None:
        if not cameras:
            raise ValueError("a camera server needs at least one camera")
        self.host = host
        self.requested_port = port
        self.threads = threads
        self.on_event = on_event or (lambda _event: None)
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(host)
        self.server.set_service(str(port))
        # 0 threads would serve every client from the main loop; a pool gives each its own.
        self.server.get_thread_pool().set_max_threads(threads)
        self.server.connect("client-connected", self._on_client_connected)
        self.mounts = self.server.get_mount_points()
        self._specs = cameras
        self._cameras: dict[str, _Camera] = {}
        self._clients_lock = threading.Lock()
        self.port = 0
        self.t0 = 0.0
        self._source_id: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> int:
        """Listen and start rendering; returns the bound port."""
        self._source_id = self.server.attach(None)
        if not self._source_id:
            raise OSError(f"cannot listen on {self.host}:{self.requested_port}")
        self.port = self.server.get_bound_port()
        t0 = time.time()
        for spec, source in self._specs:
            url = f"rtsp://{self.host}:{self.port}/{spec.name}"
            camera = _Camera(spec, source, url, self._scene_online_changed)
            self._cameras[spec.name] = camera
            self.mounts.add_factory(camera.path, camera.factory)
            camera.start(t0)
        self.t0 = t0
        return self.port

    def stop(self) -> None:
        for camera in self._cameras.values():
            camera.stop()
            self._cancel_timer(camera)
        self.server.client_filter(lambda *_: GstRtspServer.RTSPFilterResult.REMOVE, None)
        if self._source_id:
            GLib.source_remove(self._source_id)
            self._source_id = None

    def urls(self) -> dict[str, str]:
        return {name: camera.url for name, camera in self._cameras.items()}

    # -- control ---------------------------------------------------------------------------

    def camera(self, name: str) -> _Camera:
        try:
            return self._cameras[name]
        except KeyError:
            raise ControlError(f"no camera {name!r}; have {sorted(self._cameras)}") from None

    def drop(
        self, name: str, seconds: float | None = None, mode: DropMode = DropMode.REFUSE
    ) -> None:
        """Take a camera away (for ``seconds``, or until :meth:`restore`)."""
        camera = self.camera(name)
        self._cancel_timer(camera)
        if mode is DropMode.REFUSE:
            camera.serving = False
            self.mounts.remove_factory(camera.path)
            with self._clients_lock:
                watching = list(camera.clients)
                camera.clients.clear()
            for client in watching:
                client.close()
        else:
            camera.set_stalled(True)
        if seconds is not None:
            camera.restore_timer = GLib.timeout_add(int(seconds * 1000), self._timed_restore, name)
        log.info("camera %s dropped (%s) for %s", name, mode.value, seconds or "ever")
        self.on_event({"event": "dropped", "camera": name, "mode": mode.value})

    def restore(self, name: str) -> None:
        camera = self.camera(name)
        self._cancel_timer(camera)
        if not camera.serving:
            self.mounts.add_factory(camera.path, camera.factory)
            camera.serving = True
        camera.set_stalled(False)
        log.info("camera %s restored", name)
        self.on_event({"event": "restored", "camera": name})

    def status(self) -> list[CameraSimStatus]:
        with self._clients_lock:
            counts = {name: len(c.clients) for name, c in self._cameras.items()}
        return [
            CameraSimStatus(name, c.url, c.serving, c.stalled, counts[name], c.frames_pushed)
            for name, c in self._cameras.items()
        ]

    def _scene_online_changed(self, name: str, online: bool) -> None:
        """From a render thread: the scene says its stream is gone (or back)."""

        def apply() -> bool:
            if online:
                self.restore(name)
            else:
                self.drop(name)
            return False

        GLib.idle_add(apply)

    def _timed_restore(self, name: str) -> bool:
        self.camera(name).restore_timer = None
        self.restore(name)
        return False  # one-shot

    def _cancel_timer(self, camera: _Camera) -> None:
        if camera.restore_timer is not None:
            GLib.source_remove(camera.restore_timer)
            camera.restore_timer = None

    # -- clients (their signals come on their own pool threads) ----------------------------

    def _on_client_connected(
        self, server: GstRtspServer.RTSPServer, client: GstRtspServer.RTSPClient
    ) -> None:
        client.connect("describe-request", self._on_request)
        client.connect("setup-request", self._on_request)
        client.connect("closed", self._on_client_closed)

    def _on_request(self, client: GstRtspServer.RTSPClient, context: Any) -> None:
        path = context.uri.abspath if context.uri is not None else ""
        camera = self._cameras.get(path.strip("/").split("/")[0])
        if camera is None:
            return
        with self._clients_lock:
            new = client not in camera.clients
            camera.clients.add(client)
            count = len(camera.clients)
        if new:
            self.on_event({"event": "client_opened", "camera": camera.spec.name, "clients": count})

    def _on_client_closed(self, client: GstRtspServer.RTSPClient) -> None:
        left = []
        with self._clients_lock:
            for camera in self._cameras.values():
                if client in camera.clients:
                    camera.clients.discard(client)
                    left.append((camera.spec.name, len(camera.clients)))
        for name, count in left:
            self.on_event({"event": "client_closed", "camera": name, "clients": count})
