"""Events the device decided on itself (alarm, pre_alarm, fault, tamper, silenced, restore),
mapped to grid-event types and severities.

Each mapped event raises a condition named after the event, or ``event:channel`` when the
mapping has an entry for the channel the device named in ``detail.channel`` (an electrical-fire
monitor's ``alarm`` on channel ``residual_current`` is ``residual_current_high``). The same
event again while its condition is open is a repeat, not a new hit. ``restore`` clears the
conditions of the event named by ``detail.restores`` (and ``detail.channel``, if given), or,
naming none, every open condition (``restore_clears_all``).

Order: events carry device time. An event older than the newest event that decided the same
condition (its raise, or a restore covering it) is stale and ignored, so a restore that
overtook its alarm on the way is not undone by the alarm arriving after it. ``self_test`` and
unmapped events raise nothing (``low_battery`` belongs to the ``battery`` detector).
"""

from __future__ import annotations

from typing import Any, Self

import msgspec
from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import CLEARED, NO_HITS, RAISED, Category, Hit, Hits, Label, Severity
from detectors.registry import DetectorConfig, register
from devices.messages import DEVICE_EVENTS, DeviceEvent
from devices.profiles import DeviceProfile

RAISING_EVENTS = DEVICE_EVENTS - {"restore"}
_DETAIL_KEYS = 8


class EventRule(BaseModel):
    """What one device event becomes downstream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="Grid-event type, e.g. smoke_alarm, device_fault, tamper.")
    category: Category = Field(description="fire, electrical, water, video or device.")
    severity: Severity = Field(description="Suggested severity: red, orange, yellow or blue.")


def _generic_events() -> dict[str, EventRule]:
    return {
        "alarm": EventRule(type="device_alarm", category="device", severity="orange"),
        "pre_alarm": EventRule(type="device_alarm", category="device", severity="yellow"),
        "fault": EventRule(type="device_fault", category="device", severity="yellow"),
        "tamper": EventRule(type="tamper", category="device", severity="yellow"),
        "silenced": EventRule(type="alarm_silenced", category="device", severity="blue"),
    }


class DeviceEventsConfig(DetectorConfig):
    """Maps device-reported events to grid-event types and severities."""

    events: dict[str, EventRule] = Field(
        default_factory=_generic_events,
        description="Event (or 'event:channel') → type, category, severity. Unmapped events "
        "raise nothing.",
    )
    restore_clears_all: bool = Field(
        True, description="A restore that names no event clears every open device-event condition."
    )

    @model_validator(mode="after")
    def _keys(self) -> Self:
        for key in self.events:
            event = key.split(":", 1)[0]
            if event not in RAISING_EVENTS:
                raise ValueError(
                    f"events.{key}: {event!r} is not a device event that raises "
                    f"(known: {', '.join(sorted(RAISING_EVENTS))})"
                )
        return self


class EventsState(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Open conditions (rule → device time raised), the device time of the newest event that
    decided each rule, and of the newest restore that cleared everything."""

    open: dict[str, float] = msgspec.field(default_factory=dict)
    seen: dict[str, float] = msgspec.field(default_factory=dict)
    restored_all: float | None = None


_EMPTY = EventsState()


class DeviceEventsDetector:
    state_type = EventsState

    def __init__(self, key: str, cfg: DeviceEventsConfig) -> None:
        self.key = key
        self.restore_clears_all = cfg.restore_clears_all
        self.rules = {k: Label(r.type, r.category, r.severity) for k, r in cfg.events.items()}

    def initial_state(self) -> EventsState:
        return _EMPTY

    def rebase(self, state: EventsState) -> EventsState:
        return EventsState(open=state.open) if state.open else _EMPTY

    def on_event(
        self, event: DeviceEvent, state: EventsState, now: float
    ) -> tuple[EventsState, Hits]:
        channel = event.detail.get("channel")
        channel = channel if isinstance(channel, str) else None
        if event.event == "restore":
            return self._restore(event, channel, state)
        rule = event.event
        if channel is not None and f"{rule}:{channel}" in self.rules:
            rule = f"{rule}:{channel}"
        label = self.rules.get(rule)
        if label is None or rule in state.open or event.ts < self._decided(state, rule):
            return state, NO_HITS
        hit = label.hit(
            event.device_id, self.key, rule, RAISED, event.ts, evidence=_evidence(event)
        )
        return (
            EventsState(
                {**state.open, rule: event.ts}, {**state.seen, rule: event.ts}, state.restored_all
            ),
            (hit,),
        )

    def _restore(
        self, event: DeviceEvent, channel: str | None, state: EventsState
    ) -> tuple[EventsState, Hits]:
        target = event.detail.get("restores")
        target = target if isinstance(target, str) else None
        if target is None and channel is None and not self.restore_clears_all:
            return state, NO_HITS
        everything = target is None and channel is None
        covered = [r for r in self.rules if _covers(r, target, channel)]
        ts = event.ts
        open_ = dict(state.open)
        seen = dict(state.seen)
        hits: list[Hit] = []
        for rule in covered:
            if ts < self._decided(state, rule):
                continue
            if not everything:
                seen[rule] = ts
            raised_at = open_.pop(rule, None)
            if raised_at is not None:
                ev = _evidence(event) | {"raised_ts": raised_at}
                hits.append(
                    self.rules[rule].hit(event.device_id, self.key, rule, CLEARED, ts, evidence=ev)
                )
        restored_all = state.restored_all
        if everything:
            restored_all = ts if restored_all is None else max(restored_all, ts)
        return EventsState(open_, seen, restored_all), tuple(hits)

    @staticmethod
    def _decided(state: EventsState, rule: str) -> float:
        newest = state.seen.get(rule, float("-inf"))
        if state.restored_all is not None:
            newest = max(newest, state.restored_all)
        return newest


def _covers(rule: str, target: str | None, channel: str | None) -> bool:
    event, _, rule_channel = rule.partition(":")
    if target is not None and event != target:
        return False
    return channel is None or not rule_channel or rule_channel == channel


def _evidence(event: DeviceEvent) -> dict[str, Any]:
    """The event and the scalar part of its detail (a few keys: evidence stays small)."""
    out: dict[str, Any] = {"event": event.event}
    if event.seq is not None:
        out["seq"] = event.seq
    detail = {
        k: v
        for k, v in list(event.detail.items())[:_DETAIL_KEYS]
        if isinstance(v, str | int | float | bool) and (not isinstance(v, str) or len(v) <= 64)
    }
    if detail:
        out["detail"] = detail
    return out


def build_device_events(cfg: DeviceEventsConfig, _: DeviceProfile) -> DeviceEventsDetector:
    return DeviceEventsDetector("device_events", cfg)


register(
    "device_events",
    DeviceEventsConfig,
    build_device_events,
    "Device-reported alarm, pre_alarm, fault, tamper, silenced → grid events; restore clears.",
)
