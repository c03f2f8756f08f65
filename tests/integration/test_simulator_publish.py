"""A fleet run against a real mosquitto: a subscriber receives exactly what the model made."""

from __future__ import annotations

import threading
import uuid

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.messages import Kind
from gridwatch.embedded import MosquittoBroker
from gridwatch.mqtt_publish import BoundedPublisher
from ingest.mqtt_source import MqttEndpoint
from simulators.county import CountySpec, generate_county
from simulators.fleet import FleetConfig, FleetModel
from simulators.fleet_runner import RunLimits, StopReason, run_fleet
from simulators.scenario import parse_scenario
from simulators.signals import simulated_types

pytestmark = pytest.mark.integration

MESSAGES = 120
SCENARIO = """\
[[steps]]
at = 2
device = "SD-440999001001-01-0001"
event = "alarm"

[[steps]]
at = 3
device = "SD-440999001001-01-0002"
raw = "garbage"
"""


class Subscriber:
    """Collects every message under a topic filter, in arrival order."""

    def __init__(self, url: str, topic_filter: str) -> None:
        endpoint = MqttEndpoint.from_url(url)
        self.received: list[tuple[str, bytes]] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(endpoint.host, endpoint.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.received.append((message.topic, bytes(message.payload)))
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 20.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.received) >= count, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_fleet_publishes_exactly_its_messages(mosquitto_broker: MosquittoBroker) -> None:
    root = f"simtest-{uuid.uuid4().hex[:8]}/v1"
    devices = generate_county(
        CountySpec(towns=1, villages_per_town=1, grids_per_village=2, cameras=1)
    ).devices
    config = FleetConfig(start_ts=1_795_420_800.0, speed=600.0, topic_root=root, first_seq=1)

    def build() -> FleetModel:
        fleet = FleetModel(devices, config)
        parse_scenario(SCENARIO, source="inline").install(fleet)
        return fleet

    twin = build()
    expected = []
    for out in twin.messages_until(float("inf")):
        expected.append((out.topic, out.payload))
        if len(expected) == MESSAGES:
            break
    fleet = build()
    subscriber = Subscriber(mosquitto_broker.url, f"{root}/up/#")
    try:
        with BoundedPublisher(mosquitto_broker.url) as publisher:
            report = run_fleet(fleet, publisher, limits=RunLimits(messages=MESSAGES, rate=2000))
        assert report.stopped is StopReason.MESSAGES
        total = MESSAGES + len(fleet.sims)
        assert report.offline_sent == len(fleet.sims)
        assert subscriber.wait_for(total), f"got {len(subscriber.received)} of {total}"
        received = list(subscriber.received)
    finally:
        subscriber.close()
    assert len(received) == total  # nothing more arrived
    assert received[:MESSAGES] == expected  # same bytes, same order (one client, QoS 1)
    assert (f"{root}/up/SD-440999001001-01-0002/telemetry", b"garbage") in expected
    offline = received[MESSAGES:]
    assert sorted(topic for topic, _ in offline) == sorted(
        twin.topics.build(device_id, Kind.STATUS) for device_id in fleet.sims
    )
    assert {orjson.loads(payload)["status"] for _, payload in offline} == {"offline"}
    assert fleet.skipped["camera"] == 1  # pulled over RTSP, not publishing
    assert not set(fleet.skipped) & set(simulated_types())
