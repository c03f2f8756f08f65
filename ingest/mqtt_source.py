"""The MQTT side of ingest: one paho client on its own network thread.

paho's callback costs ~18 µs a message against ~50 µs for aiomqtt, so the hot path stays on
paho's thread and hands messages to asyncio in batches (one wake-up per batch, not per
message). Messages are acknowledged by hand, only after the batch holding them is
committed to the database: with a persistent session, anything not yet stored when
gridwatch dies is delivered again, and the broker's in-flight window (Receive Maximum)
bounds what is held in memory, which is the back-pressure.

All socket work happens on the network thread: acknowledgements asked for from asyncio
are queued and sent by that thread between reads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.messages import RawMessage
from ingest.backoff import Backoff

log = logging.getLogger(__name__)

# CONNACK reasons that another try will not fix.
_FATAL_CONNACK = {
    "Bad user name or password",
    "Not authorized",
    "Client identifier not valid",
    "Banned",
    "Bad authentication method",
}


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    tls: bool
    ca_file: Path | None = None  # for mqtts://: the CA that signs the broker; None: system CAs

    @classmethod
    def from_url(cls, url: str, ca_file: Path | None = None) -> MqttEndpoint:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if tls else 1883)
        return cls(parts.hostname or "127.0.0.1", port, tls, ca_file)

    def secure(self, client: mqtt.Client) -> None:
        """Turn on TLS for an mqtts:// endpoint (the broker's certificate is verified)."""
        if self.tls:
            client.tls_set(ca_certs=str(self.ca_file) if self.ca_file else None)


class MqttAuthError(RuntimeError):
    """The broker refused gridwatch's credentials; retrying would only hammer it."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message plus the connection it came on: an ack only makes sense on that connection."""

    message: RawMessage
    generation: int


class MqttSource:
    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        client_id: str,
        subscription: str,
        status_topic: str,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        session_expiry_s: int = 7 * 24 * 3600,
        receive_maximum: int = 20000,
        max_pending: int = 20000,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.subscription = subscription
        self.status_topic = status_topic
        self._credentials = (username, password)
        self.keepalive_s = keepalive_s
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.max_pending = max_pending
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)

        self._pending: list[Delivery] = []
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._acks: deque[tuple[int, int, int]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.fatal: BaseException | None = None
        self.received = 0
        self.reconnects = 0
        self.on_state: Callable[[bool], None] | None = None

    # -- asyncio side ---------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-ingest", daemon=True)
        self._thread.start()

    async def next_batch(self, limit: int) -> list[Delivery]:
        """Wait for messages and take up to ``limit`` of them (all that are there, no linger)."""
        assert self._wakeup is not None
        while True:
            with self._lock:
                if self._pending:
                    batch = self._pending[:limit]
                    del self._pending[:limit]
                    if not self._pending:
                        self._wakeup.clear()
                    self._space.notify_all()
                    return batch
                self._wakeup.clear()
            if self.fatal is not None:
                raise self.fatal
            await self._wakeup.wait()

    def pending(self) -> int:
        return len(self._pending)

    def ack(self, deliveries: list[Delivery]) -> int:
        """Acknowledge stored QoS 1 messages; those from an older connection are skipped (the
        broker redelivers them and the store absorbs the repeat). Returns how many were queued."""
        current = self._generation
        queued = 0
        for d in deliveries:
            if d.message.qos > 0 and d.generation == current:
                self._acks.append((d.message.mid, d.message.qos, d.generation))
                queued += 1
        return queued

    def stop(self, timeout: float = 5.0) -> None:
        """Say ``offline`` and disconnect; the session (and what it queues) stays on the broker."""
        self._stop.set()
        with self._lock:
            self._space.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- network thread -------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        username, password = self._credentials
        if username is not None:
            client.username_pw_set(username, password)
        self.endpoint.secure(client)
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        return props

    def _run(self) -> None:
        client = self._new_client()
        first = True
        while not self._stop.is_set():
            try:
                client.connect(
                    self.endpoint.host,
                    self.endpoint.port,
                    keepalive=self.keepalive_s,
                    clean_start=False,
                    properties=self._connect_properties(),
                )
            except OSError as exc:
                self._wait_backoff(f"connect failed: {exc}")
                continue
            if not first:
                self.reconnects += 1
            first = False
            self._generation += 1
            generation = self._generation
            while not self._stop.is_set():
                rc = client.loop(timeout=0.05)
                self._send_acks(client, generation)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            was_connected = self.connected.is_set()
            self.connected.clear()
            self.subscribed.clear()
            if self.on_state and was_connected:
                self.on_state(False)
            if self.fatal is not None:
                break
            if self._stop.is_set():
                self._disconnect(client)
                break
            self._wait_backoff("connection lost")
        self._wake()

    def _disconnect(self, client: mqtt.Client) -> None:
        try:
            info = client.publish(self.status_topic, b"offline", qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline:
                self._send_acks(client, self._generation)
                if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            self._send_acks(client, self._generation)
            client.loop(timeout=0.05)
            client.disconnect()
        except (OSError, RuntimeError, ValueError):
            log.warning("unclean MQTT disconnect", exc_info=True)

    def _send_acks(self, client: mqtt.Client, generation: int) -> None:
        acks = self._acks
        while acks:
            mid, qos, gen = acks.popleft()
            if gen == generation:
                client.ack(mid, qos)

    def _wait_backoff(self, why: str) -> None:
        delay = self._backoff.next_delay()
        log.warning("MQTT %s; retrying in %.1f s", why, delay, extra={"broker": self.endpoint.host})
        self._stop.wait(delay)

    def _wake(self) -> None:
        if self._loop is not None and self._wakeup is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if str(reason_code) in _FATAL_CONNACK:
                self.fatal = MqttAuthError(f"broker refused gridwatch: {reason_code}")
                self._wake()
            log.error("MQTT connect refused: %s", reason_code)
            client.disconnect()
            return
        self._backoff.reset()
        self.connected.set()
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        client.subscribe(self.subscription, qos=1)
        log.info(
            "MQTT connected",
            extra={"session_present": flags.session_present, "client_id": self.client_id},
        )
        if self.on_state:
            self.on_state(True)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("MQTT subscription refused: %s", reason_codes)
            return
        self.subscribed.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        delivery = Delivery(
            RawMessage(msg.topic, msg.payload, msg.qos, msg.mid, time.time()), self._generation
        )
        with self._lock:
            while len(self._pending) >= self.max_pending and not self._stop.is_set():
                self._space.wait(0.5)  # back-pressure: stop reading the socket
            self._pending.append(delivery)
            first = len(self._pending) == 1
        self.received += 1
        if first:
            self._wake()
