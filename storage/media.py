"""Evidence media (camera snapshots, field-report photos and videos): bytes on disk, rows in
``media`` (0006_media.sql).

The bytes are content-addressed: ``<root>/<sha256[:2]>/<sha256>``, written to a temporary
file in the same directory and renamed into place, so a reader never sees half a file and
the same bytes cited twice are stored once. A row per :meth:`MediaStore.save` says what the
bytes are (content type, kind), whose they are (device, grid) and what they are evidence of
(the grid event, set when known with :meth:`MediaStore.attach`); the API serves an item only
to tokens that see its grid.

The file is written before the row is inserted, inside the caller's transaction. Should
that transaction fail, :meth:`MediaStore.discard_unreferenced` removes the files no row
cites. Both take a per-digest advisory lock (held by ``save`` until the caller's
transaction ends), so a file another transaction is about to cite is never removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import psycopg

from alerts.event import new_event_id

ID_PREFIX: Final = "MD"
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_INSERTED: Final = "id, sha256, content_type, size, kind, device_id, grid_code, event_id, taken_at"
_COLUMNS: Final = f"{_INSERTED}, created_at"
_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One stored piece of evidence, as its ``media`` row says."""

    id: str
    sha256: str
    content_type: str
    size: int
    kind: str
    device_id: str | None
    grid_code: str | None
    event_id: str | None
    taken_at: datetime | None
    created_at: datetime

    @property
    def url(self) -> str:
        """Where the API serves it (``/api/v1/media/{id}`` answers the same)."""
        return f"/api/v1/snapshots/{self.id}"

    def evidence(self) -> dict[str, str]:
        """How event evidence cites it."""
        return {"media_id": self.id, "url": self.url, "content_type": self.content_type}


def new_media_id(ts: float, entropy: int) -> str:
    """``'MD'`` + 26 characters, time-ordered like grid event ids."""
    return ID_PREFIX + new_event_id(ts, entropy)[len(ID_PREFIX) :]


def _item(row: tuple[Any, ...]) -> MediaItem:
    return MediaItem(*row)


class MediaStore:
    """Media under ``root`` (``<data dir>/media``); no I/O until it is used."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"{sha256!r} is not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256

    def path_of(self, item: MediaItem) -> Path:
        return self._path(item.sha256)

    async def save(
        self,
        conn: psycopg.AsyncConnection[Any],
        data: bytes,
        *,
        content_type: str,
        kind: str,
        device_id: str | None = None,
        grid_code: str | None = None,
        event_id: str | None = None,
        taken_at: datetime | None = None,
    ) -> MediaItem:
        """Store ``data`` (once per digest) and insert its row in the caller's transaction."""
        if not content_type or not kind:
            raise ValueError("media needs a content type and a kind")
        if taken_at is not None and taken_at.tzinfo is None:
            raise ValueError("taken_at must be timezone-aware")
        digest = hashlib.sha256(data).hexdigest()
        await conn.execute(_LOCK, (digest,))
        await asyncio.to_thread(self._write, digest, data)
        media_id = new_media_id(time.time(), secrets.randbits(80))
        cur = await conn.execute(
            f"INSERT INTO media ({_INSERTED})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" RETURNING {_COLUMNS}",
            (
                media_id, digest, content_type, len(data), kind, device_id, grid_code, event_id,
                taken_at,
            ),
        )  # fmt: skip
        row = await cur.fetchone()
        assert row is not None
        return _item(row)

    async def get(self, conn: psycopg.AsyncConnection[Any], media_id: str) -> MediaItem | None:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM media WHERE id = %s", (media_id,))
        row = await cur.fetchone()
        return _item(row) if row else None

    async def attach(
        self, conn: psycopg.AsyncConnection[Any], media_id: str, event_id: str
    ) -> None:
        """Record the grid event an item is evidence of; LookupError for an unknown item."""
        cur = await conn.execute(
            "UPDATE media SET event_id = %s WHERE id = %s", (event_id, media_id)
        )
        if cur.rowcount != 1:
            raise LookupError(f"no media {media_id!r}")

    async def attach_cited(
        self, conn: psycopg.AsyncConnection[Any], media_ids: Iterable[str]
    ) -> int:
        """Link items to the open event whose evidence cites them (a snapshot is stored before
        the correlator decides which event its hit joins); returns how many were linked."""
        cur = await conn.execute(
            "UPDATE media m SET event_id = e.id FROM grid_events e"
            " WHERE m.id = ANY(%s) AND m.event_id IS NULL"
            " AND e.state NOT IN ('closed', 'false_alarm')"
            " AND e.evidence @> jsonb_build_array(jsonb_build_object('detail',"
            "     jsonb_build_object('snapshot', jsonb_build_object('media_id', m.id))))",
            (list(media_ids),),
        )
        return cur.rowcount

    async def discard_unreferenced(
        self, conn: psycopg.AsyncConnection[Any], digests: Iterable[str]
    ) -> int:
        """Remove the files of ``digests`` no row cites (after a failed transaction that
        saved them); returns how many were removed. Runs in its own transaction."""
        removed = 0
        async with conn.transaction():
            for digest in sorted(set(digests)):
                await conn.execute(_LOCK, (digest,))
                cur = await conn.execute("SELECT 1 FROM media WHERE sha256 = %s LIMIT 1", (digest,))
                if await cur.fetchone() is None:
                    removed += await asyncio.to_thread(self._unlink, digest)
        return removed

    async def expire(
        self, conn: psycopg.AsyncConnection[Any], kind: str, older_than: datetime
    ) -> int:
        """Forget ``kind`` items taken (or stored) before ``older_than`` that are not evidence
        of an open event, and remove the files no row cites any more; returns rows removed."""
        async with conn.transaction():
            cur = await conn.execute(
                "DELETE FROM media m WHERE m.kind = %s"
                " AND coalesce(m.taken_at, m.created_at) < %s"
                " AND NOT EXISTS (SELECT 1 FROM grid_events e"
                "   WHERE e.id = m.event_id AND e.state NOT IN ('closed', 'false_alarm'))"
                " RETURNING m.sha256",
                (kind, older_than),
            )
            digests = [digest for (digest,) in await cur.fetchall()]
        if digests:
            await self.discard_unreferenced(conn, digests)
        return len(digests)

    # -- files (on a worker thread) ------------------------------------------------------------

    def _write(self, digest: str, data: bytes) -> None:
        path = self._path(digest)
        if path.is_file() and path.stat().st_size == len(data):
            return  # the same bytes are there already
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _unlink(self, digest: str) -> int:
        path = self._path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return 0
        return 1
