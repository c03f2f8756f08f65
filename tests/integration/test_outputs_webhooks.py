"""Webhooks against a real receiver that fails: retries with the same webhook-id until it
acknowledges, across a gridwatch restart, in order, nothing again once acknowledged; a
subscription failing for too long (or answering 410) is disabled with a notice; two
workers share deliveries without sending anything twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from outputs.webhooks import WebhookDispatcher
from tests.integration.test_outputs import (
    G1,
    G2,
    T1,
    Receiver,
    Request,
    World,
    log_rows,
    raise_alarms,
    running_outputs,
    settings_for,
    worker_options,
)
from tests.integration.test_outputs import world as world  # the fixture, by name

pytestmark = pytest.mark.integration

DISABLED = "gridwatch.subscription.disabled"


async def expected_ids(conninfo: str, start_seq: int, grid: str) -> list[str]:
    """The CloudEvent ids a subscription to ``grid``'s subtree is owed, in log order."""
    rows = await log_rows(
        conninfo,
        "seq > %s AND (grid_code = %s OR %s = ANY(ancestors))",
        (start_seq, grid, grid),
    )
    return [f"{event_id}:{seq}" for seq, event_id, _, _ in rows]


def by_id(requests: list[Request]) -> dict[str, list[Request]]:
    grouped: dict[str, list[Request]] = {}
    for r in requests:
        grouped.setdefault(r.message_id, []).append(r)
    return grouped


async def test_a_receiver_that_was_down_gets_everything_once_in_order_across_a_restart(
    mosquitto_broker: Any, world: World, data_dir: Path
) -> None:
    url = mosquitto_broker.url
    settings = settings_for(url, world, data_dir, "gw-hooks-down")
    async with Receiver() as receiver:
        receiver.answer = lambda _r: 503  # down
        async with running_outputs(settings) as out:
            sub = await out.subscribe(receiver, world.tokens["town1"])
            first = await raise_alarms(out.gw, url, world.device(G1), world.device(G2))
            first_id = f"{first[0][1]}:{first[0][0]}"
            await receiver.requests.wait_for(
                lambda r: sum(x.message_id == first_id for x in r) >= 3
            )
        # gridwatch stopped; after its restart the receiver fails twice more, then recovers
        failures = iter([500, 500])
        receiver.answer = lambda _r: next(failures, 200)
        async with running_outputs(settings) as out:
            later = await raise_alarms(out.gw, url, world.device(G1), world.device(G1))
            owed = await expected_ids(world.conninfo, sub["start_seq"], T1)
            assert len(owed) >= 3 and first_id == owed[0]
            await receiver.requests.wait_for(lambda _r: set(owed) <= set(receiver.acknowledged()))
            # one more change after everything: nothing acknowledged comes again before it
            sentinel = await raise_alarms(out.gw, url, world.device(G1))
            owed += [f"{e}:{s}" for s, e, _, _ in sentinel]
            await receiver.requests.wait_for(lambda _r: owed[-1] in receiver.acknowledged())
    assert later

    assert receiver.acknowledged() == owed  # each once, in log order
    for message_id, attempts in by_id(receiver.requests.items).items():
        assert all(a.verified for a in attempts), message_id
        assert len({a.body for a in attempts}) == 1, message_id  # a retry is the same message
        acked = [i for i, a in enumerate(attempts) if 200 <= a.status < 300]
        assert acked == [len(attempts) - 1], message_id  # nothing after the acknowledgement
    assert len(by_id(receiver.requests.items)[first_id]) >= 4  # retried before and after

    # Every request the receiver saw is in the delivery log (an attempt cut short by the
    # shutdown is logged as such, whether or not it reached the receiver) and nothing is
    # left queued. Not checked for the last message: its 2xx may have reached the receiver
    # while gridwatch was stopping, before the worker could record it (then it stays
    # queued and goes again: at least once). Deliveries go one after another per
    # subscription, so everything before it was recorded before it was sent.
    last_seq = int(owed[-1].rsplit(":", 1)[1])
    async with await psycopg.AsyncConnection.connect(world.conninfo) as conn:
        cur = await conn.execute(
            "SELECT message_id, count(*), count(*) FILTER (WHERE delivered)"
            " FROM webhook_attempts WHERE subscription_id = %s AND seq < %s GROUP BY 1",
            (sub["id"], last_seq),
        )
        logged = {m: (n, d) for m, n, d in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT count(*) FROM webhook_outbox WHERE subscription_id = %s AND seq < %s",
            (sub["id"], last_seq),
        )
        assert (await cur.fetchone()) == (0,)
    for message_id, attempts in by_id(receiver.requests.items).items():
        if message_id != owed[-1]:
            assert logged[message_id][0] >= len(attempts) and logged[message_id][1] == 1


