"""The downstream MQTT feed: every change in the log, as a CloudEvent, at QoS 1.

Topics (interface.md, "Downstream"): ``{root}/events/{county}/{town}/{village}/{grid_code}``,
so a town centre subscribes to ``{root}/events/{county}/{town}/#``. The path is the event's
ancestors then its grid: an event placed on a higher node than a basic grid gets a shorter
topic that still sits under every ancestor's ``#``. An event with no grid (its device is
not placed), or one whose codes cannot be topic levels (empty, or holding ``/``, ``+``,
``#``), goes to the fallback topic ``{root}/events/unplaced``.

Delivery is at least once, from a durable cursor (``feed_cursor`` row ``mqtt_feed``): the
cursor moves past a change only after the broker's PUBACK (success, or reason 16 "no
matching subscribers"). A broker outage therefore delays the feed and loses nothing: on
reconnect it publishes again from the cursor, which may repeat what was sent but not yet
acknowledged (consumers de-duplicate on the CloudEvent ``id``). A refused publish (e.g.
PUBACK 135, not authorised) is not skipped either: the feed stops there, says so in the
log and in health, and tries again with backoff.

Several workers may run the feed; the one holding the PostgreSQL advisory lock
:data:`FEED_LOCK` (a session lock on its database connection) publishes, the others wait
in standby and take over when that connection goes away.

paho runs on its own network thread (``loop_start``); PUBACKs come back to asyncio as
futures. Each connection is a fresh clean-start client: nothing is left in paho's queues
across a reconnect, the cursor is the only memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.backoff import Backoff
from ingest.mqtt_source import _FATAL_CONNACK, MqttAuthError, MqttEndpoint
from outputs import LatencyHistogram, supervise
from outputs.cloudevents import CONTENT_TYPE, UNPLACED, envelope
from outputs.log_reader import ChangeListener, LogReader, LogRow

log = logging.getLogger(__name__)

FEED_LOCK = 0x67776F7574_01
"""Advisory lock (bigint) held by the worker that publishes the feed."""
CURSOR = "mqtt_feed"
NO_MATCHING_SUBSCRIBERS = 16
_BAD_LEVEL = ("/", "+", "#", "\x00")


def event_topic(root: str, row: LogRow) -> str:
    """Where a change is published (see the module doc)."""
    return grid_topic(f"{root.rstrip('/')}/events", row.grid_code, row.ancestors)


def grid_topic(base: str, grid_code: str | None, ancestors: tuple[str, ...] | list[str]) -> str:
    """``base/<ancestors…>/<grid_code>``, or ``base/unplaced`` when there is no grid or a
    code cannot be a topic level."""
    if not grid_code:
        return f"{base}/{UNPLACED}"
    path = (*ancestors, grid_code)
    if any(not level or any(c in level for c in _BAD_LEVEL) for level in path):
        return f"{base}/{UNPLACED}"
    return f"{base}/" + "/".join(path)


class LinkLost(ConnectionError):
    """The broker connection went away (or was never there); unacknowledged publishes fail."""


class PublishRefused(RuntimeError):
    """The broker answered a publish with a failure reason code."""


class MqttLink:
    """One MQTT 5 connection for publishing; each QoS 1 publish returns a future that
    resolves on its PUBACK. Not reused after a loss: make a new one."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        inflight: int = 100,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.keepalive_s = keepalive_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        endpoint.secure(self._client)
        self._client.max_inflight_messages_set(inflight)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(3600, 3600)  # never reconnect by itself
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_socket_open = self._on_socket_open
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._connected: asyncio.Future[None] | None = None
        self.lost = asyncio.Event()
        self.lost_reason = ""

    # -- asyncio side ----------------------------------------------------------------------

    async def connect(self, within: float = 10.0) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._connected = loop.create_future()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        try:
            await asyncio.to_thread(
                self._client.connect,
                self.endpoint.host,
                self.endpoint.port,
                keepalive=self.keepalive_s,
                clean_start=True,
                properties=props,
            )
        except OSError as exc:
            raise LinkLost(
                f"cannot reach {self.endpoint.host}:{self.endpoint.port}: {exc}"
            ) from exc
        self._client.loop_start()
        try:
            async with asyncio.timeout(within):
                await self._connected
        except TimeoutError:
            await self.close()
            raise LinkLost("broker did not answer CONNECT") from None
        except BaseException:
            await self.close()
            raise

    def publish(
        self, topic: str, payload: bytes, properties: Properties | None = None
    ) -> asyncio.Future[None]:
        """Send at QoS 1; the future resolves on a successful PUBACK."""
        assert self._loop is not None
        if self.lost.is_set():
            raise LinkLost(self.lost_reason or "not connected")
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise LinkLost(f"publish failed: {mqtt.error_string(info.rc)}")
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending[info.mid] = future
        return future

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self._fail_all(LinkLost("closed"))

    # -- callbacks: network thread → event loop --------------------------------------------

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client, userdata, sock) -> None:
        # Nagle would hold a PUBLISH that closely follows another for the peer's delayed ACK.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._call(self._connect_result, reason_code.is_failure, str(reason_code))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._call(self._disconnected, str(reason_code))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._call(self._acked, mid, reason_code.is_failure, reason_code.value, str(reason_code))

    # -- event loop ------------------------------------------------------------------------

    def _connect_result(self, failed: bool, reason: str) -> None:
        if self._connected is None or self._connected.done():
            return
        if not failed:
            self._connected.set_result(None)
        elif reason in _FATAL_CONNACK:
            self._connected.set_exception(MqttAuthError(f"broker refused the feed: {reason}"))
        else:
            self._connected.set_exception(LinkLost(f"broker refused the feed: {reason}"))

    def _disconnected(self, reason: str) -> None:
        self.lost_reason = f"connection lost: {reason}"
        self.lost.set()
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(LinkLost(self.lost_reason))
        self._fail_all(LinkLost(self.lost_reason))

    def _acked(self, mid: int, failed: bool, value: int, reason: str) -> None:
        future = self._pending.pop(mid, None)
        if future is None or future.done():
            return
        if failed and value != NO_MATCHING_SUBSCRIBERS:
            future.set_exception(PublishRefused(f"broker refused a publish: {reason} ({value})"))
        else:
            future.set_result(None)

    def _fail_all(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)


