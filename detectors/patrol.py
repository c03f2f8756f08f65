"""Patrol tags (消防智能巡查标签): the patrol that was not done in time, and the hazard a patrol
found.

A tag marks a place that must be patrolled every ``interval`` (its registry row's
``profile.patrol_interval``: ``"P1D"`` for a market, ``"P7D"`` for a warehouse). A grid worker
scans it on the round; the scan arrives as the tag's device event ``checkin`` with
``detail.worker_id`` and, optionally, ``detail.checklist`` (item → true when fine, false when
not) and ``detail.hazard``.

* ``patrol_overdue`` (category ``patrol``) is raised, on a tick, when a period's deadline
  (its end plus ``grace``, see :mod:`detectors.patrol_schedule`) passes without a check-in
  doing it. The hit's time is that deadline, so the same miss found twice is the same hit.
  The next check-in that does a due period clears it (and the event closes by itself).
* ``fire_hazard`` (category ``fire``, so it joins the fire events of the tag's site) is
  raised by a check-in whose checklist fails an item or that says ``hazard: true``, with the
  checklist as evidence; a later check-in with a checklist that passes (or ``hazard:
  false``) clears it. A bare scan says nothing about the hazard.

Ticks run from the tag's registration on, scanned or not (the detector is ``scheduled``):
its duty starts with the first period that begins after the service first ticked it. After a
restart no patrol is declared overdue for ``settle_s``, because check-ins the broker queued
meanwhile are still to come. With several workers only the one owning patrol deadlines ticks
tags, after taking in the check-ins other workers stored (:mod:`ingest.patrol_owner`); its
settling time also covers a takeover.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final, Self

import msgspec
from pydantic import Field, model_validator

from detectors.base import CLEARED, NO_HITS, RAISED, Hit, Hits, Label, Severity
from detectors.patrol_schedule import Schedule, iso
from detectors.registry import DetectorConfig, register
from devices.messages import DeviceEvent
from devices.overrides import PATROL_INTERVAL, JsonValue, parse_duration, positive_duration
from devices.profiles import DeviceProfile

CHECKIN: Final = "checkin"
OVERDUE: Final = "patrol_overdue"
INTERVAL_KEY: Final = PATROL_INTERVAL
DEFAULT_INTERVAL: Final = timedelta(days=1)  # only for a tag stored without its interval
GRACE_SHARE: Final = 0.1
MAX_ITEMS: Final = 32
MAX_TEXT: Final = 500


def parse_interval(value: object) -> timedelta | None:
    """A patrol interval (see ``devices.overrides.parse_duration``)."""
    return parse_duration(value)


def check_interval(value: JsonValue) -> str | None:
    """The registry check of ``profile.patrol_interval``."""
    return positive_duration(value)


class PatrolConfig(DetectorConfig):
    """Patrols not done in time (patrol_overdue) and hazards found on patrol (fire_hazard)."""

    interval: timedelta | None = Field(
        None,
        description="How often the place must be patrolled; null: the tag's "
        "profile.patrol_interval (required in its registry row).",
    )
    grace: timedelta | None = Field(
        None,
        description="How long after a period ends a check-in still does its patrol; "
        "null: a tenth of the interval.",
    )
    settle_s: float = Field(
        60.0,
        ge=0,
        description="After a restart or a takeover of the deadlines by another worker, no "
        "patrol is declared overdue for this long (check-ins the broker queued meanwhile come "
        "first).",
    )
    severity: Severity = Field("blue", description="Suggested severity of patrol_overdue.")
    hazard_severity: Severity = Field("yellow", description="Suggested severity of fire_hazard.")

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.interval is not None and self.interval <= timedelta(0):
            raise ValueError("interval must be positive")
        if self.grace is not None and self.grace < timedelta(0):
            raise ValueError("grace must not be negative")
        return self


class PatrolState(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Times (epoch seconds): the start of the first period due, the end of the latest period
    done, the deadline of the next period to do (kept so that the tick sweep, which asks
    every device when it next wakes, costs a lookup), the deadline that passed undone (while
    overdue), the newest check-in and its worker, whether a hazard is raised, and the end of
    the settling time after a restart."""

    due_from: float | None = None
    done_until: float | None = None
    due_at: float | None = None
    overdue_at: float | None = None
    last_checkin: float | None = None
    last_worker: str | None = None
    hazard: bool = False
    settle_until: float | None = None


_EMPTY = PatrolState()


