"""End-to-end latency of the downstream outputs: a device's alarm published on MQTT → the
CloudEvent of the grid event it opens, as received by

  (a) an MQTT subscriber of the town's ``gridwatch/v1/events/{county}/{town}/#``,
  (b) an SSE client of ``GET /api/v1/stream``, and
  (c) a webhook receiver (signature checked; it answers 204),

at a steady alarm rate and at higher ones. Prints p50 / p90 / p99 / max per output and
rate, against the goal p99 <= 50 ms. Figures, never assertions.

gridwatch runs as a separate process (this file with ``--serve``: the service plus the MQTT
feed and webhook workers, as ``gridwatch run`` will start them) on its own mosquitto and
PostgreSQL under /tmp; the publisher and the three receivers run here. Every alarm comes
from a device that has raised nothing yet, at its own site, so each opens a new event.
Latency is receive time − publish time on the same clock; a device counts at the first
CloudEvent whose ``data.device_ids`` names it.

    .venv/bin/python bench/latency.py [--rates 5,50,200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from aiohttp import web  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402
from standardwebhooks import Webhook  # noqa: E402

from gridwatch.mqtt_publish import BoundedPublisher  # noqa: E402
from storage import tokens  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from tests.services import free_tcp_port, running_broker, running_cluster  # noqa: E402

COUNTY, TOWN, VILLAGE, GRID = "440981", "440981001", "440981001005", "440981001005-03"
OUTPUTS = ("mqtt", "sse", "webhook")
GOAL_P99_MS = 50.0


# --- gridwatch, in its own process --------------------------------------------------------


def serve() -> None:
    """``--serve``: the service and its output workers until SIGTERM (env gives the config)."""
    import signal

    from gridwatch.config import load_settings
    from gridwatch.endpoints import Endpoints
    from gridwatch.logs import setup_logging
    from gridwatch.service import Service
    from outputs.mqtt_feed import MqttFeed
    from outputs.webhooks import WebhookDispatcher

    settings = load_settings()
    setup_logging("WARNING", "json")
    assert settings.mqtt.url and settings.db.url
    service = Service(settings, Endpoints(settings.mqtt.url, settings.db.url))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, service.request_stop)
        feed = MqttFeed(
            settings.db.url, settings.mqtt.url, client_id=f"{settings.mqtt.client_id}-feed"
        )
        hooks = WebhookDispatcher(settings.db.url, worker_id=settings.mqtt.client_id)
        workers = [asyncio.create_task(feed.run()), asyncio.create_task(hooks.run())]

        async def ready(svc: Service) -> None:
            assert svc.source is not None
            await asyncio.to_thread(svc.source.subscribed.wait, 30)
            print(f"READY {svc.http_url}", flush=True)

        try:
            await service.run(on_ready=ready)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    asyncio.run(run())


@contextlib.contextmanager
def gridwatch(broker_url: str, conninfo: str, data_dir: Path) -> Any:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")},
        "GRIDWATCH_MQTT_URL": broker_url,
        "GRIDWATCH_DB_URL": conninfo,
        "GRIDWATCH_HTTP_LISTEN": f"127.0.0.1:{free_tcp_port()}",
        "GRIDWATCH_DATA_DIR": str(data_dir),
        "GRIDWATCH_MQTT_CLIENT_ID": "gw-bench",
    }
    log = open(data_dir / "gridwatch.log", "wb")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], env=env, stdout=subprocess.PIPE, stderr=log
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY "):
            raise SystemExit(f"gridwatch did not start; see {data_dir / 'gridwatch.log'}")
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


# --- the world ------------------------------------------------------------------------------


async def prepare(conninfo: str, devices: int) -> str:
    """Schema, grid tree and ``devices`` smoke detectors at distinct sites; an admin token."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        await migrate(conn)
        await conn.set_autocommit(False)
        tree = [
            (COUNTY, "county", None, []),
            (TOWN, "town", COUNTY, [COUNTY]),
            (VILLAGE, "village", TOWN, [COUNTY, TOWN]),
            (GRID, "grid", VILLAGE, [COUNTY, TOWN, VILLAGE]),
        ]
        for code, level, parent, ancestors in tree:
            await conn.execute(
                "INSERT INTO grids (code, name, level, parent, ancestors, members)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (code, code, level, parent, ancestors, Jsonb([])),
            )
        async with conn.cursor().copy(
            "COPY devices (device_id, type, grid_code, site) FROM STDIN"
        ) as copy:
            for i in range(devices):
                await copy.write_row((f"SD-{i:05d}", "smoke_detector", GRID, f"site-{i:05d}"))
        issued = await tokens.create_token(conn, name="bench", role="admin", scope="*")
        await conn.commit()
        return issued.text


# --- receivers ------------------------------------------------------------------------------


@dataclass
class Arrivals:
    """First arrival time of each device's alarm, per output."""

    at: dict[str, dict[str, float]] = field(default_factory=lambda: {o: {} for o in OUTPUTS})
    logged: dict[str, float] = field(default_factory=dict)  # when its change was logged
    bad_signatures: int = 0

    def seen(self, output: str, event: dict[str, Any], when: float) -> None:
        table = self.at[output]
        for device in event.get("data", {}).get("device_ids", ()):
            table.setdefault(device, when)
            if device not in self.logged:
                logged = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
                self.logged[device] = logged.timestamp()


