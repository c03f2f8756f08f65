"""What every detector shares: the :class:`Hit` it returns and the small protocols it implements.

A detector is pure: it gets a message (or nothing, on a tick), its own state for one device and
the time, and returns its next state and the hits that state change produced. It reads no clock,
opens nothing and keeps nothing between calls: the state it returns is all it remembers, a small
frozen :mod:`msgspec` struct that round-trips through JSON so it can be persisted and restored.

Times: ``ts`` of a reading, event or hit is the *device's* clock (epoch seconds); ``now`` is the
caller's (server) clock. Hold timers and trends measure device time between samples so that a
burst replayed after an outage is judged as it happened; what must fire without new data (a hold
timer on a tick, liveness, the end of flapping) measures server time since the caller last fed
the detector.

Detector state structs are ``frozen`` and treated as immutable: a mapping inside one is never
changed in place; a detector that changes it returns a new struct with a new mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

import msgspec

from devices.messages import DeviceEvent, Reading, StatusChange

Severity: TypeAlias = Literal["red", "orange", "yellow", "blue"]
"""The four warning colours (四色预警), red most severe."""
Category: TypeAlias = Literal["fire", "electrical", "water", "video", "device", "patrol", "safety"]
"""What an event is about: ``patrol`` (a patrol not done in time) and ``safety`` (a matter a
grid worker reports that no device sees: a dispute, a road hazard, …) come from people."""
Phase: TypeAlias = Literal["raised", "cleared"]

RAISED: Final = "raised"
CLEARED: Final = "cleared"
SEVERITY_RANK: Final[Mapping[str, int]] = {"blue": 1, "yellow": 2, "orange": 3, "red": 4}


class Hit(msgspec.Struct, frozen=True, gc=False):
    """A detector's finding: a condition of one device was raised, or it cleared.

    ``condition_key`` (``device/detector/rule[/metric]``) is the same for the raise and the clear
    of one condition, so downstream can pair them; the engine guarantees that for one key hits
    alternate raised, cleared, raised, … ``severity`` is a suggestion; the correlator decides.
    ``ts`` is the device's time of the reading or event that decided; a hold timer that expires
    on a tick estimates it (device time of the first supporting reading + server time since).
    Liveness hits carry server time (``now`` on a tick, ``received_at`` of the message or LWT
    otherwise), and so does the clear of a flapping hit.
    """

    device_id: str
    detector: str
    rule: str
    type: str
    category: Category
    severity: Severity
    phase: Phase
    ts: float
    condition_key: str
    metric: str | None = None
    value: float | None = None
    evidence: Mapping[str, Any] = msgspec.field(default_factory=dict)

    @property
    def raised(self) -> bool:
        return self.phase == RAISED


def condition_key(device_id: str, detector: str, rule: str, metric: str | None = None) -> str:
    """``device/detector/rule`` plus ``/metric`` for per-metric conditions.

    Device ids are MQTT topic levels, so they never contain ``/``.
    """
    key = f"{device_id}/{detector}/{rule}"
    return f"{key}/{metric}" if metric else key


@dataclass(frozen=True, slots=True)
class Label:
    """What a condition is called downstream: grid-event type, category and suggested severity."""

    type: str
    category: Category
    severity: Severity

    def hit(
        self,
        device_id: str,
        detector: str,
        rule: str,
        phase: Phase,
        ts: float,
        metric: str | None = None,
        value: float | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> Hit:
        return Hit(
            device_id=device_id,
            detector=detector,
            rule=rule,
            type=self.type,
            category=self.category,
            severity=self.severity,
            phase=phase,
            ts=ts,
            condition_key=condition_key(device_id, detector, rule, metric),
            metric=metric,
            value=value,
            evidence=evidence if evidence is not None else {},
        )


Hits: TypeAlias = tuple[Hit, ...]
NO_HITS: Final[Hits] = ()

S = TypeVar("S")


@runtime_checkable
class Detector(Protocol[S]):
    """Every detector: a registry key, its state type, a fresh state and a clock-jump reset."""

    key: str
    state_type: type[Any]

    def initial_state(self) -> S: ...

    def rebase(self, state: S) -> S:
        """The device's clock jumped back: forget timers and windows, keep open conditions."""
        ...


@runtime_checkable
class ReadingDetector(Detector[S], Protocol[S]):
    """Fed with telemetry (and values carried by heartbeats) in device-time order."""

    metrics: frozenset[str]

    def on_reading(self, reading: Reading, state: S, now: float) -> tuple[S, Hits]: ...


@runtime_checkable
class EventDetector(Detector[S], Protocol[S]):
    """Fed with the device's own events (alarm, fault, tamper, …), in arrival order."""

    def on_event(self, event: DeviceEvent, state: S, now: float) -> tuple[S, Hits]: ...


@runtime_checkable
class TickDetector(Detector[S], Protocol[S]):
    """Has something to decide when no message comes: called on ticks."""

    def on_tick(self, device_id: str, state: S, now: float) -> tuple[S, Hits]: ...

    def next_wake(self, state: S) -> float | None:
        """The earliest server time at which ``on_tick`` could return a hit; None: never."""
        ...

    def resume(self, state: S, now: float) -> S:
        """The service restarted: server-time timers restart at ``now`` (messages queued while
        it was down are still to come), open conditions stay."""
        ...


@runtime_checkable
class PresenceDetector(TickDetector[S], Protocol[S]):
    """Told whenever the device is heard from, and of its LWT status."""

    def on_heard(
        self, device_id: str, received_at: float, state: S, now: float
    ) -> tuple[S, Hits]: ...

    def on_status(self, status: StatusChange, state: S, now: float) -> tuple[S, Hits]: ...


@runtime_checkable
class HitFilter(TickDetector[S], Protocol[S]):
    """Sees every hit the other detectors of a device produced and may hold some back."""

    def filter(self, hits: Hits, state: S, now: float) -> tuple[S, Hits]: ...
