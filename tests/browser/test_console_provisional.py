"""While the database is away the console still shows alarms: a provisional alert (as any
worker relays it over the broker) appears above the list at once, and goes when the grid
event for its device arrives."""

from __future__ import annotations

import asyncio
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.async_api import expect

from alerts.correlation import DeviceContext
from alerts.provisional import envelope, provisional_alerts
from detectors.runtime import DetectionRuntime
from devices.messages import DeviceEvent
from devices.profiles import get_profile
from ingest.mqtt_source import MqttEndpoint
from outputs.provisional_relay import provisional_topic
from tests.browser.conftest import Console, PageMaker, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


def alarm_alert(device_id: str, grid: str, now: float) -> tuple[str, bytes]:
    """What a worker publishes for a smoke alarm found on spooled messages."""
    profile = get_profile("smoke_detector")
    runtime = DetectionRuntime()
    runtime.adopt({device_id: profile}, {}, now)
    done = runtime.run(
        [DeviceEvent(device_id, now, 1, "alarm", {}, now)], {device_id: profile}, now
    )
    place = DeviceContext(device_id=device_id, grid_code=grid)
    [alert] = provisional_alerts(done.hits, {device_id: place}, now, "gw-other")
    return provisional_topic("gridwatch/v1", alert), envelope(alert)


def publish_once(broker_url: str, topic: str, body: bytes) -> None:
    endpoint = MqttEndpoint.from_url(broker_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        client.publish(topic, body, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_provisional_alert_shows_until_its_grid_event_arrives(
    console: Console, signed_in: PageMaker
) -> None:
    page = await signed_in("admin")
    grid, device = console.free_smoke_detector()
    panel = page.locator("#provisional")
    await expect(panel).to_be_hidden()

    topic, body = alarm_alert(device, grid, time.time())
    await asyncio.to_thread(publish_once, console.broker_url, topic, body)

    item = panel.locator(f'li.provisional-item[data-device="{device}"]')
    await expect(panel).to_be_visible()
    await expect(item).to_have_count(1)
    await expect(item).to_have_attribute("data-severity", "red")
    await expect(panel).to_contain_text("未入库告警")
    await screenshot(page, "provisional")

    await console.raise_alarm(device)  # the database has it: the grid event comes

    await expect(page.locator(f'.event-card[data-grid="{grid}"]')).to_have_count(1)
    await expect(item).to_have_count(0)
    await expect(panel).to_be_hidden()
