"""``POST /api/v1/events/{id}/actions``: one workflow action (``alerts.workflow.apply``) as the
token's actor, in one transaction with the event row locked: row (version + 1), history,
change log and an audit row, all or nothing. A refused action changes nothing but is audited
too (in its own transaction) and answers the workflow's status with
``{"error": code, "reason": …}``. After the commit every ``ApiContext.on_event_changed``
callback is told the event id.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import orjson
import psycopg
from aiohttp import web

from alerts.choices import PERSON_ACTIONS
from alerts.correlation import as_assignees
from alerts.event import GridEvent
from alerts.roles import Assignee
from alerts.workflow import WorkflowError, apply
from alerts.workflow_enums import Action
from alerts.workflow_state import HistoryEntry, WorkflowState
from api import openapi as oa
from api.auth import (
    Principal,
    http_error,
    principal,
    respond,
)
from api.context import CONTEXT, ApiContext
from devices.registry_rows import grid_from_row
from storage import tokens
from storage.events import (
    EventConflict,
    append_history,
    get_event,
    history,
    log_change,
    save_event,
)

log = logging.getLogger(__name__)

MAX_REASON: Final = 2000


class ActionRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``POST /api/v1/events/{id}/actions``."""

    action: str
    reason: str | None = None
    assignee: Assignee | None = None
    # When given, the action applies only if the event is still at this version.
    version: int | None = None


class _Refused(Exception):
    def __init__(self, status: int, code: str, reason: str, **detail: Any) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.detail = status, code, reason, detail


def _parse_action(raw: bytes) -> tuple[ActionRequest, Action]:
    try:
        body = msgspec.json.decode(raw, type=ActionRequest)
    except msgspec.ValidationError as exc:
        raise _Refused(400, "bad_request", f"body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise _Refused(400, "bad_request", f"body is not JSON: {exc}") from None
    allowed = [a.value for a in PERSON_ACTIONS]
    if body.action not in allowed:
        raise _Refused(
            422, "unknown_action", f"unknown action {body.action!r} (one of: {', '.join(allowed)})"
        )
    if body.reason is not None and len(body.reason) > MAX_REASON:
        raise _Refused(422, "reason_too_long", f"a reason has at most {MAX_REASON} characters")
    return body, Action(body.action)


def change_of(before: WorkflowState, after: WorkflowState, action: Action) -> str:
    """The CloudEvents change an action makes (``gridwatch.event.<change>``)."""
    if after.state.terminal and not before.state.terminal:
        return "closed"
    if action is Action.ESCALATE:
        return "escalated"
    if after.state is not before.state:
        return "state_changed"
    return "updated"


async def _members(
    conn: psycopg.AsyncConnection[Any], event: GridEvent
) -> tuple[Assignee, ...] | None:
    """The members of the event's grid and of the grids above it (the assignees the workflow
    accepts); None for an event placed in no grid, which has no members to check against."""
    if event.grid_code is None:
        return None
    cur = await conn.execute(
        "SELECT code, name, level, parent, members, NULL, ancestors FROM grids"
        " WHERE code = ANY(%s)",
        ([event.grid_code, *event.ancestors],),
    )
    grids = [grid_from_row(row) for row in await cur.fetchall()]
    return tuple(member for grid in grids for member in as_assignees(grid.members))


async def take_action(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, ())
    ctx = request.app[CONTEXT]
    event_id = request.match_info["id"]
    raw = await request.read()
    action_name = ""
    try:
        body, action = _parse_action(raw)
        action_name = action.value
        if not who.may_act:
            raise _Refused(403, "read_only", "a viewer token may read but not act")
        data, detail = await _apply(ctx, who, event_id, body, action)
    except _Refused as refused:
        await _audit_refusal(ctx, who, event_id, action_name or _raw_action(raw), refused)
        raise http_error(refused.status, refused.code, refused.reason) from None
    log.info(
        "event action taken",
        extra={"event_id": event_id, "action": action_name, "token_id": who.token_id, **detail},
    )
    for callback in ctx.on_event_changed:
        try:
            callback(event_id)
        except Exception:  # the change is committed: answer 200, and say loudly what failed
            log.exception("on_event_changed callback failed", extra={"event_id": event_id})
    return respond(data)


async def _apply(
    ctx: ApiContext, who: Principal, event_id: str, body: ActionRequest, action: Action
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Take the action in one transaction; returns the event as answered and audit detail."""
    now = datetime.now(UTC)
    try:
        async with ctx.pool.connection() as conn, conn.transaction():
            event = await get_event(conn, event_id, lock=True)
            if event is None or not who.can_see(event.grid_code, event.ancestors):
                raise _Refused(404, "not_found", f"no event {event_id!r}")
            if body.version is not None and body.version != event.version:
                raise _Refused(
                    409,
                    "version_conflict",
                    f"the event is at version {event.version}, not {body.version}: read it again",
                    state=event.state.value,
                )
            members = await _members(conn, event)
            before = event.workflow
            try:
                ws, entry = apply(
                    before,
                    action,
                    who.actor,
                    now,
                    reason=body.reason,
                    assignee=body.assignee,
                    members=members,
                    config=ctx.settings.alerts.workflow,
                )
            except WorkflowError as exc:
                raise _Refused(exc.status, exc.code, exc.message, state=exc.state.value) from None
            updated = msgspec.structs.replace(
                event, workflow=ws, state=ws.state, severity=ws.severity, version=event.version + 1
            )
            change = change_of(before, ws, action)
            await save_event(conn, updated, new=False)
            await append_history(conn, event_id, [entry])
            await log_change(conn, updated, change)
            detail = _detail(before, ws, entry, change, updated.version)
            await tokens.append_audit(
                conn,
                token_id=who.token_id,
                actor=who.actor_id,
                action=action.value,
                target=event_id,
                outcome="ok",
                status=200,
                detail=detail,
            )
            entries = await history(conn, event_id)
    except EventConflict:
        raise _Refused(409, "conflict", "the event changed meanwhile: read it again") from None
    return updated.to_cloudevent_data(entries), detail


def _detail(
    before: WorkflowState, after: WorkflowState, entry: HistoryEntry, change: str, version: int
) -> dict[str, Any]:
    return {
        "from_state": before.state.value,
        "to_state": after.state.value,
        "change": change,
        "version": version,
        "reason": entry.reason,
        "assignee": after.assignee.id if after.assignee else None,
    }


def _raw_action(raw: bytes) -> str:
    """The action a malformed body asked for, as far as it can be read (for the audit)."""
    try:
        value = orjson.loads(raw).get("action")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return value[:64] if isinstance(value, str) else ""


async def _audit_refusal(
    ctx: ApiContext, who: Principal, event_id: str, action: str, refused: _Refused
) -> None:
    detail = {"error": refused.code, "reason": refused.reason, **refused.detail}
    async with ctx.pool.connection() as conn:
        await tokens.append_audit(
            conn,
            token_id=who.token_id,
            actor=who.actor_id,
            action=action or "(none)",
            target=event_id,
            outcome="refused",
            status=refused.status,
            detail=detail,
        )
    log.info(
        "event action refused",
        extra={
            "event_id": event_id,
            "action": action,
            "token_id": who.token_id,
            "status": refused.status,
            "error": refused.code,
        },
    )
