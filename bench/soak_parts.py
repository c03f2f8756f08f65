"""The pieces of ``bench/soak.py``: the devices' gateway, the downstream listeners, and the
ledger that accounts for every message and every change.

Each listener survives the faults the soak injects: the gateway and the feed watcher keep
MQTT sessions and reconnect by themselves, the webhook receiver can be told to be down.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqtt_source import MqttEndpoint

NO_SUBSCRIBERS = 16


class Gateway:
    """All simulated devices' uplink on one MQTT connection that rides out broker restarts:
    QoS 1 publishes wait in the client (at most ``window`` unacknowledged) and go out, or
    out again, after it reconnects; a real device with flash storage does the same."""

    def __init__(self, url: str, window: int = 2000) -> None:
        endpoint = MqttEndpoint.from_url(url)
        self._endpoint = endpoint
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="soak-gateway", protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(0.1, 1.0)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self._window = threading.BoundedSemaphore(window)
        self._idle = threading.Condition()
        self.outstanding = 0
        self.sent: list[tuple[str, bytes]] = []  # every message the devices published
        self.acked = 0
        self.refused = 0
        self.client.on_publish = self._on_publish

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code.is_failure and reason_code.value != NO_SUBSCRIBERS:
            self.refused += 1
        else:
            self.acked += 1
        self._window.release()
        with self._idle:
            self.outstanding -= 1
            self._idle.notify_all()

    def connect(self) -> None:
        self.client.connect(self._endpoint.host, self._endpoint.port, keepalive=10)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._window.acquire()
        with self._idle:
            self.outstanding += 1
        self.sent.append((topic, payload))
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")

    def flush(self, timeout: float = 60.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self.outstanding == 0, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FeedWatcher:
    """A downstream subscriber of the MQTT event feed with a persistent session."""

    def __init__(
        self,
        url: str,
        topic: str = "gridwatch/v1/events/#",
        client_id: str = "soak-feed-watcher",
    ) -> None:
        self._endpoint = MqttEndpoint.from_url(url)
        self.ids: list[str] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(0.1, 1.0)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = lambda c, u, m: self.ids.append(orjson.loads(m.payload)["id"])

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(
            self._endpoint.host, self._endpoint.port, clean_start=True, properties=props
        )
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WebhookReceiver:
    """A webhook endpoint on its own thread; while :attr:`down` it answers 503."""

    def __init__(self) -> None:
        self.down = False
        self.acked: list[str] = []
        self.refused = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.down:
            self.refused += 1
            return web.Response(status=503)
        self.acked.append(request.headers.get("webhook-id", ""))
        return web.Response(status=204)

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# --- the ledger ----------------------------------------------------------------------------------


@dataclass
class Ledger:
    published: int = 0
    acked: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)  # what was published and is nowhere
    events_opened: Counter[str] = field(default_factory=Counter)
    duplicate_events: int = 0
    changes: int = 0
    webhook_delivered: int = 0
    webhook_repeats: int = 0
    feed_delivered: int = 0
    feed_repeats: int = 0
    undelivered: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    spooled: int = 0  # acknowledged from the spool while the database was away
    provisional: int = 0  # distinct provisional alerts seen on MQTT meanwhile

    @property
    def lost_count(self) -> int:
        return len(self.lost) + len(self.undelivered)

    def render(self, minutes: float) -> str:
        out = [
            f"soak ledger ({minutes:.1f} min, faults injected: "
            + (", ".join(f"{k} ×{n}" for k, n in sorted(self.faults.items())) or "none") + ")",
            f"  published (distinct messages)          {self.published:>10,}",
            f"  acknowledged by the broker (PUBACK)    {self.acked:>10,}",
            f"  stored                                 {self.stored:>10,}",
            f"  rejected, by reason                    {sum(self.rejected.values()):>10,}",
            *(f"    {reason:<36} {n:>10,}" for reason, n in sorted(self.rejected.items())),
            f"  grid events opened                     {sum(self.events_opened.values()):>10,}"
            f"   (same incident twice: {self.duplicate_events})",
            *(f"    {kind:<36} {n:>10,}" for kind, n in sorted(self.events_opened.items())),
            f"  event changes logged                   {self.changes:>10,}",
            f"  webhook deliveries (distinct)          {self.webhook_delivered:>10,}"
            f"   (repeats {self.webhook_repeats})",
            f"  MQTT feed deliveries (distinct)        {self.feed_delivered:>10,}"
            f"   (repeats {self.feed_repeats})",
            f"  spooled while the database was away    {self.spooled:>10,}",
            f"  provisional alerts meanwhile (MQTT)    {self.provisional:>10,}",
            f"  lost                                   {self.lost_count:>10,}",
        ]
        out += [f"    lost message: {x}" for x in self.lost[:20]]
        out += [f"    undelivered change: {x}" for x in self.undelivered[:20]]
        return "\n".join(out)


def _key_of(topic: str, payload: bytes) -> tuple[str, str, object] | None:
    """What a stored message leaves behind: ``("r", device, ts µs)`` for values,
    ``("e", device, (ts µs, event))`` for device events, ``("s", device, word)`` for a
    status; None when the payload is not one the canonical format can hold."""
    parts = topic.split("/")
    if len(parts) != 5:
        return None
    device, kind = parts[3], parts[4]
    try:
        body = orjson.loads(payload)
        if kind == "status":
            word = body.get("status") if isinstance(body, dict) else None
            return ("s", device, word or payload.decode(errors="replace").strip())
        ts = body["ts"]
        if not isinstance(ts, int):
            return None
        micros = ts * 1000
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        if kind == "status":
            return ("s", device, payload.decode(errors="replace").strip())
        return None
    if kind == "event":
        return ("e", device, (micros, body.get("event")))
    return ("r", device, micros)


def _micros(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def account(
    conninfo: str, gateway: Gateway, receiver: WebhookReceiver, feed: FeedWatcher
) -> Ledger:
    """Match every published message with what the database holds, and every logged change
    with what the downstream listeners got."""
    ledger = Ledger(published=len(set(gateway.sent)), acked=gateway.acked)
    with psycopg.connect(conninfo) as conn:
        readings = {
            ("r", d, _micros(ts))
            for d, ts in conn.execute("SELECT DISTINCT device_id, ts FROM readings")
        }
        events = {
            ("e", d, (_micros(ts), e))
            for d, ts, e in conn.execute(
                "SELECT device_id, ts, event FROM device_events WHERE kind = 'event'"
            )
        }
        statuses = Counter(
            ("s", d, e)
            for d, e in conn.execute(
                "SELECT device_id, event FROM device_events WHERE kind = 'status'"
            )
        )
        letters = {
            (t, bytes(p)): r for t, p, r in conn.execute(
                "SELECT topic, payload, reason FROM dead_letters"
            )
        }  # fmt: skip
        for reason, n in conn.execute("SELECT reason, sum(count) FROM reject_counts GROUP BY 1"):
            ledger.rejected[reason] = int(n)
        for kind, n in conn.execute("SELECT type, count(*) FROM grid_events GROUP BY 1"):
            ledger.events_opened[kind] = int(n)
        # one incident opened twice: two events of one type at one site, overlapping in time
        (ledger.duplicate_events,) = conn.execute(
            "SELECT count(*) FROM grid_events a JOIN grid_events b ON a.id < b.id"
            " AND a.type = b.type AND a.site = b.site AND a.device_ids && b.device_ids"
            " AND a.first_seen <= b.last_seen AND b.first_seen <= a.last_seen"
        ).fetchone() or (0,)
        logged = [f"{e}:{s}" for s, e in conn.execute("SELECT seq, event_id FROM event_log")]
    rate_limited_unsampled = ledger.rejected.get("rate_limited", 0) - sum(
        1 for r in letters.values() if r == "rate_limited"
    )
    seen: set[tuple[str, bytes]] = set()
    status_left = Counter(statuses)
    unmatched: list[str] = []
    for topic, payload in gateway.sent:
        if (topic, payload) in seen:
            continue  # the same message again (a resend): counted once
        seen.add((topic, payload))
        key = _key_of(topic, payload)
        if key is not None and key[0] == "s" and status_left[key] > 0:
            status_left[key] -= 1
            ledger.stored += 1
        elif key is not None and (key in readings or key in events):
            ledger.stored += 1
        elif (topic, payload) in letters:
            pass  # rejected with a reason, counted above
        else:
            unmatched.append(f"{topic} {payload[:80]!r}")
    ledger.lost = unmatched[max(0, rate_limited_unsampled):] if unmatched else []
    ledger.changes = len(logged)
    ledger.webhook_delivered = len(set(receiver.acked))
    ledger.webhook_repeats = len(receiver.acked) - len(set(receiver.acked))
    ledger.feed_delivered = len(set(feed.ids))
    ledger.feed_repeats = len(feed.ids) - len(set(feed.ids))
    hooks, fed = set(receiver.acked), set(feed.ids)
    ledger.undelivered = [
        f"{i} ({'webhook' if i not in hooks else ''} {'feed' if i not in fed else ''})"
        for i in logged
        if i not in hooks or i not in fed
    ]
    return ledger
