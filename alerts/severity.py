"""How severe a grid event is: the four warning colours (四色预警) from configurable rules.

An event's severity is the highest of

* the **base severity** of each of its own hits: a table by event type (and a second one for
  pre-alarm levels, e.g. a cable over-temperature pre-alarm is yellow where the alarm is
  orange); a type in neither table keeps the detector's suggested severity;
* every **escalation rule** its devices and types match, e.g. two distinct fire devices at
  one site → red, a smoke alarm together with a cable over-temperature → red.

Escalation rules look at the event alone: its ``device_ids`` (devices whose hits of the
event's category joined it) and its ``types`` (every type seen in it, including the hits of
other categories at the same site that the correlator *links* into it — see
``alerts.correlation``). That is how a cross-category rule such as "smoke plus cable
over-temperature at one site" is decided without a separate site view.

Severity never decreases while an event is open: the correlator only ever raises it
(``raise_severity``), with a history entry saying which rule did. A person may change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.deadlines import DeadlinePolicy, require_aware
from alerts.event import GridEvent
from alerts.roles import SYSTEM_ACTOR
from alerts.workflow import DEFAULT_CONFIG, WorkflowConfig, apply
from alerts.workflow_enums import DUE_STEP, Action, Severity
from alerts.workflow_state import HistoryEntry, WorkflowState
from detectors.base import SEVERITY_RANK, Category, Hit

RED, ORANGE, YELLOW, BLUE = Severity.RED, Severity.ORANGE, Severity.YELLOW, Severity.BLUE

# Base severity of a raised alarm by event type (the table, extended to every type the
# built-in detectors emit). Types missing here keep the detector's suggestion.
DEFAULT_BASE: Mapping[str, Severity] = {
    # fire
    "smoke_alarm": ORANGE,
    # electrical
    "residual_current_high": ORANGE,
    "cable_overtemp": ORANGE,
    "cable_temp_rise": YELLOW,
    "overload": YELLOW,
    "electrical_fire_alarm": ORANGE,
    # water
    "pressure_low": YELLOW,
    "pressure_high": YELLOW,
    "pressure_drop": ORANGE,
    "pressure_alarm": YELLOW,
    # video
    "zone_intrusion": ORANGE,
    "motion": YELLOW,
    "loitering": YELLOW,
    "camera_fault": BLUE,
    # patrols and what grid workers find
    "fire_hazard": YELLOW,
    "patrol_overdue": BLUE,
    # device health
    "device_offline": BLUE,
    "low_battery": BLUE,
    "tamper": YELLOW,
    "device_fault": BLUE,
    "device_alarm": YELLOW,
    "alarm_silenced": BLUE,
    "anomaly": BLUE,
    "flapping": BLUE,
}

# Pre-alarm levels that are less severe than the type's alarm.
DEFAULT_PRE_ALARM: Mapping[str, Severity] = {"cable_overtemp": YELLOW}


def rank(severity: Severity | str) -> int:
    """1 (blue) … 4 (red)."""
    return SEVERITY_RANK[str(severity)]


def highest(first: Severity, *others: Severity) -> Severity:
    """The most severe of the colours given."""
    return max((first, *others), key=rank)


class EscalationRule(BaseModel):
    """Raises an event to ``severity`` when its devices and types match every condition given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Names the rule in the event's history.")
    severity: Severity = Field(description="The severity an event matching the rule gets.")
    categories: frozenset[Category] = Field(
        default=frozenset(),
        description="Event categories the rule applies to; empty: every category.",
    )
    min_devices: int = Field(
        default=1,
        ge=1,
        description="At least this many distinct devices of the event's own category in it "
        "(a site-keyed event: devices at one site).",
    )
    all_types: frozenset[str] = Field(
        default=frozenset(),
        description="Every one of these types was seen in the event, its own hits or hits "
        "of other categories linked into it at the same site.",
    )
    any_types: frozenset[str] = Field(
        default=frozenset(),
        description="At least one of these types was seen in the event; empty: no condition.",
    )

    def matches(self, category: str, device_ids: Iterable[str], types: Iterable[str]) -> bool:
        if self.categories and category not in self.categories:
            return False
        if len(set(device_ids)) < self.min_devices:
            return False
        seen = set(types)
        if not self.all_types <= seen:
            return False
        return not self.any_types or bool(self.any_types & seen)


def _default_escalations() -> tuple[EscalationRule, ...]:
    return (
        EscalationRule(
            name="two_fire_devices_at_site",
            severity=RED,
            categories=frozenset({"fire"}),
            min_devices=2,
        ),
        EscalationRule(
            name="smoke_with_cable_overtemp",
            severity=RED,
            categories=frozenset({"fire"}),
            all_types=frozenset({"smoke_alarm", "cable_overtemp"}),
        ),
    )


