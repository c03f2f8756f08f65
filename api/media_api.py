"""Evidence media over HTTP: ``GET /api/v1/snapshots/{id}`` and ``GET /api/v1/media/{id}``.

One handler for both paths (camera snapshots are cited under the first, field-report photos
and videos may be fetched under either). An item is served to a token that sees its grid,
exactly as an event is (``api.auth``): outside the scope, or unknown, it is ``404``. The
bytes never change under an id (they are named by their SHA-256), so the answer carries
the digest as its ``ETag`` and may be cached for good; ``If-None-Match`` answers ``304``.

``Range: bytes=…`` (one range) answers ``206`` with that part, as browsers ask when they
play or seek a WebM clip, and other players a Motion-JPEG AVI one (``video/x-msvideo``: the
console fetches it whole and shows its frames itself); ``If-Range`` with another tag, or a
range this handler does not take (several ranges), answers the whole item; a range past the
end answers ``416``.
aiohttp's ``FileResponse`` does ranges too, but with an ETag of its own (the file's time and
size), not the digest the evidence is named by.
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
    headers = {
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "Accept-Ranges": "bytes",
    }
    if _matches(request.headers.get("If-None-Match", ""), item.sha256):
        return web.Response(status=304, headers=headers)
    path = store.path_of(item)
    if not path.is_file():
        log.error("media file missing", extra={"media_id": item.id, "sha256": item.sha256})
        raise http_error(404, "not_found", f"media {media_id!r} is no longer stored")
    part = _range(request, item)
    if part is None:
        return await _send(request, path, item, headers)
    start, stop = part
    if start >= stop:
        headers["Content-Range"] = f"bytes */{item.size}"
        return web.json_response(
            {"error": "range_not_satisfiable", "reason": f"the item has {item.size} bytes"},
            status=416,
            headers=headers,
        )
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{item.size}"
    return await _send(request, path, item, headers, start=start, stop=stop)


def _matches(header: str, digest: str) -> bool:
    """Whether an ``If-None-Match`` header names this digest (weak or strong) or ``*``."""
    for part in header.split(","):
        tag = part.strip().removeprefix("W/")
        if tag == "*" or tag.strip('"') == digest:
            return True
    return False


def _range(request: web.Request, item: MediaItem) -> tuple[int, int] | None:
    """The one byte range asked for, as [start, stop) clipped to the item; None: send it all
    (no range, an If-Range that no longer matches, or a form not taken here)."""
    if "Range" not in request.headers:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != f'"{item.sha256}"':
        return None  # a date or another tag: the client's copy is not this one
    try:
        asked = request.http_range
    except ValueError:
        return None  # several ranges or another unit: the whole item is a valid answer
    start, stop = asked.start, asked.stop
    if start is None:
        start = 0
    elif start < 0:  # the last -start bytes
        start = max(0, item.size + start)
    if start >= item.size:
        return start, start  # past the end: 416
    return start, item.size if stop is None else min(stop, item.size)


async def _send(
    request: web.Request,
    path: Path,
    item: MediaItem,
    headers: dict[str, str],
    *,
    start: int = 0,
    stop: int | None = None,
) -> web.StreamResponse:
    """The item's bytes [start, stop) (all of them by default): 206 for a part."""
    stop = item.size if stop is None else stop
    partial = "Content-Range" in headers
    response = web.StreamResponse(status=206 if partial else 200, headers=headers)
    response.content_type = item.content_type
    response.content_length = stop - start
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        if start:
            await asyncio.to_thread(handle.seek, start)
        left = stop - start
        while left > 0 and (chunk := await asyncio.to_thread(handle.read, min(CHUNK, left))):
            left -= len(chunk)
            await response.write(chunk)
    finally:
        await asyncio.to_thread(handle.close)
    await response.write_eof()
    return response


def _paths() -> dict[str, Any]:
    media_id = oa.path_param("id", "The media id ('MD' + 26 characters).")
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    types = ("image/jpeg", "image/png", "image/webp", "video/mp4", "video/webm", "video/x-msvideo")
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
                "answers 304. One byte range (Range: bytes=first-last, If-Range with the "
                "ETag) answers 206 with that part, as video players ask.",
                "tags": ["media"],
                "parameters": [media_id, *_range_headers()],
                "responses": {
                    "200": {"description": "The bytes, in their content type.", "content": content},
                    "206": {
                        "description": "The part asked for (Content-Range says which).",
                        "content": content,
                    },
                    "304": {"description": "Not modified (the ETag matched)."},
                    "416": oa.json_body(
                        "The range starts past the end (Content-Range: bytes */size).",
                        oa.ref("Error"),
                    ),
                    **oa.errors(400, 404),
                },
            }
        }
    return out


def _range_headers() -> list[dict[str, Any]]:
    return [
        {
            "name": "Range",
            "in": "header",
            "required": False,
            "description": "One byte range, e.g. bytes=0-1023 or bytes=-500.",
            "schema": {"type": "string"},
        },
        {
            "name": "If-Range",
            "in": "header",
            "required": False,
            "description": "The ETag the client holds: the range is served only if it matches.",
            "schema": {"type": "string"},
        },
    ]


def setup(app: web.Application) -> None:
    for path in PATHS:
        app.router.add_get(path, get_media)
    oa.describe(app, _paths())
