"""The persisted workflow value of one grid event and the history entries it leaves.

Both are frozen msgspec Structs that round-trip through msgspec JSON (the storage room keeps
them as JSON). Times are timezone-aware ``datetime``s: the workflow is off the hot path,
and deadlines and history are read by people and by the API as RFC 3339 times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from alerts.roles import TOP_RANK, Assignee, Role, owner_of, role_at
from alerts.workflow_enums import DUE_STEP, Action, Severity, State

Level = Annotated[int, msgspec.Meta(ge=0, le=TOP_RANK)]
Count = Annotated[int, msgspec.Meta(ge=0)]

# The states in which an event has a person assigned.
ASSIGNED_STATES = frozenset({State.DISPATCHED, State.ACCEPTED, State.RESOLVED, State.VERIFIED})


class WorkflowState(msgspec.Struct, frozen=True, kw_only=True):
    """Where one grid event stands: state, owner, escalation, deadline and per-state times.

    ``level`` counts the rungs the event has been escalated (0 = not escalated); it never
    decreases. ``due`` is the deadline of the step due in ``state`` at the current level
    (None in a terminal state). ``<state>_at`` is when the event last entered that state.
    """

    state: State
    severity: Severity
    category: str
    type: str
    reported_at: datetime
    updated_at: datetime
    level: Level = 0
    assignee: Assignee | None = None
    due: datetime | None = None
    rework_count: Count = 0
    resolved_by: str | None = None
    cleared_at: datetime | None = None
    dispatched_at: datetime | None = None
    accepted_at: datetime | None = None
    resolved_at: datetime | None = None
    verified_at: datetime | None = None
    closed_at: datetime | None = None
    false_alarm_at: datetime | None = None

    def entered_at(self, state: State | None = None) -> datetime | None:
        """When the event last entered ``state`` (default: its current state)."""
        value: datetime | None = getattr(self, f"{(state or self.state).value}_at")
        return value

    @property
    def owner(self) -> Role | None:
        """The ladder role that owns the step due now (None once the loop has ended)."""
        step = DUE_STEP.get(self.state)
        if step is None:
            return None
        return owner_of(step, self.state, self.level, has_assignee=self.assignee is not None)

    @property
    def escalated_to(self) -> Role:
        """The ladder role named by the escalation level alone (grid member when 0)."""
        return role_at(self.level)


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded action: who, when, why, and what it changed (a transition or a note).

    ``from_state`` is None only for the entry that opens the event (action ``report``).
    """

    action: Action
    from_state: State | None
    to_state: State
    actor_id: str
    actor_role: Role
    at: datetime
    reason: str | None = None
    assignee_before: Assignee | None = None
    assignee_after: Assignee | None = None
    level_before: Level = 0
    level_after: Level = 0
    due: datetime | None = None
    rework_count: Count = 0

    @property
    def changes_state(self) -> bool:
        return self.from_state != self.to_state


_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(WorkflowState)
_history_decoder = msgspec.json.Decoder(list[HistoryEntry])


def encode_state(value: WorkflowState) -> bytes:
    return _encoder.encode(value)


def decode_state(data: bytes | str) -> WorkflowState:
    """Read a stored state; raises ``msgspec.ValidationError`` on a malformed one."""
    return _state_decoder.decode(data)


def encode_history(entries: list[HistoryEntry]) -> bytes:
    return _encoder.encode(entries)


def decode_history(data: bytes | str) -> list[HistoryEntry]:
    return _history_decoder.decode(data)


def problems(ws: WorkflowState) -> list[str]:
    """What is inconsistent in ``ws`` (empty for every state the workflow can produce).

    Used by tests and by anyone loading a state written elsewhere.
    """
    out: list[str] = []
    if not 0 <= ws.level <= TOP_RANK:
        out.append(f"escalation level {ws.level} is off the ladder")
    if ws.rework_count < 0:
        out.append("negative rework count")
    if ws.entered_at() is None:
        out.append(f"no time recorded for entering {ws.state.value}")
    if ws.state.terminal and ws.due is not None:
        out.append(f"{ws.state.value} is terminal but has a deadline")
    if not ws.state.terminal and ws.due is None:
        out.append(f"{ws.state.value} has no deadline")
    if ws.state is State.REPORTED and ws.assignee is not None:
        out.append("reported but already assigned")
    if ws.state in ASSIGNED_STATES and ws.assignee is None:
        out.append(f"{ws.state.value} without an assignee")
    if ws.state in (State.RESOLVED, State.VERIFIED) and ws.resolved_by is None:
        out.append(f"{ws.state.value} without who resolved it")
    for name in ("reported_at", "updated_at"):
        if getattr(ws, name).tzinfo is None:
            out.append(f"{name} is a naive time")
    if ws.updated_at < ws.reported_at:
        out.append("updated before it was reported")
    return out
