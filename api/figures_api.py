"""The centre's figures over HTTP: ``GET /api/v1/figures?node=…&since=…&until=…``.

The same report as ``gridwatch report --json`` less the daily series: the node's figures
over ``[since, until)`` with its children's (``alerts.figures``) and its safety index now
(``alerts.safety_index``). The node defaults to the token's scope grid and must lie within
it (403 otherwise); the period defaults to the last 30 days.

For the console's charts, ``GET /api/v1/figures/nodes`` answers a node and each child as
they stand now (open events by colour, devices online, cameras healthy, safety index) and
``GET /api/v1/figures/series`` the stored daily safety index.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from aiohttp import web

from alerts.event import CATEGORIES
from alerts.figures import CHINA_TZ, Node, UnknownNode, figures, get_node, top_nodes
from alerts.patrol_figures import patrol_figures
from alerts.safety_index import Indicators, NodeIndex, index_now, indicators_at, score, series
from alerts.workflow_enums import Severity
from api import openapi as oa
from api.auth import Principal, check_grid_param, http_error, principal, respond
from api.context import CONTEXT
from devices.registry_sql import fetch

DEFAULT_DAYS: Final = 30
MAX_SERIES_DAYS: Final = 366


async def get_figures(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, ("node", "since", "until"))
    node = oa.one(request, "node")
    until = oa.moment(request, "until", tz=CHINA_TZ, end_of_day=True) or datetime.now(UTC)
    since = oa.moment(request, "since", tz=CHINA_TZ) or until - timedelta(days=DEFAULT_DAYS)
    if until <= since:
        raise http_error(400, "bad_parameter", "until: must be after since")
    ctx = request.app[CONTEXT]
    policy = ctx.settings.alerts.workflow.deadlines
    async with ctx.pool.connection() as conn:
        node = await _node(conn, who, node)
        try:
            result = await figures(conn, node=node, since=since, until=until, policy=policy)
            index = await index_now(conn, node, ctx.settings.alerts.safety_index, policy=policy)
            patrols = await patrol_figures(conn, node=node, since=since, until=until)
        except UnknownNode as exc:
            raise http_error(404, "unknown_grid", str(exc)) from None
    return respond(
        {
            "figures": result.to_json(),
            "safety_index": index.to_json(),
            "patrols": patrols.to_json(),
        }
    )


async def _node(conn: psycopg.AsyncConnection[Any], who: Principal, node: str | None) -> str:
    """The node a figures request is about: the one named (within the scope), else the
    token's scope grid, else (scope ``*``) the one top grid."""
    if node is None and not who.unrestricted:
        return who.scope
    if node is None:
        roots = await top_nodes(conn)
        if len(roots) != 1:
            found = ", ".join(r.code for r in roots) or "none"
            raise http_error(400, "bad_parameter", f"node: name one (top grids: {found})")
        return roots[0].code
    await check_grid_param(conn, who, node, name="node")
    return node


async def get_nodes(request: web.Request) -> web.Response:
    """The node and each of its children now: open events by colour, devices online,
    cameras healthy and the safety index (one query for all of them)."""
    who = principal(request)
    oa.check_params(request, ("node",))
    ctx = request.app[CONTEXT]
    weights = ctx.settings.alerts.safety_index
    now = datetime.now(UTC)
    async with ctx.pool.connection() as conn:
        code = await _node(conn, who, oa.one(request, "node"))
        try:
            top = await get_node(conn, code)
        except UnknownNode as exc:
            raise http_error(404, "unknown_grid", str(exc)) from None
        children = [
            Node(*row)
            for row in await fetch(
                conn,
                "SELECT code, name, level FROM grids WHERE parent = %(c)s ORDER BY code",
                {"c": code},
            )
        ]
        found = await indicators_at(
            conn,
            now,
            weights,
            policy=ctx.settings.alerts.workflow.deadlines,
            nodes=[code, *(c.code for c in children)],
        )

    def entry(node: Node) -> dict[str, Any]:
        values = found.get(node.code, Indicators())
        index = NodeIndex(node.code, now, values, score(values, weights)).to_json()
        return {"name": node.name, "level": node.level, **index}

    return respond({"node": entry(top), "children": [entry(c) for c in children]})


