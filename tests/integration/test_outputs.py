"""Downstream outputs end to end, with real mosquitto, PostgreSQL, gridwatch in-process and a
real local webhook receiver: a device alarm reaches an SSE client, an MQTT subscriber of its
town's ``#`` and a signed webhook; an SSE client resumes with exactly what it missed; the
subscriptions API and ``/metrics``.

The feed and webhook workers are started here next to the service (``running_outputs``)
until ``gridwatch/service.py`` starts them itself. The helpers are shared by the other
``test_outputs_*`` modules.

The tree: county C → towns T1, T2 → villages V1 (T1), V2 (T2) → basic grids G1 (V1),
G2 (V2); smoke detectors at distinct sites in G1 and G2, one placed nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg.types.json import Jsonb
from standardwebhooks import Webhook, WebhookVerificationError

from gridwatch.config import Settings
from gridwatch.mqtt_publish import BoundedPublisher
from ingest.mqtt_source import MqttEndpoint
from outputs.mqtt_feed import MqttFeed
from outputs.webhooks import WebhookDispatcher
from storage import tokens
from tests.integration.conftest import Running, make_settings, running_service

pytestmark = pytest.mark.integration

C, T1, T2 = "440981", "440981001", "440981002"
V1, V2 = "440981001005", "440981002001"
G1, G2 = "440981001005-03", "440981002001-01"
GRIDS = {  # code: (level, parent, ancestors)
    C: ("county", None, []),
    T1: ("town", C, [C]),
    T2: ("town", C, [C]),
    V1: ("village", T1, [C, T1]),
    V2: ("village", T2, [C, T2]),
    G1: ("grid", V1, [C, T1, V1]),
    G2: ("grid", V2, [C, T2, V2]),
}
DEVICES_PER_GRID = 60
TOKENS = {  # name: (role, scope)
    "admin": ("admin", "*"),
    "town1": ("town_centre", T1),
    "town2": ("town_centre", T2),
    "viewer1": ("viewer", T1),
}


# --- the world ---------------------------------------------------------------------------------


@dataclass
class World:
    conninfo: str
    tokens: dict[str, str]
    devices: dict[str, Iterator[str]]  # grid (or "" for unplaced) → unused device ids

    def device(self, grid: str) -> str:
        """A device that has raised nothing yet: its alarm opens a new event."""
        return next(self.devices[grid])


def make_world(conninfo: str) -> World:
    with psycopg.connect(conninfo) as conn:
        for code, (level, parent, ancestors) in GRIDS.items():
            conn.execute(
                "INSERT INTO grids (code, name, level, parent, ancestors, members)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (code, f"网格 {code}", level, parent, ancestors, Jsonb([])),
            )
        rows = [
            (f"sd-{g}-{i}", "smoke_detector", g, f"site-{g}-{i}")
            for g in (G1, G2)
            for i in range(DEVICES_PER_GRID)
        ]
        rows += [(f"sd-nowhere-{i}", "smoke_detector", None, f"site-x-{i}") for i in range(5)]
        conn.cursor().executemany(
            "INSERT INTO devices (device_id, type, grid_code, site) VALUES (%s, %s, %s, %s)", rows
        )

    async def issue() -> dict[str, str]:
        made = {}
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            for name, (role, scope) in TOKENS.items():
                issued = await tokens.create_token(conn, name=name, role=role, scope=scope)
                made[name] = issued.text
            await conn.commit()
        return made

    devices = {
        G1: iter(f"sd-{G1}-{i}" for i in range(DEVICES_PER_GRID)),
        G2: iter(f"sd-{G2}-{i}" for i in range(DEVICES_PER_GRID)),
        "": iter(f"sd-nowhere-{i}" for i in range(5)),
    }
    return World(conninfo, asyncio.run(issue()), devices)


@pytest.fixture(scope="module")
def world(database: str) -> World:
    return make_world(database)


def alarm(broker_url: str, *devices: str) -> None:
    """Each device reports an alarm (blocking: run it in a thread)."""
    with BoundedPublisher(broker_url) as pub:
        for device in devices:
            body = {"ts": int(time.time() * 1000), "seq": 1, "event": "alarm"}
            pub.publish(f"gridwatch/v1/up/{device}/event", orjson.dumps(body))


async def log_rows(conninfo: str, where: str = "TRUE", params: tuple[Any, ...] = ()) -> list[Any]:
    """``(seq, event_id, change, grid_code)`` of the change log, in order."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(
            f"SELECT seq, event_id, change, grid_code FROM event_log WHERE {where} ORDER BY seq",
            params,
        )
        return await cur.fetchall()


