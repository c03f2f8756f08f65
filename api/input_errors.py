"""A value the database cannot hold is the caller's mistake, answered 400, never a 500.

Handlers check what they read, but some values pass every check and still cannot be stored:
a NUL character in a text or JSON field (PostgreSQL refuses it in ``text`` and ``jsonb``),
a number or a date out of the column's range. psycopg raises :class:`psycopg.DataError`
(SQLSTATE class 22) for all of these, and the handler's transaction is rolled back by its
connection block, so nothing was changed: the answer is ``400 bad_value``. The value itself
is not logged (it may be anything a caller sent).
"""

from __future__ import annotations

import logging

import psycopg
from aiohttp import web

from api.auth import Handler, http_error

log = logging.getLogger(__name__)


@web.middleware
async def data_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if "\x00" in request.path or any("\x00" in v for v in request.query.values()):
        raise http_error(400, "bad_value", "a NUL character cannot be stored")
    try:
        return await handler(request)
    except psycopg.DataError as exc:
        log.warning(
            "request refused: a value the database cannot store",
            extra={"path": request.path, "sqlstate": exc.sqlstate},
        )
        raise http_error(
            400, "bad_value", "a value cannot be stored (a NUL character, or out of range)"
        ) from None


def setup(app: web.Application) -> None:
    app.middlewares.append(data_errors)
