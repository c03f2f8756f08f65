"""Grid events in PostgreSQL: rows, history, and the change log the outputs read.

Updates carry the version the writer read; a row that moved meanwhile (another worker)
raises :class:`EventConflict`, which rolls the whole batch back to be tried again on fresh
state. Opening an event whose correlation key another worker already holds fails on the
unique index the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from alerts.event import GridEvent
from alerts.workflow_state import HistoryEntry

COLUMNS = (
    "id", "correlation_key", "grid_code", "ancestors", "category", "type", "severity", "state",
    "site", "location", "device_ids", "types", "active_conditions", "first_seen", "last_seen",
    "alarm_count", "evidence", "workflow", "next_due", "version",
)  # fmt: skip
_JSONB = {"location", "evidence", "workflow"}
_SELECT = sql.SQL("SELECT {} FROM grid_events").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
)


EVENTS_CHANNEL = "gridwatch_events"
"""NOTIFY channel: a change was logged (payload: its seq); delivered at commit."""


class EventConflict(psycopg.errors.SerializationFailure):
    """The event changed under this worker; the batch is retried on fresh state."""


def _placeholder(column: str) -> sql.Composable:
    return sql.SQL("%({})s::jsonb" if column in _JSONB else "%({})s").format(sql.SQL(column))


_INSERT = sql.SQL("INSERT INTO grid_events ({}) VALUES ({})").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS),
    sql.SQL(", ").join(_placeholder(c) for c in COLUMNS),
)
_UPDATE = sql.SQL(
    "UPDATE grid_events SET {}, updated_at = now() WHERE id = %(id)s AND version = %(expected)s"
).format(
    sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), _placeholder(c)) for c in COLUMNS if c != "id"
    )
)


def _event(row: tuple[Any, ...]) -> GridEvent:
    return GridEvent.from_row(dict(zip(COLUMNS, row, strict=True)))


async def load_key_holders(conn: psycopg.AsyncConnection) -> dict[str, GridEvent]:
    """Every event that holds a correlation key, by key."""
    cur = await conn.execute(_SELECT + sql.SQL(" WHERE correlation_key IS NOT NULL"))
    events = [_event(row) for row in await cur.fetchall()]
    return {e.correlation_key: e for e in events if e.correlation_key is not None}


async def get_event(
    conn: psycopg.AsyncConnection, event_id: str, *, lock: bool = False
) -> GridEvent | None:
    query = _SELECT + sql.SQL(" WHERE id = %s") + (sql.SQL(" FOR UPDATE") if lock else sql.SQL(""))
    cur = await conn.execute(query, (event_id,))
    row = await cur.fetchone()
    return _event(row) if row else None


async def due_events(
    conn: psycopg.AsyncConnection, now: datetime, limit: int = 500
) -> list[GridEvent]:
    """Open events whose deadline has passed, locked; other workers skip them meanwhile."""
    cur = await conn.execute(
        _SELECT
        + sql.SQL(" WHERE next_due <= %s AND state NOT IN ('closed', 'false_alarm')")
        + sql.SQL(" ORDER BY next_due LIMIT %s FOR UPDATE SKIP LOCKED"),
        (now, limit),
    )
    return [_event(row) for row in await cur.fetchall()]


async def save_event(conn: psycopg.AsyncConnection, event: GridEvent, *, new: bool) -> None:
    row = event.to_row()
    if new:
        await conn.execute(_INSERT, row)
        return
    cur = await conn.execute(_UPDATE, {**row, "expected": event.version - 1})
    if cur.rowcount != 1:
        raise EventConflict(
            f"event {event.id} changed meanwhile (expected version {event.version - 1})"
        )


async def append_history(
    conn: psycopg.AsyncConnection, event_id: str, entries: Iterable[HistoryEntry]
) -> None:
    params = [
        (event_id, e.at, e.action.value, e.actor_id, msgspec.json.encode(e).decode())
        for e in entries
    ]
    if params:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO grid_event_history (event_id, at, action, actor_id, entry)"
                " VALUES (%s, %s, %s, %s, %s::jsonb)",
                params,
            )


async def history(conn: psycopg.AsyncConnection, event_id: str) -> list[HistoryEntry]:
    cur = await conn.execute(
        "SELECT entry::text FROM grid_event_history WHERE event_id = %s ORDER BY id", (event_id,)
    )
    return [msgspec.json.decode(raw, type=HistoryEntry) for (raw,) in await cur.fetchall()]


async def log_change(conn: psycopg.AsyncConnection, event: GridEvent, change: str) -> int:
    """Append to the change log; returns its sequence number. Numbers are taken at insert,
    not commit: outputs/log_reader.py waits out gaps so readers never skip a late commit."""
    data = msgspec.json.encode(event.to_cloudevent_data()).decode()
    cur = await conn.execute(
        "INSERT INTO event_log (event_id, change, grid_code, ancestors, severity, payload)"
        " VALUES (%s, %s, %s, %s, %s, %s::jsonb) RETURNING seq",
        (event.id, change, event.grid_code, list(event.ancestors), event.severity.value, data),
    )
    row = await cur.fetchone()
    assert row is not None
    await conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, str(row[0])))
    return int(row[0])
