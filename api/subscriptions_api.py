"""Webhook subscriptions over HTTP: create, list, read, delete, and the delivery log.

``POST /api/v1/subscriptions`` registers a receiver URL with filters (``grid`` subtree,
``severity``, ``category``, ``change``); it gets every matching change logged from then on,
signed per Standard Webhooks (``outputs.webhooks``). The answer carries the ``secret``
(generated unless given as ``whsec_…``) — the only time it is shown.

Who: a token of a centre (``town_centre``, ``county_centre``) or ``admin``; the filter's
grid must be in the token's scope (403 ``outside_scope`` otherwise), and a scoped token
that names no grid subscribes to its scope. Listing and reading show the subscriptions
whose grid the token sees (a subscription without grid only to scope ``*``); others answer
404, as if they did not exist. Creating and deleting are written to the audit log.

``GET /api/v1/subscriptions/{id}/deliveries`` lists the delivery attempts, newest first
(status, error, duration), with ``?before=<attempt id>`` to page back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec
import psycopg
from aiohttp import web
from yarl import URL

from alerts.event import CATEGORIES
from alerts.roles import Role
from api import openapi as oa
from api.auth import Principal, check_grid_param, grid_ancestors, http_error, require, respond
from api.context import CONTEXT
from outputs.log_reader import CHANGE_TYPES, SEVERITIES
from outputs.webhook_signing import check_secret, new_secret
from storage import tokens

BASE: Final = "/api/v1/subscriptions"
MANAGERS: Final = frozenset({Role.TOWN_CENTRE, Role.COUNTY_CENTRE, Role.ADMIN})
MAX_URL: Final = 2048
MAX_DESCRIPTION: Final = 500


class Filters(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    grid: str | None = None
    severity: list[str] | None = None
    category: list[str] | None = None
    change: list[str] | None = None


class SubscriptionRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str
    secret: str | None = None
    description: str = ""
    filters: Filters = msgspec.field(default_factory=Filters)


_CHOICES: Final = {
    "severity": SEVERITIES,
    "category": tuple(sorted(CATEGORIES)),
    "change": tuple(sorted(CHANGE_TYPES)),
}


def parse_request(raw: bytes) -> SubscriptionRequest:
    """The request body, checked; 400 ``bad_request`` naming what is wrong."""
    try:
        body = msgspec.json.decode(raw, type=SubscriptionRequest)
    except msgspec.DecodeError as exc:
        raise http_error(400, "bad_request", f"body: {exc}") from None
    url = URL(body.url) if len(body.url) <= MAX_URL else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise http_error(400, "bad_request", "url: an absolute http(s) URL of the receiver")
    if len(body.description) > MAX_DESCRIPTION:
        raise http_error(400, "bad_request", f"description: at most {MAX_DESCRIPTION} characters")
    if body.secret is not None:
        try:
            check_secret(body.secret)
        except ValueError as exc:
            raise http_error(400, "bad_request", f"secret: {exc}") from None
    for name, allowed in _CHOICES.items():
        values = getattr(body.filters, name)
        if values is None:
            continue
        wrong = sorted(set(values) - set(allowed))
        if not values or wrong:
            raise http_error(
                400,
                "bad_request",
                f"filters.{name}: a non-empty list of {', '.join(allowed)}"
                + (f" (unknown: {', '.join(wrong)})" if wrong else ""),
            )
    return body


_FIELDS: Final = (
    "s.id, s.url, s.description, s.grid, s.grid_ancestors, s.severities, s.categories,"
    " s.changes, s.created_by, s.created_at, s.start_seq, s.enabled, s.disabled_at,"
    " s.disabled_reason, s.failures, s.failing_since, s.next_attempt_at, s.last_success_at,"
    " (SELECT count(*) FROM webhook_outbox o WHERE o.subscription_id = s.id)"
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json(row: tuple[Any, ...]) -> dict[str, Any]:
    (sid, url, description, grid, _anc, sev, cat, chg, created_by, created_at, start_seq,
     enabled, disabled_at, disabled_reason, failures, failing_since, next_attempt_at,
     last_success_at, pending) = row  # fmt: skip
    return {
        "id": sid,
        "url": url,
        "description": description,
        "filters": {"grid": grid, "severity": sev, "category": cat, "change": chg},
        "created_by": created_by,
        "created_at": _iso(created_at),
        "start_seq": start_seq,
        "enabled": enabled,
        "disabled_at": _iso(disabled_at),
        "disabled_reason": disabled_reason,
        "failures": failures,
        "failing_since": _iso(failing_since),
        "next_attempt_at": _iso(next_attempt_at),
        "last_success_at": _iso(last_success_at),
        "pending": int(pending),
    }


def _visible(who: Principal, row: tuple[Any, ...]) -> bool:
    grid, ancestors = row[3], row[4]
    return who.unrestricted if grid is None else who.can_see(grid, tuple(ancestors))


async def _manager(request: web.Request) -> Principal:
    who = await require(request, write=True)
    if who.role not in MANAGERS:
        raise http_error(
            403, "forbidden", "webhook subscriptions are managed by centre or admin tokens"
        )
    return who


async def create(request: web.Request) -> web.Response:
    who = await _manager(request)
    oa.check_params(request, ())
    body = parse_request(await request.read())
    grid = body.filters.grid
    secret = body.secret or new_secret()
    ctx = request.app[CONTEXT]
    async with ctx.pool.connection() as conn, conn.transaction():
        if grid is not None:
            ancestors: tuple[str, ...] = await check_grid_param(
                conn, who, grid, name="filters.grid"
            )
        elif who.unrestricted:
            ancestors = ()
        else:
            grid = who.scope
            ancestors = await grid_ancestors(conn, grid) or ()
        f = body.filters
        cur = await conn.execute(
            "INSERT INTO webhook_subscriptions (url, secret, description, grid, grid_ancestors,"
            " severities, categories, changes, created_by, start_seq)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
            "  (SELECT coalesce(max(seq), 0) FROM event_log)) RETURNING id",
            (
                body.url, secret, body.description, grid, list(ancestors),
                f.severity, f.category, f.change, who.actor_id,
            ),
        )  # fmt: skip
        created = await cur.fetchone()
        assert created is not None
        row = await _get(conn, created[0])
        assert row is not None
        await tokens.append_audit(
            conn,
            token_id=who.token_id,
            actor=who.actor_id,
            action="subscription.create",
            target=str(created[0]),
            outcome="ok",
            status=201,
            detail={"url": body.url, "filters": msgspec.to_builtins(f) | {"grid": grid}},
        )
    return respond({**_json(row), "secret": secret}, status=201)


async def _get(conn: psycopg.AsyncConnection[Any], sub_id: int) -> tuple[Any, ...] | None:
    cur = await conn.execute(
        f"SELECT {_FIELDS} FROM webhook_subscriptions s WHERE s.id = %s", (sub_id,)
    )
    return await cur.fetchone()


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise http_error(404, "not_found", f"no subscription {raw!r}")
    return int(raw)


async def _visible_row(
    conn: psycopg.AsyncConnection[Any], who: Principal, sub_id: int
) -> tuple[Any, ...]:
    row = await _get(conn, sub_id)
    if row is None or not _visible(who, row):
        raise http_error(404, "not_found", f"no subscription {sub_id}")
    return row


async def list_subscriptions(request: web.Request) -> web.Response:
    who = await require(request)
    oa.check_params(request, ())
    async with request.app[CONTEXT].pool.connection() as conn:
        cur = await conn.execute(f"SELECT {_FIELDS} FROM webhook_subscriptions s ORDER BY s.id")
        rows = await cur.fetchall()
    return respond({"items": [_json(r) for r in rows if _visible(who, r)]})


async def read(request: web.Request) -> web.Response:
    who = await require(request)
    oa.check_params(request, ())
    async with request.app[CONTEXT].pool.connection() as conn:
        row = await _visible_row(conn, who, _id(request))
    return respond(_json(row))


async def delete(request: web.Request) -> web.Response:
    who = await _manager(request)
    oa.check_params(request, ())
    sub_id = _id(request)
    async with request.app[CONTEXT].pool.connection() as conn, conn.transaction():
        row = await _visible_row(conn, who, sub_id)
        await conn.execute("DELETE FROM webhook_subscriptions WHERE id = %s", (sub_id,))
        await tokens.append_audit(
            conn,
            token_id=who.token_id,
            actor=who.actor_id,
            action="subscription.delete",
            target=str(sub_id),
            outcome="ok",
            status=204,
            detail={"url": row[1]},
        )
    return web.Response(status=204)


async def deliveries(request: web.Request) -> web.Response:
    who = await require(request)
    oa.check_params(request, ("limit", "before"))
    limit = oa.integer(request, "limit", 100, low=1, high=500)
    before = oa.integer(request, "before", 2**63 - 1, low=1, high=2**63 - 1)
    sub_id = _id(request)
    async with request.app[CONTEXT].pool.connection() as conn:
        await _visible_row(conn, who, sub_id)
        cur = await conn.execute(
            "SELECT id, seq, message_id, attempt, at, status, error, duration_ms, delivered"
            " FROM webhook_attempts WHERE subscription_id = %s AND id < %s"
            " ORDER BY id DESC LIMIT %s",
            (sub_id, before, limit),
        )
        rows = await cur.fetchall()
    items = [
        {
            "id": aid, "seq": seq, "message_id": mid, "attempt": attempt, "at": _iso(at),
            "status": status, "error": error, "duration_ms": round(duration, 3),
            "delivered": delivered,
        }
        for aid, seq, mid, attempt, at, status, error, duration, delivered in rows
    ]  # fmt: skip
    next_before = items[-1]["id"] if len(items) == limit else None
    return respond({"items": items, "next_before": next_before})


def setup(app: web.Application) -> None:
    app.router.add_post(BASE, create)
    app.router.add_get(BASE, list_subscriptions)
    app.router.add_get(BASE + "/{id}", read)
    app.router.add_delete(BASE + "/{id}", delete)
    app.router.add_get(BASE + "/{id}/deliveries", deliveries)
    oa.describe(app, _paths(), _schemas())


# --- OpenAPI -----------------------------------------------------------------------------

_TIME: Final = {"type": "string", "format": "date-time"}


def _list_of(values: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "array", "items": {"enum": list(values)}, "minItems": 1}


def _schemas() -> dict[str, Any]:
    filters = oa.record(
        {
            "grid": oa.nullable({"type": "string"}),
            "severity": oa.nullable(_list_of(SEVERITIES)),
            "category": oa.nullable(_list_of(_CHOICES["category"])),
            "change": oa.nullable(_list_of(_CHOICES["change"])),
        }
    )
    subscription = oa.record(
        {
            "id": {"type": "integer"},
            "url": {"type": "string"},
            "description": {"type": "string"},
            "filters": oa.ref("SubscriptionFilters"),
            "created_by": {"type": "string"},
            "created_at": _TIME,
            "start_seq": {"type": "integer", "description": "Receives changes after this seq."},
            "enabled": {"type": "boolean"},
            "disabled_at": oa.nullable(_TIME),
            "disabled_reason": oa.nullable({"type": "string"}),
            "failures": {"type": "integer", "description": "Consecutive failed attempts."},
            "failing_since": oa.nullable(_TIME),
            "next_attempt_at": _TIME,
            "last_success_at": oa.nullable(_TIME),
            "pending": {"type": "integer", "description": "Changes queued for delivery."},
        }
    )
    created = {**subscription, "required": [*subscription["required"], "secret"]}
    created["properties"] = {
        **subscription["properties"],
        "secret": {"type": "string", "description": "whsec_…; shown only here."},
    }
    request_filters = {**filters, "required": []}
    return {
        "SubscriptionFilters": filters,
        "Subscription": subscription,
        "SubscriptionCreated": created,
        "SubscriptionRequest": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "maxLength": MAX_URL},
                "secret": {"type": "string", "description": "whsec_ + base64 of 24–64 bytes."},
                "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
                "filters": request_filters,
            },
            "additionalProperties": False,
        },
        "Delivery": oa.record(
            {
                "id": {"type": "integer"},
                "seq": oa.nullable({"type": "integer"}),
                "message_id": {"type": "string", "description": "The webhook-id sent."},
                "attempt": {"type": "integer"},
                "at": _TIME,
                "status": oa.nullable({"type": "integer"}),
                "error": oa.nullable({"type": "string"}),
                "duration_ms": {"type": "number"},
                "delivered": {"type": "boolean"},
            }
        ),
    }


def _paths() -> dict[str, Any]:
    sub_id = oa.path_param("id", "The subscription id.")
    tags = ["subscriptions"]
    return {
        BASE: {
            "post": {
                "operationId": "createSubscription",
                "summary": "Register a webhook receiver with filters.",
                "tags": tags,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": oa.ref("SubscriptionRequest")}},
                },
                "responses": {
                    "201": oa.json_body(
                        "The subscription, with its secret.", oa.ref("SubscriptionCreated")
                    ),
                    **oa.errors(400, 403, 404),
                },
            },
            "get": {
                "operationId": "listSubscriptions",
                "summary": "The subscriptions in the token's scope.",
                "tags": tags,
                "responses": {
                    "200": oa.json_body(
                        "Subscriptions.",
                        oa.record({"items": {"type": "array", "items": oa.ref("Subscription")}}),
                    ),
                    **oa.errors(400),
                },
            },
        },
        BASE + "/{id}": {
            "get": {
                "operationId": "getSubscription",
                "summary": "One subscription.",
                "tags": tags,
                "parameters": [sub_id],
                "responses": {
                    "200": oa.json_body("The subscription.", oa.ref("Subscription")),
                    **oa.errors(400, 404),
                },
            },
            "delete": {
                "operationId": "deleteSubscription",
                "summary": "Stop and remove a subscription (its queue and delivery log too).",
                "tags": tags,
                "parameters": [sub_id],
                "responses": {"204": {"description": "Deleted."}, **oa.errors(400, 403, 404)},
            },
        },
        BASE + "/{id}/deliveries": {
            "get": {
                "operationId": "listSubscriptionDeliveries",
                "summary": "Delivery attempts, newest first.",
                "tags": tags,
                "parameters": [
                    sub_id,
                    oa.query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 500},
                        "At most this many (100).",
                    ),
                    oa.query(
                        "before",
                        {"type": "integer", "minimum": 1},
                        "Attempts with a smaller id (paging).",
                    ),
                ],
                "responses": {
                    "200": oa.json_body(
                        "Attempts.",
                        oa.record(
                            {
                                "items": {"type": "array", "items": oa.ref("Delivery")},
                                "next_before": oa.nullable({"type": "integer"}),
                            }
                        ),
                    ),
                    **oa.errors(400, 404),
                },
            }
        },
    }
