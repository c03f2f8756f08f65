"""How many messages a second the fleet simulator publishes to a real mosquitto, against a
bare paho publish loop in the same process and against what the ingest bench consumes.

On a fresh broker, for each QoS:

  (a) a bare paho publish loop (gridwatch's BoundedPublisher, the ingest bench's payload),
  (b) the simulator in this process: a generated county of ~D devices with its regular
      traffic and clock skew, time compressed so that every message is due at once, no
      rate limit (what `gridwatch simulate fleet --rate 0` does when it lags),
  (c) the simulator with W worker processes (`--workers W`), wall time including start-up,

each publishing N messages (acknowledged by the broker at QoS 1), and the ratios b/a, c/a;
medians of --repeat interleaved runs, since the machine is shared.
With --drain, (d): the ingest bench's bare subscriber drains a backlog of N QoS 1 messages
the simulator queued for it, i.e. the subscriber side of bench/ingest.py, on the
simulator's traffic: the rate a load generator must reach.

    .venv/bin/python bench/simulate_rate.py [--messages 100000] [--devices 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridwatch.mqtt_publish import BoundedPublisher
from simulators.clocks import ClockModel
from simulators.county import DEVICE_KINDS, CountySpec, generate_county
from simulators.fleet import FleetConfig
from simulators.fleet_runner import RunLimits, run_fleet
from simulators.fleet_setup import FleetPlan
from simulators.fleet_workers import (
    DEFAULT_INFLIGHT,
    DEFAULT_MQTT_VERSION,
    MQTT_VERSIONS,
    BrokerSpec,
    run_workers,
)
from tests.services import running_broker

SPEED = 1e6  # simulated seconds per wall second: the schedule is always ahead


def ingest_bench() -> ModuleType:
    """bench/ingest.py, whose bare subscriber (d) uses (its name clashes with the package)."""
    path = Path(__file__).with_name("ingest.py")
    spec = importlib.util.spec_from_file_location("ingest_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def county_devices(devices: int) -> list:
    per_grid = sum(kind.per_grid for kind in DEVICE_KINDS)  # ~5 a grid
    density = devices / (11 * 11 * 9 * per_grid)
    county = generate_county(CountySpec(towns=11, villages_per_town=11, grids_per_village=9,
                                        density=density, cameras=0))
    return list(county.devices)


def plan(devices: list, messages: int) -> FleetPlan:
    config = FleetConfig(start_ts=time.time(), speed=SPEED, seed=1, clock=ClockModel())
    return FleetPlan(tuple(devices), config, None, RunLimits(messages=messages))


def bare_loop(
    url: str, messages: int, qos: int, inflight: int, protocol: int
) -> tuple[float, float, float]:
    """Messages/s, mean payload bytes and CPU µs a message (all of this process's threads)
    of the plainest publisher in Python."""
    start_ts = int(time.time() * 1000)
    size = 0
    with BoundedPublisher(url, inflight=inflight, protocol=protocol) as publisher:
        began, cpu = time.perf_counter(), time.process_time()
        for i in range(messages):
            payload = orjson.dumps({
                "ts": start_ts + i,
                "seq": i // 10_000,
                "values": {"residual_current_ma": 150.0 + i % 50, "cable_temp_c_1": 41.5},
            })
            size += len(payload)
            publisher.publish(f"gridwatch/v1/up/EF-{i % 10_000:06d}/telemetry", payload, qos=qos)
        publisher.flush(600)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return messages / elapsed, size / messages, cpu / messages * 1e6


class _Sizes:
    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def __call__(self, out: object) -> None:
        self.count += 1
        self.total += len(out.payload)  # type: ignore[attr-defined]


def simulator(broker: BrokerSpec, fleet: FleetPlan, qos: int) -> tuple[float, float, float]:
    model = fleet.model()
    sizes = _Sizes()
    with broker.publisher(0) as publisher:
        began, cpu = time.perf_counter(), time.process_time()
        run_fleet(model, publisher, qos=qos, limits=fleet.limits, offline_on_stop=False,
                  on_sent=sizes)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return sizes.count / elapsed, sizes.total / sizes.count, cpu / sizes.count * 1e6


def workers(broker: BrokerSpec, fleet: FleetPlan, qos: int, count: int) -> tuple[float, float]:
    """Messages/s over the wall time (spawning included), and over the workers' own runs."""
    began = time.perf_counter()
    report = run_workers(fleet, broker, workers=count, qos=qos, offline_on_stop=False)
    elapsed = time.perf_counter() - began
    return report.stats.sent / elapsed, report.stats.sent / report.stats.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--qos", type=int, choices=(0, 1), action="append")
    parser.add_argument("--inflight", type=int, default=DEFAULT_INFLIGHT,
                        help="in-flight window of every publisher")
    parser.add_argument("--mqtt-version", choices=list(MQTT_VERSIONS),
                        default=DEFAULT_MQTT_VERSION, help="of every publisher")
    parser.add_argument("--drain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--repeat", type=int, default=3, help="medians of this many runs")
    args = parser.parse_args()
    n = args.messages
    devices = county_devices(args.devices)
    fleet = plan(devices, n)
    print(f"{len(devices):,} devices, {n:,} messages a measurement, medians of {args.repeat}",
          flush=True)
    rows = []
    with running_broker() as broker:
        spec = BrokerSpec(broker.url, client_id="bench-sim", inflight=args.inflight,
                          mqtt_version=args.mqtt_version)
        for qos in args.qos or [1, 0]:
            runs: list[tuple[float, ...]] = []
            for _ in range(args.repeat):  # interleaved, so a busy spell hits all three
                bare, bare_size, bare_cpu = bare_loop(broker.url, n, qos, args.inflight,
                                                      MQTT_VERSIONS[args.mqtt_version])
                sim, sim_size, sim_cpu = simulator(spec, fleet, qos)
                many, many_run = workers(spec, fleet, qos, args.workers)
                runs.append((bare, bare_size, bare_cpu, sim, sim_size, sim_cpu, many, many_run))
            rows.append((qos, *(statistics.median(column) for column in zip(*runs, strict=True))))
            print(f"  QoS {qos} done", flush=True)
        drained = None
        if args.drain:
            bench = ingest_bench()
            port = int(broker.url.rsplit(":", 1)[1])
            bench.make_session(port, "bench-bare")
            queued, _, _ = simulator(spec, fleet, 1)
            drained = (queued, n / bench.drain_bare(port, n))
    print()
    for qos, bare, bare_size, bare_cpu, sim, sim_size, sim_cpu, many, many_run in rows:
        print(f"QoS {qos}")
        print(f"  (a) bare paho publish loop        {bare:>9,.0f} msg/s  ({bare_size:.0f} B,"
              f" {bare_cpu:.0f} µs CPU a message)")
        print(f"  (b) simulator, 1 process          {sim:>9,.0f} msg/s  ({sim_size:.0f} B,"
              f" {sim_cpu:.0f} µs CPU)   b/a {sim / bare:.2f}")
        print(f"  (c) simulator, {args.workers} worker processes {many:>9,.0f} msg/s"
              f"   c/a {many / bare:.2f}   ({many_run:,.0f} msg/s without start-up)")
    if drained is not None:
        queued, drain = drained
        print("QoS 1 backlog for a persistent session (as bench/ingest.py queues it)")
        print(f"  simulator queued it at            {queued:>9,.0f} msg/s")
        print(f"  (d) bare subscriber drained it at {drain:>9,.0f} msg/s"
              f"   (b)/(d) {queued / drain:.2f}")


if __name__ == "__main__":
    main()
