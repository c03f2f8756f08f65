"""The registry over HTTP, read-only and limited to the token's scope: grids and devices.

``GET /api/v1/grids`` lists the grid tree below a node (default: the token's scope grid),
``GET /api/v1/grids/{code}`` one grid with its geometry and children.
``GET /api/v1/devices`` pages through devices (filters grid subtree, type, site),
``GET /api/v1/devices/{id}`` answers one with its latest state (``device_state``).
Camera URLs are answered without their password.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import psycopg
from aiohttp import web
from psycopg import sql

from api import openapi as oa
from api.auth import (
    Principal,
    check_grid_param,
    http_error,
    principal,
    respond,
    sees,
)
from api.context import CONTEXT
from devices import registry_store
from devices.grid_geometry import to_geojson
from devices.registry import Device, Grid, GridLevel, MemberRole
from devices.registry_rows import GRID_COLUMNS, grid_from_row
from devices.registry_sql import column_list, fetch

MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 100
_STATE_COLUMNS: Final = (
    "last_seen", "last_ts", "last_seq", "last_values", "status", "status_at", "messages",
)  # fmt: skip


def grid_json(grid: Grid, *, geometry: bool) -> dict[str, Any]:
    return {
        "code": grid.code,
        "name": grid.name,
        "level": grid.level.value,
        "parent": grid.parent,
        "ancestors": list(grid.ancestors),
        "members": [m.to_json() for m in grid.members],
        "geometry": to_geojson(grid.geometry) if geometry and grid.geometry else None,
    }


def redact_url(url: str | None) -> str | None:
    """``url`` with the password of its user part replaced by ``***``."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = f"{parts.username or ''}:***@{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def device_json(device: Device) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "type": device.type,
        "name": device.name,
        "lat": device.lat,
        "lon": device.lon,
        "address": device.address,
        "site": device.site,
        "grid_code": device.grid_code,
        "grid_code_derived": device.grid_code_derived,
        "profile": device.profile.to_json(),
        "rtsp_url": redact_url(device.rtsp_url),
        "zones": [z.to_json() for z in device.zones],
        "masks": [m.to_json() for m in device.masks],
    }


_GRID_BY_CODE: Final = sql.SQL("SELECT {} FROM grids WHERE code = %(c)s").format(
    column_list(GRID_COLUMNS)
)
_STATE_BY_ID: Final = sql.SQL("SELECT {} FROM device_state WHERE device_id = %(id)s").format(
    column_list(_STATE_COLUMNS)
)


# --- grids ---------------------------------------------------------------------------------


async def list_grids(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, ("subtree", "geometry"))
    subtree = oa.one(request, "subtree")
    geometry = bool(oa.boolean(request, "geometry"))
    async with request.app[CONTEXT].pool.connection() as conn:
        if subtree is not None:
            await check_grid_param(conn, who, subtree, name="subtree")
        elif not who.unrestricted:
            subtree = who.scope
        grids = await registry_store.list_grids(conn, subtree=subtree, with_geometry=geometry)
    return respond({"items": [grid_json(g, geometry=geometry) for g in grids]})


async def read_grid(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, ())
    code = request.match_info["code"]
    async with request.app[CONTEXT].pool.connection() as conn:
        rows = await fetch(conn, _GRID_BY_CODE, {"c": code})
        grid = grid_from_row(rows[0]) if rows else None
        if grid is None or not who.can_see(grid.code, grid.ancestors):
            raise http_error(404, "not_found", f"no grid {code!r}")
        children = await fetch(
            conn,
            "SELECT code, name, level FROM grids WHERE parent = %(c)s ORDER BY code",
            {"c": code},
        )
    return respond(
        {
            **grid_json(grid, geometry=True),
            "children": [{"code": c, "name": n, "level": lv} for c, n, lv in children],
        }
    )


# --- devices -------------------------------------------------------------------------------


