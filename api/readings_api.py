"""A device's stored readings over HTTP, for charts:
``GET /api/v1/devices/{id}/readings?metric=&since=&until=&limit=``.

Scope as for the device itself (``registry_api.visible_device``): a device outside the
token's subtree is 404, like a missing one. The window defaults to the last 24 hours; when
it holds more than ``limit`` readings the newest ``limit`` are answered (``truncated``), so a
chart shows the recent end rather than an arbitrary slice. Readings come oldest first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web
from psycopg import sql

from alerts.figures import CHINA_TZ
from api import openapi as oa
from api.auth import http_error, principal, respond
from api.context import CONTEXT
from api.registry_api import visible_device

DEFAULT_WINDOW: Final = timedelta(hours=24)
DEFAULT_LIMIT: Final = 2000
MAX_LIMIT: Final = 20000
_PARAMS: Final = ("metric", "since", "until", "limit")


async def list_readings(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, _PARAMS)
    device_id = request.match_info["id"]
    metrics = oa.many(request, "metric")
    until = oa.moment(request, "until", tz=CHINA_TZ, end_of_day=True) or datetime.now(UTC)
    since = oa.moment(request, "since", tz=CHINA_TZ) or until - DEFAULT_WINDOW
    if until <= since:
        raise http_error(400, "bad_parameter", "until: must be after since")
    limit = oa.integer(request, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    conditions = [sql.SQL("device_id = %(id)s AND ts >= %(since)s AND ts < %(until)s")]
    params: dict[str, Any] = {"id": device_id, "since": since, "until": until, "n": limit + 1}
    if metrics:
        conditions.append(sql.SQL("metric = ANY(%(metrics)s)"))
        params["metrics"] = metrics
    query = sql.SQL(
        "SELECT ts, metric, value FROM readings WHERE {} ORDER BY ts DESC, metric LIMIT %(n)s"
    ).format(sql.SQL(" AND ").join(conditions))
    async with request.app[CONTEXT].pool.connection() as conn:
        await visible_device(conn, who, device_id)
        cur = await conn.execute(query, params)
        rows = await cur.fetchall()
    truncated = len(rows) > limit
    items = [
        {"ts": ts.isoformat(), "metric": metric, "value": value}
        for ts, metric, value in reversed(rows[:limit])
    ]
    return respond(
        {
            "device_id": device_id,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "items": items,
            "truncated": truncated,
        }
    )


# --- the OpenAPI description ------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    reading = oa.record({"ts": time, "metric": {"type": "string"}, "value": {"type": "number"}})
    return {
        "Reading": reading,
        "ReadingPage": oa.record(
            {
                "device_id": {"type": "string"},
                "since": time,
                "until": time,
                "items": {
                    "type": "array",
                    "items": oa.ref("Reading"),
                    "description": "Oldest first.",
                },
                "truncated": {
                    "type": "boolean",
                    "description": "The window held more than `limit`: these are the newest.",
                },
            }
        ),
    }


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/devices/{id}/readings": {
            "get": {
                "operationId": "listReadings",
                "summary": "A device's readings in a window, oldest first (404 outside the "
                "scope).",
                "tags": ["registry"],
                "parameters": [
                    oa.path_param("id", "The device id."),
                    oa.query("metric", {"type": "array", "items": {"type": "string"}},
                             "Only these metrics (repeat, or comma-separate)."),
                    oa.query("since", {"type": "string"}, "Start (default: 24 h before "
                             "until). " + oa.TIME_DESCRIPTION),
                    oa.query("until", {"type": "string"}, "End (default: now). "
                             + oa.TIME_DESCRIPTION),
                    oa.query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                       "default": DEFAULT_LIMIT},
                             "Most readings; the newest are kept."),
                ],
                "responses": {
                    "200": oa.json_body("The readings.", oa.ref("ReadingPage")),
                    **oa.errors(400, 404),
                },
            }
        }
    }  # fmt: skip


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/devices/{id}/readings", list_readings)
    oa.describe(app, _paths(), _schemas())
