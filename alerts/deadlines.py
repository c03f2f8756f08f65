"""Time limits (限时办结) per step and severity, and escalation when one passes.

Each non-terminal state has one step due (reported → dispatch, dispatched → accept,
accepted → resolve, resolved → verify, verified → close) and one deadline for it. When the
deadline passes, the event is escalated one rung up the ladder (督办): the owner of its steps
becomes the next level up the grid tree, which gets a fresh deadline of the same length, and
the same happens again if that one passes, until the county centre owns it.

Pure: the time is an argument. ``check`` dates an escalation at the moment the deadline
passed (or at the event's last update, if that is later), not at the moment it was
noticed, so the history and the next deadline do not depend on how often ``check`` runs;
after an outage one call catches up every rung that passed meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.roles import LADDER, SYSTEM_ACTOR, TOP_RANK, Actor, Role, role_at
from alerts.workflow_enums import DUE_STEP, Action, Severity, State
from alerts.workflow_state import HistoryEntry, WorkflowState

_MIN = timedelta(minutes=1)
_HOUR = timedelta(hours=1)


def _same(value: timedelta) -> dict[str, timedelta]:
    return {s.value: value for s in Severity}


# The default table (domain.md, "Time limits seen in practice"): urgent matters dispatched
# within 10 min, others 30 min; verification within 2 h of the report back; 90 % closed
# within 8 h — 30 + 30 min + 4 h + 2 h + 1 h = 8 h for orange/yellow/blue.
DEFAULT_TABLE: Mapping[str, Mapping[str, timedelta]] = {
    "dispatch": {**_same(30 * _MIN), "red": 10 * _MIN},
    "accept": {**_same(30 * _MIN), "red": 10 * _MIN},
    "resolve": {**_same(4 * _HOUR), "red": 1 * _HOUR},
    "verify": _same(2 * _HOUR),
    "close": _same(1 * _HOUR),
}


class SeverityDeadlines(BaseModel):
    """How long one step may take, per warning colour. Durations are ISO 8601 (``PT10M``),
    ``HH:MM:SS`` or seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    red: timedelta = Field(gt=timedelta(0), description="Time allowed for a red (I) event.")
    orange: timedelta = Field(gt=timedelta(0), description="Time allowed for an orange (II) event.")
    yellow: timedelta = Field(gt=timedelta(0), description="Time allowed for a yellow (III) event.")
    blue: timedelta = Field(gt=timedelta(0), description="Time allowed for a blue (IV) event.")

    def for_severity(self, severity: Severity) -> timedelta:
        value: timedelta = getattr(self, severity.value)
        return value


def _defaults(step: str) -> SeverityDeadlines:
    return SeverityDeadlines.model_validate(DEFAULT_TABLE[step])


class DeadlinePolicy(BaseModel):
    """The time limit of each workflow step per severity.

    A step given in part keeps the defaults of the colours it does not name, so
    ``{"dispatch": {"red": "PT5M"}}`` changes only red dispatch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dispatch: SeverityDeadlines = Field(
        default_factory=lambda: _defaults("dispatch"),
        description="From reported to dispatched (分拨派遣); default red 10 min, others 30 min.",
    )
    accept: SeverityDeadlines = Field(
        default_factory=lambda: _defaults("accept"),
        description="From dispatched to accepted by the assignee (签收); "
        "default red 10 min, others 30 min.",
    )
    resolve: SeverityDeadlines = Field(
        default_factory=lambda: _defaults("resolve"),
        description="From accepted to resolved, i.e. handled and reported back (处置反馈); "
        "default red 1 h, others 4 h.",
    )
    verify: SeverityDeadlines = Field(
        default_factory=lambda: _defaults("verify"),
        description="From resolved to verified (核查); default 2 h.",
    )
    close: SeverityDeadlines = Field(
        default_factory=lambda: _defaults("close"),
        description="From verified to closed (结案归档); default 1 h.",
    )

    @model_validator(mode="before")
    @classmethod
    def _keep_unnamed_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            for step, defaults in DEFAULT_TABLE.items():
                given = data.get(step)
                if isinstance(given, Mapping):
                    data[step] = {**defaults, **given}
        return data

    def duration(self, step: Action, severity: Severity) -> timedelta:
        """The time allowed for ``step`` (an action that is due in some state)."""
        if step not in DUE_STEP.values():
            raise ValueError(f"'{step}' is not a step with a time limit")
        table: SeverityDeadlines = getattr(self, step.value)
        return table.for_severity(severity)


DEFAULT_POLICY = DeadlinePolicy()


def require_aware(moment: datetime, name: str = "now") -> None:
    """Deadlines compare times from many sources: a naive time is a programming error."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")


