"""Reading and replaying the dead-letter store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    received_at: datetime
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes
    replayed_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    reason: str | None = None
    device_id: str | None = None
    ids: tuple[int, ...] = ()
    include_replayed: bool = False

    def where(self) -> tuple[sql.Composable, list[object]]:
        clauses: list[sql.Composable] = []
        params: list[object] = []
        if self.reason:
            clauses.append(sql.SQL("reason = %s"))
            params.append(self.reason)
        if self.device_id:
            clauses.append(sql.SQL("device_id = %s"))
            params.append(self.device_id)
        if self.ids:
            clauses.append(sql.SQL("id = ANY(%s)"))
            params.append(list(self.ids))
        if not self.include_replayed:
            clauses.append(sql.SQL("replayed_at IS NULL"))
        if not clauses:
            return sql.SQL("TRUE"), params
        return sql.SQL(" AND ").join(clauses), params


async def list_dead_letters(
    conn: psycopg.AsyncConnection, flt: DeadLetterFilter, limit: int = 100
) -> list[DeadLetter]:
    where, params = flt.where()
    query = sql.SQL(
        "SELECT id, received_at, topic, device_id, reason, detail, payload, replayed_at"
        " FROM dead_letters WHERE {} ORDER BY id LIMIT %s"
    ).format(where)
    cur = await conn.execute(query, [*params, limit])
    return [DeadLetter(*row) for row in await cur.fetchall()]


async def count_dead_letters(conn: psycopg.AsyncConnection, flt: DeadLetterFilter) -> int:
    where, params = flt.where()
    cur = await conn.execute(
        sql.SQL("SELECT count(*) FROM dead_letters WHERE {}").format(where), params
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def reject_summary(conn: psycopg.AsyncConnection) -> list[tuple[str, str, int, datetime]]:
    """Rejections per device and reason, most first."""
    cur = await conn.execute(
        "SELECT device_id, reason, count, last_at FROM reject_counts ORDER BY count DESC, device_id"
    )
    return list(await cur.fetchall())


async def mark_replayed(conn: psycopg.AsyncConnection, ids: list[int]) -> None:
    await conn.execute("UPDATE dead_letters SET replayed_at = now() WHERE id = ANY(%s)", (ids,))
