"""The MQTT feed against a broker that goes away: the feed waits, loses nothing, and
publishes everything once the broker is back; with two workers one publishes and the other
takes over when it goes.

Devices talk to the session's broker; the feed publishes to a private one that the test
stops and starts (with one broker, an outage would also stop the alarms that make the
changes). The subscriber keeps a persistent session on the private broker, so what the
feed publishes while the subscriber is still reconnecting waits for it there.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from outputs.mqtt_feed import MqttFeed
from tests.integration.test_outputs import (
    G1,
    G2,
    MqttWatcher,
    World,
    head,
    log_rows,
    raise_alarms,
    running_outputs,
    settings_for,
)
from tests.integration.test_outputs import world as world  # the fixture, by name
from tests.services import running_broker

pytestmark = pytest.mark.integration


async def feed_cursor(conninfo: str) -> int:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute("SELECT seq FROM feed_cursor WHERE name = 'mqtt_feed'")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def test_a_broker_outage_delays_the_feed_and_loses_nothing(
    mosquitto_broker: Any, world: World, data_dir: Path
) -> None:
    url = mosquitto_broker.url
    settings = settings_for(url, world, data_dir, "gw-feed-outage")
    start = await head(world.conninfo)
    with running_broker() as downstream:
        async with (
            running_outputs(settings, feed_url=downstream.url) as out,
            MqttWatcher(downstream.url, "gridwatch/v1/events/#", persistent=True) as watcher,
        ):
            before = await raise_alarms(out.gw, url, world.device(G1))
            await watcher.messages.at_least(len(before))

            lost = threading.Event()
            watcher.client.on_disconnect = lambda *_: lost.set()
            await asyncio.to_thread(downstream.stop)
            assert await asyncio.to_thread(lost.wait, 10)
            during = await raise_alarms(
                out.gw, url, world.device(G1), world.device(G2), world.device("")
            )
            # delayed: the cursor stays at what the broker acknowledged
            assert await feed_cursor(world.conninfo) < during[0][0]
            assert out.feed.stats.state != "leading" or out.feed.stats.cursor < during[0][0]

            await asyncio.to_thread(downstream.start)
            await watcher.messages.wait_for(
                lambda m: {f"{e}:{s}" for s, e, *_ in during} <= {ce["id"] for _, ce in m},
                within=30,
            )
            everything = await log_rows(world.conninfo, "seq > %s", (start,))
            await watcher.messages.wait_for(
                lambda m: len({ce["id"] for _, ce in m}) >= len(everything)
            )
            assert await feed_cursor(world.conninfo) >= everything[-1][0]

    got = {ce["id"]: topic for topic, ce in watcher.messages.items}
    assert set(got) == {f"{e}:{s}" for s, e, *_ in everything}  # at least once, nothing lost
    for seq, event_id, _, grid in everything:
        topic = got[f"{event_id}:{seq}"]
        assert topic.endswith(f"/{grid}") if grid else topic == "gridwatch/v1/events/unplaced"
    # in order per event: a change never overtakes an earlier one of the same event
    seqs = [ce["seq"] for _, ce in watcher.messages.items]
    first_time = [s for i, s in enumerate(seqs) if s not in seqs[:i]]
    assert first_time == sorted(first_time)


async def test_one_of_two_feed_workers_publishes_and_the_other_takes_over(
    mosquitto_broker: Any, world: World, data_dir: Path
) -> None:
    url = mosquitto_broker.url
    settings = settings_for(url, world, data_dir, "gw-feed-two")
    async with (
        running_outputs(settings) as out,
        MqttWatcher(url, "gridwatch/v1/events/#") as watcher,
    ):
        second = MqttFeed(
            world.conninfo, url, client_id="gw-feed-two-b", standby_poll_s=0.05,
            reconnect_min_s=0.05, reconnect_max_s=0.2,
        )  # fmt: skip
        task = asyncio.create_task(second.run())
        try:
            rows = await raise_alarms(out.gw, url, world.device(G1), world.device(G1))
            await watcher.messages.at_least(len(rows))
            states = sorted([out.feed.stats.state, second.stats.state])
            assert states == ["leading", "standby"]
            leader = out.feed if out.feed.stats.state == "leading" else second

            # stop whichever leads; the other takes the lock and goes on from the cursor
            if leader is second:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                survivor = out.feed
            else:
                survivor = second
                await out.stop_feed()
            more = await raise_alarms(out.gw, url, world.device(G1), world.device(G2))
            await watcher.messages.at_least(len(rows) + len(more))
            assert survivor.stats.state == "leading"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    ids = watcher.ids()
    assert ids == [f"{e}:{s}" for s, e, *_ in rows + more]  # each once, in order
