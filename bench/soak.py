"""Soak: the simulated county at a steady load for a given time while faults are injected
at random, then a ledger of every message and every change.

    .venv/bin/python bench/soak.py --minutes 10 [--seed 1]
        [--faults broker,gridwatch,webhook,database]

Started here, each on free ports and in a fresh directory: mosquitto, PostgreSQL, and
`gridwatch run` as its own process (against those two, as in production). The county of
`gridwatch simulate county` reports through one MQTT connection (a gateway that keeps what
it could not send yet), with the example scenario's incidents replayed every cycle. A
webhook receiver and an MQTT feed subscriber listen downstream.

Every 30–90 s one fault, drawn at random:

- ``broker``: mosquitto stopped and started again (SIGTERM: it saves its persistence);
- ``gridwatch``: `gridwatch run` killed with SIGKILL, started again 2–10 s later;
- ``webhook``: the receiver answers 503 for 20–120 s;
- ``database``: PostgreSQL stopped for 20–60 s (gridwatch spools and sends provisional
  alerts meanwhile); every other time gridwatch is also killed with SIGKILL in the middle
  of it and started again once PostgreSQL is back, so it must write the spool it left.

At the end the devices stop, everything is let settle, and the ledger is printed:
published, stored, rejected by reason, events opened, deliveries made, and lost (each lost
message or undelivered change named). The exit status is 1 when anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.soak_parts import FeedWatcher, Gateway, WebhookReceiver, account
from gridwatch.cli.demo_cmd import DEMO_INTERVALS, EXAMPLE_SCENARIO
from simulators.county import CountySpec, generate_county
from simulators.county_files import write_county
from simulators.fleet import FleetConfig, FleetModel
from simulators.fleet_input import load_devices
from simulators.fleet_runner import RunLimits, run_fleet
from simulators.scenario import load_scenario
from storage.migrate import migrate
from tests.integration.gridwatch_process import GRIDWATCH, GridwatchProcess
from tests.services import free_tcp_port, running_broker, running_cluster

FAULTS = ("broker", "gridwatch", "webhook", "database")
SPEED = 2.0  # simulated seconds a second: a steady ~100 messages/s from the county
CONFIG = """
[alerts]
sweep_s = 2.0
[outputs]
poll_s = 1.0
webhook_retry_min_s = 0.5
webhook_retry_max_s = 10.0
[video]
enabled = false
"""


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def run_devices(url: str, devices_path: Path, gateway: Gateway, stop: threading.Event) -> None:
    """The county's traffic at SPEED, the example scenario replayed each cycle."""
    devices = load_devices(devices_path)
    cycle = 0
    while not stop.is_set():
        config = FleetConfig(
            start_ts=time.time(), speed=SPEED, seed=cycle, intervals=DEMO_INTERVALS
        )
        model = FleetModel(devices, config)
        scenario = load_scenario(EXAMPLE_SCENARIO)
        scenario.install(model)
        run_fleet(
            model, gateway, stop=stop, offline_on_stop=False,
            limits=RunLimits(duration=scenario.ends_at() / SPEED + 30.0),
        )  # fmt: skip
        cycle += 1


async def prepare(conninfo: str) -> None:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        await migrate(conn)


def api(port: int, token: str, method: str, path: str, body: object) -> object:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=orjson.dumps(body), method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


def spooled_by(gw: GridwatchProcess) -> int:
    """Messages this gridwatch process has acknowledged from its spool so far."""
    try:
        return int(gw.health().get("spool", {}).get("spooled_messages", 0))
    except OSError:
        return 0