async def head(conninfo: str) -> int:
    rows = await log_rows(conninfo, "seq = (SELECT max(seq) FROM event_log)")
    return int(rows[0][0]) if rows else 0


async def raise_alarms(gw: Running, broker_url: str, *devices: str) -> list[Any]:
    """Publish alarms, wait until gridwatch has taken them; the change-log rows they made."""
    before = await head(gw.service.endpoints.db_conninfo)
    handled = gw.handled()
    await asyncio.to_thread(alarm, broker_url, *devices)
    await gw.wait_for(lambda: gw.handled() >= handled + len(devices))
    return await log_rows(gw.service.endpoints.db_conninfo, "seq > %s", (before,))


# --- waiting on what arrives -------------------------------------------------------------------


class Recorder:
    """A list that can be waited on (from the event loop; threads use ``add_threadsafe``)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._loop = asyncio.get_running_loop()

    def add(self, item: Any) -> None:
        self.items.append(item)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def add_threadsafe(self, item: Any) -> None:
        self._loop.call_soon_threadsafe(self.add, item)

    async def at_least(self, count: int, within: float = 20.0) -> None:
        await self.wait_for(lambda items: len(items) >= count, within)

    async def wait_for(self, predicate: Callable[[list[Any]], bool], within: float = 20.0) -> None:
        async with asyncio.timeout(within):
            while not predicate(self.items):
                waiter = self._loop.create_future()
                self._waiters.append(waiter)
                await waiter


@dataclass
class Request:
    message_id: str
    headers: dict[str, str]
    body: bytes
    status: int
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        return orjson.loads(self.body)


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request, answers what ``answer`` says
    (default 204), and checks the signature with the standardwebhooks library."""

    def __init__(self) -> None:
        self.secret = ""
        self.requests = Recorder()
        self.answer: Callable[[Request], int] = lambda _r: 204
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        try:
            Webhook(self.secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        seen = Request(headers.get("webhook-id", ""), headers, body, 0, verified)
        seen.status = self.answer(seen)
        self.requests.add(seen)
        return web.Response(status=seen.status)

    def acknowledged(self) -> list[str]:
        return [r.message_id for r in self.requests.items if 200 <= r.status < 300]

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


class SseClient:
    """Reads ``GET /api/v1/stream`` in a task: events as ``(seq, CloudEvent)``, and comments."""

    def __init__(
        self,
        base: str,
        token: str,
        *,
        params: dict[str, str] | None = None,
        last_event_id: int | None = None,
    ) -> None:
        self.url = base + "/api/v1/stream"
        self.headers = {"Authorization": f"Bearer {token}"}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = str(last_event_id)
        self.params = params or {}
        self.events = Recorder()
        self.provisional = Recorder()  # ``event: provisional`` (no id), as CloudEvents
        self.comments = Recorder()
        self.status = 0
        self._session: aiohttp.ClientSession | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._task: asyncio.Task[None] | None = None

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        fields: dict[str, str] = {}
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if fields.get("event") == "provisional":
                    self.provisional.add(orjson.loads(fields["data"]))
                elif "data" in fields:
                    self.events.add((int(fields["id"]), orjson.loads(fields["data"])))
                fields = {}
            elif line.startswith(":"):
                self.comments.add(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")

    async def __aenter__(self) -> SseClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=5))
        response = await self._session.get(self.url, headers=self.headers, params=self.params)
        self._response = response
        self.status = response.status
        if response.status == 200:
            self._task = asyncio.create_task(self._read(response))
            await self.comments.wait_for(lambda c: "gridwatch stream" in c)  # subscribed
        else:
            self.error = await response.json()
            response.release()
        return self

    def seqs(self) -> list[int]:
        return [seq for seq, _ in self.events.items]

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._response is not None:
            self._response.close()
        assert self._session is not None
        await self._session.close()


