"""Ingest throughput: how fast gridwatch drains a broker backlog, against a bare subscriber.

A Python publisher is slower than the broker, so a live publisher would hide the
subscriber's limit. Instead both subscribers first create persistent sessions, go away,
and N QoS 1 telemetry messages for D devices are queued for both; then each drains its
backlog alone:

  (b) a bare paho subscriber that only counts (auto-acknowledging), and
  (a) `gridwatch run` as a separate process, until every message is stored (its /healthz);

and the ratio a/b is printed, with gridwatch's peak RSS.

    .venv/bin/python bench/ingest.py [--messages 200000] [--devices 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridwatch.mqtt_publish import BoundedPublisher
from storage.migrate import migrate
from tests.services import free_tcp_port, running_broker, running_cluster

SUBSCRIPTION = "gridwatch/v1/up/+/+"
RECEIVE_MAXIMUM = 20000


def connect_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


def make_session(url_port: int, client_id: str) -> None:
    """Create a persistent session subscribed to the uplink, then leave."""
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(SUBSCRIPTION, qos=1)
    client.on_subscribe = lambda *_: done.set()
    client.connect("127.0.0.1", url_port, clean_start=False, properties=connect_props())
    client.loop_start()
    assert done.wait(10), "subscription failed"
    client.disconnect()
    client.loop_stop()


def device_ids(devices: int) -> list[str]:
    return [f"EF-{i:06d}" for i in range(devices)]


def register(conninfo: str, devices: int) -> None:
    import asyncio

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            await migrate(conn)
            await conn.set_autocommit(False)
            async with conn.cursor().copy("COPY devices (device_id, type, site) FROM STDIN") as cp:
                for d in device_ids(devices):
                    await cp.write_row((d, "electrical_fire_monitor", f"site-{d[-4:]}"))
            await conn.commit()

    asyncio.run(run())


def queue_backlog(
    url: str, messages: int, devices: int, *, age_s: float = 3600.0, first_seq: int = 0
) -> float:
    """Publish the messages (timestamps from ``age_s`` ago on, sequence numbers from
    ``first_seq`` on); returns the seconds it took."""
    ids = device_ids(devices)
    start_ts = int((time.time() - age_s) * 1000)
    began = time.perf_counter()
    with BoundedPublisher(url, inflight=1000) as pub:
        for i in range(messages):
            device = ids[i % devices]
            payload = orjson.dumps(
                {
                    "ts": start_ts + i,
                    "seq": first_seq + i // devices,
                    "values": {"residual_current_ma": 150.0 + i % 50, "cable_temp_c_1": 41.5},
                }
            )
            pub.publish(f"gridwatch/v1/up/{device}/telemetry", payload, qos=1)
            if i and i % 50000 == 0:
                print(f"  queued {i:,}", flush=True)
        pub.flush(600)
    return time.perf_counter() - began


def drain_bare(port: int, messages: int) -> float:
    got = 0
    done = threading.Event()
    began = 0.0

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal got
        got += 1
        if got >= messages:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
    client.on_message = on_message
    began = time.perf_counter()
    client.connect("127.0.0.1", port, clean_start=False, properties=connect_props())
    client.loop_start()
    if not done.wait(600):
        raise SystemExit(f"bare subscriber got only {got} of {messages}")
    elapsed = time.perf_counter() - began
    client.disconnect()
    client.loop_stop()
    return elapsed


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
        return orjson.loads(response.read())


def peak_rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def drain_gridwatch(
    broker_url: str, conninfo: str, messages: int, workdir: Path
) -> tuple[float, float, float, float]:
    http_port = free_tcp_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")},
        "GRIDWATCH_MQTT_URL": broker_url,
        "GRIDWATCH_MQTT_CLIENT_ID": "bench-gridwatch",
        "GRIDWATCH_MQTT_RECEIVE_MAXIMUM": str(RECEIVE_MAXIMUM),
        "GRIDWATCH_DB_URL": conninfo,
        "GRIDWATCH_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "GRIDWATCH_DATA_DIR": str(workdir / "gw"),
        "GRIDWATCH_LOG_LEVEL": "WARNING",
    }
    gridwatch = Path(sys.executable).with_name("gridwatch")
    began = time.perf_counter()
    proc = subprocess.Popen([str(gridwatch), "run"], env=env)
    url = f"http://127.0.0.1:{http_port}"
    stored = 0
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"gridwatch exited with {proc.returncode}")
            try:
                report = health(url)
            except OSError:
                report = {}
            ingest = report.get("ingest", {})
            stored = int(ingest.get("stored_messages", 0))
            if stored >= messages:
                drain_only = ingest["last_stored_at"] - ingest["first_received_at"]
                break
            time.sleep(0.05)  # polling a separate process' progress; not test synchronisation
        elapsed = time.perf_counter() - began
        rss, peak = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    return elapsed, drain_only, rss, peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args()
    n, d = args.messages, args.devices

    with running_broker() as broker, running_cluster() as cluster:
        port = int(broker.url.rsplit(":", 1)[1])
        cluster.create_database("bench")
        conninfo = cluster.conninfo_for("bench")
        print(f"registering {d:,} devices, migrating …", flush=True)
        register(conninfo, d)
        make_session(port, "bench-bare")
        make_session(port, "bench-gridwatch")
        print(f"queueing {n:,} QoS 1 messages for both sessions …", flush=True)
        queued_in = queue_backlog(broker.url, n, d)
        print(f"  queued in {queued_in:.1f} s ({n / queued_in:,.0f} msg/s publisher)")

        print("draining: bare paho subscriber …", flush=True)
        bare_s = drain_bare(port, n)
        print("draining: gridwatch (decode, validate, dedup, COPY, commit, ack) …", flush=True)
        gw_s, gw_drain_s, rss, peak = drain_gridwatch(
            broker.url, conninfo, n, Path(cluster.real_state_dir).parent
        )

        with psycopg.connect(conninfo) as conn:
            rows = conn.execute("SELECT count(*) FROM readings").fetchone()[0]  # type: ignore[index]

    bare_rate, gw_rate = n / bare_s, n / gw_s
    print()
    print(f"messages                       {n:>12,}  ({d:,} devices, 2 metrics each)")
    print(f"(b) bare paho, count only      {bare_rate:>12,.0f} msg/s   ({bare_s:.2f} s)")
    print(f"(a) gridwatch, stored e2e      {gw_rate:>12,.0f} msg/s   ({gw_s:.2f} s incl. start-up)")
    print(f"(c) ratio a/b                  {gw_rate / bare_rate:>12.2f}")
    drain_rate = n / gw_drain_s
    print(
        f"(a') gridwatch, first message to last commit {drain_rate:,.0f} msg/s"
        f"  ({gw_drain_s:.2f} s; ratio {drain_rate / bare_rate:.2f})"
    )
    print(f"gridwatch RSS at end / peak    {rss:>8.0f} MB / {peak:.0f} MB")
    print(f"readings rows stored           {rows:>12,}")


if __name__ == "__main__":
    main()