def settle(check: Callable[[], tuple[int, ...]], quiet_s: float, within: float) -> None:
    """Wait until ``check()`` (counts read from the database) has not changed for
    ``quiet_s`` seconds, or ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = check()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default=",".join(FAULTS))
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")
    rng = random.Random(args.seed)
    injected: Counter[str] = Counter()

    with running_broker() as broker, running_cluster() as cluster:
        root = Path(cluster.real_state_dir).parent
        cluster.create_database("soak")
        conninfo = cluster.conninfo_for("soak")
        asyncio.run(prepare(conninfo))
        county = write_county(generate_county(CountySpec(seed=2026)), root / "county")
        http_port = free_tcp_port()
        (root / "gridwatch.toml").write_text(CONFIG)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")},
            "GRIDWATCH_MQTT_URL": broker.url,
            "GRIDWATCH_DB_URL": conninfo,
            "GRIDWATCH_DATA_DIR": str(root / "data"),
            "GRIDWATCH_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "GRIDWATCH_LOG_FORMAT": "text",
            "GRIDWATCH_LOG_LEVEL": "WARNING",
        }
        config_args = ("--config", str(root / "gridwatch.toml"))

        for what, path in (("grids", county.grids), ("devices", county.devices[0])):
            subprocess.run(
                [GRIDWATCH, *config_args, what, "import", str(path)], env=env, check=True,
                capture_output=True,
            )  # fmt: skip
        gw = GridwatchProcess(env, http_port, config_args)
        gw.start()
        token = (root / "data" / "admin-token").read_text().strip()
        receiver = WebhookReceiver()
        receiver.start()
        api(http_port, token, "POST", "/api/v1/subscriptions", {"url": receiver.url})
        feed = FeedWatcher(broker.url)
        feed.connect()
        provisional = FeedWatcher(
            broker.url, "gridwatch/v1/provisional/#", client_id="soak-provisional-watcher"
        )
        provisional.connect()
        spooled = 0
        gateway = Gateway(broker.url)
        gateway.connect()
        stop = threading.Event()
        devices = threading.Thread(
            target=run_devices, args=(broker.url, county.devices[0], gateway, stop), daemon=True
        )
        devices.start()
        log(f"soak: {args.minutes:g} min, faults {faults or 'none'}, county of {county.devices[0]}")

        end = time.monotonic() + args.minutes * 60
        webhook_up_at = 0.0
        while time.monotonic() < end:
            time.sleep(min(rng.uniform(30, 90), max(0.0, end - time.monotonic())))
            if receiver.down and time.monotonic() >= webhook_up_at:
                receiver.down = False
                log("webhook receiver up")
            if time.monotonic() >= end or not faults:
                break
            fault = rng.choice(faults)
            injected[fault] += 1
            if fault == "broker":
                log("fault: mosquitto restart")
                broker.stop()
                broker.start()
            elif fault == "gridwatch":
                log("fault: gridwatch SIGKILL")
                gw.kill()
                time.sleep(rng.uniform(2, 10))
                gw.start()
                log("gridwatch started again")
            elif fault == "webhook":
                down_for = rng.uniform(20, 120)
                log(f"fault: webhook receiver down for {down_for:.0f} s")
                receiver.down = True
                webhook_up_at = time.monotonic() + down_for
            elif fault == "database":
                down_for = rng.uniform(20, 60)
                crash = injected[fault] % 2 == 0
                log(
                    f"fault: PostgreSQL stopped for {down_for:.0f} s"
                    + (", gridwatch SIGKILLed meanwhile" if crash else "")
                )
                before = spooled_by(gw)
                cluster.stop()
                time.sleep(down_for / 2)
                if crash:
                    spooled += spooled_by(gw) - before
                    gw.kill()
                time.sleep(down_for / 2)
                if not crash:
                    spooled += spooled_by(gw) - before
                cluster.start()
                log("PostgreSQL started again")
                if crash:
                    gw.start()
                    log("gridwatch started again")
        receiver.down = False

        log("devices stop; settling …")
        stop.set()
        devices.join(120)
        gateway.flush(300)

        def counts() -> tuple[int, ...]:
            with psycopg.connect(conninfo) as conn:
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM device_events),"
                    " (SELECT count(*) FROM dead_letters), (SELECT count(*) FROM event_log)"
                ).fetchone()
            return (*(row or ()), len(set(receiver.acked)), len(set(feed.ids)))

        settle(counts, quiet_s=30, within=600)
        gw.stop()
        ledger = account(conninfo, gateway, receiver, feed)
        ledger.faults = injected
        ledger.spooled = spooled
        ledger.provisional = len(set(provisional.ids))
        gateway.close()
        feed.close()
        provisional.close()
        receiver.stop()
    print(ledger.render(args.minutes))
    return 1 if ledger.lost_count else 0


if __name__ == "__main__":
    sys.exit(main())
