"""The ``camera_status`` table: what the worker pulling a camera last said about it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True, slots=True)
class CameraStatus:
    camera_id: str
    worker: str
    state: str
    fps_in: float
    fps_analysed: float
    frames_in: int
    frames_dropped: int
    reconnects: int
    last_frame_at: datetime | None
    width: int | None
    height: int | None
    last_error: str | None
    faults: tuple[str, ...]
    preview_at: datetime | None
    updated_at: datetime

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            name: getattr(self, name)
            for name in self.__slots__  # type: ignore[attr-defined]
        }
        for name in ("last_frame_at", "preview_at", "updated_at"):
            value = out[name]
            out[name] = value.isoformat() if isinstance(value, datetime) else None
        out["faults"] = list(self.faults)
        return out


_COLUMNS = (
    "camera_id, worker, state, fps_in, fps_analysed, frames_in, frames_dropped, reconnects,"
    " last_frame_at, width, height, last_error, faults, preview_at, updated_at"
)

_UPSERT = """
INSERT INTO camera_status AS c (camera_id, worker, state, fps_in, fps_analysed, frames_in,
    frames_dropped, reconnects, last_frame_at, width, height, last_error, faults, preview,
    preview_at, updated_at)
VALUES (%(camera_id)s, %(worker)s, %(state)s, %(fps_in)s, %(fps_analysed)s, %(frames_in)s,
    %(frames_dropped)s, %(reconnects)s, %(last_frame_at)s, %(width)s, %(height)s,
    %(last_error)s, %(faults)s, %(preview)s, %(preview_at)s, now())
ON CONFLICT (camera_id) DO UPDATE SET
    worker = excluded.worker, state = excluded.state, fps_in = excluded.fps_in,
    fps_analysed = excluded.fps_analysed, frames_in = excluded.frames_in,
    frames_dropped = excluded.frames_dropped, reconnects = excluded.reconnects,
    last_frame_at = excluded.last_frame_at, width = excluded.width, height = excluded.height,
    last_error = excluded.last_error, faults = excluded.faults,
    preview = coalesce(excluded.preview, c.preview),
    preview_at = coalesce(excluded.preview_at, c.preview_at), updated_at = now()
"""


async def save_statuses(conn: psycopg.AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(_UPSERT, rows)


async def list_statuses(
    conn: psycopg.AsyncConnection, camera_ids: Sequence[str] | None = None
) -> list[CameraStatus]:
    query = f"SELECT {_COLUMNS} FROM camera_status"
    params: tuple[object, ...] = ()
    if camera_ids is not None:
        query += " WHERE camera_id = ANY(%s)"
        params = (list(camera_ids),)
    cur = await conn.execute(query + " ORDER BY camera_id", params)
    return [_status(row) for row in await cur.fetchall()]


async def stored_preview(
    conn: psycopg.AsyncConnection, camera_id: str
) -> tuple[bytes, datetime] | None:
    cur = await conn.execute(
        "SELECT preview, preview_at FROM camera_status"
        " WHERE camera_id = %s AND preview IS NOT NULL",
        (camera_id,),
    )
    row = await cur.fetchone()
    return (bytes(row[0]), row[1]) if row else None


def _status(row: tuple[object, ...]) -> CameraStatus:
    values = list(row)
    values[12] = tuple(values[12] or ())  # type: ignore[arg-type]
    return CameraStatus(*values)  # type: ignore[arg-type]
