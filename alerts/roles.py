"""Who may act on a grid event: roles, the escalation ladder and the owner of each step.

The ladder is the grid tree seen from the people in it (domain.md, "Hierarchy and
escalation"): the basic grid's member (网格员), the village/community lead (村居), the
town/street centre (镇街综治中心) and the county command centre. Each workflow step has a
*base owner* on that ladder; every escalation of the event moves the owner of its steps one
rung up, never past the county centre. A role higher on the ladder may act on behalf of a
lower one; ``admin`` may take any person's step; ``viewer`` never acts; ``system`` is the
actor of automatic transitions (auto-dispatch, deadline escalation, auto-close on restore).

Token scope (which subtree a token sees) is the API's check, not this module's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

import msgspec

from alerts.workflow_enums import DUE_STEP, Action, State


class Role(StrEnum):
    """The role of an API token, of a grid member, or the system itself."""

    VIEWER = "viewer"
    GRID_MEMBER = "grid_member"
    VILLAGE_LEAD = "village_lead"
    TOWN_CENTRE = "town_centre"
    COUNTY_CENTRE = "county_centre"
    ADMIN = "admin"
    SYSTEM = "system"


LADDER: tuple[Role, ...] = (
    Role.GRID_MEMBER,
    Role.VILLAGE_LEAD,
    Role.TOWN_CENTRE,
    Role.COUNTY_CENTRE,
)
TOP_RANK = len(LADDER) - 1  # county_centre: escalation never goes past it
ADMIN_RANK = len(LADDER)  # above every rung; only admin reaches it

# The roles an API token may carry; ``system`` is never a token's.
TOKEN_ROLES = frozenset(Role) - {Role.SYSTEM}

# The grid-tree level each ladder role sits at (interface.md grid ``level`` values).
GRID_LEVEL: Mapping[Role, str] = MappingProxyType(
    {
        Role.GRID_MEMBER: "grid",
        Role.VILLAGE_LEAD: "village",
        Role.TOWN_CENTRE: "town",
        Role.COUNTY_CENTRE: "county",
    }
)

SYSTEM_ID = "system"


def rank(role: Role) -> int | None:
    """The rung of ``role`` on the ladder (0 = grid member), ADMIN_RANK for admin, else None."""
    if role is Role.ADMIN:
        return ADMIN_RANK
    try:
        return LADDER.index(role)
    except ValueError:
        return None


def role_at(rung: int) -> Role:
    """The ladder role at ``rung``, clamped to the ladder (never past the county centre)."""
    return LADDER[max(0, min(rung, TOP_RANK))]


def _rank_name(rung: int) -> str:
    return Role.ADMIN.value if rung >= ADMIN_RANK else role_at(rung).value


class Actor(msgspec.Struct, frozen=True):
    """Who takes an action: a person (id from the token) or the system."""

    id: str
    role: Role

    def __post_init__(self) -> None:
        if not self.id.strip():
            raise ValueError("an actor needs an id")
        if (self.role is Role.SYSTEM) != (self.id == SYSTEM_ID):
            raise ValueError(f"only the system actor has id {SYSTEM_ID!r} and role 'system'")

    @property
    def is_person(self) -> bool:
        return self.role is not Role.SYSTEM


SYSTEM_ACTOR = Actor(SYSTEM_ID, Role.SYSTEM)


class Assignee(msgspec.Struct, frozen=True):
    """The person an event is assigned to: one of the members of its grid or an ancestor's."""

    id: str
    role: Role

    def __post_init__(self) -> None:
        if not self.id.strip():
            raise ValueError("an assignee needs an id")
        if self.role not in LADDER:
            raise ValueError(
                f"an assignee's role must be one of {[r.value for r in LADDER]}, "
                f"not {self.role.value!r}"
            )


def pick_assignee(members: Iterable[Assignee], role: Role = Role.GRID_MEMBER) -> Assignee | None:
    """The first of ``members`` (a grid's and its ancestors') who has ``role``, if any."""
    return next((m for m in members if m.role is role), None)


