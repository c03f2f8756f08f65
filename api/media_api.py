"""Evidence media over HTTP: ``GET /api/v1/snapshots/{id}`` and ``GET /api/v1/media/{id}``.

One handler for both paths (camera snapshots are cited under the first, field-report photos
and videos may be fetched under either). An item is served to a token that sees its grid,
exactly as an event is (``api.auth``): outside the scope, or unknown, it is ``404``. The
bytes never change under an id (they are named by their SHA-256), so the answer carries
the digest as its ``ETag`` and may be cached for good; ``If-None-Match`` answers ``304``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from api import openapi as oa
from api.auth import http_error, principal, sees
from api.context import CONTEXT, ApiContext
from storage.media import MediaItem, MediaStore

log = logging.getLogger(__name__)

CHUNK: Final = 256 * 1024
CACHE_CONTROL: Final = "private, max-age=31536000, immutable"
PATHS: Final = ("/api/v1/snapshots/{id}", "/api/v1/media/{id}")


def media_store(ctx: ApiContext) -> MediaStore:
    """The service's store, or one over ``<data dir>/media`` for an app built without it."""
    return ctx.media if ctx.media is not None else MediaStore(ctx.settings.data_dir / "media")


async def get_media(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    oa.check_params(request, ())
    media_id = request.match_info["id"]
    ctx = request.app[CONTEXT]
    store = media_store(ctx)
    async with ctx.pool.connection() as conn:
        item = await store.get(conn, media_id)
        visible = item is not None and await sees(conn, who, item.grid_code)
    if item is None or not visible:
        raise http_error(404, "not_found", f"no media {media_id!r}")
    etag = f'"{item.sha256}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if _matches(request.headers.get("If-None-Match", ""), item.sha256):
        return web.Response(status=304, headers=headers)
    path = store.path_of(item)
    if not path.is_file():
        log.error("media file missing", extra={"media_id": item.id, "sha256": item.sha256})
        raise http_error(404, "not_found", f"media {media_id!r} is no longer stored")
    return await _send(request, path, item, headers)


def _matches(header: str, digest: str) -> bool:
    """Whether an ``If-None-Match`` header names this digest (weak or strong) or ``*``."""
    for part in header.split(","):
        tag = part.strip().removeprefix("W/")
        if tag == "*" or tag.strip('"') == digest:
            return True
    return False


async def _send(
    request: web.Request, path: Path, item: MediaItem, headers: dict[str, str]
) -> web.StreamResponse:
    response = web.StreamResponse(headers=headers)
    response.content_type = item.content_type
    response.content_length = item.size
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            await response.write(chunk)
    finally:
        await asyncio.to_thread(handle.close)
    await response.write_eof()
    return response


def _paths() -> dict[str, Any]:
    media_id = oa.path_param("id", "The media id ('MD' + 26 characters).")
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    types = ("image/jpeg", "image/png", "image/webp", "video/mp4")
    content = {t: {"schema": binary} for t in types}
    out: dict[str, Any] = {}
    for path, operation_id, summary in (
        (PATHS[0], "getSnapshot", "The picture behind a video hit (or any evidence media)."),
        (PATHS[1], "getMedia", "Evidence media: a field report's photo or video, a snapshot."),
    ):
        out[path] = {
            "get": {
                "operationId": operation_id,
                "summary": summary,
                "description": "Served within the token's scope (404 outside it). The ETag is "
                "the SHA-256 of the bytes, which never change: cache for good; If-None-Match "
                "answers 304.",
                "tags": ["media"],
                "parameters": [media_id],
                "responses": {
                    "200": {"description": "The bytes, in their content type.", "content": content},
                    "304": {"description": "Not modified (the ETag matched)."},
                    **oa.errors(400, 404),
                },
            }
        }
    return out


def setup(app: web.Application) -> None:
    for path in PATHS:
        app.router.add_get(path, get_media)
    oa.describe(app, _paths())
