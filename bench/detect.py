"""Detector throughput and state memory, without I/O.

Generates a fleet in the field's mix (smoke 45 %, electrical-fire 35 %, fire-water pressure
20 %) with realistic readings, pushes them through the detector engines (one engine per
device type, shared by all its devices, one state per device) and prints:

* readings per second through the engines, and the same-process baseline (a loop that only
  looks up and stores each device's state for each reading) with the ratio of the two;
* a full tick sweep over every device (what a liveness/hold-timer scheduler would do);
* the memory the detector state of all devices takes (tracemalloc), and its JSON size.

The alert correlator (``alerts/``) is not part of the run yet: hits are only counted.

    .venv/bin/python bench/detect.py                  # 10,000 devices × 100 rounds = 1,000,000
    .venv/bin/python bench/detect.py --devices 2000 --rounds 20
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alerts.correlation import DeviceContext, correlate, lookup_keys
from alerts.event import GridEvent
from detectors import DeviceDetectors, DeviceState, Hit, Label
from devices.messages import Reading
from devices.profiles import get_profile

MIX = (("smoke_detector", 0.45), ("electrical_fire_monitor", 0.35), ("water_pressure_sensor", 0.20))
PREFIX = {"smoke_detector": "SD", "electrical_fire_monitor": "EF", "water_pressure_sensor": "WP"}
STEP_S = 60.0  # one reading per device per round, a minute apart


class Device:
    """One simulated device: its own normal, and sometimes an incident."""

    __slots__ = ("base", "battery", "device_id", "incident", "rng", "type_key")

    def __init__(self, device_id: str, type_key: str, rng: random.Random) -> None:
        self.device_id = device_id
        self.type_key = type_key
        self.rng = rng
        self.battery = rng.uniform(30, 100)
        self.incident = 0  # rounds left in an incident
        if type_key == "electrical_fire_monitor":
            self.base = rng.uniform(100, 200)  # normal leakage of this building (mA)
        elif type_key == "water_pressure_sensor":
            self.base = rng.uniform(0.25, 0.55)  # this hydrant's pressure (MPa)
        else:
            self.base = rng.uniform(0.0, 0.02)  # clean-air obscuration (dB/m)

    def values(self) -> dict[str, float]:
        g = self.rng.gauss
        if self.incident == 0 and self.rng.random() < 0.002:
            self.incident = self.rng.randint(2, 8)
        hot = self.incident > 0
        self.incident = max(0, self.incident - 1)
        self.battery = max(5.0, self.battery - 0.001)
        if self.type_key == "electrical_fire_monitor":
            out = {
                "residual_current_ma": (420.0 if hot else self.base) + g(0, 5),
                "temperature_c": 25 + g(0, 0.5),
            }
            for i in range(1, 5):
                out[f"cable_temp_c_{i}"] = (76.0 if hot and i == 1 else 40.0) + g(0, 0.5)
            for p in "abc":
                out[f"current_a_{p}"] = 20 + g(0, 2)
                out[f"voltage_v_{p}"] = 220 + g(0, 2)
            return out
        if self.type_key == "water_pressure_sensor":
            pressure = 0.08 if hot else self.base
            return {"pressure_mpa": max(0.0, pressure + g(0, 0.005)), "battery_pct": self.battery}
        return {
            "smoke_obscuration_db_m": (0.3 if hot else self.base) + abs(g(0, 0.002)),
            "temperature_c": 22 + g(0, 0.5),
            "battery_pct": self.battery,
        }


def fleet(n: int, seed: int) -> list[Device]:
    rng = random.Random(seed)
    devices: list[Device] = []
    for type_key, share in MIX:
        for i in range(round(n * share)):
            device_rng = random.Random(rng.random())
            devices.append(Device(f"{PREFIX[type_key]}-{i:05d}", type_key, device_rng))
    rng.shuffle(devices)
    return devices


def readings(devices: list[Device], start: float, rounds: int) -> list[Reading]:
    out: list[Reading] = []
    for r in range(rounds):
        t0 = start + r * STEP_S
        for k, d in enumerate(devices):
            ts = t0 + (k % 600) / 10.0  # devices spread over the minute
            out.append(Reading(d.device_id, ts, None, d.values(), ts + 0.2))
    return out


def alarm_storm(devices: list[Device], per_site: int, start: float) -> list[Hit]:
    """Every device raises an alarm and clears it 60 s later, sites of ``per_site`` devices
    raising together: the correlator's worst case (every hit changes an event)."""
    labels = {
        "smoke_detector": Label("smoke_alarm", "fire", "orange"),
        "electrical_fire_monitor": Label("residual_current_high", "electrical", "orange"),
        "water_pressure_sensor": Label("pressure_low", "water", "orange"),
    }
    hits: list[Hit] = []
    for i, d in enumerate(devices):
        label = labels[d.type_key]
        t = start + (i // per_site) * 5.0
        hits.append(label.hit(d.device_id, "bench", "alarm", "raised", t))
        hits.append(label.hit(d.device_id, "bench", "alarm", "cleared", t + 60))
    hits.sort(key=lambda h: h.ts)
    return hits


def correlate_all(hits: list[Hit], contexts: dict[str, DeviceContext]) -> int:
    """What the alert stage does per hit, without I/O: holders by key, changes applied."""
    from datetime import UTC, datetime

    holders: dict[str, GridEvent] = {}
    changes = 0
    for n, hit in enumerate(hits):
        device = contexts[hit.device_id]
        keys = lookup_keys(hit, device)
        holding = {k: e for k in keys if (e := holders.get(k)) is not None}
        now = datetime.fromtimestamp(hit.ts, UTC)
        for change in correlate(hit, device, holding, now, entropy=n):
            changes += 1
            for k, before in holding.items():
                if before.id == change.event.id and change.event.correlation_key != k:
                    holders.pop(k, None)
            if change.event.correlation_key is not None:
                holders[change.event.correlation_key] = change.event
    return changes


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=100, help="readings per device")
    parser.add_argument("--chunk", type=int, default=10, help="rounds generated at a time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    engines = {t: DeviceDetectors.for_profile(get_profile(t)) for t, _ in MIX}
    devices = fleet(args.devices, args.seed)
    engine_of = {d.device_id: engines[d.type_key] for d in devices}
    start = 1_795_420_800.0
    states: dict[str, DeviceState] = {
        d.device_id: engine_of[d.device_id].initial_state(d.device_id, start) for d in devices
    }
    shadow: dict[str, object] = dict(states)
    hits: Counter[str] = Counter()
    limits = {"residual_current_ma": 300.0, "pressure_mpa": 1.0, "cable_temp_c_1": 70.0}
    total = engine_s = base_s = values_s = 0.0
    n_readings = 0

    def run_engine(chunk: list[Reading]) -> None:
        for r in chunk:
            dev = r.device_id
            out = engine_of[dev].on_reading(states[dev], r, r.received_at)
            states[dev] = out.state
            if out.hits:
                for h in out.hits:
                    hits[h.type] += 1

    def run_baseline(chunk: list[Reading]) -> None:
        for r in chunk:
            dev = r.device_id
            s = shadow[dev]
            shadow[dev] = s

    def run_values(chunk: list[Reading]) -> None:
        for r in chunk:
            dev = r.device_id
            s = shadow[dev]
            for name, value in r.values.items():
                if value > limits.get(name, 1e9):
                    s = name
            shadow[dev] = s

    done = 0
    while done < args.rounds:
        rounds = min(args.chunk, args.rounds - done)
        chunk = readings(devices, start + done * STEP_S, rounds)
        n_readings += len(chunk)
        base_s += timed(lambda c=chunk: run_baseline(c))
        values_s += timed(lambda c=chunk: run_values(c))
        engine_s += timed(lambda c=chunk: run_engine(c))
        done += rounds
        del chunk
    total = engine_s

    contexts = {
        d.device_id: DeviceContext(device_id=d.device_id, site=f"site-{i // 4}", grid_code="g")
        for i, d in enumerate(devices)
    }
    storm = alarm_storm(devices, 4, start)
    changes = 0

    def run_storm() -> None:
        nonlocal changes
        changes = correlate_all(storm, contexts)

    storm_s = timed(run_storm)

    now = start + args.rounds * STEP_S + 1
    tick_s = timed(lambda: [engine_of[k].on_tick(s, now) for k, s in states.items()])

    # Memory of the state: rebuild every device's state from its JSON (as after a restart)
    # under tracemalloc, so only the state objects are counted.
    blobs = {k: engine_of[k].encode_state(s) for k, s in states.items()}
    json_bytes = sum(len(b) for b in blobs.values())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    restored = {k: engine_of[k].decode_state(b)[0] for k, b in blobs.items()}
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    state_bytes = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per_type: Counter[str] = Counter()
    for d in devices:
        per_type[d.type_key] += len(blobs[d.device_id])
    del restored

    rate = n_readings / total
    base_rate = n_readings / base_s
    per_10k = state_bytes * 10_000 / len(devices)
    figures = {
        "devices": len(devices),
        "readings": n_readings,
        "engine_s": round(total, 3),
        "readings_per_s": round(rate),
        "us_per_reading": round(1e6 / rate, 2),
        "baseline_readings_per_s": round(base_rate),
        "ratio_engine_to_baseline_time": round(total / base_s, 1),
        "values_loop_readings_per_s": round(n_readings / values_s),
        "ratio_engine_to_values_loop_time": round(total / values_s, 1),
        "tick_sweep_s": round(tick_s, 4),
        "correlator_hits": len(storm),
        "correlator_hits_per_s": round(len(storm) / storm_s),
        "correlator_event_changes": changes,
        "tick_us_per_device": round(tick_s * 1e6 / len(devices), 2),
        "state_bytes_tracemalloc": state_bytes,
        "state_mib_per_10k_devices": round(per_10k / 2**20, 2),
        "state_bytes_per_device": round(state_bytes / len(devices)),
        "state_json_bytes_per_device": round(json_bytes / len(devices)),
        "state_json_bytes_per_device_by_type": {
            t: round(per_type[t] / max(1, sum(1 for d in devices if d.type_key == t)))
            for t, _ in MIX
        },
        "hits": dict(hits.most_common()),
        "python": sys.version.split()[0],
    }
    print(f"devices                 {len(devices):>12,}  (smoke 45 %, electrical 35 %, water 20 %)")
    print(f"readings                {n_readings:>12,}")
    print(f"engine                  {rate:>12,.0f} readings/s  ({1e6 / rate:.2f} µs each)")
    print(f"baseline loop           {base_rate:>12,.0f} readings/s  (state lookup + store only)")
    print(f"engine / baseline time  {total / base_s:>12.1f} ×")
    print(
        f"values loop             {n_readings / values_s:>12,.0f} readings/s  "
        f"(also compares every value with a fixed limit: {total / values_s:.1f} × faster "
        "than the engine)"
    )
    print(
        f"tick sweep              {tick_s * 1e3:>12.1f} ms for all devices "
        f"({tick_s * 1e6 / len(devices):.2f} µs each)"
    )
    print(
        f"state (tracemalloc)     {per_10k / 2**20:>12.2f} MiB per 10,000 devices "
        f"({state_bytes / len(devices):.0f} B each)"
    )
    print(
        f"correlator              {len(storm) / storm_s:>12,.0f} hits/s  "
        f"({len(storm):,} hits of an alarm storm, 4 devices a site → {changes:,} event changes)"
    )
    print(f"state as JSON           {json_bytes / len(devices):>12.0f} B per device")
    print(f"hits                    {sum(hits.values()):>12,}  {dict(hits.most_common())}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
