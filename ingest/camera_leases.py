"""Which worker pulls which camera: one PostgreSQL session advisory lock per camera.

A camera must be pulled by exactly one worker (two would double its events and its load on
the camera), yet no worker may own cameras in a way that outlives it. Session advisory locks
give both: a worker holds a camera while its lease connection lives, and PostgreSQL frees
the lock the moment that connection dies, so a surviving worker claims it on its next round.

Each worker also holds a *member* lock, so every worker can count the live workers and take
a fair share, ``ceil(cameras / workers)``: a worker above its share lets the surplus go, and
one below claims free cameras until it reaches it. Rounds run every ``video.lease_s``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable

import psycopg

# Two-integer advisory keys (classid, objid): distinct from the single-bigint keys used
# elsewhere, which PostgreSQL records with objsubid 1 instead of 2.
CAMERA_CLASS = 0x67770001
MEMBER_CLASS = 0x67770002

_LIVE_MEMBERS = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND classid = %s::oid AND objsubid = 2 AND granted
"""


class CameraLeases:
    """The cameras this worker holds; call :meth:`round` periodically, :meth:`close` at the end."""

    def __init__(self, conninfo: str, *, max_cameras: int = 0) -> None:
        self.conninfo = conninfo
        self.max_cameras = max_cameras
        self.member_key = secrets.randbits(31)
        self.held: set[str] = set()
        self._conn: psycopg.AsyncConnection | None = None

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self.held.clear()  # a new session holds nothing
            self._conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            await self._conn.execute(
                "SELECT pg_advisory_lock(%s, %s)", (MEMBER_CLASS, self.member_key)
            )
        return self._conn

    async def round(self, wanted: Iterable[str]) -> set[str]:
        """Claim, keep or release cameras among ``wanted``; returns the ones held now.

        A database error propagates with nothing held (the session, and so every lock, is
        gone): the caller stops pulling and tries again on its next round.
        """
        try:
            return await self._round(sorted(set(wanted)))
        except psycopg.Error:
            await self.close()
            raise

    async def _round(self, wanted: list[str]) -> set[str]:
        conn = await self._connection()
        for camera_id in sorted(self.held - set(wanted)):
            await self._release(conn, camera_id)
        workers = (await (await conn.execute(_LIVE_MEMBERS, (MEMBER_CLASS,))).fetchone())[0]
        share = math.ceil(len(wanted) / max(1, workers))
        if self.max_cameras:
            share = min(share, self.max_cameras)
        for camera_id in sorted(self.held, reverse=True)[: max(0, len(self.held) - share)]:
            await self._release(conn, camera_id)
        # Start from a per-worker offset so that workers starting together try different
        # cameras first instead of racing for the same ones.
        start = self.member_key % len(wanted) if wanted else 0
        for camera_id in wanted[start:] + wanted[:start]:
            if len(self.held) >= share:
                break
            if camera_id in self.held:
                continue
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (CAMERA_CLASS, camera_id)
            )
            if (await cur.fetchone())[0]:
                self.held.add(camera_id)
        return set(self.held)

    async def _release(self, conn: psycopg.AsyncConnection, camera_id: str) -> None:
        await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (CAMERA_CLASS, camera_id))
        self.held.discard(camera_id)

    async def close(self) -> None:
        """Let every camera go (closing the session frees its locks)."""
        self.held.clear()
        if self._conn is not None and not self._conn.closed:
            await self._conn.close()
        self._conn = None
