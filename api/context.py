"""What the HTTP handlers may use: a connection pool, the settings, and hooks into the running
service. Handlers get it from ``request.app[CONTEXT]``; nothing else is shared."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from gridwatch.config import Settings
from storage.media import MediaStore


@dataclass(slots=True)
class ApiContext:
    pool: AsyncConnectionPool
    settings: Settings
    health: Callable[[], dict[str, Any]]
    # Called after an API action changed an event, so the worker's caches can follow.
    on_event_changed: list[Callable[[str], None]] = field(default_factory=list)
    # The newest frame (JPEG) of a camera this worker pulls; None: not pulled here / no frame.
    camera_jpeg: Callable[[str], Awaitable[bytes | None]] | None = None
    # Evidence media (snapshots, field-report photos and videos) under <data dir>/media.
    media: MediaStore | None = None
    # The broker the service uses: patrol check-ins given over HTTP are published there.
    mqtt_url: str | None = None


CONTEXT = web.AppKey("gridwatch_context", ApiContext)
