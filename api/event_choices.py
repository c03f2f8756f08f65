"""The ``allowed_actions`` of ``GET /api/v1/events/{id}``: what the caller may do with the
event now, with the members it may name, so a console shows only the buttons the API would
accept (the rules stay in ``alerts``; see :mod:`alerts.choices`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from alerts.choices import PERSON_ACTIONS, choices
from alerts.correlation import as_assignees
from alerts.event import GridEvent
from alerts.roles import Assignee
from alerts.workflow import WorkflowConfig
from api import openapi as oa
from api.auth import Principal
from devices.registry import Member
from devices.registry_rows import grid_from_row


async def grid_members(
    conn: psycopg.AsyncConnection[Any], event: GridEvent
) -> tuple[Member, ...] | None:
    """The registry members of the event's grid and of the grids above it, nearest first;
    None for an event placed in no grid."""
    if event.grid_code is None:
        return None
    cur = await conn.execute(
        "SELECT code, name, level, parent, members, NULL, ancestors FROM grids"
        " WHERE code = ANY(%s)",
        ([event.grid_code, *event.ancestors],),
    )
    grids = [grid_from_row(row) for row in await cur.fetchall()]
    grids.sort(key=lambda g: -len(g.ancestors))
    return tuple(m for g in grids for m in g.members)


async def allowed_actions(
    conn: psycopg.AsyncConnection[Any],
    who: Principal,
    event: GridEvent,
    config: WorkflowConfig,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """``allowed_actions`` as answered: one object per action ``who`` may take now."""
    if not who.may_act:
        return []
    people = await grid_members(conn, event)
    names = {m.id: m.name for m in people or ()}
    found = choices(
        event.workflow,
        who.actor,
        now or datetime.now(UTC),
        as_assignees(people) if people is not None else None,
        config=config,
    )
    return [
        {
            "action": c.action.value,
            "reason": c.reason,
            "assignee": c.assignee,
            "assignees": [_assignee(a, names) for a in c.assignees],
        }
        for c in found
    ]


def _assignee(who: Assignee, names: dict[str, str]) -> dict[str, str]:
    return {"id": who.id, "role": who.role.value, "name": names.get(who.id, who.id)}


def schema() -> dict[str, Any]:
    """The OpenAPI schema of one ``allowed_actions`` item."""
    need = {"enum": ["none", "optional", "required"]}
    return oa.record(
        {
            "action": {"enum": [a.value for a in PERSON_ACTIONS]},
            "reason": {**need, "description": "Whether the request needs a reason."},
            "assignee": {**need, "description": "Whether the request names an assignee."},
            "assignees": {
                "type": "array",
                "items": oa.record(
                    {
                        "id": {"type": "string"},
                        "role": {"type": "string"},
                        "name": {"type": "string"},
                    }
                ),
                "description": "The members this caller may name for this action, nearest "
                "grid first (empty when it takes none).",
            },
        }
    )
