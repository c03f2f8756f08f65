"""Per-device baseline: each device against its own normal; spikes do not drag it."""

from __future__ import annotations

import random

from detectors import Hit
from detectors.baseline import BaselineConfig, BaselineState, build_baseline
from devices.messages import Reading
from devices.profiles import get_profile

EF = get_profile("electrical_fire_monitor")


def run(
    values: list[float], device_id: str = "EF-1", **cfg: object
) -> tuple[list[Hit], BaselineState]:
    det = build_baseline(
        BaselineConfig.model_validate({"metrics": {"residual_current_ma": 10.0}, **cfg}), EF
    )
    state = det.initial_state()
    hits: list[Hit] = []
    for i, v in enumerate(values):
        reading = Reading(device_id, 60.0 * i, None, {"residual_current_ma": v}, 60.0 * i)
        state, h = det.on_reading(reading, state, 60.0 * i)
        hits += h
    return hits, state


def normal(mean: float, sd: float, n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sd) for _ in range(n)]


def test_learns_quietly_through_warmup() -> None:
    hits, state = run([100, 500, 100, 500] * 5)  # wild, but within the 30-sample warm-up
    assert hits == []
    assert state.stats["residual_current_ma"].n == 20


def test_single_spike_does_not_alarm_or_drag_the_baseline() -> None:
    values = normal(150, 5, 100)
    values[60] = 400
    hits, state = run(values)
    assert hits == []
    assert abs(state.stats["residual_current_ma"].mean - 150) < 5


def test_sustained_departure_raises_once_then_relearns() -> None:
    values = normal(150, 5, 100) + normal(260, 5, 200, seed=2)
    hits, _ = run(values)
    assert [(h.phase, h.type, h.severity, h.category) for h in hits] == [
        ("raised", "anomaly", "blue", "device"),
        ("cleared", "anomaly", "blue", "device"),
    ]
    raised, cleared = hits
    assert raised.ts == 60.0 * 102  # third outlier in a row
    assert (
        raised.evidence["z"] > 6
        and raised.condition_key == "EF-1/baseline/deviation/residual_current_ma"
    )
    assert cleared.ts > raised.ts


def test_each_device_has_its_own_normal() -> None:
    # 260 mA is normal for a building that always leaks 260 mA, not for one at 150 mA.
    quiet_hits, _ = run(normal(260, 5, 200), device_id="EF-2")
    assert quiet_hits == []
    hits, _ = run([*normal(150, 5, 100), 260, 262, 258], device_id="EF-3")
    assert [h.phase for h in hits] == ["raised"]


def test_deviation_floor_keeps_a_flat_device_from_alarming_on_noise() -> None:
    hits, _ = run([150.0] * 50 + [158.0, 159.0, 157.0, 160.0])  # floor 10 mA: within 6 × 10
    assert hits == []


def test_disabled_without_metrics() -> None:
    det = build_baseline(BaselineConfig.model_validate({}), EF)
    state = det.initial_state()
    same, hits = det.on_reading(Reading("EF-1", 0, None, {"residual_current_ma": 1}, 0), state, 0)
    assert same is state and hits == ()
