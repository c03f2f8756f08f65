"""Response resources over HTTP, and the nearest ones on a fire or electrical event.

``GET /api/v1/resources`` pages through the registered micro fire stations, hydrants and duty
teams of the token's subtree (filters ``grid``, ``kind``). ``event_resources`` is what
``GET /api/v1/events/{id}`` adds to a fire or electrical event that has a position: the
nearest resources of each kind, whatever grid they are in (the station nearest a fire may be
across the grid's border), each hydrant with its sensor's last pressure — computed when the
event is read, so the dispatcher sees the pressure as it is now.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg
from aiohttp import web

from alerts.event import GridEvent
from api import openapi as oa
from api.auth import check_grid_param, principal, respond
from api.context import CONTEXT
from devices.resource_store import list_resources, nearest
from devices.resources import ResourceKind
from gridwatch.config import FieldConfig

MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 100
RESOURCE_CATEGORIES: Final = frozenset({"fire", "electrical"})


async def event_resources(
    conn: psycopg.AsyncConnection[Any], event: GridEvent, config: FieldConfig
) -> dict[str, list[dict[str, Any]]] | None:
    """The nearest resources of a fire or electrical event with a position; None otherwise."""
    where = event.location
    if event.category not in RESOURCE_CATEGORIES or where.lat is None or where.lon is None:
        return None
    return await nearest(
        conn,
        where.lat,
        where.lon,
        per_kind=config.nearest_per_kind,
        within_m=config.nearest_within_m,
    )


async def get_resources(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, ("grid", "kind", "limit", "offset"))
    grid = oa.one(request, "grid")
    kinds = oa.many(request, "kind", [k.value for k in ResourceKind])
    limit = oa.integer(request, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    offset = oa.integer(request, "offset", 0, low=0, high=2**31 - 1)
    async with request.app[CONTEXT].pool.connection() as conn:
        if grid is not None:
            await check_grid_param(conn, who, grid)
        elif not who.unrestricted:
            grid = who.scope
        found = await list_resources(
            conn, subtree=grid, kinds=kinds, limit=limit + 1, offset=offset
        )
    more = len(found) > limit
    return respond(
        {
            "items": [r.to_json() for r in found[:limit]],
            "next_offset": offset + limit if more else None,
        }
    )


def resource_schema() -> dict[str, Any]:
    text = {"type": "string"}
    return oa.record(
        {
            "resource_id": text,
            "kind": {"enum": [k.value for k in ResourceKind]},
            "name": text,
            "lat": {"type": "number"},
            "lon": {"type": "number"},
            "address": text,
            "grid_code": {"type": ["string", "null"], "description": "null: in no grid."},
            "contact": text,
            "phone": text,
            "sensor_id": {
                "type": ["string", "null"],
                "description": "A hydrant's water_pressure_sensor.",
            },
            "detail": {"type": "object", "description": "Staff, vehicles, hours, …"},
        }
    )


def _schemas() -> dict[str, Any]:
    nearby = resource_schema()
    water = oa.record(
        {
            "pressure_mpa": {"type": ["number", "null"], "description": "Last reading (MPa)."},
            "measured_at": {"type": ["string", "null"], "format": "date-time"},
            "sensor_status": {"type": ["string", "null"], "description": "online / offline."},
            "alarm": {
                "type": ["boolean", "null"],
                "description": "A water event of the sensor is open; null: no sensor.",
            },
        }
    )
    nearby = {
        **nearby,
        "required": [*nearby["required"], "distance_m", "water"],
        "properties": {
            **nearby["properties"],
            "distance_m": {"type": "number", "minimum": 0},
            "water": {
                **oa.nullable(water),
                "description": "Hydrants only: the water at the hydrant.",
            },
        },
    }
    return {
        "Resource": resource_schema(),
        "NearbyResource": nearby,
        "NearestResources": {
            "type": "object",
            "propertyNames": {"enum": [k.value for k in ResourceKind]},
            "additionalProperties": {"type": "array", "items": oa.ref("NearbyResource")},
            "description": "By kind, nearest first (within field.nearest_within_m).",
        },
        "ResourcePage": oa.record(
            {
                "items": {"type": "array", "items": oa.ref("Resource")},
                "next_offset": {"type": ["integer", "null"]},
            }
        ),
    }


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/resources": {
            "get": {
                "operationId": "listResources",
                "summary": "Micro fire stations, fire hydrants and duty teams in the scope.",
                "tags": ["resources"],
                "parameters": [
                    oa.query("grid", {"type": "string"}, "Only this grid's subtree (403 "
                             "outside the token's scope)."),
                    oa.query("kind", {"type": "array", "items": {
                        "enum": [k.value for k in ResourceKind]}}, "Only these kinds."),
                    oa.query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                       "default": DEFAULT_LIMIT}, "Page size."),
                    oa.query("offset", {"type": "integer", "minimum": 0, "default": 0},
                             "Rows skipped."),
                ],
                "responses": {
                    "200": oa.json_body("One page of resources.", oa.ref("ResourcePage")),
                    **oa.errors(400, 403, 404),
                },
            }
        }
    }  # fmt: skip


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/resources", get_resources)
    oa.describe(app, _paths(), _schemas())
