"""Keeps this worker's share of the cameras pulled, and tells the others how they are.

Every ``video.lease_s`` (and at once when the registry changes): claim or release camera
leases (:mod:`ingest.camera_leases`), give the held cameras detectors and capture threads,
and write each held camera's figures, raised faults and a small recent frame to
``camera_status`` so that any worker's API can list every camera and show it. A lost
database drops every lease (the session holding them is gone): the worker stops pulling
until it can claim again, so a camera is never pulled twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import cv2
import numpy as np
import psycopg

from devices.registry import Device
from ingest.camera_capture import CameraSource, CaptureSettings, encode_jpeg
from ingest.camera_leases import CameraLeases
from ingest.cameras import CameraFleet, CameraStats
from ingest.video_stage import VideoStage
from storage.camera_status import save_statuses

log = logging.getLogger(__name__)

PREVIEW_QUALITY = 70


class CameraSupervisor:
    def __init__(
        self,
        conninfo: str,
        stage: VideoStage,
        capture: CaptureSettings,
        *,
        worker: str,
        lease_s: float = 10.0,
        max_cameras: int = 0,
        preview_width: int = 640,
        retry_s: Callable[[], float] = lambda: 2.0,
    ) -> None:
        self.conninfo = conninfo
        self.stage = stage
        self.worker = worker
        self.lease_s = lease_s
        self.preview_width = preview_width
        self.leases = CameraLeases(conninfo, max_cameras=max_cameras)
        self.fleet = CameraFleet([], capture, on_frame=stage.on_frame, on_event=stage.on_event)
        self.cameras: dict[str, Device] = {}
        self._wake = asyncio.Event()
        self._retry_s = retry_s
        self.rounds = 0
        self.listeners: list[Callable[[], None]] = []  # after every lease round

    def set_cameras(self, cameras: Sequence[Device]) -> None:
        """The registry's cameras (all of them; the leases decide which are pulled here)."""
        self.cameras = {d.device_id: d for d in cameras}
        self._wake.set()

    def held(self) -> set[str]:
        return set(self.leases.held)

    def healthy(self) -> bool:
        """Every camera pulled here is streaming (true when none is)."""
        return self.fleet.all_connected()

    async def run(self) -> None:
        await self.fleet.start()
        try:
            while True:
                wait = self.lease_s
                try:
                    await self.round()
                except psycopg.Error as exc:
                    log.warning("camera leases lost the database (%s); pulling none", exc)
                    await self._pull([])
                    wait = self._retry_s()
                for listener in self.listeners:
                    listener()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            await self.fleet.stop()
            with contextlib.suppress(psycopg.Error):
                await self.leases.close()

    async def round(self) -> None:
        held = await self.leases.round(self.cameras)
        await self._pull([self.cameras[c] for c in sorted(held) if c in self.cameras])
        await self._report()
        self.rounds += 1

    async def _pull(self, cameras: list[Device]) -> None:
        self.stage.set_cameras(cameras)
        await self.fleet.sync(CameraSource(d.device_id, d.rtsp_url or "") for d in cameras)

    async def _report(self) -> None:
        rows = []
        for stats in self.fleet.stats():
            frame = self.fleet.latest_frame(stats.camera_id)
            preview = None
            if frame is not None:
                preview = await asyncio.to_thread(_preview, frame.image, self.preview_width)
            rows.append(self._row(stats, preview))
        if not rows:
            return
        async with await psycopg.AsyncConnection.connect(self.conninfo) as conn:
            await save_statuses(conn, rows)

    def _row(self, s: CameraStats, preview: bytes | None) -> dict[str, object]:
        def at(epoch: float | None) -> datetime | None:
            return None if epoch is None else datetime.fromtimestamp(epoch, UTC)

        return {
            "camera_id": s.camera_id,
            "worker": self.worker,
            "state": str(s.state),
            "fps_in": s.fps_in,
            "fps_analysed": s.fps_analysed,
            "frames_in": s.frames_in,
            "frames_dropped": s.frames_dropped,
            "reconnects": s.reconnects,
            "last_frame_at": at(s.last_frame_at),
            "width": s.width,
            "height": s.height,
            "last_error": s.last_error,
            "faults": sorted(self.stage.faults(s.camera_id)),
            "preview": preview,
            "preview_at": datetime.now(UTC) if preview is not None else None,
        }


def _preview(image: np.ndarray, width: int) -> bytes | None:
    """A JPEG at most ``width`` wide, for other workers' API and the camera wall."""
    h, w = image.shape[:2]
    if w > width:
        size = (width, max(1, round(h * width / w)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return encode_jpeg(image, PREVIEW_QUALITY)
