"""The words of the grid-event workflow: states, actions and warning colours.

A leaf module (it imports nothing from the project) so that the role rules, the state value,
the deadlines and the state machine can all name the same vocabulary without import cycles.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class State(StrEnum):
    """Where a grid event stands in the closed loop (interface.md, "Workflow")."""

    REPORTED = "reported"  # 发现上报
    DISPATCHED = "dispatched"  # 分拨派遣
    ACCEPTED = "accepted"  # 签收
    RESOLVED = "resolved"  # 处置反馈
    VERIFIED = "verified"  # 核查
    CLOSED = "closed"  # 结案归档
    FALSE_ALARM = "false_alarm"  # 误报, a closing outcome

    @property
    def terminal(self) -> bool:
        """Closed and false_alarm end the loop: no action moves an event out of them."""
        return self in TERMINAL_STATES

    @property
    def label(self) -> str:
        """The field's own word for the state, for consoles and reports."""
        return STATE_LABELS[self]


TERMINAL_STATES = frozenset({State.CLOSED, State.FALSE_ALARM})

STATE_LABELS: Mapping[State, str] = MappingProxyType(
    {
        State.REPORTED: "发现上报",
        State.DISPATCHED: "分拨派遣",
        State.ACCEPTED: "签收",
        State.RESOLVED: "处置反馈",
        State.VERIFIED: "核查",
        State.CLOSED: "结案归档",
        State.FALSE_ALARM: "误报",
    }
)


class Action(StrEnum):
    """What an actor asks the workflow to do; ``POST /api/v1/events/{id}/actions`` names one."""

    REPORT = "report"  # opens the event (发现上报); taken once, by ``open_event``
    DISPATCH = "dispatch"  # reported → dispatched, names the assignee
    ACCEPT = "accept"  # dispatched → accepted (签收)
    REASSIGN = "reassign"  # another assignee, same state (改派)
    RESOLVE = "resolve"  # accepted → resolved (处置反馈)
    VERIFY = "verify"  # resolved → verified (核查通过)
    SEND_BACK = "send_back"  # resolved → accepted/dispatched: rework (退回返工)
    CLOSE = "close"  # verified → closed (结案), a person's decision
    MARK_FALSE_ALARM = "mark_false_alarm"  # → false_alarm (误报), with a reason
    ESCALATE = "escalate"  # one rung up the ladder (督办 / 上报上级), same state
    URGE = "urge"  # a superior presses the owner (催办), no change
    COMMENT = "comment"  # a note in the history, no change
    CLEAR = "clear"  # the condition cleared (restore); the event stays open
    AUTO_CLOSE = "auto_close"  # the system closes an auto-closable event on restore

    @property
    def label(self) -> str:
        return ACTION_LABELS[self]


ACTION_LABELS: Mapping[Action, str] = MappingProxyType(
    {
        Action.REPORT: "发现上报",
        Action.DISPATCH: "分拨派遣",
        Action.ACCEPT: "签收",
        Action.REASSIGN: "改派",
        Action.RESOLVE: "处置反馈",
        Action.VERIFY: "核查通过",
        Action.SEND_BACK: "退回返工",
        Action.CLOSE: "结案",
        Action.MARK_FALSE_ALARM: "误报",
        Action.ESCALATE: "督办 / 上报上级",
        Action.URGE: "催办",
        Action.COMMENT: "备注",
        Action.CLEAR: "警情解除",
        Action.AUTO_CLOSE: "自动结案",
    }
)

# The step that is due while an event is in a state: its owner is the one who is late when
# the state's deadline passes, and the one a 督办 presses.
DUE_STEP: Mapping[State, Action] = MappingProxyType(
    {
        State.REPORTED: Action.DISPATCH,
        State.DISPATCHED: Action.ACCEPT,
        State.ACCEPTED: Action.RESOLVE,
        State.RESOLVED: Action.VERIFY,
        State.VERIFIED: Action.CLOSE,
    }
)


class Severity(StrEnum):
    """The four warning colours (四色预警): red is level I, the most severe."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    BLUE = "blue"