class SeverityRules(BaseModel):
    """Base severity per event type and the escalation rules over an event's devices and types.

    ``base`` and ``pre_alarm`` given in part keep the default entries they do not name, so
    ``{"base": {"smoke_alarm": "red"}}`` changes only smoke alarms; ``escalations`` given
    replaces the default list (``[]`` turns escalation off).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: dict[str, Severity] = Field(
        default_factory=lambda: dict(DEFAULT_BASE),
        description="Event type → severity of a raised alarm of that type; a type not listed "
        "keeps the detector's suggested severity.",
    )
    pre_alarm: dict[str, Severity] = Field(
        default_factory=lambda: dict(DEFAULT_PRE_ALARM),
        description="Event type → severity of its pre-alarm level (a hit whose rule is a "
        "pre-alarm); a type not listed uses 'base'.",
    )
    pre_alarm_rules: frozenset[str] = Field(
        default=frozenset({"pre_alarm"}),
        description="Rule names marking a pre-alarm hit; matched against each part of the "
        "hit's rule split at '.' and ':' (threshold 'pre_alarm', device event "
        "'pre_alarm:cable_temp', flapping 'cable_temp.pre_alarm').",
    )
    escalations: tuple[EscalationRule, ...] = Field(
        default_factory=_default_escalations,
        description="Rules raising an event's severity from its devices and types; every "
        "matching rule applies and the most severe wins. Default: two or more fire devices at "
        "one site → red; smoke_alarm together with cable_overtemp at one site → red.",
    )

    @model_validator(mode="before")
    @classmethod
    def _keep_unnamed_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            for name, defaults in (("base", DEFAULT_BASE), ("pre_alarm", DEFAULT_PRE_ALARM)):
                given = data.get(name)
                if isinstance(given, Mapping):
                    data[name] = {**defaults, **given}
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> SeverityRules:
        names = [r.name for r in self.escalations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"escalation rule names must be unique: {dupes}")
        return self

    def is_pre_alarm(self, hit: Hit) -> bool:
        parts = hit.rule.replace(":", ".").split(".")
        return any(part in self.pre_alarm_rules for part in parts)

    def hit_severity(self, hit: Hit) -> Severity:
        """The base severity of one raised hit."""
        if self.is_pre_alarm(hit) and hit.type in self.pre_alarm:
            return self.pre_alarm[hit.type]
        return self.base.get(hit.type, Severity(hit.severity))

    def escalation(
        self, category: str, device_ids: Iterable[str], types: Iterable[str]
    ) -> tuple[Severity | None, tuple[str, ...]]:
        """The most severe colour the matching escalation rules give (None if none match),
        and the names of the rules giving it."""
        devices, seen = tuple(device_ids), tuple(types)
        matched = [r for r in self.escalations if r.matches(category, devices, seen)]
        if not matched:
            return None, ()
        top = highest(*(r.severity for r in matched))
        return top, tuple(r.name for r in matched if r.severity is top)

    def assess(self, event: GridEvent, hit: Hit | None = None) -> tuple[Severity, tuple[str, ...]]:
        """The event's severity with its rules applied again (after ``hit`` joined it, if
        given): never below its current one. The reasons name what raised it (empty when
        it stays)."""
        current = event.severity
        candidates = [current]
        reasons: list[str] = []
        if hit is not None:
            base = self.hit_severity(hit)
            if rank(base) > rank(current):
                candidates.append(base)
                reasons.append(f"{hit.type} is {base.value}")
        escalated, names = self.escalation(event.category, event.device_ids, event.types)
        if escalated is not None and rank(escalated) > rank(current):
            candidates.append(escalated)
            reasons.extend(names)
        top = highest(*candidates)
        return top, (tuple(reasons) if top is not current else ())


DEFAULT_RULES = SeverityRules()


def raise_severity(
    ws: WorkflowState,
    severity: Severity,
    now: datetime,
    *,
    reason: str,
    config: WorkflowConfig = DEFAULT_CONFIG,
) -> tuple[WorkflowState, HistoryEntry]:
    """The workflow with a higher severity, and the system's history entry (a ``comment``:
    the workflow has no action of its own for it) saying why.

    The step due now gets the deadline it would have had at the new severity from when it
    started (the current deadline less the old severity's time limit), so a red event is
    due to be dispatched 10 minutes after it was reported, not 30; the deadline sweeper
    escalates at once if that moment has passed.
    """
    require_aware(now)
    if rank(severity) <= rank(ws.severity):
        raise ValueError(f"{severity} is not above {ws.severity}")
    noted, entry = apply(
        ws,
        Action.COMMENT,
        SYSTEM_ACTOR,
        now,
        reason=f"severity {ws.severity.value} → {severity.value}: {reason}",
        config=config,
    )
    due = _rescaled_due(ws, severity, config.deadlines)
    new = msgspec.structs.replace(noted, severity=severity, due=due)
    return new, msgspec.structs.replace(entry, due=due)


def _rescaled_due(ws: WorkflowState, severity: Severity, policy: DeadlinePolicy) -> datetime | None:
    step = DUE_STEP.get(ws.state)
    if step is None or ws.due is None:
        return ws.due
    started = ws.due - policy.duration(step, ws.severity)
    return started + policy.duration(step, severity)
