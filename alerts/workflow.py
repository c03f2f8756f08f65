"""The closed loop of a grid event as an explicit, pure state machine.

    reported ──dispatch──▶ dispatched ──accept──▶ accepted ──resolve──▶ resolved
    resolved ──verify──▶ verified ──close──▶ closed
    resolved ──send_back──▶ accepted (same assignee) | dispatched (a new one)   rework
    reported | dispatched | accepted ──mark_false_alarm──▶ false_alarm
    any open state ──auto_close──▶ closed          (system, auto-closable types only)
    dispatched | accepted ──reassign──▶ same state
    any open state ──escalate | urge | clear──▶ same state;  any state ──comment──▶ same

``apply`` takes the event's ``WorkflowState``, an action, the actor and the time, and
returns the new state and the history entry to append; it never reads a clock or does I/O.
A refused action raises a ``WorkflowError`` whose message an API returns as a 4xx body.
Closed and false_alarm are terminal: only a comment is still recorded on them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts import deadlines
from alerts.deadlines import DeadlinePolicy, can_escalate, due_at, require_aware
from alerts.roles import SYSTEM_ACTOR, Actor, Assignee, may_assign, permission_problem
from alerts.workflow_enums import Action, Severity, State
from alerts.workflow_state import HistoryEntry, WorkflowState


class WorkflowError(Exception):
    """An action the workflow refuses; ``str(error)`` says why, for people.

    ``status`` is the HTTP status an API should answer with, ``code`` a stable key.
    """

    status = 409
    code = "workflow_error"

    def __init__(self, message: str, *, action: Action, state: State) -> None:
        super().__init__(message)
        self.message = message
        self.action = action
        self.state = state


class IllegalTransition(WorkflowError):
    """The action does not apply to an event in this state."""

    status = 409
    code = "illegal_transition"


class NotPermitted(WorkflowError):
    """The actor's role (or identity) may not take this action now."""

    status = 403
    code = "not_permitted"


class MissingReason(WorkflowError):
    """The action must say why (send-back, false alarm, escalation, …)."""

    status = 422
    code = "missing_reason"


class InvalidAssignee(WorkflowError):
    """The assignee is missing, not wanted, unchanged, or not one of the grid's members."""

    status = 422
    code = "invalid_assignee"