def due_at(
    state: State,
    severity: Severity,
    entered_at: datetime,
    policy: DeadlinePolicy = DEFAULT_POLICY,
) -> datetime | None:
    """The deadline of the step due in ``state`` when entered at ``entered_at``; None if
    ``state`` is terminal."""
    require_aware(entered_at, "entered_at")
    step = DUE_STEP.get(state)
    return None if step is None else entered_at + policy.duration(step, severity)


def overdue(ws: WorkflowState, now: datetime) -> bool:
    """Whether the step due now is late (also at the top of the ladder, where ``check``
    has no one left to escalate to)."""
    require_aware(now)
    return ws.due is not None and now > ws.due


def can_escalate(ws: WorkflowState) -> bool:
    """Whether escalating would move the owner of the due step one rung up."""
    owner = ws.owner
    return owner is not None and LADDER.index(owner) < TOP_RANK


def escalate(
    ws: WorkflowState,
    actor: Actor,
    at: datetime,
    reason: str | None,
    policy: DeadlinePolicy = DEFAULT_POLICY,
) -> tuple[WorkflowState, HistoryEntry]:
    """One rung up, with a fresh deadline for the new owner; no permission check here
    (``workflow.apply`` does that for a person's 上报上级, ``check`` acts as the system)."""
    step = DUE_STEP.get(ws.state)
    if step is None or not can_escalate(ws):
        raise ValueError(f"cannot escalate an event in {ws.state.value} at level {ws.level}")
    due = at + policy.duration(step, ws.severity)
    new = msgspec.structs.replace(ws, level=ws.level + 1, due=due, updated_at=at)
    entry = HistoryEntry(
        action=Action.ESCALATE,
        from_state=ws.state,
        to_state=ws.state,
        actor_id=actor.id,
        actor_role=actor.role,
        at=at,
        reason=reason,
        assignee_before=ws.assignee,
        assignee_after=ws.assignee,
        level_before=ws.level,
        level_after=new.level,
        due=due,
        rework_count=ws.rework_count,
    )
    return new, entry


class Escalation(msgspec.Struct, frozen=True, kw_only=True):
    """One rung climbed because a deadline passed; ``state`` is the event after it and
    ``entry`` its 督办 record for the history."""

    state: WorkflowState
    entry: HistoryEntry
    step: Action
    passed: datetime
    from_role: Role
    to_role: Role


def check(
    ws: WorkflowState, now: datetime, policy: DeadlinePolicy = DEFAULT_POLICY
) -> list[Escalation]:
    """The escalations due by ``now``, oldest first; persist the last one's ``state``.

    Each passed deadline escalates once: checking the returned state again, with the same
    ``now`` or a later one, escalates only for a deadline that passed at the new level.
    Nothing happens past the county centre, where a late step stays ``overdue``.
    """
    require_aware(now)
    out: list[Escalation] = []
    while ws.due is not None and now > ws.due and can_escalate(ws):
        step = DUE_STEP[ws.state]
        passed = ws.due
        at = max(passed, ws.updated_at)
        from_role = ws.owner or Role.GRID_MEMBER  # never None here: can_escalate said so
        to_role = role_at(LADDER.index(from_role) + 1)
        reason = (
            f"督办: {step.value} was due by {passed.isoformat()} at {from_role.value}; "
            f"escalated to {to_role.value}"
        )
        ws, entry = escalate(ws, SYSTEM_ACTOR, at, reason, policy)
        out.append(
            Escalation(
                state=ws,
                entry=entry,
                step=step,
                passed=passed,
                from_role=from_role,
                to_role=to_role,
            )
        )
    return out
