"""The live stream under load, on its own application (short heartbeat, small queues) over
the real database: a client that stops reading is cut off without holding back the others,
and resumes with exactly the rest; idle streams get keepalive comments.

Changes are written straight into the change log here (large ones, so that a stalled
socket fills quickly): what is tested is the stream, not how changes are made.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import psycopg
import pytest
from aiohttp import web
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from api import auth, metrics, stream
from api.context import CONTEXT, ApiContext
from gridwatch.config import load_settings
from storage.events import EVENTS_CHANNEL
from tests.integration.test_outputs import G1, T1, V1, C, SseClient, World
from tests.integration.test_outputs import world as world  # the fixture, by name

pytestmark = pytest.mark.integration

OPTIONS = stream.StreamOptions(heartbeat_s=0.2, queue_max=32, page=16)
BIG = "x" * 65536


@contextlib.asynccontextmanager
async def stream_app(conninfo: str) -> AsyncIterator[tuple[str, web.Application]]:
    pool = AsyncConnectionPool(conninfo, min_size=1, max_size=4, open=False)
    await pool.open()
    app = web.Application()
    app[CONTEXT] = ApiContext(pool, load_settings(environ={}), lambda: {"components": {}})
    auth.setup(app)
    stream.setup(app, OPTIONS)
    metrics.setup(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", app
    finally:
        await runner.cleanup()
        await pool.close()


async def write_changes(conninfo: str, count: int) -> list[int]:
    """``count`` large changes in G1, in one transaction; their seqs."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        seqs = []
        for i in range(count):
            cur = await conn.execute(
                "INSERT INTO event_log (event_id, change, grid_code, ancestors, severity, payload)"
                " VALUES (%s, 'updated', %s, %s, 'orange', %s) RETURNING seq",
                (f"GE-STREAM-{i}", G1, [C, T1, V1], Jsonb({"category": "fire", "pad": BIG})),
            )
            row = await cur.fetchone()
            assert row is not None
            seqs.append(int(row[0]))
        await conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, str(seqs[-1])))
        await conn.commit()
        return seqs


class StalledClient:
    """Asks for the stream over a raw socket with a tiny receive buffer, then stops reading."""

    def __init__(self, base: str, token: str) -> None:
        self.host, port = base.removeprefix("http://").split(":")
        self.port = int(port)
        self.token = token
        self.sock = socket.socket()

    async def connect(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((self.host, self.port))
        request = (
            f"GET /api/v1/stream HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        await asyncio.to_thread(self._read_until, b"gridwatch stream")  # it is subscribed

    def _read_until(self, marker: bytes) -> None:
        self.sock.settimeout(10)
        seen = b""
        while marker not in seen:
            chunk = self.sock.recv(256)
            assert chunk, "the server closed the stream"
            seen += chunk

    def read_all(self) -> bytes:
        """Everything the server sent before it cut the connection."""
        self.sock.settimeout(10)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := self.sock.recv(65536):
                chunks.append(chunk)
        self.sock.close()
        return b"".join(chunks)


def last_complete_id(raw: bytes) -> int:
    """The id of the last event that arrived whole (ends with a blank line)."""
    last = 0
    for block in raw.split(b"\n\n")[:-1]:
        for line in block.split(b"\n"):
            if line.startswith(b"id: "):
                last = int(line[4:])
    return last


async def test_a_stalled_client_is_cut_off_the_others_get_everything_and_it_resumes(
    world: World,
) -> None:
    token = world.tokens["town1"]
    async with stream_app(world.conninfo) as (base, app):
        async with SseClient(base, token) as fast:
            stalled = StalledClient(base, token)
            await stalled.connect()
            tail = app[stream.TAIL]
            assert len(tail.clients) == 2
            seqs = await write_changes(world.conninfo, 400)
            await fast.events.at_least(len(seqs), within=60)
            assert fast.seqs() == seqs  # nobody was held back, nothing skipped
            registry = app[metrics.REGISTRY]
            assert registry.get_sample_value("gridwatch_stream_cut_off_total") == 1.0
            assert len(tail.clients) == 1

            # it idles: keepalive comments
            await fast.comments.wait_for(lambda c: c.count("keepalive") >= 2)

        raw = await asyncio.to_thread(stalled.read_all)
        resume_after = last_complete_id(raw)
        assert resume_after < seqs[-1]
        async with SseClient(base, token, last_event_id=resume_after) as again:
            rest = [s for s in seqs if s > resume_after]
            await again.events.at_least(len(rest), within=60)
            assert again.seqs() == rest

        async with app[CONTEXT].pool.connection() as conn:
            await conn.execute("DELETE FROM event_log WHERE event_id LIKE 'GE-STREAM-%'")
