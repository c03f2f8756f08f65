"""Stateful property test: random actions by random actors, with time moved by the test.

Whatever the sequence, the event never reaches an inconsistent state, every history entry
names its actor, terminal states stay terminal, the escalation level never decreases and
never leaves the ladder, a fire or electrical event is closed only by a person, and every
state survives a JSON round trip.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from alerts.deadlines import check, overdue
from alerts.roles import (
    LADDER,
    SYSTEM_ACTOR,
    TOP_RANK,
    Actor,
    Assignee,
    Role,
    may_assign,
    permission_problem,
    rank,
)
from alerts.workflow import (
    TRANSITIONS,
    IllegalTransition,
    MissingReason,
    NotPermitted,
    WorkflowError,
    apply,
    on_condition_cleared,
    open_event,
)
from alerts.workflow_enums import Action, Severity, State
from alerts.workflow_state import HistoryEntry, WorkflowState, decode_state, encode_state, problems

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)

ACTORS = [
    SYSTEM_ACTOR,
    Actor("viewer1", Role.VIEWER),
    Actor("g1", Role.GRID_MEMBER),
    Actor("g2", Role.GRID_MEMBER),
    Actor("v1", Role.VILLAGE_LEAD),
    Actor("t1", Role.TOWN_CENTRE),
    Actor("c1", Role.COUNTY_CENTRE),
    Actor("a1", Role.ADMIN),
]
MEMBERS = [Assignee(a.id, a.role) for a in ACTORS if a.role in LADDER]
KINDS = [
    ("fire", "smoke_alarm"),
    ("electrical", "residual_current_high"),
    ("device", "device_offline"),
    ("water", "pressure_low"),
    ("video", "zone_intrusion"),
]
PERSON_CLOSED = {"fire", "electrical"}
REASONS = [None, "", "  ", "checked on site", "督办"]


class WorkflowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.history: list[HistoryEntry] = []

    @initialize(severity=st.sampled_from(Severity), kind=st.sampled_from(KINDS))
    def open(self, severity: Severity, kind: tuple[str, str]) -> None:
        self.ws, entry = open_event(severity, kind[0], kind[1], self.now)
        self.history.append(entry)
        self.was_terminal = False

    def _move(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    def _record(self, before: WorkflowState, after: WorkflowState, entry: HistoryEntry) -> None:
        # Every entry names a real actor and says what it did, when.
        assert entry.actor_id.strip()
        assert entry.actor_role in Role and entry.actor_role is not Role.VIEWER
        assert (entry.actor_role is Role.SYSTEM) == (entry.actor_id == "system")
        assert entry.action in Action and entry.action is not Action.REPORT
        assert entry.from_state is before.state and entry.to_state is after.state
        assert entry.at <= self.now and entry.at == after.updated_at
        assert (entry.level_before, entry.level_after) == (before.level, after.level)
        assert (entry.assignee_before, entry.assignee_after) == (before.assignee, after.assignee)
        # Only the moves in the table; send-back may go to dispatched with a new assignee.
        moves = TRANSITIONS[entry.action]
        assert before.state in moves
        if entry.action is Action.SEND_BACK:
            assert after.state in (State.ACCEPTED, State.DISPATCHED)
        else:
            assert after.state is moves[before.state]
        # Terminal stays terminal; escalation only goes up, one rung at a time, within the
        # ladder; rework only counts up.
        if before.state.terminal:
            assert after.state is before.state and entry.action is Action.COMMENT
        assert before.level <= after.level <= min(before.level + 1, TOP_RANK)
        sent_back = entry.action is Action.SEND_BACK
        assert after.rework_count == before.rework_count + (1 if sent_back else 0)
        if after.state is State.CLOSED and before.state is not State.CLOSED:
            if after.category in PERSON_CLOSED:
                assert entry.actor_role is not Role.SYSTEM
                assert entry.action is Action.CLOSE
            if entry.action is Action.AUTO_CLOSE:
                assert entry.actor_role is Role.SYSTEM
        assert decode_state(encode_state(after)) == after
        self.ws = after
        self.history.append(entry)

    def _refused(self, before: WorkflowState, err: WorkflowError, action: Action) -> None:
        assert str(err).strip() and err.status in (403, 409, 422)
        assert err.action is action and err.state is before.state
        event(f"refused: {err.code}")

    @rule(
        action=st.sampled_from(Action),
        actor=st.sampled_from(ACTORS),
        assignee=st.none() | st.sampled_from(MEMBERS),
        reason=st.sampled_from(REASONS),
        members=st.sampled_from([None, MEMBERS, MEMBERS[2:4]]),
        minutes=st.integers(0, 90),
    )
    def random_action(
        self,
        action: Action,
        actor: Actor,
        assignee: Assignee | None,
        reason: str | None,
        members: list[Assignee] | None,
        minutes: int,
    ) -> None:
        """Anything by anyone: mostly refused, always with a typed error and a reason."""
        self._move(minutes)
        before = self.ws
        try:
            after, entry = apply(
                before,
                action,
                actor,
                self.now,
                reason=reason,
                assignee=assignee,
                members=members,
            )
        except WorkflowError as err:
            self._refused(before, err, action)
            if before.state.terminal and action is not Action.COMMENT:
                assert isinstance(err, IllegalTransition)
            if actor.role is Role.VIEWER and before.state in TRANSITIONS[action]:
                assert isinstance(err, NotPermitted)
            return
        assert actor.role is not Role.VIEWER
        assert entry.actor_id == actor.id
        event(f"applied: {action}")
        self._record(before, after, entry)

    @rule(data=st.data(), forward=st.booleans(), minutes=st.integers(0, 30))
    def permitted_action(self, data: st.DataObject, forward: bool, minutes: int) -> None:
        """A move some permitted actor can take now; with ``forward``, one along the loop,
        so that runs reach verification and closing often."""
        self._move(minutes)
        before = self.ws
        choices: list[tuple[Action, Actor]] = [
            (action, actor)
            for action, moves in TRANSITIONS.items()
            if before.state in moves
            for actor in ACTORS
            if permission_problem(actor, action, before.state, before.level, before.assignee)
            is None
        ]
        along: list[tuple[Action, Actor]] = [
            (action, actor)
            for action, actor in choices
            if TRANSITIONS[action][before.state] is not before.state
            and action not in (Action.MARK_FALSE_ALARM, Action.AUTO_CLOSE)
        ]
        if forward and along:
            choices = along
        assert choices  # someone may always at least comment
        action, actor = data.draw(st.sampled_from(choices))
        kwargs: dict[str, Any] = {"reason": "on site"}
        if action in (Action.DISPATCH, Action.REASSIGN, Action.SEND_BACK):
            fits = [m for m in MEMBERS if may_assign(actor, m) is None]
            pick = st.sampled_from(fits)
            kwargs["assignee"] = data.draw(
                pick if action is not Action.SEND_BACK else st.none() | pick
            )
        try:
            after, entry = apply(before, action, actor, self.now, **kwargs)
        except WorkflowError as err:
            # Permitted by role, refused by a rule of the move itself.
            assert not isinstance(err, MissingReason)
            self._refused(before, err, action)
            return
        event(f"progressed: {before.state} -{action}-> {after.state}")
        self._record(before, after, entry)

    @rule(minutes=st.integers(0, 300))
    def time_passes(self, minutes: int) -> None:
        """Deadlines are checked as the centre's timer would; repeated checks add nothing."""
        self._move(minutes)
        for esc in check(self.ws, self.now):
            assert esc.entry.action is Action.ESCALATE and esc.entry.actor_id == "system"
            assert esc.entry.reason and esc.entry.reason.startswith("督办")
            assert rank(esc.to_role) == (rank(esc.from_role) or 0) + 1
            event("escalated")
            self._record(self.ws, esc.state, esc.entry)
        assert check(self.ws, self.now) == []
        if overdue(self.ws, self.now):
            assert self.ws.owner is Role.COUNTY_CENTRE

    @rule(minutes=st.integers(0, 60))
    def condition_clears(self, minutes: int) -> None:
        self._move(minutes)
        before = self.ws
        try:
            after, entry = on_condition_cleared(before, self.now, reason="restore")
        except IllegalTransition:
            assert before.state.terminal
            return
        self._record(before, after, entry)
        if before.category in PERSON_CLOSED:
            assert after.state is before.state

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "ws"):
            return
        assert problems(self.ws) == []
        assert 0 <= self.ws.level <= TOP_RANK
        if self.was_terminal:
            assert self.ws.state.terminal
        self.was_terminal = self.ws.state.terminal
        levels = [e.level_after for e in self.history]
        assert levels == sorted(levels)


WorkflowMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_workflow_state_machine = WorkflowMachine.TestCase


def test_reachable_outcomes() -> None:
    """Both ends of the loop are reachable from a fresh event with the permitted moves."""
    g1, v1 = ACTORS[2], ACTORS[4]
    ws, _ = open_event(Severity.RED, "fire", "smoke_alarm", T0)
    ws, _ = apply(ws, Action.DISPATCH, SYSTEM_ACTOR, T0, assignee=MEMBERS[0])
    ws, _ = apply(ws, Action.ACCEPT, g1, T0)
    ws, _ = apply(ws, Action.RESOLVE, g1, T0)
    ws, _ = apply(ws, Action.VERIFY, v1, T0)
    ws, _ = apply(ws, Action.CLOSE, v1, T0)
    assert ws.state is State.CLOSED