async def get_series(request: web.Request) -> web.Response:
    """The stored daily safety index of a node (computed hourly by the service)."""
    who = principal(request)
    oa.check_params(request, ("node", "days"))
    days = oa.integer(request, "days", DEFAULT_DAYS, low=1, high=MAX_SERIES_DAYS)
    ctx = request.app[CONTEXT]
    async with ctx.pool.connection() as conn:
        code = await _node(conn, who, oa.one(request, "node"))
        points = await series(conn, code, days)
    return respond(
        {
            "node": code,
            "days": days,
            "items": [{"day": p.day.isoformat(), "score": p.score} for p in points],
        }
    )


# --- the OpenAPI description ------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    rate = {"type": ["number", "null"], "description": "null when its base is 0."}
    seconds = {"type": ["number", "null"]}
    count = {"type": "integer", "minimum": 0}
    tally = {
        "received": count,
        "closed": count,
        "close_rate": rate,
        "closed_on_time": count,
        "on_time_base": count,
        "on_time_close_rate": rate,
        "reworked": count,
        "rework_rate": rate,
        "mean_time_to_dispatch_s": seconds,
        "mean_time_to_close_s": seconds,
    }
    node = {"code": {"type": "string"}, "name": {"type": "string"}, "level": {"type": "string"}}
    by_severity = {s.value: count for s in Severity}
    time = {"type": "string", "format": "date-time"}
    figures_props = {
        "node": oa.record(node),
        "since": time,
        "until": time,
        "as_of": time,
        **tally,
        "extension_rate": {"type": "number"},
        "open_now": count,
        "open_by_severity": oa.record(by_severity),
        "by_category": {
            "type": "object",
            "propertyNames": {"enum": list(CATEGORIES)},
            "additionalProperties": count,
            "description": "Received events per category, most first.",
        },
        "time_limits_s": {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "description": "The on-time limit per severity, in seconds.",
        },
        "children": {"type": "array", "items": oa.record({**node, **tally})},
        "notes": {"type": "array", "items": {"type": "string"}},
    }
    indicators = {
        **{f"open_{s.value}": count for s in Severity},
        "devices": count,
        "devices_online": count,
        "cameras": count,
        "cameras_healthy": count,
        "closed_on_time": count,
        "on_time_base": count,
        "device_online_rate": rate,
        "camera_health": rate,
        "on_time_close_rate": rate,
    }
    index = {
        "code": {"type": "string"},
        "as_of": time,
        "score": {"type": "number", "minimum": 0, "maximum": 100},
        "indicators": oa.record(indicators),
        "contributions": {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "description": "Points (≤ 0) each indicator added to 100.",
        },
    }
    node_index = {
        **node,
        "as_of": time,
        "score": index["score"],
        "indicators": oa.record(indicators),
        "contributions": index["contributions"],
    }
    return {
        "NodeIndex": oa.record(node_index),
        "NodeIndexes": oa.record(
            {
                "node": oa.ref("NodeIndex"),
                "children": {"type": "array", "items": oa.ref("NodeIndex")},
            }
        ),
        "SafetyIndexSeries": oa.record(
            {
                "node": {"type": "string"},
                "days": {"type": "integer", "minimum": 1},
                "items": {
                    "type": "array",
                    "items": oa.record(
                        {"day": {"type": "string", "format": "date"}, "score": {"type": "number"}}
                    ),
                    "description": "Oldest first; days never computed are absent.",
                },
            }
        ),
        "Figures": oa.record(figures_props),
        "SafetyIndex": oa.record(index),
        "Report": oa.record(
            {
                "figures": oa.ref("Figures"),
                "safety_index": oa.ref("SafetyIndex"),
                "patrols": oa.ref("PatrolFigures"),
            }
        ),
        **patrol_schemas(node, time),
    }


