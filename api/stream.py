"""``GET /api/v1/stream``: every change in the token's scope, live, as Server-Sent Events.

Each event is one CloudEvent (``outputs.cloudevents``) in ``data:``, with ``id:`` = the
change's ``seq``; there is no ``event:`` field, so a browser's ``EventSource.onmessage``
gets them all (the CloudEvent ``type`` says which change it is). The one exception: while
the database is away, provisional alerts (:mod:`alerts.provisional`, found on spooled
messages, not yet grid events) come as ``event: provisional`` with no ``id:``, so they
never move the resume point and ``onmessage`` does not see them. ``?grid=`` keeps a
subtree (within the token's scope; 403 outside it), ``?severity=red,orange`` some colours.

**Resume.** A client that reconnects with ``Last-Event-ID: <seq>`` (browsers do it by
themselves) or ``?last_event_id=<seq>`` gets exactly the changes after that one that match
its filters: first from the database, then live, with neither gap nor repeat. Without
either, the stream starts with the next change.

**One reader for all clients.** A single :class:`LiveTail` per application reads the log
(``outputs.log_reader``: in order, never skipping) and hands each change to every
matching client's queue. The queues are bounded (``queue_max``): a client that does not
keep up is cut off (its connection aborted, counted in
``gridwatch_stream_cut_off_total``) instead of slowing the others or growing memory; it
reconnects and resumes from its last id. Idle streams get a ``: keepalive`` comment every
``heartbeat_s`` seconds (default 15).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from aiohttp import web
from prometheus_client import Counter, Gauge

from alerts.provisional import ProvisionalAlert
from api import openapi as oa
from api.auth import Principal, check_grid_param, http_error, require
from api.context import CONTEXT
from api.metrics import latency_source, registry_of
from ingest.backoff import Backoff
from outputs import LatencyHistogram, supervise
from outputs.cloudevents import envelope
from outputs.log_reader import (
    SEVERITIES,
    ChangeListener,
    EventFilter,
    LogReader,
    LogRow,
    fetch_range,
)

log = logging.getLogger(__name__)

PATH: Final = "/api/v1/stream"
MAX_SEQ: Final = 2**63 - 1
_END: Final = b""  # queued to end a stream (service shutting down)
_PARAMS: Final = ("grid", "severity", "last_event_id")


@dataclass(frozen=True, slots=True)
class StreamOptions:
    heartbeat_s: float = 15.0
    queue_max: int = 1000
    page: int = 500
    poll_s: float = 5.0
    ready_wait_s: float = 10.0
    strict_xmin: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> StreamOptions:
        # Until gridwatch.config has an [outputs] section, the defaults hold.
        section = getattr(settings, "outputs", None)
        if section is None:
            return cls()
        return cls(
            heartbeat_s=section.stream_heartbeat_s,
            queue_max=section.stream_queue_max,
            poll_s=section.poll_s,
            strict_xmin=section.strict_xmin,
        )


def frame(row: LogRow) -> bytes:
    """One SSE event: ``id: <seq>`` and the CloudEvent (single-line JSON) as ``data``."""
    return b"id: %d\ndata: %s\n\n" % (row.seq, envelope(row))


@dataclass(eq=False, slots=True)
class Client:
    """One connected stream: what it wants, and its queue of frames."""

    match: Callable[[LogRow], bool]
    after: int  # live changes up to here are the client's already (or come from catch-up)
    start: int  # the tail's position when the client came: catch-up ends here
    queue: asyncio.Queue[tuple[float, bytes]]
    transport: asyncio.BaseTransport | None = None
    cut_off: bool = False
    sees: Callable[[ProvisionalAlert], bool] | None = None  # which provisional alerts it gets


@dataclass(slots=True)
class LiveTail:
    """Reads the change log once for the whole application and feeds every client."""

    options: StreamOptions
    clients: set[Client] = field(default_factory=set)
    position: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    sent: Counter | None = None
    cut: Counter | None = None
    task: asyncio.Task[None] | None = None

    def start(self, conninfo: str, connect_kwargs: dict[str, Any]) -> None:
        """Start following the log (on the first client: an app nobody streams from never
        opens a connection for it)."""
        if self.task is None:
            self.task = asyncio.create_task(
                supervise("stream-tail", lambda: self.run(conninfo, connect_kwargs)),
                name="stream-tail",
            )

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    def subscribe(self, match: Callable[[LogRow], bool], last_seen: int | None) -> Client:
        start = self.position
        after = start if last_seen is None else max(last_seen, start)
        client = Client(match, after, start, asyncio.Queue(self.options.queue_max))
        self.clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    def dispatch(self, rows: list[LogRow]) -> None:
        for row in rows:
            data: bytes | None = None
            for client in list(self.clients):
                if row.seq <= client.after or not client.match(row):
                    continue
                data = data or frame(row)
                try:
                    client.queue.put_nowait((row.at.timestamp(), data))
                except asyncio.QueueFull:
                    self._cut_off(client)
            self.position = row.seq

    def provisional(self, body: bytes, alert: ProvisionalAlert) -> None:
        """A provisional alert (database away): ``event: provisional``, no ``id:`` (it is
        not a change of the log, so it never moves a client's resume point)."""
        data = b"event: provisional\ndata: %s\n\n" % body
        for client in list(self.clients):
            if client.sees is None or not client.sees(alert):
                continue
            try:
                client.queue.put_nowait((time.time(), data))
            except asyncio.QueueFull:
                self._cut_off(client)

    def _cut_off(self, client: Client) -> None:
        client.cut_off = True
        self.clients.discard(client)
        if self.cut is not None:
            self.cut.inc()
        if client.transport is not None:
            client.transport.abort()  # a stalled socket would keep a graceful close waiting
        log.info("slow stream client cut off", extra={"queued": client.queue.qsize()})

    def end_all(self) -> None:
        for client in list(self.clients):
            self.clients.discard(client)
            try:
                client.queue.put_nowait((0.0, _END))
            except asyncio.QueueFull:
                if client.transport is not None:
                    client.transport.abort()

    def queued(self) -> int:
        return sum(c.queue.qsize() for c in self.clients)

    async def run(self, conninfo: str, connect_kwargs: dict[str, Any]) -> None:
        """Follow the log until cancelled; survives database outages (clients stay on)."""
        listener = ChangeListener(conninfo, connect_kwargs=connect_kwargs)
        listening = asyncio.create_task(listener.run(), name="stream-listen")
        # A batch is dispatched at once: never more than a queue holds, so that a burst alone
        # cannot cut off a client that keeps up.
        batch = min(self.options.page, self.options.queue_max)
        reader = LogReader(batch=batch, strict_xmin=self.options.strict_xmin)
        backoff = Backoff(0.2, 10.0)
        try:
            while True:
                try:
                    conn = await psycopg.AsyncConnection.connect(
                        conninfo, **{**connect_kwargs, "autocommit": True}
                    )
                    async with conn:
                        if not self.ready.is_set():
                            self.position = await reader.settled_head(conn)
                            self.ready.set()
                        backoff.reset()
                        while True:
                            rows = await reader.next_batch(
                                conn, listener, self.position, within=self.options.poll_s
                            )
                            self.dispatch(rows)
                except (psycopg.Error, TimeoutError) as exc:  # timeout: a head that won't settle
                    delay = backoff.next_delay()
                    log.warning("live stream lost the database: %s; retrying in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)


TAIL = web.AppKey("gridwatch_stream_tail", LiveTail)


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID")
    query = oa.one(request, "last_event_id")
    if query is not None:
        raw = query
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEQ:
        raise http_error(400, "bad_parameter", "last_event_id: the id (seq) of a received event")
    return value


async def stream(request: web.Request) -> web.StreamResponse:
    who = await require(request)
    oa.check_params(request, _PARAMS)
    grid = oa.one(request, "grid")
    severities = oa.many(request, "severity", SEVERITIES) or None
    last_seen = _last_event_id(request)
    ctx = request.app[CONTEXT]
    if grid is not None:
        async with ctx.pool.connection() as conn:
            await check_grid_param(conn, who, grid)
    tail = request.app[TAIL]
    tail.start(ctx.pool.conninfo, dict(ctx.pool.kwargs or {}))
    try:
        async with asyncio.timeout(tail.options.ready_wait_s):
            await tail.ready.wait()
    except TimeoutError:
        raise web.HTTPServiceUnavailable(
            text='{"error": "unavailable", "reason": "the change log cannot be read now"}',
            content_type="application/json",
        ) from None
    wanted = EventFilter(grid=grid, severities=frozenset(severities) if severities else None)

    def match(row: LogRow) -> bool:
        return who.can_see(row.grid_code, row.ancestors) and wanted.matches(row)

    def sees(alert: ProvisionalAlert) -> bool:
        return (
            who.can_see(alert.grid_code, alert.ancestors)
            and (grid is None or alert.grid_code == grid or grid in alert.ancestors)
            and (severities is None or alert.severity in severities)
        )

    client = tail.subscribe(match, last_seen)
    client.sees = sees
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        client.transport = request.transport
        await response.write(b": gridwatch stream\n\n")
        if last_seen is not None and last_seen < client.start:
            await _catch_up(request, response, who, wanted, last_seen, client.start)
        await _live(response, client, tail)
    except ConnectionError:
        pass  # the client went away, or was cut off: it resumes with its last id
    finally:
        tail.unsubscribe(client)
    return response


async def _catch_up(
    request: web.Request,
    response: web.StreamResponse,
    who: Principal,
    wanted: EventFilter,
    after: int,
    upto: int,
) -> None:
    """What the client missed, from the database, page by page (no connection held while
    writing)."""
    ctx = request.app[CONTEXT]
    tail = request.app[TAIL]
    grid = wanted.grid if wanted.grid is not None or who.unrestricted else who.scope
    while True:
        async with ctx.pool.connection() as conn:
            rows = await fetch_range(
                conn, after, upto, grid=grid, severities=wanted.severities, limit=tail.options.page
            )
        for row in rows:
            if who.can_see(row.grid_code, row.ancestors) and wanted.matches(row):
                await response.write(frame(row))
                if tail.sent is not None:
                    tail.sent.inc()
        if len(rows) < tail.options.page:
            return
        after = rows[-1].seq


async def _live(response: web.StreamResponse, client: Client, tail: LiveTail) -> None:
    heartbeat = tail.options.heartbeat_s
    while not client.cut_off:
        try:
            async with asyncio.timeout(heartbeat):
                at, data = await client.queue.get()
        except TimeoutError:
            await response.write(b": keepalive\n\n")
            continue
        if data == _END:
            return
        await response.write(data)
        tail.latency.observe(time.time() - at)
        if tail.sent is not None:
            tail.sent.inc()


async def _stop_tail(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[TAIL].stop()


async def _end_streams(app: web.Application) -> None:
    app[TAIL].end_all()


def setup(app: web.Application, options: StreamOptions | None = None) -> None:
    opts = options or StreamOptions.from_settings(app[CONTEXT].settings)
    tail = LiveTail(opts)
    app[TAIL] = tail
    registry = registry_of(app)
    tail.sent = Counter(
        "gridwatch_stream_events_sent", "Events written to live-stream clients.", registry=registry
    )
    tail.cut = Counter(
        "gridwatch_stream_cut_off",
        "Live-stream clients cut off because their queue was full.",
        registry=registry,
    )
    Gauge(
        "gridwatch_stream_clients", "Connected live-stream clients.", registry=registry
    ).set_function(lambda: len(tail.clients))
    Gauge(
        "gridwatch_stream_queued", "Events queued for live-stream clients.", registry=registry
    ).set_function(tail.queued)
    latency_source(app, "sse", tail.latency)
    app.router.add_get(PATH, stream)
    app.cleanup_ctx.append(_stop_tail)
    app.on_shutdown.append(_end_streams)
    oa.describe(app, _paths())


def _paths() -> dict[str, Any]:
    return {
        PATH: {
            "get": {
                "operationId": "streamEvents",
                "summary": "Live changes of grid events as Server-Sent Events (CloudEvents).",
                "description": (
                    "`text/event-stream`: each event has `id:` (the change's seq) and `data:` "
                    "(one CloudEvents 1.0 JSON envelope, `type` `gridwatch.event.<change>`). "
                    "Resumable: send `Last-Event-ID` (or `?last_event_id=`) to get exactly "
                    "the changes after it. A `: keepalive` comment comes every 15 s when "
                    "idle. A client that reads too slowly is disconnected and should resume."
                ),
                "tags": ["events"],
                "parameters": [
                    oa.query("grid", {"type": "string"}, "Only this grid's subtree."),
                    oa.query(
                        "severity",
                        {"type": "array", "items": {"enum": list(SEVERITIES)}},
                        "Only these severities (repeat, or comma-separated).",
                    ),
                    oa.query(
                        "last_event_id",
                        {"type": "integer", "minimum": 0},
                        "Resume after this seq (instead of the Last-Event-ID header).",
                    ),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "Resume after this seq (browsers send it on reconnect).",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "503": {"description": "The change log cannot be read right now."},
                    **oa.errors(400, 403, 404),
                },
            }
        }
    }
