"""`gridwatch run` on embedded defaults killed with SIGKILL: its mosquitto and PostgreSQL run
in their own sessions and outlive it. Started again, gridwatch stops the leftover broker
(which saves what it holds) and attaches to the leftover database, and carries on."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest

from gridwatch.mqtt_publish import BoundedPublisher
from tests.integration.gridwatch_process import GridwatchProcess
from tests.integration.test_cli_e2e import Cli
from tests.services import service_root
from tests.unit.registry_data import collection, device, jsonl, sample_features, write

pytestmark = pytest.mark.integration


@pytest.fixture
def cli() -> Iterator[Cli]:
    with service_root("e2e-kill") as root:
        yield Cli(root)


def reading(seq: int) -> bytes:
    body = {"ts": int(time.time() * 1000), "seq": seq, "values": {"pressure_mpa": 0.3}}
    return orjson.dumps(body)


def test_embedded_services_left_by_a_killed_gridwatch_are_taken_over(cli: Cli) -> None:
    gw = GridwatchProcess(cli.env, cli.http_port)
    gw.start()
    try:
        grids = collection(sample_features()).decode()
        cli("grids", "import", str(write(cli.root / "g.geojson", grids)))
        pump = device("WP-1", type="water_pressure_sensor")
        cli("devices", "import", str(write(cli.root / "d.jsonl", jsonl([pump]))))
        url = f"mqtt://127.0.0.1:{cli.mqtt_port}"
        with BoundedPublisher(url) as pub:
            pub.publish("gridwatch/v1/up/WP-1/telemetry", reading(1))
        cli.wait_stored(1)

        assert gw.kill() == -9
        with BoundedPublisher(url) as pub:  # the leftover broker still takes messages
            pub.publish("gridwatch/v1/up/WP-1/telemetry", reading(2))
        gw.start()  # would fail on the broker's port without the takeover
        assert any("left running" in line for line in gw.lines)
        with BoundedPublisher(url) as pub:
            pub.publish("gridwatch/v1/up/WP-1/telemetry", reading(3))
        # the message queued in the leftover broker for gridwatch's session was saved
        gw.wait_health(lambda h: h["ingest"]["stored_messages"] >= 2)
        state = orjson.loads(cli("devices", "show", "WP-1").stdout)["state"]
        assert state["last_seq"] == 3 and state["messages"] == 3
    finally:
        assert gw.stop() == 0
    assert list((cli.root / "data").rglob("postmaster.pid")) == []
    assert not list((cli.root / "data").rglob("mosquitto.pid"))
