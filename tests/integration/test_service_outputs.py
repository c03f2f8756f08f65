"""The service's own feed worker, as `gridwatch run` starts it: a device alarm comes out on
the downstream MQTT topic of its grid as a CloudEvent."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.conftest import make_settings, running_service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registered(database: str) -> str:
    with psycopg.connect(database) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, type, site) VALUES ('SD-F', 'smoke_detector', 'b-1')"
        )
    return database


async def test_the_service_publishes_event_changes_downstream(
    mosquitto_broker, registered: str, data_dir: Path
) -> None:
    port = int(mosquitto_broker.url.rsplit(":", 1)[1])
    received: list[dict] = []
    got = threading.Event()
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe("gridwatch/v1/events/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        received.append(orjson.loads(msg.payload))
        got.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        settings = make_settings(
            mosquitto_broker.url, registered, data_dir, mqtt={"client_id": "gw-own-feed"}
        )
        async with running_service(settings) as gw:
            assert gw.service.feed is not None and gw.service.webhooks is not None
            alarm = orjson.dumps({"ts": int(time.time() * 1000), "seq": 1, "event": "alarm"})
            with BoundedPublisher(mosquitto_broker.url) as pub:
                pub.publish("gridwatch/v1/up/SD-F/event", alarm)
            assert await asyncio.to_thread(got.wait, 20), "no CloudEvent downstream"
    finally:
        client.disconnect()
        client.loop_stop()
    event = received[0]
    assert event["specversion"] == "1.0" and event["type"] == "gridwatch.event.opened"
    assert event["data"]["device_ids"] == ["SD-F"] and event["data"]["type"] == "smoke_alarm"
