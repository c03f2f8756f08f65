"""How a fleet is split between worker processes, and how their figures add up (the
processes themselves run against a real broker in tests/integration)."""

from __future__ import annotations

from devices.messages import Kind
from simulators.fleet_runner import RunLimits, RunStats
from simulators.fleet_workers import combine, shares, split_limits


def test_a_device_stays_with_its_worker_whatever_else_is_in_the_fleet() -> None:
    ids = [f"EF-{n:05d}" for n in range(3000)]
    parts = shares(ids, 3)
    assert set().union(*parts) == set(ids) and sum(len(p) for p in parts) == len(ids)
    assert all(800 < len(p) < 1200 for p in parts)  # about even
    fewer = shares(ids[::7], 3)
    for part, smaller in zip(parts, fewer, strict=True):
        assert smaller <= part


def test_limits_are_shared_out() -> None:
    limits = split_limits(RunLimits(rate=1000, duration=30, messages=10), 3)
    assert [lim.messages for lim in limits] == [4, 3, 3]
    assert {lim.rate for lim in limits} == {1000 / 3} and {lim.duration for lim in limits} == {30}
    assert split_limits(RunLimits(), 2) == [RunLimits(), RunLimits()]


def test_figures_of_several_workers_add_up() -> None:
    a = RunStats(10, {Kind.TELEMETRY: 7, Kind.STATUS: 3}, 2, 5.0, 50.0, 100.0, 0.5, 1, 0)
    b = RunStats(20, {Kind.TELEMETRY: 15, Kind.EVENT: 5}, 1, 6.0, 60.0, 300.0, 2.0, 0, 4)
    total = combine([a, b])
    assert total == RunStats(
        30, {Kind.TELEMETRY: 22, Kind.STATUS: 3, Kind.EVENT: 5}, 3, 6.0, 60.0, 400.0, 2.0, 1, 4
    )