class WorkflowConfig(BaseModel):
    """The workflow's settings: time limits and which events may close without a person."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deadlines: DeadlinePolicy = Field(
        default_factory=DeadlinePolicy,
        description="Time limit of each step per severity; a passed one escalates (督办).",
    )
    auto_close_types: frozenset[str] = Field(
        default=frozenset({"device_offline", "camera_fault", "patrol_overdue"}),
        description="Event types the system closes by itself when their condition clears "
        "(a device back online closes its device_offline event, a camera whose picture is "
        "back its camera_fault event, the next patrol check-in its patrol_overdue event).",
    )
    auto_close_categories: frozenset[str] = Field(
        default=frozenset(),
        description="Event categories the system closes by itself when their condition clears.",
    )
    person_close_categories: frozenset[str] = Field(
        default=frozenset({"fire", "electrical"}),
        description="Categories only a person may close, whatever the auto-close settings say; "
        "a cleared condition only updates such an event.",
    )

    @model_validator(mode="after")
    def _no_overlap(self) -> WorkflowConfig:
        both = self.auto_close_categories & self.person_close_categories
        if both:
            raise ValueError(
                f"categories {sorted(both)} are both auto-closable and person-closed only"
            )
        return self


DEFAULT_CONFIG = WorkflowConfig()

_OPEN = (State.REPORTED, State.DISPATCHED, State.ACCEPTED, State.RESOLVED, State.VERIFIED)


def _stay(states: Collection[State]) -> Mapping[State, State]:
    return _moves({s: s for s in states})


def _moves(table: dict[State, State]) -> Mapping[State, State]:
    return MappingProxyType(table)


# The legal moves: action → {from state: to state}. SEND_BACK goes to dispatched instead of
# accepted when it hands the event to a new assignee.
TRANSITIONS: Mapping[Action, Mapping[State, State]] = MappingProxyType(
    {
        Action.REPORT: _moves({}),
        Action.DISPATCH: _moves({State.REPORTED: State.DISPATCHED}),
        Action.ACCEPT: _moves({State.DISPATCHED: State.ACCEPTED}),
        Action.REASSIGN: _stay((State.DISPATCHED, State.ACCEPTED)),
        Action.RESOLVE: _moves({State.ACCEPTED: State.RESOLVED}),
        Action.VERIFY: _moves({State.RESOLVED: State.VERIFIED}),
        Action.SEND_BACK: _moves({State.RESOLVED: State.ACCEPTED}),
        Action.CLOSE: _moves({State.VERIFIED: State.CLOSED}),
        Action.MARK_FALSE_ALARM: _moves(
            {s: State.FALSE_ALARM for s in (State.REPORTED, State.DISPATCHED, State.ACCEPTED)}
        ),
        Action.ESCALATE: _stay(_OPEN),
        Action.URGE: _stay(_OPEN),
        Action.CLEAR: _stay(_OPEN),
        Action.COMMENT: _stay(tuple(State)),
        Action.AUTO_CLOSE: _moves({s: State.CLOSED for s in _OPEN}),
    }
)

REASON_REQUIRED = frozenset(
    {
        Action.SEND_BACK,
        Action.MARK_FALSE_ALARM,
        Action.ESCALATE,
        Action.URGE,
        Action.COMMENT,
        Action.CLEAR,
        Action.AUTO_CLOSE,
    }
)
_TAKES_ASSIGNEE = frozenset({Action.DISPATCH, Action.REASSIGN, Action.SEND_BACK})
_NEEDS_ASSIGNEE = frozenset({Action.DISPATCH, Action.REASSIGN})


def open_event(
    severity: Severity,
    category: str,
    type: str,
    now: datetime,
    *,
    actor: Actor = SYSTEM_ACTOR,
    reason: str | None = None,
    config: WorkflowConfig = DEFAULT_CONFIG,
) -> tuple[WorkflowState, HistoryEntry]:
    """A new grid event in ``reported`` (发现上报), with its dispatch deadline."""
    require_aware(now)
    problem = permission_problem(actor, Action.REPORT, State.REPORTED, 0, None)
    if problem:
        raise NotPermitted(problem, action=Action.REPORT, state=State.REPORTED)
    ws = WorkflowState(
        state=State.REPORTED,
        severity=severity,
        category=category,
        type=type,
        reported_at=now,
        updated_at=now,
        due=due_at(State.REPORTED, severity, now, config.deadlines),
    )
    entry = HistoryEntry(
        action=Action.REPORT,
        from_state=None,
        to_state=State.REPORTED,
        actor_id=actor.id,
        actor_role=actor.role,
        at=now,
        reason=_clean(reason),
        due=ws.due,
    )
    return ws, entry


def auto_close_problem(ws: WorkflowState, config: WorkflowConfig = DEFAULT_CONFIG) -> str | None:
    """Why the system may not close ``ws`` by itself; None if it may."""
    if ws.category in config.person_close_categories:
        return f"a {ws.category} event is closed by a person, not automatically"
    if ws.type in config.auto_close_types or ws.category in config.auto_close_categories:
        return None
    return f"{ws.category}/{ws.type} events are not configured to close automatically"


def on_condition_cleared(
    ws: WorkflowState,
    now: datetime,
    *,
    reason: str,
    config: WorkflowConfig = DEFAULT_CONFIG,
) -> tuple[WorkflowState, HistoryEntry]:
    """What a restore does: closes an auto-closable event (``auto_close``), otherwise only
    records that the condition cleared (``clear``) and leaves the event to its people.

    Raises ``IllegalTransition`` when the event has already ended (a late restore).
    """
    action = Action.AUTO_CLOSE if auto_close_problem(ws, config) is None else Action.CLEAR
    return apply(ws, action, SYSTEM_ACTOR, now, reason=reason, config=config)


def apply(
    ws: WorkflowState,
    action: Action,
    actor: Actor,
    now: datetime,
    *,
    reason: str | None = None,
    assignee: Assignee | None = None,
    members: Collection[Assignee] | None = None,
    config: WorkflowConfig = DEFAULT_CONFIG,
) -> tuple[WorkflowState, HistoryEntry]:
    """Take ``action`` on the event; returns the new state and the history entry to append.

    ``assignee`` names the person for dispatch and reassign (and for a send-back to someone
    else); ``members`` — the members of the event's grid and its ancestors — when given,
    must include them. Raises ``IllegalTransition``, ``NotPermitted``, ``MissingReason`` or
    ``InvalidAssignee``; the input state is never changed.
    """
    require_aware(now)
    state = ws.state
    targets = TRANSITIONS[action]
    if state not in targets:
        raise IllegalTransition(_illegal_message(action, state), action=action, state=state)
    problem = permission_problem(actor, action, state, ws.level, ws.assignee)
    if problem:
        raise NotPermitted(problem, action=action, state=state)
    why = _clean(reason)
    if why is None and action in REASON_REQUIRED:
        raise MissingReason(f"'{action.value}' needs a reason", action=action, state=state)
    _check_assignee(ws, action, actor, assignee, members)

    policy = config.deadlines
    new: WorkflowState
    if action is Action.DISPATCH:
        new = _enter(ws, State.DISPATCHED, now, policy, assignee=assignee)
    elif action is Action.ACCEPT:
        new = _enter(ws, State.ACCEPTED, now, policy)
    elif action is Action.REASSIGN:
        new = msgspec.structs.replace(ws, assignee=assignee, updated_at=now)
    elif action is Action.RESOLVE:
        new = _enter(ws, State.RESOLVED, now, policy, resolved_by=actor.id)
    elif action in (Action.VERIFY, Action.SEND_BACK):
        if actor.id == ws.resolved_by:
            raise NotPermitted(
                f"{actor.id} resolved this event and may not also {action.value} it: "
                "verification is someone else's",
                action=action,
                state=state,
            )
        if action is Action.VERIFY:
            new = _enter(ws, State.VERIFIED, now, policy)
        else:
            to = State.DISPATCHED if assignee not in (None, ws.assignee) else State.ACCEPTED
            new = _enter(
                ws,
                to,
                now,
                policy,
                assignee=assignee or ws.assignee,
                resolved_by=None,
                rework_count=ws.rework_count + 1,
            )
    elif action is Action.CLOSE:
        new = _enter(ws, State.CLOSED, now, policy)
    elif action is Action.MARK_FALSE_ALARM:
        new = _enter(ws, State.FALSE_ALARM, now, policy)
    elif action is Action.ESCALATE:
        if not can_escalate(ws):
            raise IllegalTransition(
                "the county_centre owns this event's step, the top of the ladder: "
                "it cannot go higher",
                action=action,
                state=state,
            )
        return deadlines.escalate(ws, actor, now, why, policy)
    elif action is Action.AUTO_CLOSE:
        problem = auto_close_problem(ws, config)
        if problem:
            raise NotPermitted(problem, action=action, state=state)
        new = _enter(ws, State.CLOSED, now, policy)
    elif action is Action.CLEAR:
        new = msgspec.structs.replace(ws, cleared_at=now, updated_at=now)
    else:  # URGE, COMMENT: a record, no change
        new = msgspec.structs.replace(ws, updated_at=now)
    return new, _entry(ws, new, action, actor, now, why)


def _enter(
    ws: WorkflowState, to: State, now: datetime, policy: DeadlinePolicy, **changes: Any
) -> WorkflowState:
    """``ws`` moved into ``to`` at ``now``, with the deadline of the step due there."""
    changes[f"{to.value}_at"] = now
    return msgspec.structs.replace(
        ws,
        state=to,
        due=due_at(to, ws.severity, now, policy),
        updated_at=now,
        **changes,
    )


def _entry(
    old: WorkflowState,
    new: WorkflowState,
    action: Action,
    actor: Actor,
    now: datetime,
    reason: str | None,
) -> HistoryEntry:
    return HistoryEntry(
        action=action,
        from_state=old.state,
        to_state=new.state,
        actor_id=actor.id,
        actor_role=actor.role,
        at=now,
        reason=reason,
        assignee_before=old.assignee,
        assignee_after=new.assignee,
        level_before=old.level,
        level_after=new.level,
        due=new.due,
        rework_count=new.rework_count,
    )


def _check_assignee(
    ws: WorkflowState,
    action: Action,
    actor: Actor,
    assignee: Assignee | None,
    members: Collection[Assignee] | None,
) -> None:
    if assignee is None:
        if action in _NEEDS_ASSIGNEE:
            raise InvalidAssignee(
                f"'{action.value}' needs an assignee from the grid's members",
                action=action,
                state=ws.state,
            )
        return
    if action not in _TAKES_ASSIGNEE:
        raise InvalidAssignee(
            f"'{action.value}' does not take an assignee", action=action, state=ws.state
        )
    if action is Action.REASSIGN and assignee == ws.assignee:
        raise InvalidAssignee(
            f"the event is already assigned to {assignee.id}", action=action, state=ws.state
        )
    if members is not None and assignee not in members:
        raise InvalidAssignee(
            f"{assignee.id} ({assignee.role.value}) is not a member of this grid or of the "
            "grids above it",
            action=action,
            state=ws.state,
        )
    problem = may_assign(actor, assignee)
    if problem:
        raise NotPermitted(problem, action=action, state=ws.state)


def _illegal_message(action: Action, state: State) -> str:
    if action is Action.REPORT:
        return "an event is reported once, when it is opened"
    if state.terminal:
        return f"the event is {state.value}; a finished event only takes comments"
    allowed = sorted(a.value for a, moves in TRANSITIONS.items() if state in moves)
    return (
        f"'{action.value}' does not apply to a {state.value} event "
        f"(possible now: {', '.join(allowed)})"
    )


def _clean(reason: str | None) -> str | None:
    if reason is None:
        return None
    return reason.strip() or None
