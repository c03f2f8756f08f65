"""mosquitto restarted while devices publish QoS 1: no reading is lost.

Ten devices publish steadily; the broker is stopped and started again (SIGTERM: it saves
its persistence, including what it holds for gridwatch's persistent session) in the middle.
Devices keep what they could not send and send it (again) after reconnecting; gridwatch
reconnects, resubscribes, is redelivered what it had not acknowledged, and stores every
reading exactly once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import orjson
import psycopg
import pytest

from tests.integration.conftest import make_settings, running_service
from tests.integration.mqtt_device import ResilientDevice
from tests.services import running_broker

pytestmark = pytest.mark.integration

DEVICES = [f"WP-{i:02d}" for i in range(10)]
PER_DEVICE = 400


@pytest.fixture(scope="module")
def registered(database: str) -> str:
    with psycopg.connect(database) as conn:
        conn.cursor().executemany(
            "INSERT INTO devices (device_id, type) VALUES (%s, 'water_pressure_sensor')",
            [(d,) for d in DEVICES],
        )
    return database


async def test_a_broker_restart_while_devices_publish_loses_no_reading(
    registered: str, data_dir: Path
) -> None:
    with running_broker() as broker:
        settings = make_settings(broker.url, registered, data_dir, mqtt={"client_id": "gw-b"})
        devices = {d: ResilientDevice(broker.url, f"dev-{d}") for d in DEVICES}
        for device in devices.values():
            device.connect()
        halfway = threading.Event()
        t0 = time.time() - 3600

        def publish() -> None:
            for seq in range(PER_DEVICE):
                for i, (device_id, device) in enumerate(devices.items()):
                    body = {"ts": int((t0 + seq) * 1000) + i, "seq": seq,
                            "values": {"pressure_mpa": 0.3}}  # fmt: skip
                    device.publish(f"gridwatch/v1/up/{device_id}/telemetry", orjson.dumps(body))
                if seq == PER_DEVICE // 2:
                    halfway.set()
                time.sleep(0.005)  # devices report at their own pace (~2000 messages/s)

        try:
            async with running_service(settings) as gw:
                source = gw.service.source
                assert source is not None
                publishing = asyncio.create_task(asyncio.to_thread(publish))
                assert await asyncio.to_thread(halfway.wait, 30)
                await asyncio.to_thread(broker.stop)  # while devices publish
                await asyncio.to_thread(broker.start)
                await publishing
                for device in devices.values():
                    assert await asyncio.to_thread(device.wait_acked, PER_DEVICE, 60)
                    assert device.refused == 0
                assert source.reconnects >= 1

                def stored() -> int:
                    with psycopg.connect(registered) as conn:
                        row = conn.execute(
                            "SELECT count(DISTINCT (device_id, seq)) FROM readings"
                        ).fetchone()
                    return int(row[0]) if row else 0

                async with asyncio.timeout(60):
                    while True:
                        seen = len(gw.batches)  # before the count: no commit slips between
                        if await asyncio.to_thread(stored) >= len(DEVICES) * PER_DEVICE:
                            break
                        await gw.wait_for(lambda seen=seen: len(gw.batches) > seen)
        finally:
            for device in devices.values():
                device.close()
    with psycopg.connect(registered) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, seq)) FROM readings"
        ).fetchone() or (0, 0)
    assert (total, distinct) == (len(DEVICES) * PER_DEVICE,) * 2
