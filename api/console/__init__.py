"""The operator console: a static single-page application served at ``/`` by gridwatch
itself, which reads and acts only through the public HTTP API.

The page and its files (``static/``: plain ES modules, the i18n dictionary and the vendored
Leaflet and Chart.js) need no token — they hold no data; every API call the page makes
carries the token the operator pasted, in an ``Authorization`` header, never in a URL.
The files are served from the package directory with a strict Content-Security-Policy
(same-origin scripts and connections only, images and video clips also from ``blob:`` URLs
the page makes from authenticated fetches), so the console works with no network beyond gridwatch.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final

from aiohttp import web

from api.auth import http_error, public

STATIC_DIR: Final = Path(__file__).parent / "static"
ASSETS_PREFIX: Final = "/console/"

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; connect-src 'self'; "
        "img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_TYPES: Final = {".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json"}


def _file(relative: str) -> Path:
    """The file under ``static/`` that ``relative`` names; 404 for anything else (no
    directory, nothing outside the directory, no hidden file)."""
    if not relative or any(part.startswith(".") for part in relative.split("/")):
        raise http_error(404, "not_found", "no such console file")
    root = STATIC_DIR.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise http_error(404, "not_found", "no such console file")
    return path


def _serve(path: Path, *, cache: str) -> web.FileResponse:
    content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    headers = {**SECURITY_HEADERS, "Cache-Control": cache}
    if content_type:
        headers["Content-Type"] = content_type
    return web.FileResponse(path, headers=headers)


@public
async def index(request: web.Request) -> web.FileResponse:
    # Revalidated on every load, so an upgraded gridwatch serves its new console at once.
    return _serve(STATIC_DIR / "index.html", cache="no-cache")


@public
async def asset(request: web.Request) -> web.FileResponse:
    return _serve(_file(request.match_info["path"]), cache="no-cache")


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get(ASSETS_PREFIX + "{path:.+}", asset)