class Receivers:
    def __init__(self, base: str, token: str, broker_port: int, arrivals: Arrivals) -> None:
        self.base, self.token, self.port, self.arrivals = base, token, broker_port, arrivals
        self.secret = ""

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        when = time.time()
        try:
            event = Webhook(self.secret).verify(body, dict(request.headers))
        except Exception:
            self.arrivals.bad_signatures += 1
            return web.Response(status=400)
        self.arrivals.seen("webhook", event, when)
        return web.Response(status=204)

    async def _sse(self, session: aiohttp.ClientSession, connected: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with session.get(self.base + "/api/v1/stream", headers=headers) as response:
            async for raw in response.content:
                if raw.startswith(b": gridwatch"):
                    connected.set()
                elif raw.startswith(b"data: "):
                    self.arrivals.seen("sse", orjson.loads(raw[6:]), time.time())

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        hook_url = "http://{}:{}/hook".format(*runner.addresses[0][:2])

        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_connect = lambda c, *_: c.subscribe(f"gridwatch/v1/events/{COUNTY}/{TOWN}/#", 1)
        client.on_subscribe = lambda *_: subscribed.set()

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            when = time.time()
            event = orjson.loads(msg.payload)
            loop.call_soon_threadsafe(self.arrivals.seen, "mqtt", event, when)

        client.on_message = on_message
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=10))
        connected = asyncio.Event()
        sse = asyncio.create_task(self._sse(session, connected))
        try:
            headers = {"Authorization": f"Bearer {self.token}"}
            async with session.post(
                self.base + "/api/v1/subscriptions", headers=headers, json={"url": hook_url}
            ) as response:
                assert response.status == 201, await response.text()
                self.secret = (await response.json())["secret"]
            await asyncio.wait_for(connected.wait(), 20)
            assert await asyncio.to_thread(subscribed.wait, 20)
            yield
        finally:
            sse.cancel()
            await asyncio.gather(sse, return_exceptions=True)
            await session.close()
            client.disconnect()
            client.loop_stop()
            await runner.cleanup()


# --- load -----------------------------------------------------------------------------------


def publish_alarms(broker_url: str, devices: list[str], rate: float) -> dict[str, float]:
    """One alarm per device, ``rate`` a second, evenly paced; publish time per device."""
    sent: dict[str, float] = {}
    interval = 1.0 / rate
    with BoundedPublisher(broker_url) as pub:
        start = time.perf_counter()
        for i, device in enumerate(devices):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the load, not synchronising
            body = orjson.dumps({"ts": int(time.time() * 1000), "seq": 1, "event": "alarm"})
            sent[device] = time.time()
            pub.publish(f"gridwatch/v1/up/{device}/event", body)
    return sent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


async def run_load(
    broker_url: str, arrivals: Arrivals, devices: list[str], rate: float, drain_s: float
) -> dict[str, list[float]]:
    """Latencies (ms) per output, plus ``logged``: publish → the change's transaction began."""
    sent = await asyncio.to_thread(publish_alarms, broker_url, devices, rate)
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:  # a bench waits for stragglers with a deadline
        if all(all(d in arrivals.at[o] for d in sent) for o in OUTPUTS):
            break
        await asyncio.sleep(0.05)
    out = {
        o: [(arrivals.at[o][d] - t) * 1000 for d, t in sent.items() if d in arrivals.at[o]]
        for o in OUTPUTS
    }
    out["logged"] = [
        (arrivals.logged[d] - t) * 1000 for d, t in sent.items() if d in arrivals.logged
    ]
    return out


def report(rate: float, count: int, latencies: dict[str, list[float]]) -> None:
    print(f"\n{rate:g} alarms/s, {count} alarms")
    print(f"  {'output':<8} {'got':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for output in (*OUTPUTS, "logged"):
        values = latencies[output]
        if not values:
            print(f"  {output:<8} {0:>6}")
            continue
        p99 = percentile(values, 99)
        flag = "" if output == "logged" or p99 <= GOAL_P99_MS else f"  (p99 over {GOAL_P99_MS:g})"
        print(
            f"  {output:<8} {len(values):>6} {statistics.median(values):>8.1f}"
            f" {percentile(values, 90):>8.1f} {p99:>8.1f} {max(values):>8.1f}{flag}"
        )
    print("  (logged: publish → the transaction that logged the change began, i.e. ingest)")


async def measure(args: argparse.Namespace, broker_url: str, conninfo: str, token: str) -> None:
    port = int(broker_url.rsplit(":", 1)[1])
    rates = [float(r) for r in args.rates.split(",")]
    with (
        tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp,
        gridwatch(broker_url, conninfo, Path(tmp)) as base,
    ):
        arrivals = Arrivals()
        receivers = Receivers(base, token, port, arrivals)
        async with receivers.running():
            pool = iter(f"SD-{i:05d}" for i in range(args.devices))
            warm = [next(pool) for _ in range(20)]
            await run_load(broker_url, arrivals, warm, 20.0, 10.0)  # warm-up, not reported
            for rate in rates:
                count = max(1, int(rate * args.seconds))
                devices = [next(pool) for _ in range(count)]
                latencies = await run_load(broker_url, arrivals, devices, rate, args.drain)
                report(rate, count, latencies)
        if arrivals.bad_signatures:
            print(f"\nwebhooks with a bad signature: {arrivals.bad_signatures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="5,50,200", help="alarms a second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each rate runs")
    parser.add_argument("--drain", type=float, default=60.0, help="wait for stragglers (s)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    rates = [float(r) for r in args.rates.split(",")]
    args.devices = 20 + sum(max(1, int(r * args.seconds)) for r in rates)
    print(f"gridwatch output latency: device publish → CloudEvent (goal p99 ≤ {GOAL_P99_MS:g} ms)")
    with running_broker() as broker, running_cluster() as cluster:
        cluster.create_database("bench")
        conninfo = cluster.conninfo_for("bench")
        token = asyncio.run(prepare(conninfo, args.devices))
        asyncio.run(measure(args, broker.url, conninfo, token))


if __name__ == "__main__":
    main()
