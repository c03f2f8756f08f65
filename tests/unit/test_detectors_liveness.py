"""Liveness (offline after missed intervals, LWT) and low battery."""

from __future__ import annotations

from typing import Any

from detectors import DeviceDetectors, DeviceState, Hit
from devices.messages import DeviceEvent, Heartbeat, Reading, StatusChange
from devices.profiles import get_profile

SD = "SD-1"
HOUR = 3600.0


def engine(**overrides: Any) -> DeviceDetectors:
    profile = get_profile("smoke_detector")
    return DeviceDetectors.for_profile(
        profile.with_overrides({"detectors": overrides} if overrides else None)
    )


class Dev:
    def __init__(self, eng: DeviceDetectors, now: float = 0.0) -> None:
        self.eng = eng
        self.state: DeviceState = eng.initial_state(SD, now)
        self.hits: list[Hit] = []

    def _take(self, out: Any) -> list[Hit]:
        self.state = out.state
        self.hits += out.hits
        return list(out.hits)

    def heartbeat(self, at: float, **values: float) -> list[Hit]:
        return self._take(
            self.eng.on_heartbeat(self.state, Heartbeat(SD, at, None, values, at), at)
        )

    def status(self, word: str, at: float) -> list[Hit]:
        return self._take(self.eng.on_status(self.state, StatusChange(SD, word, at, at), at))

    def event(
        self, name: str, at: float, received_at: float | None = None, **detail: Any
    ) -> list[Hit]:
        rec = at if received_at is None else received_at
        return self._take(
            self.eng.on_event(self.state, DeviceEvent(SD, at, None, name, detail, rec), rec)
        )

    def tick(self, now: float) -> list[Hit]:
        return self._take(self.eng.on_tick(self.state, now))


def live(hits: list[Hit]) -> list[tuple[str, str]]:
    return [(h.phase, h.evidence["reason"]) for h in hits if h.detector == "liveness"]


def test_offline_after_three_missed_heartbeats_not_before() -> None:
    d = Dev(engine())
    d.heartbeat(0)
    assert d.eng.next_wake(d.state) == 12 * HOUR  # 3 × 4 h
    assert d.tick(12 * HOUR - 1) == []
    hits = d.tick(12 * HOUR)
    assert [(h.phase, h.type, h.category, h.severity) for h in hits] == [
        ("raised", "device_offline", "device", "yellow")
    ]
    assert hits[0].evidence["last_heard_at"] == 0 and hits[0].ts == 12 * HOUR
    assert d.tick(20 * HOUR) == []  # reported once


def test_restored_when_the_device_speaks_again() -> None:
    d = Dev(engine())
    d.heartbeat(0)
    d.tick(13 * HOUR)
    hits = d.heartbeat(14 * HOUR)
    assert live(hits) == [("cleared", "silent")]
    assert hits[0].condition_key == "SD-1/liveness/offline"
    assert hits[0].evidence["offline_s"] == HOUR


def test_missed_intervals_and_interval_are_configurable() -> None:
    d = Dev(engine(liveness={"missed_intervals": 2, "interval_s": 60}))
    d.heartbeat(0)
    assert d.tick(119) == []
    assert live(d.tick(120)) == [("raised", "silent")]


def test_never_heard_device_gets_a_grace_period_from_creation() -> None:
    d = Dev(engine(), now=1000.0)
    assert d.tick(1000 + 12 * HOUR - 1) == []
    assert live(d.tick(1000 + 12 * HOUR)) == [("raised", "silent")]


def test_lwt_offline_raises_at_once_and_any_message_restores() -> None:
    d = Dev(engine())
    d.heartbeat(0)
    assert live(d.status("offline", 100)) == [("raised", "lwt")]
    assert d.status("offline", 101) == []  # retained status again
    assert live(d.event("self_test", 200)) == [("cleared", "lwt")]


def test_online_status_restores() -> None:
    d = Dev(engine())
    d.heartbeat(0)
    d.status("offline", 100)
    assert live(d.status("online", 150)) == [("cleared", "lwt")]


def test_message_received_before_the_lwt_does_not_restore() -> None:
    d = Dev(engine())
    d.heartbeat(0)
    d.status("offline", 100)
    assert live(d.event("self_test", 90, received_at=99)) == []  # processed late, sent before


def test_stale_retained_offline_after_newer_message_is_ignored() -> None:
    d = Dev(engine())
    d.heartbeat(500)
    assert d.status("offline", 400) == []


def test_lwt_can_be_ignored() -> None:
    d = Dev(engine(liveness={"offline_on_lwt": False}))
    d.heartbeat(0)
    assert d.status("offline", 100) == []


def test_low_battery_from_level_with_hysteresis() -> None:
    d = Dev(engine())
    d.heartbeat(0, battery_pct=50)
    hits = d.heartbeat(HOUR, battery_pct=19)
    assert [(h.phase, h.type, h.severity, h.value) for h in hits] == [
        ("raised", "low_battery", "blue", 19)
    ]
    assert d.heartbeat(2 * HOUR, battery_pct=22) == []  # between 20 and 25
    assert [h.phase for h in d.heartbeat(3 * HOUR, battery_pct=90)] == ["cleared"]


def test_low_battery_event_raises_and_plain_restore_does_not_clear() -> None:
    d = Dev(engine())
    hits = d.event("low_battery", 10, battery_pct=15)
    assert [(h.phase, h.type, h.value) for h in hits] == [("raised", "low_battery", 15)]
    assert d.event("low_battery", 20) == []
    d.event("restore", 30)
    assert [h for h in d.hits if h.detector == "battery" and h.phase == "cleared"] == []
    # the same condition as the battery level: a good level clears it
    assert [(h.phase, h.condition_key) for h in d.heartbeat(40, battery_pct=80)] == [
        ("cleared", "SD-1/battery/low/battery_pct")
    ]


def test_restore_naming_low_battery_clears() -> None:
    d = Dev(engine())
    d.event("low_battery", 10)
    assert [h.phase for h in d.event("restore", 20, restores="low_battery")] == ["cleared"]


def test_reading_counts_as_heard() -> None:
    eng = engine()
    state = eng.initial_state(SD, 0)
    state = eng.on_reading(state, Reading(SD, 5, None, {"temperature_c": 20}, 5), 5).state
    assert eng.next_wake(state) == 5 + 12 * HOUR


def test_lwt_of_a_device_first_seen_in_this_batch_raises() -> None:
    """A worker adopts a device just after its LWT arrived: the adoption stamp starts the
    grace period but is no proof of life, so the LWT still counts."""
    from detectors.runtime import DetectionRuntime
    from devices.messages import Heartbeat, StatusChange
    from devices.profiles import get_profile

    runtime = DetectionRuntime()
    profiles = {"SD-9": get_profile("smoke_detector")}
    runtime.adopt(profiles, {}, now=1000.0)
    done = runtime.run(
        [StatusChange("SD-9", "offline", 999.5, 999.5),
         Heartbeat("SD-9", 1000.2, 1, {"battery_pct": 90.0}, 1000.2)],
        profiles, now=1000.3,
    )  # fmt: skip
    assert [(h.type, h.phase) for h in done.hits] == [
        ("device_offline", "raised"),
        ("device_offline", "cleared"),
    ]
