"""Grid events over HTTP: list and read with history (actions: ``api.event_actions``).

``GET /api/v1/events`` lists the events in the token's scope, newest ``first_seen`` first,
with an opaque cursor. ``GET /api/v1/events/{id}`` answers one with its history and the
actions the token may take on it.
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import datetime
from typing import Any, Final

import orjson
from aiohttp import web
from psycopg import sql

from alerts.event import CATEGORIES, GridEvent
from alerts.figures import CHINA_TZ
from alerts.workflow_enums import Severity, State
from api import events_openapi
from api import openapi as oa
from api.auth import (
    check_grid_param,
    http_error,
    principal,
    respond,
    scope_condition,
    subtree_condition,
)
from api.context import CONTEXT
from api.event_actions import take_action
from api.event_choices import allowed_actions
from api.resources_api import event_resources
from storage.events import (
    COLUMNS,
    get_event,
    history,
)

log = logging.getLogger(__name__)

MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 100

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


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/events", list_events)
    app.router.add_get("/api/v1/events/{id}", read_event)
    app.router.add_post("/api/v1/events/{id}/actions", take_action)
    oa.describe(app, events_openapi.paths(MAX_LIMIT, DEFAULT_LIMIT), events_openapi.schemas())