class MqttWatcher:
    """A paho subscriber on its own thread: messages as ``(topic, CloudEvent)``. With
    ``persistent`` it keeps an MQTT 5 session (the broker queues for it while it is away)
    and reconnects by itself."""

    def __init__(self, broker_url: str, topic: str, *, persistent: bool = False) -> None:
        self.endpoint = MqttEndpoint.from_url(broker_url)
        self.topic = topic
        self.persistent = persistent
        self.messages = Recorder()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"watcher-{next(_ids)}",
            protocol=mqtt.MQTTv5,
        )
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.add_threadsafe((msg.topic, orjson.loads(msg.payload)))

    def ids(self) -> list[str]:
        return [ce["id"] for _, ce in self.messages.items]

    async def __aenter__(self) -> MqttWatcher:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600 if self.persistent else 0
        await asyncio.to_thread(
            self.client.connect,
            self.endpoint.host,
            self.endpoint.port,
            clean_start=not self.persistent,
            properties=props,
        )
        self.client.loop_start()
        assert await asyncio.to_thread(self.subscribed.wait, 10), "no SUBACK"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


_ids = itertools.count()


# --- gridwatch with its outputs ----------------------------------------------------------------


@dataclass
class Outputs:
    gw: Running
    feed: MqttFeed
    hooks: WebhookDispatcher
    settings: Settings
    session: aiohttp.ClientSession = field(init=False)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def stop_feed(self) -> None:
        """Stop this worker's feed, as if its process went away."""
        task = self.tasks["feed"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    @property
    def base(self) -> str:
        return self.gw.service.http_url

    async def call(
        self, method: str, path: str, token: str | None, body: Any = None, **params: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.base + path, headers=headers, json=body, params=params or None
        ) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def subscribe(self, receiver: Receiver, token: str, **filters: Any) -> dict[str, Any]:
        status, created = await self.call(
            "POST", "/api/v1/subscriptions", token, {"url": receiver.url, "filters": filters}
        )
        assert status == 201, created
        receiver.secret = created["secret"]
        return created


def worker_options(**overrides: Any) -> dict[str, Any]:
    """Webhook worker settings for tests: short timeouts and retries."""
    return {"timeout_s": 2.0, "retry_min_s": 0.05, "retry_max_s": 0.25, **overrides}


@contextlib.asynccontextmanager
async def running_outputs(
    settings: Settings,
    *,
    feed_url: str | None = None,
    hooks: dict[str, Any] | None = None,
) -> AsyncIterator[Outputs]:
    """gridwatch plus the MQTT feed and the webhook worker, as the service will run them."""
    assert settings.db.url and settings.mqtt.url
    async with running_service(settings) as gw, aiohttp.ClientSession() as session:
        feed = MqttFeed(
            settings.db.url,
            feed_url or settings.mqtt.url,
            client_id=f"{settings.mqtt.client_id}-feed",
            reconnect_min_s=0.05,
            reconnect_max_s=0.3,
            standby_poll_s=0.1,
        )
        dispatcher = WebhookDispatcher(
            settings.db.url, worker_id=settings.mqtt.client_id, **(hooks or worker_options())
        )
        outputs = Outputs(gw, feed, dispatcher, settings)
        outputs.session = session
        outputs.tasks = {
            "feed": asyncio.create_task(feed.run(), name="test-feed"),
            "hooks": asyncio.create_task(dispatcher.run(), name="test-hooks"),
        }
        try:
            yield outputs
        finally:
            for task in outputs.tasks.values():
                task.cancel()
            await asyncio.gather(*outputs.tasks.values(), return_exceptions=True)


def settings_for(broker_url: str, world: World, data_dir: Path, name: str) -> Settings:
    """The service without its own feed and webhook workers: the tests run those themselves
    (:func:`running_outputs`), with timings tuned for tests and handles to stop them by."""
    return make_settings(
        broker_url,
        world.conninfo,
        data_dir,
        mqtt={"client_id": name},
        outputs={"feed_enabled": False, "webhooks_enabled": False},
    )


# --- the tests ---------------------------------------------------------------------------------


async def test_an_alarm_reaches_sse_mqtt_and_a_signed_webhook(
    mosquitto_broker: Any, world: World, data_dir: Path
) -> None:
    settings = settings_for(mosquitto_broker.url, world, data_dir, "gw-out-e2e")
    town_topic = f"gridwatch/v1/events/{C}/{T1}/#"
    async with (
        running_outputs(settings) as out,
        Receiver() as receiver,
        MqttWatcher(mosquitto_broker.url, town_topic) as watcher,
    ):
        await out.subscribe(receiver, world.tokens["town1"], severity=["red", "orange"])
        async with SseClient(out.base, world.tokens["town1"]) as sse:
            device = world.device(G1)
            rows = await raise_alarms(out.gw, mosquitto_broker.url, device)
            assert rows and rows[0][2] == "opened" and rows[0][3] == G1
            seq, event_id = rows[0][0], rows[0][1]
            ce_id = f"{event_id}:{seq}"
            await sse.events.wait_for(lambda e: seq in [s for s, _ in e])
            await watcher.messages.wait_for(lambda m: ce_id in [ce["id"] for _, ce in m])
            await receiver.requests.wait_for(lambda r: ce_id in [x.message_id for x in r])

    sse_event = dict(sse.events.items)[seq]
    topic, mqtt_event = next((t, ce) for t, ce in watcher.messages.items if ce["id"] == ce_id)
    hook = next(r for r in receiver.requests.items if r.message_id == ce_id)
    assert topic == f"gridwatch/v1/events/{C}/{T1}/{V1}/{G1}"
    assert sse_event == mqtt_event == hook.event
    assert sse_event["type"] == "gridwatch.event.opened" and sse_event["subject"] == event_id
    assert sse_event["source"] == f"/gridwatch/{C}" and sse_event["specversion"] == "1.0"
    assert sse_event["data"]["id"] == event_id and sse_event["data"]["device_ids"] == [device]
    assert hook.verified and hook.headers["webhook-id"] == ce_id
    assert hook.headers["Content-Type"].startswith("application/cloudevents+json")


async def test_sse_resume_returns_exactly_what_was_missed(
    mosquitto_broker: Any, world: World, data_dir: Path
) -> None:
    settings = settings_for(mosquitto_broker.url, world, data_dir, "gw-out-resume")
    url = mosquitto_broker.url
    town1 = world.tokens["town1"]
    async with running_outputs(settings) as out:
        async with SseClient(out.base, town1) as first:
            seen = await raise_alarms(out.gw, url, world.device(G1))
            await first.events.at_least(len(seen))
        last = first.seqs()[-1]
        # While away: two in its subtree, one in the other town, one placed nowhere.
        missed = await raise_alarms(
            out.gw, url, world.device(G1), world.device(G2), world.device(G1), world.device("")
        )
        expected = [seq for seq, _, _, grid in missed if grid == G1]
        assert len(expected) >= 2 and len(missed) > len(expected)

        for how in ("header", "query"):
            kwargs: dict[str, Any] = (
                {"last_event_id": last}
                if how == "header"
                else {"params": {"last_event_id": str(last)}}
            )
            want = list(expected)
            async with SseClient(out.base, town1, **kwargs) as again:
                await again.events.at_least(len(want))
                # a change after the resume comes live, right after the missed ones
                live = await raise_alarms(out.gw, url, world.device(G1))
                want += [seq for seq, *_ in live]
                await again.events.at_least(len(want))
                assert again.seqs() == want, how
            expected = want

        # filters: the other town's subtree and a severity, from the start of this test
        t2 = [seq for seq, _, _, grid in missed if grid == G2]
        town2 = world.tokens["town2"]
        async with SseClient(
            out.base, town2, params={"grid": V2, "severity": "orange"}, last_event_id=last
        ) as other:
            await other.events.at_least(len(t2))
            reds = SseClient(out.base, town2, params={"severity": "red"}, last_event_id=last)
            async with reds:  # single smoke alarms are orange: nothing
                sentinel = await raise_alarms(out.gw, url, world.device(G2))
                await other.events.at_least(len(t2) + len(sentinel))
            assert other.seqs() == t2 + [seq for seq, *_ in sentinel]
            assert reds.seqs() == []
        async with SseClient(out.base, town1, params={"grid": V2}) as outside:
            assert outside.status == 403 and outside.error["error"] == "outside_scope"
        async with SseClient(out.base, town1, params={"bogus": "1"}) as typo:
            assert typo.status == 400


async def test_subscriptions_api_scope_deliveries_and_metrics(
    mosquitto_broker: Any, world: World, data_dir: Path
) -> None:
    settings = settings_for(mosquitto_broker.url, world, data_dir, "gw-out-api")
    town1, town2 = world.tokens["town1"], world.tokens["town2"]
    async with running_outputs(settings) as out, Receiver() as receiver:
        # who may make what
        status, body = await out.call(
            "POST", "/api/v1/subscriptions", town1, {"url": receiver.url, "filters": {"grid": V2}}
        )
        assert status == 403 and body["error"] == "outside_scope"
        status, body = await out.call(
            "POST", "/api/v1/subscriptions", world.tokens["viewer1"], {"url": receiver.url}
        )
        assert status == 403
        status, body = await out.call("POST", "/api/v1/subscriptions", town1, {"url": "ftp://x"})
        assert status == 400 and body["error"] == "bad_request"
        status, _ = await out.call("POST", "/api/v1/subscriptions", None, {"url": receiver.url})
        assert status == 401

        created = await out.subscribe(receiver, town1)  # no grid: the token's scope
        sub = created["id"]
        assert created["filters"]["grid"] == T1 and created["secret"].startswith("whsec_")
        status, listed = await out.call("GET", "/api/v1/subscriptions", town1)
        assert status == 200 and sub in [s["id"] for s in listed["items"]]
        assert all(s["filters"]["grid"] in (T1, V1, G1) for s in listed["items"])
        assert all("secret" not in s for s in listed["items"])
        status, listed = await out.call("GET", "/api/v1/subscriptions", town2)
        assert listed["items"] == []
        assert (await out.call("GET", f"/api/v1/subscriptions/{sub}", town2))[0] == 404
        assert (await out.call("DELETE", f"/api/v1/subscriptions/{sub}", town2))[0] == 404

        rows = await raise_alarms(out.gw, mosquitto_broker.url, world.device(G1))
        wanted = {f"{event_id}:{seq}" for seq, event_id, _, _ in rows}
        # deliveries go one after the other per subscription: once the receiver has a later
        # change, the attempts before it are logged
        after = await raise_alarms(out.gw, mosquitto_broker.url, world.device(G1))
        last = f"{after[-1][1]}:{after[-1][0]}"
        await receiver.requests.wait_for(lambda r: last in {x.message_id for x in r})
        status, page = await out.call("GET", f"/api/v1/subscriptions/{sub}/deliveries", town1)
        assert status == 200
        assert wanted <= {d["message_id"] for d in page["items"]}
        assert all(d["delivered"] and d["status"] == 204 for d in page["items"])
        status, one = await out.call("GET", f"/api/v1/subscriptions/{sub}", world.tokens["admin"])
        assert status == 200 and one["last_success_at"] is not None and one["failures"] == 0

        # /metrics takes any valid token (a scraper's viewer token, say); none is refused
        async with out.session.get(out.base + "/metrics") as response:
            assert response.status == 401
        bearer = {"Authorization": f"Bearer {town1}"}
        async with out.session.get(out.base + "/metrics", headers=bearer) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        for series in (
            "gridwatch_messages_received_total",
            "gridwatch_detector_hits_total",
            "gridwatch_events_open{",
            'gridwatch_queue_depth{queue="webhook_outbox"}',
            'gridwatch_webhook_subscriptions{state="enabled"}',
            "gridwatch_stream_clients 0.0",
            "gridwatch_scrape_database_ok 1.0",
        ):
            assert series in text, series

        status, _ = await out.call("DELETE", f"/api/v1/subscriptions/{sub}", town1)
        assert status == 204
        assert (await out.call("GET", f"/api/v1/subscriptions/{sub}", town1))[0] == 404
        async with await psycopg.AsyncConnection.connect(world.conninfo) as conn:
            cur = await conn.execute(
                "SELECT action FROM audit_log WHERE target = %s ORDER BY id", (str(sub),)
            )
            assert [a for (a,) in await cur.fetchall()] == [
                "subscription.create",
                "subscription.delete",
            ]
