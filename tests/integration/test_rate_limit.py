"""Floods and oversize input against the running service: one device at 100× its rate is
limited, counted and sampled while every other device's readings arrive; overlong topics are
turned away at the edge and oversize packets at the broker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import psycopg
import pytest

from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.conftest import make_settings, running_service
from tests.integration.mqtt_device import DeviceClient

pytestmark = pytest.mark.integration

RATE, BURST = 2.0, 20  # per device: 2 messages a second on average, 20 at once
SECONDS = 5.0
FLOOD = int(100 * RATE * SECONDS)  # 100× the rate for SECONDS of device time
OTHERS = [f"WP-{i:02d}" for i in range(20)]


@pytest.fixture(scope="module")
def registered(database: str) -> str:
    with psycopg.connect(database) as conn:
        conn.cursor().executemany(
            "INSERT INTO devices (device_id, type) VALUES (%s, 'water_pressure_sensor')",
            [(d,) for d in ["FLOOD-1", *OTHERS]],
        )
    return database


def reading(ts: float, seq: int) -> bytes:
    return orjson.dumps({"ts": int(ts * 1000), "seq": seq, "values": {"pressure_mpa": 0.3}})


async def rows(conninfo: str, query: str) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(query)
        return await cur.fetchall()


async def test_a_device_at_100_times_its_rate_is_limited_and_no_other_is_starved(
    mosquitto_broker, registered: str, data_dir: Path
) -> None:
    settings = make_settings(
        mosquitto_broker.url, registered, data_dir,
        ingest={"device_rate_per_s": RATE, "device_burst": BURST},
    )  # fmt: skip
    t0 = time.time() - 60
    messages: list[tuple[str, bytes]] = []
    for i in range(FLOOD):  # the flood, with the others interleaved at their own pace
        ts = t0 + i / (100 * RATE)
        messages.append(("gridwatch/v1/up/FLOOD-1/telemetry", reading(ts, i)))
        if i % 100 == 0:
            messages += [(f"gridwatch/v1/up/{d}/telemetry", reading(ts, i)) for d in OTHERS]
    normal = len(messages) - FLOOD

    async with running_service(settings) as gw:
        def send() -> None:
            with BoundedPublisher(mosquitto_broker.url) as pub:
                for topic, payload in messages:
                    pub.publish(topic, payload)

        pipeline = gw.service.pipeline
        assert pipeline is not None and pipeline.limiter is not None
        limiter, stats = pipeline.limiter, pipeline.stats

        def taken() -> int:  # drops other than the samples are in no batch: count them
            samples = sum(r.reason == "rate_limited" for b in gw.batches for r in b.rejections)
            return gw.handled() + limiter.dropped - samples

        await asyncio.to_thread(send)
        await gw.wait_for(
            lambda: taken() >= len(messages) and stats.rejected["rate_limited"] == limiter.dropped
        )

        stored = dict(await rows(registered, "SELECT device_id, count(*) FROM readings GROUP BY 1"))
        assert {d: stored.get(d, 0) for d in OTHERS} == {d: normal // len(OTHERS) for d in OTHERS}
        flood_kept = stored["FLOOD-1"]
        assert BURST + RATE * SECONDS - 2 <= flood_kept <= BURST + RATE * SECONDS + 1
        dropped = FLOOD - flood_kept
        assert stats.rejected["rate_limited"] == dropped

        # counted in the transaction of the batch that dropped them (the sample by the writer)
        assert await rows(registered, "SELECT device_id, reason, count FROM reject_counts") == [
            ("FLOOD-1", "rate_limited", dropped)
        ]
        letters = await rows(
            registered, "SELECT device_id, reason, detail FROM dead_letters ORDER BY id"
        )
        assert [(d, r) for d, r, _ in letters] == [("FLOOD-1", "rate_limited")]  # one sample


async def test_overlong_topics_at_the_edge_and_oversize_packets_at_the_broker(
    mosquitto_broker, registered: str, data_dir: Path
) -> None:
    settings = make_settings(mosquitto_broker.url, registered, data_dir)
    async with running_service(settings) as gw:
        before = gw.handled()
        long_topic = "gridwatch/v1/up/" + "X" * 5000 + "/telemetry"
        with BoundedPublisher(mosquitto_broker.url) as pub:
            pub.publish(long_topic, reading(time.time(), 1))
        await gw.wait_for(lambda: gw.handled() >= before + 1)
        (letter,) = await rows(
            registered,
            "SELECT topic, reason, detail FROM dead_letters WHERE reason = 'bad_topic'",
        )
        assert letter[1] == "bad_topic" and len(letter[0]) == 256 and "5026 bytes" in letter[2]

        # far beyond the broker's max_packet_size: the broker drops the sender, not gridwatch
        big = DeviceClient(mosquitto_broker.url)
        try:
            assert await asyncio.to_thread(big.connect)
            with pytest.raises(AssertionError, match="no PUBACK"):
                await asyncio.to_thread(
                    big.publish, "gridwatch/v1/up/WP-00/telemetry", b"x" * 400_000, 3.0
                )
        finally:
            big.close()
        with BoundedPublisher(mosquitto_broker.url) as pub:  # the service carries on
            pub.publish("gridwatch/v1/up/WP-00/telemetry", reading(time.time(), 10**6))
        await gw.wait_for(lambda: gw.handled() >= before + 2)
        assert gw.service.source is not None and gw.service.source.connected.is_set()
