"""Grid events over HTTP: list, read with history, and take workflow actions.

``GET /api/v1/events`` lists the events in the token's scope, newest ``first_seen`` first,
with an opaque cursor. ``GET /api/v1/events/{id}`` answers one with its history.
``POST /api/v1/events/{id}/actions`` takes one workflow action (``alerts.workflow.apply``)
as the token's actor, in one transaction with the event row locked: row (version + 1),
history, change log and an audit row, all or nothing. A refused action changes nothing but
is audited too (in its own transaction) and answers the workflow's status with
``{"error": code, "reason": …}``. After the commit every ``ApiContext.on_event_changed``
callback is told the event id.
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import orjson
import psycopg
from aiohttp import web
from psycopg import sql

from alerts.correlation import as_assignees
from alerts.event import CATEGORIES, Evidence, GridEvent, Location
from alerts.figures import CHINA_TZ
from alerts.roles import RULES, Assignee
from alerts.workflow import WorkflowError, apply
from alerts.workflow_enums import Action, Severity, State
from alerts.workflow_state import HistoryEntry, WorkflowState
from api import openapi as oa
from api.auth import (
    Principal,
    check_grid_param,
    http_error,
    principal,
    respond,
    scope_condition,
    subtree_condition,
)
from api.context import CONTEXT, ApiContext
from api.event_choices import allowed_actions
from api.event_choices import schema as choice_schema
from api.resources_api import event_resources
from devices.registry_rows import grid_from_row
from storage import tokens
from storage.events import (
    COLUMNS,
    EventConflict,
    append_history,
    get_event,
    history,
    log_change,
    save_event,
)

log = logging.getLogger(__name__)

MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 100
MAX_REASON: Final = 2000
# The actions a person may ask for; `report` opens an event and `auto_close` is the system's.
PERSON_ACTIONS: Final = tuple(a for a in Action if RULES[a].persons and a is not Action.REPORT)

_SELECT: Final = sql.SQL("SELECT {} FROM grid_events").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
)
_FIRST_SEEN: Final = COLUMNS.index("first_seen")
_TERMINAL: Final = [s.value for s in State if s.terminal]


# --- cursor ------------------------------------------------------------------------------


def encode_cursor(first_seen: datetime, event_id: str) -> str:
    """The position after an event: base64url of ``[first_seen, id]``, opaque to clients."""
    raw = orjson.dumps([first_seen.isoformat(), event_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        first_seen, event_id = orjson.loads(raw)
        moment = datetime.fromisoformat(first_seen)
        if moment.tzinfo is None or not isinstance(event_id, str):
            raise ValueError("naive time or no id")
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise http_error(400, "bad_cursor", "cursor: not one this API gave out") from None
    return moment, event_id


# --- list and read -------------------------------------------------------------------------

_LIST_PARAMS: Final = (
    "grid", "state", "severity", "category", "since", "until", "open", "limit", "cursor",
)  # fmt: skip


async def list_events(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, _LIST_PARAMS)
    grid = oa.one(request, "grid")
    states = oa.many(request, "state", [s.value for s in State])
    severities = oa.many(request, "severity", [s.value for s in Severity])
    categories = oa.many(request, "category", CATEGORIES)
    since = oa.moment(request, "since", tz=CHINA_TZ)
    until = oa.moment(request, "until", tz=CHINA_TZ, end_of_day=True)
    open_only = oa.boolean(request, "open")
    limit = oa.integer(request, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    cursor_text = oa.one(request, "cursor")
    after = decode_cursor(cursor_text) if cursor_text is not None else None

    scope, params = scope_condition(who)
    conditions: list[sql.Composable] = [scope]
    if states:
        conditions.append(sql.SQL("state = ANY(%(states)s)"))
        params["states"] = states
    if severities:
        conditions.append(sql.SQL("severity = ANY(%(severities)s)"))
        params["severities"] = severities
    if categories:
        conditions.append(sql.SQL("category = ANY(%(categories)s)"))
        params["categories"] = categories
    if since is not None:
        conditions.append(sql.SQL("first_seen >= %(since)s"))
        params["since"] = since
    if until is not None:
        conditions.append(sql.SQL("first_seen < %(until)s"))
        params["until"] = until
    if open_only is not None:
        conditions.append(
            sql.SQL("NOT (state = ANY(%(terminal)s))" if open_only else "state = ANY(%(terminal)s)")
        )
        params["terminal"] = _TERMINAL
    if after is not None:
        conditions.append(sql.SQL("(first_seen, id) < (%(after_ts)s, %(after_id)s)"))
        params.update(after_ts=after[0], after_id=after[1])
    params["limit"] = limit + 1

    async with request.app[CONTEXT].pool.connection() as conn:
        if grid is not None:
            await check_grid_param(conn, who, grid)
            conditions.append(subtree_condition("grid"))
            params["grid"] = grid
        query = (
            _SELECT
            + sql.SQL(" WHERE ")
            + sql.SQL(" AND ").join(conditions)
            + sql.SQL(" ORDER BY first_seen DESC, id DESC LIMIT %(limit)s")
        )
        cur = await conn.execute(query, params)
        rows = await cur.fetchall()
    page = rows[:limit]
    items = [_event(row).to_cloudevent_data() for row in page]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(last[_FIRST_SEEN], last[0])
    return respond({"items": items, "next_cursor": next_cursor})


def _event(row: tuple[Any, ...]) -> GridEvent:
    return GridEvent.from_row(dict(zip(COLUMNS, row, strict=True)))


async def read_event(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, ())
    event_id = request.match_info["id"]
    async with request.app[CONTEXT].pool.connection() as conn:
        event = await get_event(conn, event_id)
        if event is None or not who.can_see(event.grid_code, event.ancestors):
            raise _not_found(event_id)
        entries = await history(conn, event_id)
        config = request.app[CONTEXT].settings.alerts.workflow
        allowed = await allowed_actions(conn, who, event, config)
        resources = await event_resources(conn, event, request.app[CONTEXT].settings.field)
    return respond(
        {**event.to_cloudevent_data(entries), "allowed_actions": allowed, "resources": resources}
    )


def _not_found(event_id: str) -> web.HTTPException:
    return http_error(404, "not_found", f"no event {event_id!r}")


# --- actions -------------------------------------------------------------------------------


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


# --- the OpenAPI description ------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [HistoryEntry, Assignee, Evidence, Location], ref_template="#/components/schemas/{name}"
    )
    time = {"type": "string", "format": "date-time"}
    strings = {"type": "array", "items": {"type": "string"}}
    event_properties: dict[str, Any] = {
        "id": {"type": "string", "description": "'GE' + 26 characters, time-ordered."},
        "grid_code": {"type": ["string", "null"], "description": "Basic grid; null: unplaced."},
        "ancestors": {**strings, "description": "County, town, village codes."},
        "category": {"enum": list(CATEGORIES)},
        "type": {"type": "string", "description": "smoke_alarm, pressure_drop, …"},
        "severity": oa.ref("Severity"),
        "state": oa.ref("State"),
        "device_ids": strings,
        "types": strings,
        "active_conditions": strings,
        "site": {"type": "string"},
        "location": oa.ref("Location"),
        "first_seen": time,
        "last_seen": time,
        "alarm_count": {"type": "integer", "minimum": 0},
        "evidence": {"type": "array", "items": oa.ref("Evidence")},
        "assignee": oa.nullable(oa.ref("Assignee")),
        "deadlines": {
            "type": "object",
            "required": ["step", "due", "owner", "level"],
            "properties": {
                "step": {"type": ["string", "null"], "description": "The action due now."},
                "due": oa.nullable(time),
                "owner": {"type": ["string", "null"], "description": "Role that owns it."},
                "level": {"type": "integer", "minimum": 0, "description": "Escalations."},
            },
            "additionalProperties": False,
        },
        "reported_at": time,
        "updated_at": time,
        "closed_at": oa.nullable(time),
        "history": {
            "type": "array",
            "items": oa.ref("HistoryEntry"),
            "description": "Oldest first; empty in listings (read the event for it).",
        },
        "version": {"type": "integer", "minimum": 1},
    }
    return {
        **components,
        "Severity": {"enum": [s.value for s in Severity], "description": "四色预警, red first."},
        "GridEvent": {
            "type": "object",
            "description": "A grid event (网格事件), as in the `data` of its CloudEvents.",
            "required": list(event_properties),
            "properties": event_properties,
            "additionalProperties": False,
        },
        "EventDetail": {
            "type": "object",
            "description": "A grid event with its history and what the caller may do now.",
            "required": [*event_properties, "allowed_actions"],
            "properties": {
                **event_properties,
                "allowed_actions": {
                    "type": "array",
                    "items": oa.ref("AllowedAction"),
                    "description": "The workflow actions this token may take now, in "
                    "workflow order (none for a viewer; a finished event takes only comments).",
                },
                "resources": {
                    **oa.nullable(oa.ref("NearestResources")),
                    "description": "Fire and electrical events with a position: the nearest "
                    "micro fire stations, hydrants (with their pressure now) and duty teams; "
                    "null for other events.",
                },
            },
            "additionalProperties": False,
        },
        "AllowedAction": choice_schema(),
        "EventPage": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": {"type": "array", "items": oa.ref("GridEvent")},
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "Pass as `cursor` for the next page; null on the last.",
                },
            },
            "additionalProperties": False,
        },
        "ActionRequest": {
            "type": "object",
            "required": ["action"],
            "properties": {
                "action": {"enum": [a.value for a in PERSON_ACTIONS]},
                "reason": {
                    "type": ["string", "null"],
                    "maxLength": MAX_REASON,
                    "description": "Why; required for send_back, mark_false_alarm, escalate, "
                    "urge, comment.",
                },
                "assignee": oa.nullable(oa.ref("Assignee")),
                "version": {
                    "type": ["integer", "null"],
                    "description": "Act only if the event is still at this version (else 409).",
                },
            },
            "additionalProperties": False,
        },
    }


def _paths() -> dict[str, Any]:
    event_id = oa.path_param("id", "The grid event id.")
    return {
        "/api/v1/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "Grid events in the token's scope, newest first_seen first.",
                "tags": ["events"],
                "parameters": [
                    oa.query("grid", {"type": "string"}, "Only this grid's subtree (403 when "
                             "outside the token's scope)."),
                    oa.query("state", {"type": "array", "items": oa.ref("State")},
                             "Only these states (repeat, or comma-separate)."),
                    oa.query("severity", {"type": "array", "items": oa.ref("Severity")},
                             "Only these severities."),
                    oa.query("category", {"type": "array", "items": {"enum": list(CATEGORIES)}},
                             "Only these categories."),
                    oa.query("since", {"type": "string"}, "first_seen at or after. "
                             + oa.TIME_DESCRIPTION),
                    oa.query("until", {"type": "string"}, "first_seen before. "
                             + oa.TIME_DESCRIPTION),
                    oa.query("open", {"type": "boolean"},
                             "true: only open events; false: only closed and false alarms."),
                    oa.query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                       "default": DEFAULT_LIMIT}, "Page size."),
                    oa.query("cursor", {"type": "string"}, "`next_cursor` of the page before."),
                ],
                "responses": {
                    "200": oa.json_body("One page of events.", oa.ref("EventPage")),
                    **oa.errors(400, 403, 404),
                },
            }
        },
        "/api/v1/events/{id}": {
            "get": {
                "operationId": "getEvent",
                "summary": "One grid event with its history (404 outside the scope).",
                "tags": ["events"],
                "parameters": [event_id],
                "responses": {
                    "200": oa.json_body("The event.", oa.ref("EventDetail")),
                    **oa.errors(400, 404),
                },
            }
        },
        "/api/v1/events/{id}/actions": {
            "post": {
                "operationId": "takeAction",
                "summary": "Take a workflow action as the token's actor.",
                "description": "dispatch/reassign need an assignee from the members of the "
                "event's grid or the grids above; who may take which step is the workflow's "
                "rule. A refused action changes nothing and is audited.",
                "tags": ["events"],
                "parameters": [event_id],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": oa.ref("ActionRequest")}},
                },
                "responses": {
                    "200": oa.json_body("The event after the action.", oa.ref("GridEvent")),
                    **oa.errors(400, 403, 404, 409, 422),
                },
            }
        },
    }  # fmt: skip


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/events", list_events)
    app.router.add_get("/api/v1/events/{id}", read_event)
    app.router.add_post("/api/v1/events/{id}/actions", take_action)
    oa.describe(app, _paths(), _schemas())
