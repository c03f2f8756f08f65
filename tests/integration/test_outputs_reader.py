"""The change-log reader against real PostgreSQL transactions: a lower seq committed late is
never overtaken, a rolled-back seq is skipped once nothing can fill it, a waiting reader
wakes on NOTIFY, and a new consumer starts at a head nothing can appear below."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from outputs.log_reader import ChangeListener, LogReader
from storage.events import EVENTS_CHANNEL

pytestmark = pytest.mark.integration

INSERT = (
    "INSERT INTO event_log (event_id, change, grid_code, ancestors, severity, payload)"
    " VALUES (%s, 'opened', 'g', '{c}', 'orange', '{\"category\": \"fire\"}') RETURNING seq"
)


async def insert(conn: psycopg.AsyncConnection, event_id: str) -> int:
    cur = await conn.execute(INSERT, (event_id,))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def head(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT coalesce(max(seq), 0) FROM event_log")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
async def conns(database: str) -> AsyncIterator[list[psycopg.AsyncConnection]]:
    """A reader connection (autocommit) and two writers."""
    made = [await psycopg.AsyncConnection.connect(database, autocommit=True)]
    made += [await psycopg.AsyncConnection.connect(database) for _ in range(2)]
    try:
        yield made
    finally:
        for conn in made:
            await conn.close()


async def test_a_lower_seq_committed_later_is_not_overtaken(
    conns: list[psycopg.AsyncConnection],
) -> None:
    reader_conn, a, b = conns
    start = await head(reader_conn)
    await b.execute("SELECT pg_current_xact_id()")  # B's first write: the older xid
    await a.execute("SELECT pg_current_xact_id()")
    low = await insert(a, "GE-A")  # A takes the lower seq and stays open
    high = await insert(b, "GE-B")
    await b.commit()
    reader = LogReader()
    assert (await reader.read(reader_conn, start)).rows == []  # seq `high` must wait
    await a.commit()
    assert [r.seq for r in (await reader.read(reader_conn, start)).rows] == [low, high]


async def test_a_rolled_back_seq_is_skipped_once_nothing_can_fill_it(
    conns: list[psycopg.AsyncConnection],
) -> None:
    reader_conn, a, b = conns
    start = await head(reader_conn)
    await a.execute("SELECT pg_current_xact_id()")
    await insert(a, "GE-ROLLED-BACK")
    kept = await insert(b, "GE-KEPT")
    await b.commit()
    reader = LogReader()
    result = await reader.read(reader_conn, start)
    assert result.rows == [] and result.pending
    await a.rollback()
    assert [r.seq for r in (await reader.read(reader_conn, start)).rows] == [kept]


async def test_a_waiting_reader_wakes_on_notify_and_new_consumers_start_at_a_settled_head(
    database: str, conns: list[psycopg.AsyncConnection]
) -> None:
    reader_conn, writer, other = conns
    await other.execute("SELECT pg_current_xact_id()")  # a write transaction in flight
    reader = LogReader()
    settling = asyncio.create_task(reader.settled_head(reader_conn))
    await other.commit()  # until it ends, the head is not settled
    start = await asyncio.wait_for(settling, 10)

    listener = ChangeListener(database)
    listening = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        waiting = asyncio.create_task(reader.next_batch(reader_conn, listener, start, within=30))
        seq = await insert(writer, "GE-NOTIFIED")
        await writer.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, str(seq)))
        await writer.commit()
        rows = await asyncio.wait_for(waiting, 10)  # long before `within`
        assert [r.seq for r in rows] == [seq] and rows[0].event_id == "GE-NOTIFIED"
        assert rows[0].category == "fire" and rows[0].ancestors == ("c",)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
