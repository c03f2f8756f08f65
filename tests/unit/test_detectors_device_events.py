"""Device-reported events mapped to grid-event types and severities; restore; order."""

from __future__ import annotations

from typing import Any

import pytest

from detectors import DeviceDetectors, DeviceState, Hit
from devices.messages import DeviceEvent
from devices.profiles import get_profile


class Dev:
    def __init__(self, type_key: str, device_id: str, **overrides: Any) -> None:
        profile = get_profile(type_key).with_overrides(
            {"detectors": overrides} if overrides else None
        )
        self.eng = DeviceDetectors.for_profile(profile)
        self.device_id = device_id
        self.state: DeviceState = self.eng.initial_state(device_id, 0)
        self.hits: list[Hit] = []

    def event(self, name: str, ts: float, **detail: Any) -> list[Hit]:
        ev = DeviceEvent(self.device_id, ts, None, name, detail, ts + 1)
        out = self.eng.on_event(self.state, ev, ts + 1)
        self.state = out.state
        self.hits += out.hits
        return [h for h in out.hits if h.detector == "device_events"]


def summary(hits: list[Hit]) -> list[tuple[str, str, str, str]]:
    return [(h.phase, h.type, h.category, h.severity) for h in hits]


@pytest.mark.parametrize(
    ("type_key", "event", "detail", "expected"),
    [
        ("smoke_detector", "alarm", {}, ("smoke_alarm", "fire", "red")),
        ("smoke_detector", "pre_alarm", {}, ("smoke_alarm", "fire", "orange")),
        ("smoke_detector", "fault", {}, ("device_fault", "device", "yellow")),
        ("smoke_detector", "tamper", {}, ("tamper", "device", "yellow")),
        ("smoke_detector", "silenced", {}, ("alarm_silenced", "fire", "blue")),
        (
            "electrical_fire_monitor",
            "alarm",
            {"channel": "residual_current"},
            ("residual_current_high", "electrical", "orange"),
        ),
        (
            "electrical_fire_monitor",
            "alarm",
            {"channel": "cable_temp"},
            ("cable_overtemp", "electrical", "orange"),
        ),
        (
            "electrical_fire_monitor",
            "alarm",
            {"channel": "arc"},
            ("electrical_fire_alarm", "electrical", "orange"),
        ),
        (
            "water_pressure_sensor",
            "alarm",
            {"channel": "pressure_low"},
            ("pressure_low", "water", "orange"),
        ),
        ("water_pressure_sensor", "alarm", {}, ("pressure_alarm", "water", "orange")),
    ],
)
def test_mapping(
    type_key: str, event: str, detail: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    d = Dev(type_key, "D-1")
    assert summary(d.event(event, 10, **detail)) == [("raised", *expected)]


def test_channel_names_the_condition_and_goes_into_evidence() -> None:
    d = Dev("electrical_fire_monitor", "EF-1")
    (hit,) = d.event("alarm", 10, channel="residual_current", value_ma=420)
    assert hit.condition_key == "EF-1/device_events/alarm:residual_current"
    assert hit.evidence == {
        "event": "alarm",
        "detail": {"channel": "residual_current", "value_ma": 420},
    }


def test_repeated_alarm_is_not_a_new_hit_and_restore_clears_all() -> None:
    d = Dev("smoke_detector", "SD-1")
    d.event("alarm", 10)
    assert d.event("alarm", 20) == []
    d.event("tamper", 25)
    cleared = d.event("restore", 30)
    assert sorted((h.phase, h.rule) for h in cleared) == [
        ("cleared", "alarm"),
        ("cleared", "tamper"),
    ]
    assert [h.phase for h in d.event("alarm", 40)] == ["raised"]


def test_targeted_restore_clears_only_that_event() -> None:
    d = Dev("smoke_detector", "SD-1")
    d.event("alarm", 10)
    d.event("fault", 11)
    assert [(h.phase, h.rule) for h in d.event("restore", 20, restores="fault")] == [
        ("cleared", "fault")
    ]
    assert [(h.phase, h.rule) for h in d.event("restore", 21)] == [("cleared", "alarm")]


def test_alarm_arriving_after_its_restore_is_stale() -> None:
    d = Dev("smoke_detector", "SD-1")
    d.event("alarm", 10)
    d.event("restore", 30)
    assert d.event("alarm", 20) == []  # sent before the restore, arrived after it


def test_restore_older_than_the_alarm_does_not_clear_it() -> None:
    d = Dev("smoke_detector", "SD-1")
    d.event("alarm", 30)
    assert d.event("restore", 20) == []


def test_late_alarm_with_nothing_newer_still_raises() -> None:
    d = Dev("smoke_detector", "SD-1")
    d.event("fault", 1000)
    assert [h.type for h in d.event("alarm", 500)] == ["smoke_alarm"]


def test_self_test_and_unmapped_events_raise_nothing() -> None:
    d = Dev("smoke_detector", "SD-1")
    assert d.event("self_test", 10) == []


def test_restore_clears_all_can_be_turned_off() -> None:
    d = Dev("smoke_detector", "SD-1", device_events={"restore_clears_all": False})
    d.event("alarm", 10)
    assert d.event("restore", 20) == []
    assert [h.phase for h in d.event("restore", 21, restores="alarm")] == ["cleared"]


def test_severity_override_for_one_event() -> None:
    d = Dev("smoke_detector", "SD-1", device_events={"events": {"tamper": {"severity": "orange"}}})
    assert summary(d.event("tamper", 10)) == [("raised", "tamper", "device", "orange")]


def test_mapping_entry_removed_with_null() -> None:
    d = Dev("smoke_detector", "SD-1", device_events={"events": {"silenced": None}})
    assert d.event("silenced", 10) == []
