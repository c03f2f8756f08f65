"""gridwatch's MQTT side against a broker that goes away and comes back."""

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
from tests.services import running_broker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registered(database: str) -> str:
    with psycopg.connect(database) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, type) VALUES ('WP-1', 'water_pressure_sensor')"
        )
    return database


def retained(url_port: int, topic: str) -> bytes:
    """The retained message on `topic`, as a new subscriber gets it."""
    got: list[bytes] = []
    arrived = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        arrived.set()

    client.on_message = on_message
    client.connect("127.0.0.1", url_port)
    client.loop_start()
    try:
        assert arrived.wait(10), f"nothing retained on {topic}"
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]


def reading(seq: int) -> bytes:
    return orjson.dumps(
        {"ts": int(time.time() * 1000), "seq": seq, "values": {"pressure_mpa": 0.3}}
    )


async def count(conninfo: str) -> int:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute("SELECT count(*) FROM readings WHERE device_id = 'WP-1'")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def test_broker_restart_reconnects_resubscribes_and_status_is_retained(
    registered: str, data_dir: Path
) -> None:
    with running_broker() as broker:
        port = int(broker.url.rsplit(":", 1)[1])
        settings = make_settings(
            broker.url, registered, data_dir, mqtt={"client_id": "gw-resilient"}
        )
        status_topic = "gridwatch/v1/service/gw-resilient/status"
        async with running_service(settings) as gw:
            source = gw.service.source
            assert source is not None
            assert await asyncio.to_thread(retained, port, status_topic) == b"online"
            with BoundedPublisher(broker.url) as pub:
                pub.publish("gridwatch/v1/up/WP-1/telemetry", reading(1))
            await gw.wait_for(lambda: gw.handled() >= 1)

            lost = threading.Event()
            source.on_state = lambda up: None if up else lost.set()
            await asyncio.to_thread(broker.stop)
            assert await asyncio.to_thread(lost.wait, 30), "the loss went unnoticed"
            await asyncio.to_thread(broker.start)
            assert await asyncio.to_thread(source.subscribed.wait, 30), "no resubscribe"
            assert source.reconnects >= 1
            with BoundedPublisher(broker.url) as pub:
                pub.publish("gridwatch/v1/up/WP-1/telemetry", reading(2))
            await gw.wait_for(lambda: gw.handled() >= 2)
        assert await count(registered) == 2
        # stopped cleanly: its retained status says so
        assert await asyncio.to_thread(retained, port, status_topic) == b"offline"
