"""A blocking MQTT publisher with a bounded in-flight window, for the simulators, the bench,
the tests and ``deadletter replay``.

paho 2.2 publishing QoS 1 faster than its in-flight window with an unbounded queue stalls
after ~66k messages; a semaphore released in ``on_publish`` keeps it moving. A PUBACK with
reason 16 (no matching subscribers) is success; 135 (not authorised) is counted as refused.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt_source import MqttEndpoint


class PublishError(RuntimeError):
    pass


class BoundedPublisher:
    def __init__(
        self,
        url: str,
        client_id: str = "",
        *,
        inflight: int = 200,
        username: str | None = None,
        password: str | None = None,
        protocol: int = mqtt.MQTTv5,
        ca_file: Path | None = None,
    ) -> None:
        self.endpoint = MqttEndpoint.from_url(url, ca_file=ca_file)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.endpoint.secure(self.client)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self._window = threading.BoundedSemaphore(inflight)
        self._idle = threading.Condition()
        self._outstanding = 0
        self.published = 0
        self.refused = 0
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connect_error = str(reason_code)
        self._connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code.is_failure and reason_code.value != 16:
            self.refused += 1
        else:
            self.published += 1
        self._window.release()
        with self._idle:
            self._outstanding -= 1
            if self._outstanding == 0:
                self._idle.notify_all()

    def connect(self, timeout: float = 10.0) -> None:
        try:
            self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=60)
        except OSError as exc:
            raise PublishError(
                f"cannot reach broker {self.endpoint.host}:{self.endpoint.port}: {exc}"
            ) from None
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise PublishError("broker did not answer CONNECT")
        if self._connect_error:
            raise PublishError(f"broker refused: {self._connect_error}")

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._window.acquire()
        with self._idle:
            self._outstanding += 1
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._on_publish(None, None, info.mid, _Failed(), None)
            raise PublishError(f"publish failed: {mqtt.error_string(info.rc)}")

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every publish has been acknowledged (QoS 1) or sent (QoS 0)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> BoundedPublisher:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Failed:
    value = -1
    is_failure = True