class PatrolDetector:
    state_type = PatrolState
    scheduled = True  # ticked from registration on, heard from or not

    def __init__(self, key: str, schedule: Schedule, cfg: PatrolConfig) -> None:
        self.key = key
        self.schedule = schedule
        self.settle_s = cfg.settle_s
        self.overdue = Label(OVERDUE, "patrol", cfg.severity)
        self.hazard = Label("fire_hazard", "fire", cfg.hazard_severity)

    def initial_state(self) -> PatrolState:
        return _EMPTY

    def rebase(self, state: PatrolState) -> PatrolState:
        return state  # periods are calendar time; a device clock jump changes none of them

    def next_open(self, state: PatrolState) -> int | None:
        """The earliest period neither done nor before the duty began."""
        if state.due_from is None:
            return None
        s = self.schedule
        first = s.first_due(state.due_from)
        if state.done_until is None:
            return first
        return max(first, s.period(state.done_until))

    # -- time ----------------------------------------------------------------------------------

    def on_tick(self, device_id: str, state: PatrolState, now: float) -> tuple[PatrolState, Hits]:
        s = self.schedule
        k = self.next_open(state)
        if k is None:
            due_at = s.deadline(s.first_due(now))
            return msgspec.structs.replace(state, due_from=now, due_at=due_at), NO_HITS
        if state.overdue_at is not None or (
            state.settle_until is not None and now < state.settle_until
        ):
            return state, NO_HITS
        due = s.deadline(k)
        if now < due:  # woken early (the interval changed): wait for the deadline as it is
            return (
                state if due == state.due_at else msgspec.structs.replace(state, due_at=due)
            ), NO_HITS
        evidence = {
            "period_start": iso(s.start(k)),
            "period_end": iso(s.end(k)),
            "due_by": iso(due),
            "missed": s.last_decided(now) - k + 1,
            "interval_s": s.interval_s,
            "grace_s": s.grace_s,
            "last_checkin": iso(state.last_checkin) if state.last_checkin is not None else None,
            "last_worker": state.last_worker,
        }
        hit = self.overdue.hit(device_id, self.key, "overdue", RAISED, due, evidence=evidence)
        return msgspec.structs.replace(state, overdue_at=due, due_at=None), (hit,)

    def next_wake(self, state: PatrolState) -> float | None:
        if state.due_from is None:
            return 0.0  # never ticked: the first tick starts the duty
        if state.overdue_at is not None:
            return None
        due = state.due_at
        if due is None:
            k = self.next_open(state)
            assert k is not None
            due = self.schedule.deadline(k)
        return due if state.settle_until is None else max(due, state.settle_until)

    def resume(self, state: PatrolState, now: float) -> PatrolState:
        return msgspec.structs.replace(state, settle_until=now + self.settle_s)

    # -- check-ins -----------------------------------------------------------------------------

    def on_event(
        self, event: DeviceEvent, state: PatrolState, now: float
    ) -> tuple[PatrolState, Hits]:
        if event.event != CHECKIN:
            return state, NO_HITS
        if state.due_from is None:
            state = msgspec.structs.replace(state, due_from=now)
        k = self.next_open(state)
        assert k is not None
        s = self.schedule
        ts = event.ts
        done = s.assign(ts, k)
        worker = _text(event.detail.get("worker_id"))
        hits: list[Hit] = []
        done_until = state.done_until
        overdue_at = state.overdue_at
        if done >= k:
            done_until = s.end(done)
            if overdue_at is not None:
                evidence = {
                    "worker_id": worker,
                    "checkin": iso(ts),
                    "overdue_since": iso(overdue_at),
                }
                hits.append(
                    self.overdue.hit(
                        event.device_id, self.key, "overdue", CLEARED, ts, evidence=evidence
                    )
                )
                overdue_at = None
        found = hazard_of(event.detail)
        hazard = state.hazard
        if found is not None and found != hazard:
            phase = RAISED if found else CLEARED
            evidence = {"worker_id": worker, "checkin": iso(ts), **checklist_evidence(event.detail)}
            hits.append(
                self.hazard.hit(event.device_id, self.key, "hazard", phase, ts, evidence=evidence)
            )
            hazard = found
        last = state.last_checkin
        newer = last is None or ts >= last
        updated = PatrolState(
            due_from=state.due_from,
            done_until=done_until,
            overdue_at=overdue_at,
            last_checkin=ts if newer else last,
            last_worker=worker if newer else state.last_worker,
            hazard=hazard,
            settle_until=state.settle_until,
        )
        if overdue_at is None:
            open_now = self.next_open(updated)
            assert open_now is not None
            updated = msgspec.structs.replace(updated, due_at=s.deadline(open_now))
        return updated, tuple(hits)


def hazard_of(detail: Mapping[str, Any]) -> bool | None:
    """What a check-in says of hazards: True (``hazard: true`` or a checklist item false),
    False (a checklist that passes, or ``hazard: false``), None (a bare scan)."""
    flagged = detail.get("hazard")
    checklist = detail.get("checklist")
    failed = isinstance(checklist, Mapping) and any(v is False for v in checklist.values())
    if flagged is True or failed:
        return True
    if flagged is False or (isinstance(checklist, Mapping) and checklist):
        return False
    return None


def checklist_evidence(detail: Mapping[str, Any]) -> dict[str, Any]:
    """The checklist (bounded), its failed items and the note, as a hit's evidence."""
    out: dict[str, Any] = {}
    checklist = detail.get("checklist")
    if isinstance(checklist, Mapping):
        items = {
            str(k)[:64]: v
            for k, v in list(checklist.items())[:MAX_ITEMS]
            if isinstance(v, bool | int | float | str)
        }
        out["checklist"] = {k: (v[:64] if isinstance(v, str) else v) for k, v in items.items()}
        out["failed"] = [k for k, v in items.items() if v is False]
    if detail.get("hazard") is True:
        out["hazard"] = True
    note = _text(detail.get("note"))
    if note:
        out["note"] = note
    return out


def _text(value: object) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) and value.strip() else None


def schedule_of(cfg: PatrolConfig, profile: DeviceProfile) -> Schedule:
    """The tag's schedule: its interval (config, else the registry row's), grace (config,
    else a tenth of the interval)."""
    interval = cfg.interval or parse_interval(profile.options.get(INTERVAL_KEY))
    interval = interval or DEFAULT_INTERVAL
    grace = cfg.grace if cfg.grace is not None else interval * GRACE_SHARE
    return Schedule(interval.total_seconds(), grace.total_seconds())


def build_patrol(cfg: PatrolConfig, profile: DeviceProfile) -> PatrolDetector:
    return PatrolDetector("patrol", schedule_of(cfg, profile), cfg)


register(
    "patrol",
    PatrolConfig,
    build_patrol,
    "Patrol tags: patrol_overdue when a period (profile.patrol_interval, China-time calendar) "
    "ends + grace without a check-in, cleared by the next; fire_hazard from a failed checklist.",
)
