"""Camera frames → video detectors → grid events, in step with the ingest pipeline.

The capture fleet hands each camera's sampled frames, one at a time, to :meth:`on_frame`;
the detectors run on a worker thread (a frame costs 1–2 ms of numpy) and their hits wait in
a bounded inbox. The pipeline calls :meth:`periodic` between batches and when idle: the
inbox is applied there, on the pipeline's own connection, in its own transaction, so video
hits and sensor hits never change grid events concurrently within one worker.

A full inbox blocks the camera's frame task, and the fleet's one-frame mailbox then drops
frames (counted per camera) rather than hits. A raise carries a JPEG of the frame that
decided it as evidence, stored in the media store and served at ``/api/v1/snapshots/{id}``.
With a :class:`~ingest.clip_recorder.ClipRecorder`, every analysed frame is also downscaled
into the camera's pre-roll (on the same worker thread; a frame in which the detectors saw
nothing move, :func:`is_still`, may stand on the last still one instead) and a raise gets a
short clip (Motion-JPEG AVI, or WebM) too, added to the event's evidence a few seconds later
(``ingest/clip_recorder.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import msgspec
import numpy as np
import psycopg

from detectors.base import Hit
from detectors.video.annotate import annotate
from detectors.video.pipeline import CameraDetectors, CameraState, VideoConfig
from devices.registry import Device, FramePolygon
from ingest.camera_capture import CameraEvent, CameraEventKind, CameraFrame, encode_jpeg
from ingest.clip_recorder import ClipRecorder
from ingest.detection_stage import HitSink
from ingest.video_clips import Clip, Small

log = logging.getLogger(__name__)

SaveSnapshot = Callable[[psycopg.AsyncConnection, bytes, Hit], Awaitable[dict[str, object]]]
LinkSnapshots = Callable[[psycopg.AsyncConnection, list[str]], Awaitable[object]]


@dataclass(slots=True)
class _Found:
    hits: tuple[Hit, ...]
    jpeg: bytes | None
    clip: Clip | None = None


class VideoStage:
    """A pipeline stage (``in_transaction``/``periodic``/``committed``/``rolled_back``)."""

    def __init__(
        self,
        sink: HitSink,
        *,
        config: VideoConfig | None = None,
        save_snapshot: SaveSnapshot | None = None,
        link_snapshots: LinkSnapshots | None = None,
        snapshot_quality: int = 80,
        clips: ClipRecorder | None = None,
        inbox_max: int = 256,
        on_committed: Callable[[], None] = lambda: None,
        on_rolled_back: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.config = config or VideoConfig()
        self.save_snapshot = save_snapshot
        self.link_snapshots = link_snapshots
        self.snapshot_quality = snapshot_quality
        self.clips = clips
        self._inbox: asyncio.Queue[_Found] = asyncio.Queue(inbox_max)
        self._on_committed = on_committed
        self._on_rolled_back = on_rolled_back
        self._clock = clock
        self.detectors: dict[str, CameraDetectors] = {}
        self.states: dict[str, CameraState] = {}
        self._geometry: dict[str, tuple[tuple[FramePolygon, ...], tuple[FramePolygon, ...]]] = {}
        self.blind: set[str] = set()  # cameras giving no frame: ticked on no_frame
        self.hits = 0
        self.snapshots = 0
        self._retry: list[_Found] = []
        self.applied_listeners: list[Callable[[], None]] = []  # after hits are committed

    # -- cameras ---------------------------------------------------------------------------

    def set_cameras(self, cameras: Iterable[Device]) -> None:
        """Follow the registry: new cameras get detectors, changed ones new detectors (their
        open conditions are kept), removed ones are forgotten."""
        wanted = {d.device_id: d for d in cameras}
        for camera_id in list(self.detectors):
            if camera_id not in wanted:
                del self.detectors[camera_id]
                self.states.pop(camera_id, None)
                self._geometry.pop(camera_id, None)
                self.blind.discard(camera_id)
                if self.clips is not None:
                    self.clips.forget(camera_id)
        for camera_id, device in wanted.items():
            geometry = (device.zones, device.masks)
            if camera_id in self.detectors and self._geometry.get(camera_id) == geometry:
                continue
            self._geometry[camera_id] = geometry
            detectors = CameraDetectors.for_device(device, self.config)
            self.detectors[camera_id] = detectors
            state = self.states.get(camera_id)
            self.states[camera_id] = (
                detectors.initial_state() if state is None else detectors.reset(state)
            )

    def faults(self, camera_id: str) -> frozenset[str]:
        """Camera-health conditions raised now (covered, frozen, blurred, moved, unreachable)."""
        state = self.states.get(camera_id)
        return state.health.active() if state is not None else frozenset()

    # -- from the capture fleet ------------------------------------------------------------

    async def on_frame(self, frame: CameraFrame) -> None:
        detectors = self.detectors.get(frame.camera_id)
        if detectors is None:
            return
        self.blind.discard(frame.camera_id)
        state = self.states[frame.camera_id]
        state, hits, small = await asyncio.to_thread(self._analyse, detectors, frame, state)
        if self.detectors.get(frame.camera_id) is not detectors:
            return  # removed or re-zoned meanwhile: this frame's result is of detectors gone
        self.states[frame.camera_id] = state
        clip = None
        if self.clips is not None and small is not None:
            self.clips.push(frame.camera_id, small, frame.at)
            if any(h.raised for h in hits):
                clip = self.clips.on_raise(frame.camera_id, frame.at)
        if hits:
            jpeg = None
            if self.save_snapshot is not None and any(h.raised for h in hits):
                zones = self._geometry[frame.camera_id][0]
                boxes = [h.evidence["box_px"] for h in hits if h.raised and "box_px" in h.evidence]
                jpeg = await asyncio.to_thread(
                    _snapshot, frame.image, zones, boxes, self.snapshot_quality
                )
            await self._inbox.put(_Found(hits, jpeg, clip))

    def _analyse(
        self, detectors: CameraDetectors, frame: CameraFrame, state: CameraState
    ) -> tuple[CameraState, tuple[Hit, ...], Small | None]:
        """On the worker thread: the detectors, then the frame downscaled for clips (unless
        it is still and the last still one may stand for it)."""
        state, found = detectors.on_frame(frame.image, state, frame.at)
        hits = tuple(found)
        if self.clips is None:
            return state, hits, None
        still = is_still(state, hits, frame.at, self.clips.settings.still_share)
        small = self.clips.shrink(frame.camera_id, frame.image, frame.at, still=still)
        return state, hits, small

    def on_event(self, event: CameraEvent) -> None:
        if event.kind is CameraEventKind.NO_FRAME:
            self.blind.add(event.camera_id)
        elif event.kind is CameraEventKind.FRAMES_RESUMED:
            self.blind.discard(event.camera_id)

    # -- pipeline stage --------------------------------------------------------------------

    async def in_transaction(self, conn: psycopg.AsyncConnection, fresh: list[object]) -> None:
        """Nothing per MQTT batch: video hits are applied in :meth:`periodic`."""

    def committed(self) -> None:
        """Per-batch hook of the pipeline; video work commits in :meth:`periodic`."""

    def rolled_back(self) -> None:
        """Per-batch hook of the pipeline; nothing of this stage is in a batch."""

    async def periodic(self, conn: psycopg.AsyncConnection, now: float) -> None:
        found = self._take(now)
        if found:
            await self._apply(conn, found, now)
        if self.clips is not None:
            await self.clips.periodic(conn, now)

    async def _apply(self, conn: psycopg.AsyncConnection, found: list[_Found], now: float) -> None:
        cited_by: list[list[str]] = []
        try:
            async with conn.transaction():
                hits: list[Hit] = []
                for item in found:
                    with_snapshots = await self._with_snapshot(conn, item)
                    cited_by.append(_snapshot_ids(with_snapshots))
                    hits.extend(with_snapshots)
                await self.sink(conn, hits, now)
                cited = [media_id for ids in cited_by for media_id in ids]
                if cited and self.link_snapshots is not None:
                    await self.link_snapshots(conn, cited)
        except BaseException:
            self._retry = found  # applied again next time: the correlator ignores repeats
            self._on_rolled_back()
            raise
        self._on_committed()
        self.hits += sum(len(f.hits) for f in found)
        if self.clips is not None:
            for item, ids in zip(found, cited_by, strict=True):
                if item.clip is not None:
                    self.clips.applied(item.clip, ids)
        for listener in self.applied_listeners:
            listener()

    def _take(self, now: float) -> list[_Found]:
        found, self._retry = self._retry, []
        for camera_id in sorted(self.blind):
            detectors = self.detectors.get(camera_id)
            if detectors is None:
                continue
            state, hits = detectors.on_no_frame(self.states[camera_id], now)
            self.states[camera_id] = state
            if hits:
                found.append(_Found(hits, None))
        while not self._inbox.empty():
            found.append(self._inbox.get_nowait())
        return found

    async def _with_snapshot(self, conn: psycopg.AsyncConnection, item: _Found) -> list[Hit]:
        if item.jpeg is None or self.save_snapshot is None:
            return list(item.hits)
        out: list[Hit] = []
        stored: dict[str, object] | None = None
        for hit in item.hits:
            if hit.raised:
                if stored is None:
                    stored = await self.save_snapshot(conn, item.jpeg, hit)
                    self.snapshots += 1
                hit = msgspec.structs.replace(hit, evidence={**hit.evidence, "snapshot": stored})
            out.append(hit)
        return out

    def inbox_depth(self) -> int:
        return self._inbox.qsize() + len(self._retry)


def is_still(state: CameraState, hits: tuple[Hit, ...], at: float, share: float) -> bool:
    """The detectors judged the frame at ``at`` (``state`` is after it) and saw nothing in
    it: motion ran on it and is not restarting after a global change, found no box and no
    figure, changed at most ``share`` of the picture, and nothing was raised or cleared."""
    motion = state.motion
    return (
        motion.last_ts == at
        and motion.looked
        and not motion.boxes
        and not state.figures
        and not hits
        and motion.changed <= share
    )


def _snapshot_ids(hits: list[Hit]) -> list[str]:
    return [str(h.evidence["snapshot"]["media_id"]) for h in hits if "snapshot" in h.evidence]


def _snapshot(
    image: np.ndarray,
    zones: tuple[FramePolygon, ...],
    boxes: list[list[float]],
    quality: int,
) -> bytes:
    """The deciding frame with the zones and the boxes drawn, as JPEG."""
    data = encode_jpeg(annotate(image, zones, boxes), quality)
    if data is None:
        raise ValueError("JPEG encoding failed")
    return data
