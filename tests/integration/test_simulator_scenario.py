"""``gridwatch simulate fleet`` against a real mosquitto: a subscriber receives exactly the
messages the dry run of the same command lists, from one process and from several."""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridwatch.cli import simulate_cmd
from gridwatch.embedded import MosquittoBroker
from simulators.county import CountySpec, generate_county
from simulators.county_files import write_county
from simulators.dry_run import payload_of, read_jsonl
from tests.integration.test_simulator_publish import Subscriber

pytestmark = pytest.mark.integration

HOTEL = Path(__file__).parents[2] / "simulators" / "scenarios" / "hotel.toml"


def dry_run_lines(tmp_path: Path, args: list[str]) -> list[tuple[str, bytes]]:
    out = tmp_path / f"dry-{uuid.uuid4().hex[:6]}.jsonl"
    result = CliRunner().invoke(simulate_cmd.app, [*args, "--dry-run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return [(line["topic"], payload_of(line)) for line in read_jsonl(out)]


def run_live(broker: MosquittoBroker, args: list[str]) -> str:
    result = CliRunner().invoke(simulate_cmd.app, [*args, "--url", broker.url, "-q"])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_scenario_file_reaches_the_broker_exactly_as_scripted(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    root = f"simtest-{uuid.uuid4().hex[:8]}/v1"
    args = ["fleet", "--scenario", str(HOTEL), "--topic-root", root, "--speed", "40"]
    expected = dry_run_lines(tmp_path, args)
    assert len(expected) == 25
    subscriber = Subscriber(mosquitto_broker.url, f"{root}/up/#")
    try:
        output = run_live(mosquitto_broker, args)
        assert subscriber.wait_for(len(expected)), f"got {len(subscriber.received)}"
        received = list(subscriber.received)
    finally:
        subscriber.close()
    assert received == expected  # same topics, bytes and order (one connection, QoS 1)
    assert "stopped: nothing more to send" in output


def test_worker_processes_send_every_device_exactly_its_messages_in_order(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    county = tmp_path / "county"
    write_county(
        generate_county(CountySpec(towns=1, villages_per_town=2, grids_per_village=3)), county
    )
    root = f"simtest-{uuid.uuid4().hex[:8]}/v1"
    args = [
        "fleet", "--county-dir", str(county), "--topic-root", root, "--speed", "600",
        "--duration", "2", "--start", "2026-11-22T08:00:00+08:00", "--rate", "0",
        "--interval", "electrical_fire_monitor.telemetry=20",
    ]
    expected = dry_run_lines(tmp_path, args)
    assert len(expected) > 300
    subscriber = Subscriber(mosquitto_broker.url, f"{root}/up/#")
    try:
        output = run_live(mosquitto_broker, [*args, "--workers", "2"])
        assert subscriber.wait_for(len(expected)), f"got {len(subscriber.received)}"
        received = list(subscriber.received)
    finally:
        subscriber.close()
    assert len(received) == len(expected)
    assert sorted(received) == sorted(expected)

    def per_device(messages: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
        streams: dict[str, list[bytes]] = defaultdict(list)
        for topic, payload in messages:
            streams[topic.split("/")[-2]].append(payload)
        return streams

    assert per_device(received) == per_device(expected)  # each device's order kept
    assert received != expected  # two connections interleave: the check above is the point
    devices = len(per_device(expected))
    flat = output.replace("\n", " ")
    assert f"{len(expected) - devices:,} sent" in flat  # plus the closing offline statuses
    assert f"{devices} offline status(es) published" in flat