async def list_devices(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, ("grid", "type", "site", "limit", "offset"))
    grid = oa.one(request, "grid")
    type_ = oa.one(request, "type")
    site = oa.one(request, "site")
    limit = oa.integer(request, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    offset = oa.integer(request, "offset", 0, low=0, high=2**31 - 1)
    async with request.app[CONTEXT].pool.connection() as conn:
        if grid is not None:
            await check_grid_param(conn, who, grid)
        elif not who.unrestricted:
            grid = who.scope
        devices = await registry_store.list_devices(
            conn, grid=grid, type=type_, site=site, limit=limit + 1, offset=offset
        )
    more = len(devices) > limit
    return respond(
        {
            "items": [device_json(d) for d in devices[:limit]],
            "next_offset": offset + limit if more else None,
        }
    )


async def visible_device(
    conn: psycopg.AsyncConnection[Any], who: Principal, device_id: str
) -> Device:
    """The device, if ``who`` may see it (its grid in the scope); else 404, the same answer
    as for a device the registry does not hold."""
    device = await registry_store.get_device(conn, device_id)
    visible = device is not None and await sees(conn, who, device.grid_code)
    if device is None or not visible:
        raise http_error(404, "not_found", f"no device {device_id!r}")
    return device


async def read_device(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, ())
    device_id = request.match_info["id"]
    async with request.app[CONTEXT].pool.connection() as conn:
        device = await visible_device(conn, who, device_id)
        rows = await fetch(
            conn,
            _STATE_BY_ID,
            {"id": device_id},
        )
    state = None
    if rows:
        state = dict(zip(_STATE_COLUMNS, rows[0], strict=True))
        for key, value in state.items():
            if hasattr(value, "isoformat"):
                state[key] = value.isoformat()
    return respond({"device": device_json(device), "state": state})


# --- the OpenAPI description ------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    number = {"type": ["number", "null"]}
    polygon = {
        "type": "array",
        "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        "description": "Points in frame coordinates, 0–1.",
    }
    grid = {
        "code": {"type": "string"},
        "name": {"type": "string"},
        "level": {"enum": [v.value for v in GridLevel]},
        "parent": {"type": ["string", "null"]},
        "ancestors": {"type": "array", "items": {"type": "string"}},
        "members": {"type": "array", "items": oa.ref("Member")},
        "geometry": {
            "type": ["object", "null"],
            "description": "GeoJSON Polygon or MultiPolygon (basic grids); null when not asked "
            "for or absent.",
        },
    }
    node = {
        "type": "object",
        "required": ["code", "name", "level"],
        "properties": {
            "code": {"type": "string"},
            "name": {"type": "string"},
            "level": {"enum": [v.value for v in GridLevel]},
        },
        "additionalProperties": False,
    }
    device = {
        "device_id": {"type": "string"},
        "type": {"type": "string"},
        "name": {"type": "string"},
        "lat": number,
        "lon": number,
        "address": {"type": "string"},
        "site": {"type": "string"},
        "grid_code": {"type": ["string", "null"]},
        "grid_code_derived": {"type": "boolean"},
        "profile": {"type": "object", "description": "Overrides of the type's profile."},
        "rtsp_url": {"type": ["string", "null"], "description": "Password shown as ***."},
        "zones": {"type": "array", "items": polygon},
        "masks": {"type": "array", "items": polygon},
    }
    time = {"type": ["string", "null"], "format": "date-time"}
    state = {
        "last_seen": time,
        "last_ts": time,
        "last_seq": {"type": ["integer", "null"]},
        "last_values": {"type": "object"},
        "status": {"type": ["string", "null"], "description": "online / offline."},
        "status_at": time,
        "messages": {"type": "integer"},
    }
    return {
        "Member": {
            "type": "object",
            "required": ["id", "name", "role", "phone"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "role": {"enum": [r.value for r in MemberRole]},
                "phone": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "Grid": oa.record(grid),
        "GridDetail": oa.record({**grid, "children": {"type": "array", "items": node}}),
        "GridList": oa.record({"items": {"type": "array", "items": oa.ref("Grid")}}),
        "Device": oa.record(device),
        "DevicePage": oa.record(
            {
                "items": {"type": "array", "items": oa.ref("Device")},
                "next_offset": {
                    "type": ["integer", "null"],
                    "description": "Pass as `offset` for the next page; null on the last.",
                },
            }
        ),
        "DeviceDetail": oa.record(
            {"device": oa.ref("Device"), "state": {"anyOf": [oa.record(state), {"type": "null"}]}}
        ),
    }


def _paths() -> dict[str, Any]:
    def get(op: str, summary: str, params: list[Any], ok: str, schema: str, *errs: int) -> Any:
        return {
            "get": {
                "operationId": op,
                "summary": summary,
                "tags": ["registry"],
                "parameters": params,
                "responses": {"200": oa.json_body(ok, oa.ref(schema)), **oa.errors(400, *errs)},
            }
        }

    paging = [
        oa.query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                           "default": DEFAULT_LIMIT}, "Page size."),
        oa.query("offset", {"type": "integer", "minimum": 0, "default": 0}, "Rows skipped."),
    ]  # fmt: skip
    return {
        "/api/v1/grids": get(
            "listGrids",
            "Grids of a subtree (default: the token's scope), parents before children.",
            [
                oa.query("subtree", {"type": "string"}, "Root of the subtree (403 outside "
                         "the token's scope)."),
                oa.query("geometry", {"type": "boolean", "default": False},
                         "Include each grid's GeoJSON geometry."),
            ],
            "The grids.", "GridList", 403, 404,
        ),
        "/api/v1/grids/{code}": get(
            "getGrid",
            "One grid with its geometry and children (404 outside the scope).",
            [oa.path_param("code", "The grid code.")],
            "The grid.", "GridDetail", 404,
        ),
        "/api/v1/devices": get(
            "listDevices",
            "Devices in the token's scope, by id.",
            [
                oa.query("grid", {"type": "string"}, "Only this grid's subtree (403 outside "
                         "the token's scope)."),
                oa.query("type", {"type": "string"}, "Only this device type."),
                oa.query("site", {"type": "string"}, "Only this site."),
                *paging,
            ],
            "One page of devices.", "DevicePage", 403, 404,
        ),
        "/api/v1/devices/{id}": get(
            "getDevice",
            "One device and its latest state (404 outside the scope).",
            [oa.path_param("id", "The device id.")],
            "The device.", "DeviceDetail", 404,
        ),
    }  # fmt: skip


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/grids", list_grids)
    app.router.add_get("/api/v1/grids/{code}", read_grid)
    app.router.add_get("/api/v1/devices", list_devices)
    app.router.add_get("/api/v1/devices/{id}", read_device)
    oa.describe(app, _paths(), _schemas())
