"""A device as the broker sees it: one MQTT 5 client with its own credentials, that reports
what the broker answered (CONNACK, and each QoS 1 PUBACK's reason code)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt_source import MqttEndpoint

NOT_AUTHORISED = 135
NO_SUBSCRIBERS = 16


class DeviceClient:
    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        ca_file: Path | None = None,
        client_id: str = "",
    ) -> None:
        self.endpoint = MqttEndpoint.from_url(url, ca_file=ca_file)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.endpoint.secure(self.client)
        self.client.reconnect_delay_set(60, 60)  # a refused device must not retry meanwhile
        self.connack: str | None = None
        self.refused = False
        self._answered = threading.Event()
        self._lock = threading.Condition()
        self._acks: dict[int, int] = {}
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = str(reason_code)
        self.refused = reason_code.is_failure
        self._answered.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self._acks[mid] = reason_code.value
            self._lock.notify_all()

    def connect(self, timeout: float = 10.0) -> bool:
        """True when the broker accepted the connection."""
        self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        self.client.loop_start()
        if not self._answered.wait(timeout):
            raise AssertionError("no CONNACK")
        return not self.refused

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> int:
        """Publish at QoS 1 and return the PUBACK reason code (0 or 16 = accepted)."""
        info = self.client.publish(topic, payload, qos=1)
        with self._lock:
            if not self._lock.wait_for(lambda: info.mid in self._acks, timeout):
                raise AssertionError(f"no PUBACK for {topic}")
            return self._acks.pop(info.mid)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:  # left open by paho after a refused CONNACK
            sock.close()
        # Break the client ↔ callbacks cycle: dropped by reference count, paho closes its
        # wake-up socket pair at once, not whenever (and in whatever order) the GC runs.
        self.client.on_connect = None
        self.client.on_publish = None

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def accepted(code: int) -> bool:
    return code in (0, NO_SUBSCRIBERS)


class ResilientDevice:
    """A device through a broker outage: QoS 1 publishes made while disconnected wait in
    the client (as a device with flash storage keeps them) and go out, or out again, once it
    has reconnected by itself. ``acked`` counts PUBACKs."""

    def __init__(self, url: str, client_id: str) -> None:
        self.endpoint = MqttEndpoint.from_url(url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)  # unbounded: nothing is dropped by the client
        self.acked = 0
        self.refused = 0
        self._lock = threading.Condition()
        self.client.on_publish = self._on_publish

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if reason_code.is_failure and reason_code.value != NO_SUBSCRIBERS:
                self.refused += 1
            else:
                self.acked += 1
            self._lock.notify_all()

    def connect(self) -> None:
        self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=10)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        # NO_CONN: queued in the client, sent after the reconnect
        assert info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN), info.rc

    def wait_acked(self, count: int, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self.acked >= count, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client.on_publish = None
