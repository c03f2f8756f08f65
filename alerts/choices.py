"""What a person may do with a grid event right now, so that a console can offer exactly
the actions the API would accept and nothing it would refuse.

The answer is found by asking the workflow itself: each person's action is tried with
:func:`alerts.workflow.apply` on the event's state (a pure call: nothing is stored), with a
placeholder reason and, for actions that take one, each candidate assignee in turn. So the
rules live in one place (``alerts.workflow`` and ``alerts.roles``) and a console never
re-implements them: a resolver is not offered ``verify``, a viewer is offered nothing, a
dispatcher is offered only the members it may assign.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final, Literal

import msgspec

from alerts.roles import RULES, Actor, Assignee
from alerts.workflow import (
    DEFAULT_CONFIG,
    REASON_REQUIRED,
    InvalidAssignee,
    WorkflowConfig,
    WorkflowError,
    apply,
)
from alerts.workflow_enums import Action
from alerts.workflow_state import WorkflowState

Need = Literal["none", "optional", "required"]

# The actions a person may ask for; ``report`` opens an event and ``auto_close`` is the
# system's (the same list the HTTP API accepts).
PERSON_ACTIONS: Final[tuple[Action, ...]] = tuple(
    a for a in Action if RULES[a].persons and a is not Action.REPORT
)
_PLACEHOLDER_REASON: Final = "?"


class Choice(msgspec.Struct, frozen=True, kw_only=True):
    """One action the actor may take now, and what it must come with.

    ``reason`` and ``assignee`` say whether the request needs them; ``assignees`` are the
    members the workflow would accept for this action from this actor (empty when the
    action takes none).
    """

    action: Action
    reason: Need
    assignee: Need
    assignees: tuple[Assignee, ...] = ()


def _accepts(
    ws: WorkflowState,
    action: Action,
    actor: Actor,
    now: datetime,
    assignee: Assignee | None,
    members: Sequence[Assignee] | None,
    config: WorkflowConfig,
) -> WorkflowError | None:
    """None when the workflow would take the action; else the refusal it would give."""
    try:
        apply(
            ws,
            action,
            actor,
            now,
            reason=_PLACEHOLDER_REASON,
            assignee=assignee,
            members=members,
            config=config,
        )
    except WorkflowError as refusal:
        return refusal
    return None


def choices(
    ws: WorkflowState,
    actor: Actor,
    now: datetime,
    members: Iterable[Assignee] | None,
    *,
    config: WorkflowConfig = DEFAULT_CONFIG,
) -> tuple[Choice, ...]:
    """The actions ``actor`` may take on an event in ``ws`` at ``now``, in workflow order.

    ``members`` are the members of the event's grid and of the grids above it (None for an
    event placed in no grid: then no assignee can be offered, as none can be checked).
    """
    candidates = tuple(dict.fromkeys(members)) if members is not None else ()
    known = candidates if members is not None else None
    found: list[Choice] = []
    for action in PERSON_ACTIONS:
        bare = _accepts(ws, action, actor, now, None, known, config)
        if bare is not None and not isinstance(bare, InvalidAssignee):
            continue  # illegal in this state, or not this actor's to take
        fitting = tuple(
            member
            for member in candidates
            if _accepts(ws, action, actor, now, member, known, config) is None
        )
        if bare is not None and not fitting:
            continue  # it needs an assignee and none would do
        need: Need = "required" if bare is not None else ("optional" if fitting else "none")
        found.append(
            Choice(
                action=action,
                reason="required" if action in REASON_REQUIRED else "optional",
                assignee=need,
                assignees=fitting,
            )
        )
    return tuple(found)
