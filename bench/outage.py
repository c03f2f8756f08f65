"""Ingest through a database outage: the spool's rate, and how fast its backlog is written.

`gridwatch run` (a separate process, as deployed) with a real mosquitto and PostgreSQL:

  (a) baseline: N QoS 1 messages queued in the broker while gridwatch is stopped, then
      drained with the database up (first message to last commit, as bench/ingest.py);
  (b) spooling: PostgreSQL is stopped, N more messages are published; gridwatch saves
      them to its on-disk spool and acknowledges them (rate from the first publish to the
      last spooled message; the publisher's own rate is printed beside it, since it can be
      the limit);
  (c) replay: PostgreSQL is started again; the spool is written, oldest batch first,
      through the full detection path (rate from the restart to the last commit).

The ratios b/a and c/a say how an outage changes what this machine can take in. Progress
is read from gridwatch's /healthz (``ingest`` and ``spool``).

    .venv/bin/python bench/outage.py [--messages 100000] [--devices 10000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services import free_tcp_port, running_broker, running_cluster

_spec = importlib.util.spec_from_file_location(
    "bench_ingest", Path(__file__).with_name("ingest.py")
)
assert _spec is not None and _spec.loader is not None
bench_ingest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_ingest)


class Gridwatch:
    """`gridwatch run` in its own process, watched through /healthz."""

    def __init__(self, broker_url: str, conninfo: str, data_dir: Path) -> None:
        self.port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")},
            "GRIDWATCH_MQTT_URL": broker_url,
            "GRIDWATCH_MQTT_CLIENT_ID": "bench-gridwatch",
            "GRIDWATCH_MQTT_RECEIVE_MAXIMUM": str(bench_ingest.RECEIVE_MAXIMUM),
            "GRIDWATCH_DB_URL": conninfo,
            "GRIDWATCH_HTTP_LISTEN": f"127.0.0.1:{self.port}",
            "GRIDWATCH_DATA_DIR": str(data_dir),
            "GRIDWATCH_LOG_LEVEL": "ERROR",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        gridwatch = Path(sys.executable).with_name("gridwatch")
        self.proc = subprocess.Popen([str(gridwatch), "run"], env=self.env)
        self.wait(lambda h: h.get("components", {}).get("mqtt", False), "start")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)

    def health(self) -> dict[str, Any]:
        try:
            return bench_ingest.health(self.url)
        except OSError:
            return {}

    def wait(self, done: Any, what: str, within: float = 900.0) -> dict[str, Any]:
        """Poll /healthz (another process' progress: polling is the only way to see it)."""
        deadline = time.monotonic() + within
        last_print = 0.0
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SystemExit(f"gridwatch exited with {self.proc.returncode} ({what})")
            report = self.health()
            if report and done(report):
                return report
            if time.monotonic() > deadline:
                raise SystemExit(f"gave up waiting for {what}: {report.get('ingest')}")
            if time.monotonic() - last_print > 5 and report:
                spool = report.get("spool", {})
                print(
                    f"  … {what}: stored {report['ingest'].get('stored_messages', 0):,},"
                    f" spooled {spool.get('spooled_messages', 0):,},"
                    f" on disk {spool.get('batches', 0)} batches",
                    flush=True,
                )
                last_print = time.monotonic()
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args()
    n, d = args.messages, args.devices

    with running_broker() as broker, running_cluster() as cluster:
        cluster.create_database("bench")
        conninfo = cluster.conninfo_for("bench")
        print(f"registering {d:,} devices …", flush=True)
        bench_ingest.register(conninfo, d)
        gw = Gridwatch(broker.url, conninfo, Path(cluster.real_state_dir).parent / "gw")
        gw.start()  # makes its persistent session
        gw.stop()

        print(f"(a) baseline: {n:,} messages queued, drained with the database up …", flush=True)
        bench_ingest.queue_backlog(broker.url, n, d)
        gw.start()
        report = gw.wait(lambda h: h["ingest"]["stored_messages"] >= n, "baseline")
        ingest = report["ingest"]
        baseline = n / (ingest["last_stored_at"] - ingest["first_received_at"])

        print("(b) database stopped; publishing …", flush=True)
        cluster.stop()
        gw.wait(lambda h: not h["components"]["database"], "outage noticed")
        began = time.time()
        # later timestamps and sequence numbers than the baseline's: new messages
        publish_s = bench_ingest.queue_backlog(broker.url, n, d, age_s=1800, first_seq=1_000_000)
        report = gw.wait(lambda h: h["spool"]["spooled_messages"] >= n, "spooling")
        spool = report["spool"]
        spooled_s = time.time() - began
        bytes_per_message = spool["bytes"] / max(1, spool["spooled_messages"])

        print("(c) database started; writing the spool …", flush=True)
        restarted = time.time()
        cluster.start()
        report = gw.wait(
            lambda h: h["ingest"]["stored_messages"] >= 2 * n and h["spool"]["batches"] == 0,
            "replay",
        )
        replay_s = report["ingest"]["last_stored_at"] - restarted
        gw.stop()

    spool_rate, replay_rate = n / spooled_s, n / replay_s
    print()
    print(f"messages per phase             {n:>10,}  ({d:,} devices, 2 metrics each)")
    print(f"(a) database up, drained       {baseline:>10,.0f} msg/s")
    print(
        f"(b) database away, spooled     {spool_rate:>10,.0f} msg/s"
        f"  (ratio {spool_rate / baseline:.2f}; publisher alone {n / publish_s:,.0f} msg/s)"
    )
    print(
        f"    spool                      {spool['spooled_batches']:>10,} batches,"
        f" {bytes_per_message:.0f} bytes/message on disk"
    )
    print(
        f"(c) spool written on return    {replay_rate:>10,.0f} msg/s"
        f"  (ratio {replay_rate / baseline:.2f}; {replay_s:.1f} s incl. PostgreSQL start-up)"
    )


if __name__ == "__main__":
    main()