@dataclass(slots=True)
class FeedStats:
    state: str = "starting"  # starting | standby | leading | failing
    cursor: int = 0
    published: int = 0
    failures: int = 0
    last_error: str = ""
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def snapshot(self) -> dict[str, object]:
        return {
            "state": self.state,
            "cursor": self.cursor,
            "published": self.published,
            "failures": self.failures,
            "last_error": self.last_error,
            "latency_s": self.latency.snapshot(),
        }


class MqttFeed:
    """The feed worker: ``await feed.run()`` until cancelled (see the module doc)."""

    def __init__(
        self,
        conninfo: str,
        mqtt_url: str,
        *,
        client_id: str,
        topic_root: str = "gridwatch/v1",
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        inflight: int = 100,
        batch: int = 500,
        poll_s: float = 5.0,
        standby_poll_s: float = 2.0,
        ack_timeout_s: float = 30.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        strict_xmin: bool = True,
        tls_ca_file: Path | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.endpoint = MqttEndpoint.from_url(mqtt_url, ca_file=tls_ca_file)
        self.client_id = client_id
        self.topic_root = topic_root
        self._credentials = (username, password)
        self.keepalive_s = keepalive_s
        self.inflight = inflight
        self.batch = batch
        self.poll_s = poll_s
        self.standby_poll_s = standby_poll_s
        self.ack_timeout_s = ack_timeout_s
        self.strict_xmin = strict_xmin
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._props = Properties(PacketTypes.PUBLISH)
        self._props.ContentType = CONTENT_TYPE
        self.stats = FeedStats()

    @property
    def healthy(self) -> bool:
        """Publishing, or standing by behind another worker that holds the lock."""
        return self.stats.state in ("leading", "standby")

    async def run(self) -> None:
        listener = ChangeListener(self.conninfo)
        listening = asyncio.create_task(listener.run(), name="mqtt-feed-listen")
        try:
            await supervise("mqtt-feed", lambda: self._serve(listener), on_crash=self._failed)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            self.stats.state = "starting"

    def _failed(self, exc: BaseException) -> None:
        self.stats.state = "failing"
        self.stats.failures += 1
        self.stats.last_error = str(exc)

    async def _serve(self, listener: ChangeListener) -> None:
        while True:
            try:
                await self._lead(listener)
            # MqttAuthError is not retried here: the supervisor logs it and gives up after
            # its budget, so that refused credentials stop the service loudly.
            except (psycopg.Error, OSError, LinkLost, PublishRefused, TimeoutError) as exc:
                self._failed(exc)
                delay = self._backoff.next_delay()
                log.warning(
                    "MQTT feed interrupted: %s; retrying in %.1f s",
                    exc, delay, extra={"cursor": self.stats.cursor},
                )  # fmt: skip
                await asyncio.sleep(delay)

    async def _lead(self, listener: ChangeListener) -> None:
        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        async with conn:
            while not await _try_lock(conn, FEED_LOCK):
                self.stats.state = "standby"
                await asyncio.sleep(self.standby_poll_s)
            cursor = await load_cursor(conn, CURSOR)
            self.stats.cursor = cursor
            username, password = self._credentials
            link = MqttLink(
                self.endpoint,
                client_id=self.client_id,
                username=username,
                password=password,
                keepalive_s=self.keepalive_s,
                inflight=self.inflight,
            )
            await link.connect()
            try:
                self.stats.state = "leading"
                self._backoff.reset()
                log.info(
                    "MQTT feed publishing", extra={"cursor": cursor, "client_id": self.client_id}
                )
                reader = LogReader(batch=self.batch, strict_xmin=self.strict_xmin)
                while True:
                    rows = await reader.next_batch(conn, listener, cursor, within=self.poll_s)
                    if link.lost.is_set():
                        raise LinkLost(link.lost_reason)
                    if rows:
                        cursor = await self._publish(conn, link, rows, cursor)
            finally:
                await link.close()

    async def _publish(
        self, conn: psycopg.AsyncConnection, link: MqttLink, rows: list[LogRow], cursor: int
    ) -> int:
        """Publish in order with at most ``inflight`` unacknowledged; the cursor moves to the
        last change of the unbroken acknowledged prefix, also when something fails."""
        window = asyncio.Semaphore(self.inflight)
        sent: list[tuple[LogRow, asyncio.Future[None]]] = []
        latency = self.stats.latency

        def done(row: LogRow, future: asyncio.Future[None]) -> None:
            window.release()
            if not future.cancelled() and future.exception() is None:
                latency.observe(time.time() - row.at.timestamp())

        acked = cursor
        try:
            for row in rows:
                await window.acquire()
                try:
                    future = link.publish(
                        event_topic(self.topic_root, row), envelope(row), self._props
                    )
                except BaseException:
                    window.release()
                    raise
                future.add_done_callback(lambda f, row=row: done(row, f))
                sent.append((row, future))
            async with asyncio.timeout(self.ack_timeout_s):
                for row, future in sent:
                    await future
                    acked = row.seq
        finally:
            for _, future in sent:
                if future.done():
                    if not future.cancelled():
                        future.exception()  # retrieved: failures are reported once, above
                else:
                    future.cancel()
            if acked > cursor:
                await save_cursor(conn, CURSOR, acked)
                self.stats.published += sum(1 for row, _ in sent if row.seq <= acked)
                self.stats.cursor = acked
        return acked


async def _try_lock(conn: psycopg.AsyncConnection, key: int) -> bool:
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def load_cursor(conn: psycopg.AsyncConnection, name: str) -> int:
    """The consumer's position; a consumer seen for the first time starts at the log's head."""
    await conn.execute(
        "INSERT INTO feed_cursor (name, seq)"
        " VALUES (%s, (SELECT coalesce(max(seq), 0) FROM event_log)) ON CONFLICT DO NOTHING",
        (name,),
    )
    cur = await conn.execute("SELECT seq FROM feed_cursor WHERE name = %s", (name,))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def save_cursor(conn: psycopg.AsyncConnection, name: str, seq: int) -> None:
    await conn.execute(
        "UPDATE feed_cursor SET seq = %s, updated_at = now() WHERE name = %s AND seq < %s",
        (seq, name, seq),
    )