async def test_a_subscription_failing_for_too_long_or_gone_is_disabled_with_a_notice(
    mosquitto_broker: Any, world: World, data_dir: Path
) -> None:
    url = mosquitto_broker.url
    settings = settings_for(url, world, data_dir, "gw-hooks-disable")
    hooks = worker_options(disable_after_s=0.5)
    async with (
        Receiver() as failing,
        Receiver() as gone,
        Receiver() as witness,
        running_outputs(settings, hooks=hooks) as out,
    ):
        failing.answer = lambda _r: 500
        gone.answer = lambda _r: 410
        town1 = world.tokens["town1"]
        sub = await out.subscribe(failing, town1)
        sub_gone = await out.subscribe(gone, town1)
        await out.subscribe(witness, town1)
        await raise_alarms(out.gw, url, world.device(G1))
        for receiver in (failing, gone):
            await receiver.requests.wait_for(
                lambda r: any(x.event["type"] == DISABLED for x in r), within=30
            )
        status, failed = await out.call("GET", f"/api/v1/subscriptions/{sub['id']}", town1)
        assert status == 200 and failed["enabled"] is False
        assert "failing continuously" in failed["disabled_reason"] and failed["pending"] >= 1
        status, gone_now = await out.call("GET", f"/api/v1/subscriptions/{sub_gone['id']}", town1)
        assert gone_now["enabled"] is False and "410" in gone_now["disabled_reason"]
        assert [r.event["type"] for r in gone.requests.items].count(DISABLED) == 1

        # nothing more is queued for a disabled subscription (the witness proves fan-out ran)
        pending = failed["pending"]
        rows = await raise_alarms(out.gw, url, world.device(G1))
        await witness.requests.wait_for(
            lambda r: f"{rows[-1][1]}:{rows[-1][0]}" in [x.message_id for x in r]
        )
        _, still = await out.call("GET", f"/api/v1/subscriptions/{sub['id']}", town1)
        assert still["pending"] == pending
        notice = next(r for r in failing.requests.items if r.event["type"] == DISABLED)
        assert notice.verified and notice.event["data"]["subscription_id"] == sub["id"]
        status, log = await out.call(
            "GET", f"/api/v1/subscriptions/{sub['id']}/deliveries", town1, limit="500"
        )
        assert status == 200
        # each failed attempt was logged before the next step (the notice's own row follows
        # its request, so it may still be on its way)
        attempts = [d for d in log["items"] if d["message_id"] != notice.message_id]
        tried = [r for r in failing.requests.items if r.event["type"] != DISABLED]
        assert len(attempts) == len(tried) >= 1
        assert all(d["status"] == 500 and not d["delivered"] for d in attempts)


async def test_two_workers_share_deliveries_and_send_nothing_twice(
    mosquitto_broker: Any, world: World, data_dir: Path
) -> None:
    url = mosquitto_broker.url
    settings = settings_for(url, world, data_dir, "gw-hooks-two")
    async with (
        Receiver() as r1,
        Receiver() as r2,
        Receiver() as r3,
        running_outputs(settings) as out,
    ):
        second = WebhookDispatcher(world.conninfo, worker_id="gw-hooks-two-b", **worker_options())
        task = asyncio.create_task(second.run())
        try:
            subs = [await out.subscribe(r, world.tokens["town1"]) for r in (r1, r2, r3)]
            await raise_alarms(out.gw, url, *[world.device(G1) for _ in range(6)])
            owed = await expected_ids(world.conninfo, subs[0]["start_seq"], T1)
            assert len(owed) >= 6
            for receiver in (r1, r2, r3):
                await receiver.requests.wait_for(
                    lambda _r, rc=receiver: set(owed) <= set(rc.acknowledged())
                )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    for receiver in (r1, r2, r3):
        assert receiver.acknowledged() == owed
        assert Counter(r.message_id for r in receiver.requests.items) == Counter(owed)
    async with await psycopg.AsyncConnection.connect(world.conninfo) as conn:
        cur = await conn.execute(
            "SELECT DISTINCT worker FROM webhook_attempts WHERE subscription_id = ANY(%s)",
            ([s["id"] for s in subs],),
        )
        workers = {w for (w,) in await cur.fetchall()}
    assert workers <= {"gw-hooks-two", "gw-hooks-two-b"} and workers
