"""Every route the application serves needs a token, except health and the console's
static files: checked over the router itself, so a route added later is covered too."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.auth import PUBLIC_PATHS
from api.context import ApiContext
from api.http import make_app
from gridwatch.config import load_settings

# What may be reached without a token, and why: health for probes and load balancers; the
# console page and its files hold no data (every call they make carries the token).
OPEN = {"/healthz", "/readyz", "/", "/console/{path}"}


class _NoPool:
    """A request that gets past authentication would need this; none may without a token."""

    def connection(self) -> Any:
        raise AssertionError("a request without a token reached the database")


def _app() -> web.Application:
    context = ApiContext(_NoPool(), load_settings(environ={}), lambda: {"components": {}})  # type: ignore[arg-type]
    return make_app(context)


def _concrete(path: str) -> str:
    """A path that matches the route: every ``{name}`` or ``{name:regex}`` becomes ``x1``."""
    return re.sub(r"\{[^}]+\}", "x1", path)


def _routes(app: web.Application) -> list[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method != "HEAD":  # aiohttp adds HEAD beside every GET
            found.add((route.method, path))
    return sorted(found)


async def test_every_route_but_health_and_the_console_answers_401_without_a_token() -> None:
    app = _app()
    routes = _routes(app)
    assert len(routes) > 20, routes  # the rooms really registered their routes
    assert ("GET", "/metrics") in routes
    async with TestClient(TestServer(app)) as client:
        for method, path in routes:
            async with client.request(method, _concrete(path), json={}) as response:
                if path in OPEN:
                    assert response.status != 401, (method, path)
                    continue
                assert response.status == 401, (method, path, response.status)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                body = await response.json()
                assert body["error"] == "unauthorized", (method, path)
            async with client.request(
                method, _concrete(path), json={}, headers={"Authorization": "Bearer gw_nope"}
            ) as response:
                assert path in OPEN or response.status == 401, (method, path)


def test_only_the_listed_routes_are_public() -> None:
    app = _app()
    public = {
        path
        for route in app.router.routes()
        if route.method != "HEAD"
        for path in [_routes_path(route)]
        if path in PUBLIC_PATHS or getattr(route.handler, "__gridwatch_public__", False)
    }
    assert public == OPEN


def _routes_path(route: web.AbstractRoute) -> str:
    info = route.resource.get_info() if route.resource is not None else {}
    return str(info.get("path") or info.get("formatter") or info.get("prefix"))
