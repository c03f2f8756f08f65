"""The CLI as a user runs it: `gridwatch run` on embedded defaults, then import, publish,
query, replay and stop, each as a separate process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from gridwatch.mqtt_publish import BoundedPublisher
from simulators.county import CountySpec, generate_county
from tests.services import free_tcp_port, service_root
from tests.unit.registry_data import GRIDS, collection, csv_text, device, sample_features, write

pytestmark = pytest.mark.integration

GRIDWATCH = str(Path(sys.executable).with_name("gridwatch"))


class Cli:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.mqtt_port = free_tcp_port()
        self.http_port = free_tcp_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")},
            "GRIDWATCH_DATA_DIR": str(root / "data"),
            "GRIDWATCH_EMBEDDED_MQTT_PORT": str(self.mqtt_port),
            "GRIDWATCH_EMBEDDED_PG_PORT": str(free_tcp_port()),
            "GRIDWATCH_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "GRIDWATCH_LOG_FORMAT": "text",
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [GRIDWATCH, *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and done.returncode != 0:
            raise AssertionError(f"gridwatch {' '.join(args)} → {done.returncode}\n{done.stderr}")
        return done

    def health(self) -> dict:
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            return orjson.loads(response.read())

    def wait_health(self, check: Callable[[dict], bool], within: float = 20.0) -> dict:
        """Ask the running service (another process) until its health report passes ``check``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            health = self.health()
            if check(health):
                return health
            time.sleep(0.1)  # polling another process' report, bounded by the deadline
        raise AssertionError(f"health never passed the check: {self.health()}")

    def wait_stored(self, messages: int, within: float = 20.0) -> None:
        """Ask the running service (another process) until it says it handled `messages`."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            ingest = self.health()["ingest"]
            if ingest["stored_messages"] + sum(ingest["rejected"].values()) >= messages:
                return
            time.sleep(0.05)  # polling another process' counter, bounded by the deadline
        raise AssertionError(f"service handled fewer than {messages}: {self.health()}")


@pytest.fixture
def cli() -> Iterator[Cli]:
    with service_root("e2e") as root:
        yield Cli(root)


@pytest.fixture
def running(cli: Cli) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [GRIDWATCH, "run"], env=cli.env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "gridwatch is running" in line:
            break
    else:
        proc.wait(10)
        proc.stderr.close()
        raise AssertionError("gridwatch run exited early:\n" + "".join(lines))
    # keep reading its log so that a full pipe never blocks it
    drain = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    drain.start()
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        drain.join(10)
        proc.stderr.close()


def test_embedded_run_import_publish_query_replay_stop(
    cli: Cli, running: subprocess.Popen[str]
) -> None:
    # a second instance on the same data dir refuses
    second = cli("run", check=False)
    assert second.returncode == 2 and "already running" in second.stderr

    shown = orjson.loads(cli("config", "show").stdout)
    assert shown["mqtt"]["url"] is None and shown["data_dir"] == cli.env["GRIDWATCH_DATA_DIR"]

    grids = write(cli.root / "grids.geojson", collection(sample_features()).decode())
    out = cli("grids", "import", str(grids)).stdout
    assert "6 inserted" in out or "inserted" in out
    devices = write(
        cli.root / "devices.csv",
        csv_text(
            [device("EF-100", grid=1, type="electrical_fire_monitor"), device("SD-100", grid=2)]
        ),
    )
    assert "2 inserted" in cli("devices", "import", str(devices)).stdout
    listed = {
        d["device_id"]: d
        for d in map(orjson.loads, cli("devices", "list", "--json").stdout.splitlines())
    }
    assert listed["EF-100"]["grid_code"] == GRIDS[1]  # derived from lat/lon
    assert listed["SD-100"]["grid_code"] == GRIDS[2]

    url = f"mqtt://127.0.0.1:{cli.mqtt_port}"
    with BoundedPublisher(url) as pub:
        pub.publish(
            "gridwatch/v1/up/EF-100/telemetry",
            orjson.dumps({"seq": 1, "values": {"residual_current_ma": 123.0}}),
        )
        pub.publish(
            "gridwatch/v1/up/NEW-1/telemetry",
            orjson.dumps({"seq": 1, "values": {"smoke_obscuration_db_m": 0.01}}),
        )
    cli.wait_stored(2)

    state = orjson.loads(cli("devices", "show", "EF-100").stdout)
    assert state["state"]["last_values"] == {"residual_current_ma": 123.0}
    assert state["device"]["grid_code"] == GRIDS[1]

    letters = [orjson.loads(x) for x in cli("deadletter", "list", "--json").stdout.splitlines()]
    assert [(x["device_id"], x["reason"]) for x in letters] == [("NEW-1", "unknown_device")]
    more = write(cli.root / "more.jsonl", orjson.dumps(device("NEW-1", grid=0)).decode() + "\n")
    cli("devices", "import", str(more))
    assert "replayed 1" in cli("deadletter", "replay", "--reason", "unknown_device").stdout
    cli.wait_stored(2 + 1)
    assert orjson.loads(cli("devices", "show", "NEW-1").stdout)["state"]["last_values"] == {
        "smoke_obscuration_db_m": 0.01
    }
    assert cli("deadletter", "list", "--json").stdout == ""  # replayed ones are hidden

    # Ctrl-C in a terminal reaches the whole process group: gridwatch still stops in order
    os.killpg(running.pid, signal.SIGINT)
    assert running.wait(60) == 0
    # everything it started is gone: nothing listens on the broker port, PostgreSQL is down
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", cli.mqtt_port))
    assert list((cli.root / "data").rglob("postmaster.pid")) == []
    assert not (cli.root / "data" / "run" / "instance.json").exists()


def test_demo_brings_up_a_reporting_county(cli: Cli) -> None:
    """The README's first command: a simulated county ingested on embedded defaults."""
    devices = len(generate_county(CountySpec(seed=2026)).devices)  # the demo's default county
    proc = subprocess.Popen([GRIDWATCH, "demo"], env=cli.env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if "gridwatch demo:" in line and "devices" in line:
                assert f"{devices} devices" in line
                break
        else:
            raise AssertionError("demo exited early")
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        cli.wait_stored(500, within=60)
        # the county's six cameras are served by the simulator and pulled by gridwatch
        health = cli.wait_health(lambda h: len(h["cameras"]["pulled"]) == 6, within=60)
        assert health["devices_known"] == devices
        assert {k: v for k, v in health["components"].items() if k != "cameras"} == {
            "mqtt": True,
            "database": True,
            "mqtt_feed": True,
            "webhooks": True,
        }
        streaming = cli.wait_health(
            lambda h: all(c["fps_analysed"] > 0 for c in h["cameras"]["per_camera"]), within=60
        )
        assert len(streaming["cameras"]["per_camera"]) == 6
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        proc.stderr.close()
