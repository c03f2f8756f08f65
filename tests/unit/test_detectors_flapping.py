"""Flapping: a condition that toggles too often is reported once, then reconciled."""

from __future__ import annotations

from typing import Any

from detectors import DeviceDetectors, Hit
from devices.messages import DeviceEvent, StatusChange
from devices.profiles import get_profile

SD = "SD-1"


class Dev:
    def __init__(self, **overrides: Any) -> None:
        profile = get_profile("smoke_detector").with_overrides(
            {"detectors": overrides} if overrides else None
        )
        self.eng = DeviceDetectors.for_profile(profile)
        self.state = self.eng.initial_state(SD, 0)
        self.hits: list[Hit] = []

    def event(self, name: str, t: float) -> list[Hit]:
        out = self.eng.on_event(self.state, DeviceEvent(SD, t, None, name, {}, t), t)
        self.state = out.state
        self.hits += out.hits
        return list(out.hits)

    def status(self, word: str, t: float) -> list[Hit]:
        out = self.eng.on_status(self.state, StatusChange(SD, word, t, t), t)
        self.state = out.state
        self.hits += out.hits
        return list(out.hits)

    def tick(self, t: float) -> list[Hit]:
        out = self.eng.on_tick(self.state, t)
        self.state = out.state
        self.hits += out.hits
        return list(out.hits)

    def toggle(self, times: list[float]) -> None:
        for i, t in enumerate(times):
            self.event("alarm" if i % 2 == 0 else "restore", t)


def phases(hits: list[Hit], detector: str) -> list[str]:
    return [h.phase for h in hits if h.detector == detector]


def test_toggling_condition_is_reported_once_as_flapping() -> None:
    d = Dev()
    d.toggle([0, 10, 20, 30, 40, 50, 60, 70, 80])
    assert phases(d.hits, "device_events") == ["raised", "cleared", "raised", "cleared"]
    flaps = [h for h in d.hits if h.detector == "flapping"]
    assert [(h.phase, h.type, h.severity, h.category) for h in flaps] == [
        ("raised", "flapping", "red", "fire")
    ]
    assert flaps[0].evidence["condition_key"] == "SD-1/device_events/alarm"
    assert flaps[0].evidence["type"] == "smoke_alarm"
    assert flaps[0].condition_key == "SD-1/flapping/device_events.alarm"


def test_flapping_ends_after_quiet_and_releases_the_true_final_phase() -> None:
    d = Dev()
    d.toggle([0, 10, 20, 30, 40, 50, 60])  # ends raised (alarm at 60)
    assert d.eng.next_wake(d.state) == 60 + 900
    assert d.tick(959) == []
    released = d.tick(960)
    assert [(h.detector, h.phase) for h in released] == [
        ("device_events", "raised"),
        ("flapping", "cleared"),
    ]
    assert released[0].evidence["after_flapping"] is True and released[0].ts == 60
    assert released[1].evidence["held_back"] == 3
    assert phases(d.hits, "device_events") == ["raised", "cleared", "raised", "cleared", "raised"]


def test_flapping_end_releases_nothing_when_downstream_already_agrees() -> None:
    d = Dev()
    d.toggle([0, 10, 20, 30, 40, 50])  # ends cleared, as downstream last saw
    released = d.tick(50 + 900)
    assert [(h.detector, h.phase) for h in released] == [("flapping", "cleared")]


def test_slow_toggles_are_not_flapping() -> None:
    d = Dev()
    d.toggle([i * 200.0 for i in range(10)])  # at most 3 transitions in any 600 s
    assert [h for h in d.hits if h.detector == "flapping"] == []
    assert len(phases(d.hits, "device_events")) == 10


def test_offline_online_flapping() -> None:
    d = Dev()
    for i in range(6):
        d.status("offline" if i % 2 == 0 else "online", 10.0 * (i + 1))
    assert phases(d.hits, "liveness") == ["raised", "cleared", "raised", "cleared"]
    assert [h.rule for h in d.hits if h.detector == "flapping"] == ["liveness.offline"]


def test_watch_limits_what_is_watched() -> None:
    d = Dev(flapping={"watch": ["liveness"]})
    d.toggle([0, 10, 20, 30, 40, 50, 60])
    assert len(phases(d.hits, "device_events")) == 7
    assert [h for h in d.hits if h.detector == "flapping"] == []
