"""The aiohttp application: ``/healthz`` (the process answers) and ``/readyz`` (its
dependencies are connected), with the figures an on-call engineer looks at first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

HealthProbe = Callable[[], dict[str, Any]]

PROBE_KEY = web.AppKey("health_probe", HealthProbe)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", **request.app[PROBE_KEY]()})


async def readyz(request: web.Request) -> web.Response:
    report = request.app[PROBE_KEY]()
    ready = all(report.get("components", {}).values())
    return web.json_response({"ready": ready, **report}, status=200 if ready else 503)


def make_app(probe: HealthProbe) -> web.Application:
    app = web.Application()
    app[PROBE_KEY] = probe
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
