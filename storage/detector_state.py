"""Detector state per device, loaded when a worker takes a device over and saved in the
transaction of the batch (or tick) that changed it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import psycopg

_SAVE = """
INSERT INTO detector_state (device_id, state, next_wake, updated_at)
VALUES (%s, %s, %s, now())
ON CONFLICT (device_id) DO UPDATE SET
    state = EXCLUDED.state, next_wake = EXCLUDED.next_wake, updated_at = now()
"""


async def load_states(conn: psycopg.AsyncConnection, device_ids: list[str]) -> dict[str, bytes]:
    if not device_ids:
        return {}
    cur = await conn.execute(
        "SELECT device_id, state::text FROM detector_state WHERE device_id = ANY(%s)", (device_ids,)
    )
    return {device_id: raw.encode() for device_id, raw in await cur.fetchall()}


async def save_states(
    conn: psycopg.AsyncConnection, rows: Iterable[tuple[str, bytes, float | None]]
) -> None:
    params = [
        (device_id, raw.decode(), None if wake is None else datetime.fromtimestamp(wake, UTC))
        for device_id, raw, wake in rows
    ]
    if params:
        async with conn.cursor() as cur:
            await cur.executemany(_SAVE, params)