@dataclass(frozen=True, slots=True)
class StepRule:
    """Who may take one action.

    ``owner`` is the base owning role, before any escalation; ``levelled`` says whether
    escalation raises it; ``assignee`` lets the assignee take the action whatever their
    rank; ``above_owner`` needs a role strictly above the owner (a superior's 督办).
    """

    owner: Role
    persons: bool = True
    system: bool = False
    assignee: bool = False
    levelled: bool = True
    above_owner: bool = False


# Which roles may take which action. ESCALATE and URGE have no owner of their own: they
# take the owner of the step that is due in the event's state (see ``owner_of``).
RULES: Mapping[Action, StepRule] = MappingProxyType(
    {
        Action.REPORT: StepRule(Role.GRID_MEMBER, system=True, levelled=False),
        Action.DISPATCH: StepRule(Role.VILLAGE_LEAD, system=True),
        Action.REASSIGN: StepRule(Role.VILLAGE_LEAD),
        Action.ACCEPT: StepRule(Role.GRID_MEMBER, assignee=True),
        Action.RESOLVE: StepRule(Role.GRID_MEMBER, assignee=True),
        # With an assignee, the person on site judges; without one, the dispatcher triages.
        Action.MARK_FALSE_ALARM: StepRule(Role.GRID_MEMBER, assignee=True),
        Action.VERIFY: StepRule(Role.VILLAGE_LEAD),
        Action.SEND_BACK: StepRule(Role.VILLAGE_LEAD),
        Action.CLOSE: StepRule(Role.VILLAGE_LEAD),
        Action.ESCALATE: StepRule(Role.GRID_MEMBER, system=True, assignee=True),
        Action.URGE: StepRule(Role.GRID_MEMBER, above_owner=True),
        Action.COMMENT: StepRule(Role.GRID_MEMBER, system=True, levelled=False),
        Action.CLEAR: StepRule(Role.GRID_MEMBER, system=True, levelled=False),
        Action.AUTO_CLOSE: StepRule(Role.GRID_MEMBER, persons=False, system=True),
    }
)


def owner_of(action: Action, state: State, level: int, *, has_assignee: bool) -> Role:
    """The ladder role that owns ``action`` for an event in ``state`` at escalation ``level``."""
    rule = RULES[action]
    base = rule.owner
    if action in (Action.ESCALATE, Action.URGE) and state in DUE_STEP:
        base = owner_of(DUE_STEP[state], state, 0, has_assignee=has_assignee)
    elif action is Action.MARK_FALSE_ALARM and not has_assignee:
        base = RULES[Action.DISPATCH].owner
    base_rank = LADDER.index(base)
    return role_at(base_rank + level) if rule.levelled else base


def permission_problem(
    actor: Actor, action: Action, state: State, level: int, assignee: Assignee | None
) -> str | None:
    """Why ``actor`` may not take ``action`` now, in words an API can return; None if it may."""
    rule = RULES[action]
    if actor.role is Role.VIEWER:
        return "a viewer may read events but not act on them"
    if actor.role is Role.SYSTEM:
        return None if rule.system else f"'{action}' is a person's decision, not the system's"
    if not rule.persons:
        return f"only the system takes '{action}'"
    if rule.assignee and assignee is not None and actor.id == assignee.id:
        return None
    owner = owner_of(action, state, level, has_assignee=assignee is not None)
    need = LADDER.index(owner) + (1 if rule.above_owner else 0)
    if rule.assignee and assignee is not None:
        # Acting on behalf of the assignee takes a role above theirs.
        need = max(need, LADDER.index(assignee.role) + 1)
    actor_rank = rank(actor.role)
    if actor_rank is None or actor_rank < need:
        who = f"the assignee ({assignee.id}) or " if rule.assignee and assignee else ""
        return (
            f"a {actor.role.value} may not {action.value} this event: it takes "
            f"{who}{_rank_name(need)} or above"
        )
    return None


def may_assign(actor: Actor, assignee: Assignee) -> str | None:
    """Why ``actor`` may not hand the event to ``assignee`` (a superior); None if it may.

    Work goes to one's own rung or below; sending it up is escalation, not assignment.
    """
    if not actor.is_person:
        return None
    actor_rank = rank(actor.role)
    target = LADDER.index(assignee.role)
    if actor_rank is None or actor_rank < target:
        return (
            f"a {actor.role.value} may not assign a {assignee.role.value}: assign within your "
            "level or below, or escalate"
        )
    return None
