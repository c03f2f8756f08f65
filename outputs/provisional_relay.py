"""Provisional alerts over the broker: every worker publishes its own and relays everyone's.

A worker that detects during a database outage publishes each provisional alert
(:mod:`alerts.provisional`) at QoS 1 on ``{root}/provisional/{county}/{town}/{village}/
{grid_code}`` (``{root}/provisional/unplaced`` without a grid), the same levels as the event
feed, so integrators subscribe per area. Every worker also subscribes to
``{root}/provisional/#`` and hands what arrives to its live stream, so an operator's SSE
connection sees the provisional alerts of all workers, whichever one it is connected to.
Nothing here needs the database: the broker is what still works in an outage.

paho runs its own network thread and reconnects by itself; publishes made while it is
away wait in paho's bounded queue (``queue_max``), and beyond that are counted as dropped:
a provisional alert is a heads-up, and the grid event it announces is made from the spool
anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alerts.provisional import ProvisionalAlert, envelope, from_envelope
from ingest.mqtt_source import MqttEndpoint
from outputs.cloudevents import CONTENT_TYPE
from outputs.mqtt_feed import grid_topic

log = logging.getLogger(__name__)

Deliver = Callable[[bytes, ProvisionalAlert], None]


def provisional_topic(root: str, alert: ProvisionalAlert) -> str:
    return grid_topic(f"{root.rstrip('/')}/provisional", alert.grid_code, alert.ancestors)


class ProvisionalRelay:
    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        root: str,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        queue_max: int = 1000,
    ) -> None:
        self.endpoint = endpoint
        self.root = root.rstrip("/")
        self.subscribers: list[Deliver] = []
        self.published = 0
        self.relayed = 0
        self.dropped = 0
        self.bad = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.subscribed = asyncio.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            client.username_pw_set(username, password)
        endpoint.secure(client)
        client.max_queued_messages_set(queue_max)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, alerts: list[ProvisionalAlert]) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = CONTENT_TYPE
        for alert in alerts:
            info = self._client.publish(
                provisional_topic(self.root, alert), envelope(alert), qos=1, properties=props
            )
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self.published += 1  # sent, or queued until the connection is back
            else:
                self.dropped += 1

    # -- paho's thread ---------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("provisional relay refused by the broker: %s", reason_code)
            return
        client.subscribe(f"{self.root}/provisional/#", qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if self._loop is not None and not any(rc.is_failure for rc in reason_codes):
            self._loop.call_soon_threadsafe(self.subscribed.set)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            _, alert = from_envelope(msg.payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.bad += 1
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, bytes(msg.payload), alert)

    def _deliver(self, body: bytes, alert: ProvisionalAlert) -> None:
        self.relayed += 1
        for deliver in self.subscribers:
            deliver(body, alert)
