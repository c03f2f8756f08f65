"""Clips from collected frames to grid-event evidence: encoded on a worker thread, stored in
the media store, cited by the events whose evidence cites the raises' snapshots.

The video stage feeds :class:`ClipRecorder` (frames, raises, the snapshots of applied
raises) and calls :meth:`ClipRecorder.periodic` between ingest batches, on the pipeline's
connection, after it has applied the hits. A clip is stored once every raise citing it has
been applied (their snapshots are then linked to their events), in its own transaction:
the media row (kind ``clip``, ``video/x-msvideo`` for Motion-JPEG or ``video/webm``, linked
to the event so that snapshot retention covers it) and, for every open event whose evidence
cites one of those snapshots, ``detail.clip`` added to those evidence items, a new version
and an ``updated`` change in the change log, so the stream, the MQTT feed and webhooks carry
it like any other change.

Encoding has one thread of its own at a lower CPU priority (nice 10), so a clip never takes
a frame's turn on the detectors' threads; clips still collecting or encoding when the
service stops are not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import psycopg

from alerts.event import Evidence
from ingest.video_clips import (
    Clip,
    ClipCollector,
    ClipSettings,
    EncodedClip,
    Encoder,
    Small,
    encoder_for,
    pre_roll_frame,
)
from storage.events import get_event, log_change, save_event
from storage.media import MediaStore

log = logging.getLogger(__name__)

KIND = "clip"
NICE = 10


@dataclass(frozen=True, slots=True)
class StoredClip:
    """A clip stored and cited: what listeners hear."""

    media_id: str
    camera_id: str
    event_ids: tuple[str, ...]


def clip_url(media_id: str) -> str:
    return f"/api/v1/media/{media_id}"


class ClipRecorder:
    def __init__(
        self,
        settings: ClipSettings,
        media: MediaStore,
        grid_of: Callable[[str], str | None] = lambda camera_id: None,
        *,
        encode: Encoder | None = None,
    ) -> None:
        """``encode``: the encoder of ``settings.format`` unless given."""
        self.settings = settings
        self.collector = ClipCollector(settings)
        self.media = media
        self._grid_of = grid_of
        self._encode = encode or encoder_for(settings)
        self._executor: ThreadPoolExecutor | None = None
        self._encoding: list[tuple[Clip, Future[EncodedClip]]] = []
        self._ready: list[tuple[Clip, EncodedClip]] = []
        self.stored = 0
        self.failed = 0
        self.uncited = 0
        self.listeners: list[Callable[[StoredClip], None]] = []

    # -- from the video stage (event loop; ``shrink`` on the detectors' thread) ------------

    def shrink(self, camera_id: str, image: np.ndarray, at: float, *, still: bool) -> Small:
        """The pre-roll's frame for ``image``: the camera's last still one again when
        ``still`` allows it (:func:`~ingest.video_clips.pre_roll_frame`), else a new shrink.
        Reads what :meth:`push` kept for the camera: call it for one frame of a camera at a
        time, and push its result before the camera's next frame."""
        last = self.collector.last.get(camera_id)
        return pre_roll_frame(image, at, self.settings, still=still, last=last)

    def push(self, camera_id: str, small: np.ndarray | Small, at: float) -> None:
        self.collector.push(camera_id, small, at)
        self._submit()

    def on_raise(self, camera_id: str, at: float) -> Clip:
        clip = self.collector.on_raise(camera_id, at)
        self._submit()
        return clip

    def applied(self, clip: Clip, snapshot_ids: Iterable[str]) -> None:
        """A raise citing ``clip`` was applied (committed) with these snapshots."""
        clip.applied += 1
        clip.snapshot_ids.extend(i for i in snapshot_ids if i not in clip.snapshot_ids)

    def forget(self, camera_id: str) -> None:
        self.collector.forget(camera_id)
        self._submit()

    def stats(self) -> dict[str, int]:
        c = self.collector
        return {
            "started": c.started, "joined": c.joined, "skipped": c.skipped,
            "stored": self.stored, "failed": self.failed, "uncited": self.uncited,
            "in_flight": c.in_flight,
        }  # fmt: skip

    def _submit(self) -> None:
        finished = self.collector.take_finished()
        if not finished:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                1, thread_name_prefix="clip-encoder", initializer=_lower_priority
            )
        for clip in finished:
            fps = clip.fps(self.settings.rate)
            self._encoding.append((clip, self._executor.submit(self._encode, clip.frames, fps)))

    # -- between ingest batches ----------------------------------------------------------

    async def periodic(self, conn: psycopg.AsyncConnection, now: float) -> int:
        """Close quiet clips, take encoded ones, store and cite those whose raises are all
        applied; returns how many were stored. A lost connection leaves the rest for next
        time (raised, as the pipeline expects); any other failure gives that clip up."""
        self.collector.close_quiet(now)
        self._submit()
        self._take_encoded()
        stored = 0
        waiting: list[tuple[Clip, EncodedClip]] = []
        for index, (clip, encoded) in enumerate(self._ready):
            if not clip.ready_to_cite:
                waiting.append((clip, encoded))
                continue
            try:
                done = await self._store(conn, clip, encoded)
            except psycopg.OperationalError:
                self._ready = waiting + self._ready[index:]
                raise
            except Exception:
                log.exception("clip not stored", extra={"device_id": clip.camera_id})
                self.failed += 1
                self.collector.release(clip)
                continue
            self.collector.release(clip)
            if done is None:
                continue
            stored += 1
            for listener in self.listeners:
                listener(done)
        self._ready = waiting
        return stored

    def _take_encoded(self) -> None:
        pending: list[tuple[Clip, Future[EncodedClip]]] = []
        for clip, future in self._encoding:
            if not future.done():
                pending.append((clip, future))
                continue
            try:
                self._ready.append((clip, future.result()))
            except Exception:
                log.exception("clip not encoded", extra={"device_id": clip.camera_id})
                self.failed += 1
                self.collector.release(clip)
        self._encoding = pending

    async def _store(
        self, conn: psycopg.AsyncConnection, clip: Clip, encoded: EncodedClip
    ) -> StoredClip | None:
        if not clip.snapshot_ids:
            self.uncited += 1  # nothing cites it (its raises had no snapshot)
            return None
        started = clip.times[0] if clip.times else clip.raised_at
        async with conn.transaction():
            item = await self.media.save(
                conn,
                encoded.data,
                content_type=encoded.content_type,
                kind=KIND,
                device_id=clip.camera_id,
                grid_code=self._grid_of(clip.camera_id),
                taken_at=datetime.fromtimestamp(started, UTC),
            )
            ref = {
                "media_id": item.id,
                "url": clip_url(item.id),
                "content_type": encoded.content_type,
                "duration_s": encoded.duration_s,
                "frames": encoded.frames,
                "width": encoded.width,
                "height": encoded.height,
            }
            linked, amended = await cite_clip(conn, clip.snapshot_ids, ref)
            if linked:
                await self.media.attach(conn, item.id, linked[0])
        self.stored += 1
        if not amended:
            self.uncited += 1
        log.info(
            "clip stored",
            extra={"device_id": clip.camera_id, "media_id": item.id, "event_ids": amended,
                   "frames": encoded.frames, "bytes": len(encoded.data)},
        )  # fmt: skip
        return StoredClip(item.id, clip.camera_id, tuple(amended))

    async def encoded(self) -> None:
        """Wait until the clips handed to the encoder are encoded (benchmarks, tests)."""
        # failures are taken (and counted) by periodic(); gathered here so that no asyncio
        # future is left holding an exception nobody retrieved
        await asyncio.gather(
            *(asyncio.wrap_future(f) for _, f in self._encoding), return_exceptions=True
        )

    async def finish(self, conn: psycopg.AsyncConnection, now: float) -> int:
        """At shutdown: end every clip still collecting with the frames it has, wait for the
        encoder, and store and cite what can be; returns how many were stored."""
        self.collector.finish_all()
        self._submit()
        if self._encoding:
            await asyncio.to_thread(wait, [future for _, future in self._encoding])
        return await self.periodic(conn, now)

    async def aclose(self) -> None:
        """Stop the encoder thread (a clip being encoded is finished, the rest dropped)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


async def cite_clip(
    conn: psycopg.AsyncConnection, snapshot_ids: list[str], ref: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """Add ``ref`` as ``detail.clip`` to the evidence items citing ``snapshot_ids``, in every
    open event they are linked to; returns (events the snapshots are linked to, events
    amended). Each event is locked, so its new version never conflicts here."""
    cur = await conn.execute(
        "SELECT DISTINCT event_id FROM media"
        " WHERE id = ANY(%s) AND event_id IS NOT NULL ORDER BY event_id",
        (snapshot_ids,),
    )
    linked = [event_id for (event_id,) in await cur.fetchall()]
    cited = set(snapshot_ids)
    amended: list[str] = []
    for event_id in linked:
        event = await get_event(conn, event_id, lock=True)
        if event is None or not event.is_open:
            continue
        evidence = tuple(_with_clip(item, cited, ref) for item in event.evidence)
        if evidence == event.evidence:
            continue  # the cited items were trimmed from the bounded evidence meanwhile
        updated = msgspec.structs.replace(event, evidence=evidence, version=event.version + 1)
        await save_event(conn, updated, new=False)
        await log_change(conn, updated, "updated")
        amended.append(event_id)
    return linked, amended


def _with_clip(item: Evidence, snapshot_ids: set[str], ref: dict[str, Any]) -> Evidence:
    snapshot = item.detail.get("snapshot")
    if not isinstance(snapshot, dict) or snapshot.get("media_id") not in snapshot_ids:
        return item
    if item.detail.get("clip") == ref:
        return item
    return msgspec.structs.replace(item, detail={**item.detail, "clip": ref})


def _lower_priority() -> None:
    """Encode at a lower CPU priority than frame analysis (Linux: per thread)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
