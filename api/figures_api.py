"""The centre's figures over HTTP: ``GET /api/v1/figures?node=…&since=…&until=…``.

The same report as ``gridwatch report --json`` less the daily series: the node's figures
over ``[since, until)`` with its children's (``alerts.figures``) and its safety index now
(``alerts.safety_index``). The node defaults to the token's scope grid and must lie within
it (403 otherwise); the period defaults to the last 30 days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

from alerts.event import CATEGORIES
from alerts.figures import CHINA_TZ, UnknownNode, figures, top_nodes
from alerts.safety_index import index_now
from alerts.workflow_enums import Severity
from api import openapi as oa
from api.auth import check_grid_param, http_error, principal, respond
from api.context import CONTEXT

DEFAULT_DAYS: Final = 30


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
        if node is None and not who.unrestricted:
            node = who.scope
        elif node is None:
            roots = await top_nodes(conn)
            if len(roots) != 1:
                found = ", ".join(r.code for r in roots) or "none"
                raise http_error(400, "bad_parameter", f"node: name one (top grids: {found})")
            node = roots[0].code
        else:
            await check_grid_param(conn, who, node, name="node")
        try:
            result = await figures(conn, node=node, since=since, until=until, policy=policy)
            index = await index_now(conn, node, ctx.settings.alerts.safety_index, policy=policy)
        except UnknownNode as exc:
            raise http_error(404, "unknown_grid", str(exc)) from None
    return respond({"figures": result.to_json(), "safety_index": index.to_json()})


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
    return {
        "Figures": oa.record(figures_props),
        "SafetyIndex": oa.record(index),
        "Report": oa.record({"figures": oa.ref("Figures"), "safety_index": oa.ref("SafetyIndex")}),
    }


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
        }
    }  # fmt: skip


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/figures", get_figures)
    oa.describe(app, _paths(), _schemas())
