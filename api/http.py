"""The aiohttp application: health and readiness here; every other room of the API adds its
routes through a ``setup(app)`` function listed in :data:`ROOMS`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from api.context import CONTEXT, ApiContext

HealthProbe = Callable[[], dict[str, Any]]

# Modules with a `setup(app: web.Application) -> None`; missing ones are skipped so that a
# room can be built and tested on its own.
ROOMS = (
    "api.auth",
    "api.input_errors",
    "api.events_api",
    "api.registry_api",
    "api.figures_api",
    "api.readings_api",
    "api.cameras_api",
    "api.media_api",
    "api.reports_api",
    "api.patrols_api",
    "api.resources_api",
    "api.stream",
    "api.subscriptions_api",
    "api.metrics",
    "api.openapi",
    "api.console",
)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", **request.app[CONTEXT].health()})


async def readyz(request: web.Request) -> web.Response:
    report = request.app[CONTEXT].health()
    ready = all(report.get("components", {}).values())
    return web.json_response({"ready": ready, **report}, status=200 if ready else 503)


def make_app(context: ApiContext) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[CONTEXT] = context
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    for name in ROOMS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.setup(app)
    return app
