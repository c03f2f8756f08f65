"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /api/v1/openapi.json``, and the
query-parameter parsing that implements what it documents.

Each room describes its own routes where it adds them: ``describe(app, paths, schemas)``
in its ``setup(app)``; this room (set up last) serves the union. A test walks the router
and checks that every ``/api/v1/…`` route and method is described and nothing else is, so
a route added without its description fails the build.

Query parameters are strict: a parameter a route does not document is a ``400`` that names
it (a typo such as ``?states=`` must not silently list everything).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Final

from aiohttp import web

from api.auth import http_error, respond

OPENAPI_PATH: Final = "/api/v1/openapi.json"
API_VERSION: Final = "1.0.0"
_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


@dataclass(slots=True)
class _Parts:
    paths: dict[str, dict[str, Any]] = field(default_factory=dict)
    schemas: dict[str, Any] = field(default_factory=dict)


OPENAPI = web.AppKey("gridwatch_openapi", _Parts)


def describe(
    app: web.Application,
    paths: Mapping[str, Mapping[str, Any]],
    schemas: Mapping[str, Any] | None = None,
) -> None:
    """Add the OpenAPI ``paths`` (path → method → operation) and component ``schemas`` of a
    room; call it from the room's ``setup(app)``. A path's method or a schema name described
    twice (differently) is an error."""
    if OPENAPI not in app:
        app[OPENAPI] = _Parts()
    parts = app[OPENAPI]
    for path, operations in paths.items():
        known = parts.paths.setdefault(path, {})
        for method, operation in operations.items():
            if method in _METHODS and method in known:
                raise ValueError(f"{method.upper()} {path} is described twice")
            known[method] = operation
    for name, schema in (schemas or {}).items():
        if name in parts.schemas and parts.schemas[name] != schema:
            raise ValueError(f"schema {name!r} is described twice, differently")
        parts.schemas[name] = schema


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"anyOf": [dict(schema), {"type": "null"}]}


def record(properties: Mapping[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, all present (values may still be null)."""
    return {
        "type": "object",
        "required": list(properties),
        "properties": dict(properties),
        "additionalProperties": False,
    }


def json_body(description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*statuses: int) -> dict[str, Any]:
    """The documented error answers (each ``{"error", "reason"}``) for ``statuses``; 401 is
    always among them."""
    return {
        str(s): {"$ref": f"#/components/responses/{_ERROR_NAMES[s]}"}
        for s in sorted({401, *statuses})
    }


def query(
    name: str, schema: Mapping[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": dict(schema),
    }
    if schema.get("type") == "array":
        param.update(style="form", explode=True)
    return param


def path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_ERROR_NAMES: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Unprocessable",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    503: "Unavailable",
}
_ERROR_TEXT: Final = {
    400: "A parameter or the body is malformed; `reason` says which.",
    401: "No bearer token, or a malformed, unknown or revoked one.",
    403: "The token may not do this, or a parameter names a grid outside its scope.",
    404: "No such thing, or it is outside the token's scope (the same answer, on purpose).",
    409: "The action does not apply to the event in its current state (or it moved).",
    422: "The action is incomplete or inconsistent (a reason or an assignee is missing or "
    "invalid, an unknown action).",
    413: "An upload is larger than its limit; `reason` names the limit.",
    415: "An upload's content type is not one the endpoint takes.",
    503: "A service this request needs (the broker) cannot be reached now; try again.",
}

_ERROR_SCHEMA: Final = {
    "type": "object",
    "required": ["error", "reason"],
    "properties": {
        "error": {"type": "string", "description": "A stable code, e.g. `illegal_transition`."},
        "reason": {"type": "string", "description": "Why, in words for people."},
    },
    "additionalProperties": False,
}


def document(app: web.Application) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document of ``app``."""
    parts = app.get(OPENAPI) or _Parts()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gridwatch",
            "version": API_VERSION,
            "description": (
                "Grid events (网格事件), their workflow, the grid registry and the centre's "
                "figures. Every endpoint needs `Authorization: Bearer gw_…` (except the "
                "health probes); a token sees and acts on the subtree of its scope grid "
                "only. Outside the scope, one thing asked for by id answers 404 (as if it "
                "did not exist) and a filter naming a grid answers 403. Unknown query "
                "parameters answer 400."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {path: parts.paths[path] for path in sorted(parts.paths)},
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A gridwatch token, `gw_<id>_<secret>` "
                    "(`gridwatch tokens create`).",
                }
            },
            "schemas": {"Error": _ERROR_SCHEMA, **dict(sorted(parts.schemas.items()))},
            "responses": {
                name: json_body(_ERROR_TEXT[status], ref("Error"))
                for status, name in _ERROR_NAMES.items()
            },
        },
    }


async def get_openapi(request: web.Request) -> web.Response:
    return respond(document(request.app))


# --- query parameters, as documented --------------------------------------------------------


def check_params(request: web.Request, allowed: Iterable[str]) -> None:
    """400 ``unknown_parameter`` for a query parameter the route does not document."""
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise http_error(
            400,
            "unknown_parameter",
            f"unknown query parameter(s): {', '.join(unknown)} "
            f"(this endpoint takes: {', '.join(sorted(allowed)) or 'none'})",
        )


def one(request: web.Request, name: str) -> str | None:
    """A parameter given at most once."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise http_error(400, "bad_parameter", f"{name}: give it once")
    return values[0] if values else None


def many(request: web.Request, name: str, allowed: Iterable[str] | None = None) -> list[str]:
    """A repeatable parameter (``?state=a&state=b``, or ``?state=a,b``)."""
    values = [v.strip() for raw in request.query.getall(name, []) for v in raw.split(",")]
    values = [v for v in values if v]
    if allowed is not None:
        known = set(allowed)
        wrong = [v for v in values if v not in known]
        if wrong:
            raise http_error(
                400,
                "bad_parameter",
                f"{name}: unknown value(s) {', '.join(wrong)} (one of: {', '.join(sorted(known))})",
            )
    return values


def integer(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = one(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise http_error(400, "bad_parameter", f"{name}: an integer from {low} to {high}")
    return value


def boolean(request: web.Request, name: str) -> bool | None:
    raw = one(request, name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise http_error(400, "bad_parameter", f"{name}: true or false")
    return raw == "true"


TIME_DESCRIPTION: Final = (
    "An RFC 3339 date-time with its offset (`2026-11-01T08:00:00+08:00`), or a date "
    "(`2026-11-01`, China time; as an end, the end of that day)."
)


def moment(
    request: web.Request, name: str, *, tz: tzinfo, end_of_day: bool = False
) -> datetime | None:
    """A time parameter (see :data:`TIME_DESCRIPTION`); a date is a day in ``tz``."""
    raw = one(request, name)
    if raw is None:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        day = None
    if day is not None:
        start = datetime(day.year, day.month, day.day, tzinfo=tz)
        return start + timedelta(days=1) if end_of_day else start
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise http_error(
            400,
            "bad_parameter",
            f"{name}: a date-time with an offset (2026-11-01T08:00:00+08:00) or a date",
        )
    return value


def setup(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, get_openapi)
    describe(
        app,
        {
            OPENAPI_PATH: {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document.",
                    "tags": ["meta"],
                    "responses": {
                        "200": json_body("The OpenAPI 3.1 document.", {"type": "object"}),
                        **errors(),
                    },
                }
            }
        },
    )
