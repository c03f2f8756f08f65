"""Who is calling: bearer tokens, the :class:`Principal` they stand for, and its grid scope.

**Every route needs a token** except ``/healthz`` and ``/readyz`` (and a handler marked
with :func:`public`). The middleware installed by :func:`setup` checks the
``Authorization: Bearer gw_…`` header of every other request before its handler runs and
puts the caller on the request under :data:`PRINCIPAL`; handlers read it with
:func:`principal` (sync) or :func:`require` (async; also checks the right to act, and
authenticates by itself should a route be public). No token, a malformed, unknown or revoked
one: ``401`` with ``WWW-Authenticate: Bearer``. Requests that match no route are left to
the router (404/405).

**Scope.** A token sees the subtree of its scope grid: an event (or device, or grid) whose
grid is the scope or has it among its ancestors. Scope ``*`` (admin only) sees everything,
also events of devices placed in no grid. What a token may *do* there is the workflow's
rule (``alerts.roles``), for the token's role and actor id.

**Outside the scope** the API answers like this, so that a token learns nothing of what it
may not see:

- one thing by id (``GET /api/v1/events/{id}``, its actions, a grid, a device): ``404``,
  the same answer as for an id that does not exist;
- a filter or parameter naming a grid (``?grid=``, ``?node=``): ``403 outside_scope`` for a
  grid outside the scope and equally for a grid the registry does not hold;
- listings are filtered to the scope.

Errors are JSON ``{"error": code, "reason": text}`` (:func:`http_error`). Token texts are
never logged; the token id (its public part) is.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import orjson
import psycopg
from aiohttp import web
from psycopg import sql

from alerts.roles import Actor, Role
from api.context import CONTEXT
from storage import tokens
from storage.tokens import ALL_GRIDS, TokenRecord

log = logging.getLogger(__name__)

PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz"})
_PUBLIC_ATTR: Final = "__gridwatch_public__"
REALM: Final = "gridwatch"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a token: role, scope, and the actor id its actions are recorded
    under (the member id given when the token was made, else the token id)."""

    token_id: str
    name: str
    role: Role
    scope: str
    member_id: str | None = None

    @classmethod
    def from_record(cls, record: TokenRecord) -> Principal:
        return cls(record.id, record.name, record.role, record.scope, record.member_id)

    @property
    def unrestricted(self) -> bool:
        """Scope ``*``: every grid, and events placed in none."""
        return self.scope == ALL_GRIDS

    @property
    def actor_id(self) -> str:
        return self.member_id or self.token_id

    @property
    def actor(self) -> Actor:
        """The workflow's actor for this token."""
        return Actor(self.actor_id, self.role)

    @property
    def may_act(self) -> bool:
        """Whether the role takes any workflow action at all (a viewer only reads)."""
        return self.role is not Role.VIEWER

    def can_see(self, grid_code: str | None, ancestors: Sequence[str] = ()) -> bool:
        """Whether ``grid_code`` (with its ``ancestors``, county first) is in the scope.

        ``None`` (an event of an unplaced device) is seen only with scope ``*``.
        """
        if self.unrestricted:
            return True
        if grid_code is None:
            return False
        return grid_code == self.scope or self.scope in ancestors


# The caller of the request being handled; set by the middleware for every non-public route.
PRINCIPAL = web.RequestKey("gridwatch_principal", Principal)


def respond(data: Any, status: int = 200) -> web.Response:
    """A JSON answer (UTF-8, Chinese names as they are)."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def http_error(
    status: int, code: str, reason: str, *, headers: dict[str, str] | None = None
) -> web.HTTPException:
    """An exception answering ``{"error": code, "reason": reason}`` with ``status``."""
    cls = _ERRORS.get(status, web.HTTPBadRequest)
    return cls(
        text=orjson.dumps({"error": code, "reason": reason}).decode(),
        content_type="application/json",
        headers=headers,
    )


class _PayloadTooLarge(web.HTTPClientError):
    """413 without aiohttp's ``max_size`` bookkeeping: the reason names the limit."""

    status_code = 413


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    413: _PayloadTooLarge,
    415: web.HTTPUnsupportedMediaType,
    422: web.HTTPUnprocessableEntity,
    503: web.HTTPServiceUnavailable,
}


def public(handler: H) -> H:
    """Mark a route handler as reachable without a token (use sparingly)."""
    setattr(handler, _PUBLIC_ATTR, True)
    return handler


def _is_public(request: web.Request) -> bool:
    if request.path in PUBLIC_PATHS:
        return True
    match = request.match_info
    if match.http_exception is not None:
        return True  # no route: the router answers 404/405
    return bool(getattr(match.handler, _PUBLIC_ATTR, False))