def patrol_schemas(node: dict[str, Any], time: dict[str, Any]) -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    tally = {
        "due": {**count, "description": "Periods whose deadline fell in the period."},
        "done": {**count, "description": "Check-ins (patrols walked), every scan counted."},
        "on_time": {**count, "description": "Due periods a check-in did in time."},
        "overdue": {**count, "description": "Due periods nobody did in time."},
        "on_time_rate": {"type": ["number", "null"], "description": "null when none was due."},
    }
    return {
        "PatrolFigures": oa.record(
            {
                "node": oa.record(node),
                "since": time,
                "until": time,
                "as_of": time,
                "tags": count,
                **tally,
                "by_grid": {
                    "type": "array",
                    "items": oa.record({"code": {"type": "string"}, "name": {"type": "string"},
                                        "tags": count, **tally}),
                },
                "by_worker": {
                    "type": "array",
                    "items": oa.record({"worker_id": {"type": "string"},
                                        "name": {"type": "string"},
                                        "grids": {"type": "array", "items": {"type": "string"}},
                                        **tally}),
                    "description": "On-time periods credited to who checked them in; overdue "
                    "ones charged to the tag's grid worker.",
                },
            }
        )
    }  # fmt: skip


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/figures": {
            "get": {
                "operationId": "getFigures",
                "summary": "A grid node's figures over a period and its safety index now.",
                "description": "received, closed, 办结率, 按期结案率, 返工率, … for the node's "
                "subtree and for each child (see alerts.figures for what each counts).",
                "tags": ["figures"],
                "parameters": [
                    oa.query(
                        "node",
                        {"type": "string"},
                        "County, town, village or basic grid (default: the token's scope "
                        "grid; 403 outside it).",
                    ),
                    oa.query("since", {"type": "string"}, "Start (default: 30 days before "
                             "until). " + oa.TIME_DESCRIPTION),
                    oa.query("until", {"type": "string"}, "End (default: now). "
                             + oa.TIME_DESCRIPTION),
                ],
                "responses": {
                    "200": oa.json_body("The report.", oa.ref("Report")),
                    **oa.errors(400, 403, 404),
                },
            }
        },
        "/api/v1/figures/nodes": {
            "get": {
                "operationId": "getNodeIndexes",
                "summary": "A node and each child now: open events by colour, devices online, "
                "cameras healthy, safety index.",
                "tags": ["figures"],
                "parameters": [
                    oa.query("node", {"type": "string"}, "The node (default: the token's "
                             "scope grid; 403 outside it)."),
                ],
                "responses": {
                    "200": oa.json_body("The node and its children.", oa.ref("NodeIndexes")),
                    **oa.errors(400, 403, 404),
                },
            }
        },
        "/api/v1/figures/series": {
            "get": {
                "operationId": "getSafetyIndexSeries",
                "summary": "A node's daily safety index (平安指数) for the last days.",
                "tags": ["figures"],
                "parameters": [
                    oa.query("node", {"type": "string"}, "The node (default: the token's "
                             "scope grid; 403 outside it)."),
                    oa.query("days", {"type": "integer", "minimum": 1,
                                      "maximum": MAX_SERIES_DAYS, "default": DEFAULT_DAYS},
                             "How many days, ending today (China time)."),
                ],
                "responses": {
                    "200": oa.json_body("The series.", oa.ref("SafetyIndexSeries")),
                    **oa.errors(400, 403, 404),
                },
            }
        },
    }  # fmt: skip


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/figures", get_figures)
    app.router.add_get("/api/v1/figures/nodes", get_nodes)
    app.router.add_get("/api/v1/figures/series", get_series)
    oa.describe(app, _paths(), _schemas())