def _unauthorized(reason: str, *, invalid: bool) -> web.HTTPException:
    challenge = f'Bearer realm="{REALM}"' + (', error="invalid_token"' if invalid else "")
    return http_error(401, "unauthorized", reason, headers={"WWW-Authenticate": challenge})


def bearer_token(request: web.Request) -> str | None:
    """The token text of the ``Authorization: Bearer …`` header, if there is one."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def authenticate(request: web.Request) -> Principal:
    """The caller of ``request``; raises 401 without a valid, unrevoked token."""
    text = bearer_token(request)
    if text is None:
        raise _unauthorized(
            "this endpoint needs a bearer token (Authorization: Bearer gw_…)", invalid=False
        )
    record = None
    if tokens.parse_token(text) is not None:  # malformed ones never cost a database trip
        async with request.app[CONTEXT].pool.connection() as conn:
            record = await tokens.authenticate(conn, text)
    if record is None:
        log.warning(
            "rejected API token",
            extra={
                "token_id": tokens.parse_token(text) or "(malformed)",
                "remote": request.remote,
                "path": request.path,
            },
        )
        raise _unauthorized("the token is malformed, unknown or revoked", invalid=True)
    return Principal.from_record(record)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_public(request):
        request[PRINCIPAL] = await authenticate(request)
    return await handler(request)


def principal(request: web.Request) -> Principal:
    """The caller, as the middleware found it (a handler of a non-public route)."""
    found = request.get(PRINCIPAL)
    if not isinstance(found, Principal):
        raise _unauthorized("this endpoint needs a bearer token", invalid=False)
    return found


async def require(request: web.Request, *, write: bool = False) -> Principal:
    """The caller; with ``write``, one whose role may act (403 ``read_only`` for a viewer).

    Async because a public route has no principal yet and the token is then checked here.
    """
    found = request.get(PRINCIPAL)
    if not isinstance(found, Principal):
        found = await authenticate(request)
        request[PRINCIPAL] = found
    if write and not found.may_act:
        raise http_error(403, "read_only", "a viewer token may read but not act")
    return found


# --- scope in SQL and against the registry -------------------------------------------------


def scope_condition(
    who: Principal,
    *,
    grid_column: str = "grid_code",
    ancestors_column: str = "ancestors",
    param: str = "scope",
) -> tuple[sql.Composable, dict[str, Any]]:
    """A WHERE condition (named-parameter style) keeping the rows in ``who``'s scope, for
    tables with a grid code and an ancestors array (``grid_events``, ``event_log``, ``grids``
    with ``grid_column="code"``); ``TRUE`` for scope ``*``."""
    if who.unrestricted:
        return sql.SQL("TRUE"), {}
    return subtree_condition(param, grid_column, ancestors_column), {param: who.scope}


def subtree_condition(
    param: str, grid_column: str = "grid_code", ancestors_column: str = "ancestors"
) -> sql.Composable:
    """``grid = %(param)s OR ancestors ∋ %(param)s``, written as array containment so that a
    GIN index on the ancestors serves it."""
    return sql.SQL("({g} = {p} OR {a} @> ARRAY[{p}]::text[])").format(
        g=sql.Identifier(grid_column),
        a=sql.Identifier(ancestors_column),
        p=sql.Placeholder(param),
    )


async def grid_ancestors(conn: psycopg.AsyncConnection[Any], code: str) -> tuple[str, ...] | None:
    """The ancestors of grid ``code`` (county first), None when the registry has no such grid."""
    cur = await conn.execute("SELECT ancestors FROM grids WHERE code = %s", (code,))
    row = await cur.fetchone()
    return None if row is None else tuple(row[0] or ())


async def sees(conn: psycopg.AsyncConnection[Any], who: Principal, grid_code: str | None) -> bool:
    """Whether ``who`` may see something placed in ``grid_code`` (None: unplaced)."""
    if grid_code is None:
        return who.can_see(None)
    return who.can_see(grid_code, await grid_ancestors(conn, grid_code) or ())


async def check_grid_param(
    conn: psycopg.AsyncConnection[Any], who: Principal, code: str, *, name: str = "grid"
) -> tuple[str, ...]:
    """The ancestors of a grid named by a filter or parameter, if ``who`` may see it.

    ``403 outside_scope`` for a grid outside the scope or unknown to the registry; for scope
    ``*``, ``404 unknown_grid`` when the registry has no such grid.
    """
    ancestors = await grid_ancestors(conn, code)
    if ancestors is not None and who.can_see(code, ancestors):
        return ancestors
    if who.unrestricted:
        raise http_error(404, "unknown_grid", f"{name}: no grid {code!r} in the registry")
    raise http_error(
        403, "outside_scope", f"{name}: grid {code!r} is not within this token's scope"
    )


def setup(app: web.Application) -> None:
    app.middlewares.append(auth_middleware)
