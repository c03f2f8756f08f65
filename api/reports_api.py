"""Field reports over HTTP: ``POST /api/v1/reports`` (发现上报 from a grid worker's phone).

The body is ``multipart/form-data`` with one part ``report`` (JSON: ``category``, ``type``,
``description``, optional ``severity``, ``site``, ``location`` ``{lat, lon, address}``) and
up to ``field.max_files`` parts ``media`` (photos ``image/jpeg|png|webp`` up to
``field.max_photo_bytes``, videos ``video/mp4`` up to ``field.max_video_bytes``), or plain
``application/json`` for a report without media.

Everything is read and checked before anything is stored (``api.report_uploads``): the
declared type must be allowed (else ``415``) and match the bytes' signature (else ``415``),
a file over its limit or one file too many is ``413``, a malformed report ``400``, a report
that cannot be placed ``422`` — each ``{"error", "reason"}``, nothing stored. Then, in one
transaction, the media are saved (``storage.media``), the report becomes a grid event
through the correlator (``alerts.field_reports``), the media are attached to that event, and
the report and an audit row are written; should the transaction fail, media files no row
cites are removed.

**Where a report goes.** Into the reporter's basic grid (the grid whose members list the
token's member id, or the token's scope when that is a basic grid), else into the basic grid
holding ``location``; it must be within the token's scope. Its **site** is the one given, or
that of the nearest registered device within ``field.site_radius_m`` of the location in
that grid: that is how a report joins the events of the devices at the same place.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import psycopg
from aiohttp import web
from psycopg.types.json import Jsonb

from alerts.correlation import as_assignees
from alerts.event import Location
from alerts.field_reports import (
    REPORT_CATEGORIES,
    ReportRequest,
    file_report,
    new_report_id,
    problem,
    report_context,
    report_hit,
)
from alerts.incidents import AlertRules
from alerts.roles import Assignee
from api import openapi as oa
from api.auth import Principal, http_error, require, respond
from api.context import CONTEXT, ApiContext
from api.media_api import media_store
from api.report_uploads import Upload, read_report
from devices.registry_rows import grid_from_row
from devices.registry_sql import fetch
from devices.registry_store import load_grid_locator
from devices.resources import haversine_m
from gridwatch.config import FieldConfig
from storage import tokens
from storage.events import EventConflict
from storage.media import MediaItem

log = logging.getLogger(__name__)

ATTEMPTS: Final = 3
UPLOADS = web.AppKey("gridwatch_report_uploads", asyncio.Semaphore)


@dataclass(frozen=True, slots=True)
class Place:
    grid_code: str
    ancestors: tuple[str, ...]
    members: tuple[Assignee, ...]
    site: str


# --- where the report goes ------------------------------------------------------------------


async def _grid(conn: psycopg.AsyncConnection[Any], code: str) -> Any:
    rows = await fetch(
        conn,
        "SELECT code, name, level, parent, members, NULL, ancestors FROM grids WHERE code = %(c)s",
        {"c": code},
    )
    return grid_from_row(rows[0]) if rows else None


async def place_report(
    conn: psycopg.AsyncConnection[Any], who: Principal, req: ReportRequest, cfg: FieldConfig
) -> Place:
    """The reporter's basic grid, else the one holding the location; and the site."""
    grid = None
    if who.member_id is not None:
        rows = await fetch(
            conn,
            "SELECT code FROM grids WHERE level = 'grid' AND members @> %(m)s ORDER BY code",
            {"m": Jsonb([{"id": who.member_id}])},
        )
        for (code,) in rows:
            found = await _grid(conn, code)
            if found is not None and who.can_see(found.code, found.ancestors):
                grid = found
                break
    if grid is None:
        scope = await _grid(conn, who.scope) if not who.unrestricted else None
        if scope is not None and scope.level.value == "grid":
            grid = scope
    where = req.location
    if grid is None and where.lat is not None and where.lon is not None:
        locator, _ = await load_grid_locator(conn)
        code = locator.locate(where.lon, where.lat)
        found = await _grid(conn, code) if code is not None else None
        if found is None:
            raise http_error(
                422, "unplaced", f"location {where.lat}, {where.lon} lies in no basic grid"
            )
        if not who.can_see(found.code, found.ancestors):
            raise http_error(
                403, "outside_scope", f"location lies in grid {found.code}, outside this scope"
            )
        grid = found
    if grid is None:
        raise http_error(
            422,
            "unplaced",
            "this token's reporter has no basic grid of their own: give location.lat/lon",
        )
    site = (req.site or "").strip()
    if not site and where.lat is not None and where.lon is not None:
        site = await _site_near(conn, grid.code, where.lat, where.lon, cfg.site_radius_m)
    return Place(grid.code, grid.ancestors, as_assignees(grid.members), site)


async def _site_near(
    conn: psycopg.AsyncConnection[Any], grid: str, lat: float, lon: float, radius_m: float
) -> str:
    """The site of the nearest registered device of ``grid`` within ``radius_m``, or ''."""
    rows = await fetch(
        conn,
        "SELECT site, lat, lon FROM devices WHERE grid_code = %(g)s AND site <> ''"
        " AND lat IS NOT NULL AND lon IS NOT NULL",
        {"g": grid},
    )
    best = min(
        ((haversine_m(lat, lon, dlat, dlon), site) for site, dlat, dlon in rows),
        default=None,
    )
    return best[1] if best is not None and best[0] <= radius_m else ""


# --- filing ------------------------------------------------------------------------------------


async def _store(
    ctx: ApiContext, who: Principal, req: ReportRequest, uploads: Sequence[Upload]
) -> dict[str, Any]:
    cfg = ctx.settings.field
    a = ctx.settings.alerts
    rules = AlertRules(a.correlation, a.severity, a.workflow, a.workflow.deadlines)
    store = media_store(ctx)
    for attempt in range(1, ATTEMPTS + 1):
        now = datetime.now(UTC)
        report_id = new_report_id(now.timestamp(), secrets.randbits(80))
        saved: list[MediaItem] = []
        async with ctx.pool.connection() as conn:
            try:
                async with conn.transaction():
                    place = await place_report(conn, who, req, cfg)
                    for upload in uploads:
                        saved.append(
                            await store.save(
                                conn,
                                upload.data,
                                content_type=upload.content_type,
                                kind=upload.kind,
                                grid_code=place.grid_code,
                                taken_at=now,
                            )
                        )
                    media = [item.evidence() for item in saved]
                    hit = report_hit(report_id, req, who.actor, now.timestamp(), media)
                    where = Location(
                        lat=req.location.lat, lon=req.location.lon, address=req.location.address
                    )
                    context = report_context(
                        report_id,
                        site=place.site,
                        grid_code=place.grid_code,
                        ancestors=place.ancestors,
                        location=where,
                        members=place.members,
                    )
                    event, _ = await file_report(
                        conn, hit, context, who.actor, now, rules, entropy=secrets.randbits(80)
                    )
                    for item in saved:
                        await store.attach(conn, item.id, event.id)
                    await _insert_report(conn, report_id, event.id, who, req, place, saved, now)
                    await tokens.append_audit(
                        conn,
                        token_id=who.token_id,
                        actor=who.actor_id,
                        action="report",
                        target=event.id,
                        outcome="ok",
                        status=201,
                        detail={"report_id": report_id, "media": len(saved)},
                    )
            except (psycopg.errors.UniqueViolation, EventConflict):
                await _discard(ctx, saved)
                if attempt == ATTEMPTS:
                    raise http_error(
                        409, "conflict", "events at this place kept changing: file again"
                    ) from None
                continue
            except BaseException:
                await _discard(ctx, saved)
                raise
        return {
            "report_id": report_id,
            "event_id": event.id,
            "event": event.to_cloudevent_data(),
            "media": media,
        }
    raise AssertionError("unreachable")


async def _discard(ctx: ApiContext, saved: Sequence[MediaItem]) -> None:
    """After a failed filing: remove the files no row cites (the rows were rolled back)."""
    if not saved:
        return
    try:
        async with ctx.pool.connection() as conn:
            await media_store(ctx).discard_unreferenced(conn, [i.sha256 for i in saved])
    except psycopg.Error as exc:  # the filing failed already; its files wait for next time
        log.warning("media of a failed report not removed: %s", exc)


async def _insert_report(
    conn: psycopg.AsyncConnection[Any],
    report_id: str,
    event_id: str,
    who: Principal,
    req: ReportRequest,
    place: Place,
    saved: Sequence[MediaItem],
    now: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO field_reports (id, event_id, reporter_id, reporter_role, token_id,"
        " grid_code, ancestors, category, type, severity, description, site, location,"
        " media_ids, reported_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            report_id, event_id, who.actor_id, who.role.value, who.token_id, place.grid_code,
            list(place.ancestors), req.category, req.type, req.severity or "yellow",
            req.description.strip(), place.site, Jsonb(msgspec.to_builtins(req.location)),
            [i.id for i in saved], now,
        ),
    )  # fmt: skip


async def post_report(request: web.Request) -> web.Response:
    who = await require(request, write=True)
    oa.check_params(request, ())
    ctx = request.app[CONTEXT]
    cfg = ctx.settings.field
    async with request.app[UPLOADS]:
        req, uploads = await read_report(request, cfg)
        why = problem(req, max_description=cfg.max_description_chars)
        if why is not None:
            raise http_error(400, "bad_report", why)
        answer = await _store(ctx, who, req, uploads)
    log.info(
        "field report filed",
        extra={
            "report_id": answer["report_id"],
            "event_id": answer["event_id"],
            "token_id": who.token_id,
            "media": len(uploads),
        },
    )
    for callback in ctx.on_event_changed:
        try:
            callback(answer["event_id"])
        except Exception:  # filed and committed: answer 201, and say loudly what failed
            log.exception("on_event_changed callback failed", extra=answer)
    return respond(answer, status=201)


# --- the OpenAPI description ------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    text = {"type": "string"}
    location = {
        "type": "object",
        "properties": {
            "lat": {"type": ["number", "null"]},
            "lon": {"type": ["number", "null"]},
            "address": text,
        },
        "additionalProperties": False,
    }
    report = {
        "type": "object",
        "required": ["category", "type", "description"],
        "properties": {
            "category": {"enum": list(REPORT_CATEGORIES)},
            "type": {
                "type": "string",
                "description": "a-z 0-9 _: fire_hazard, blocked_exit, "
                "open_fire, wiring_hazard, hydrant_damaged, dispute, …",
            },
            "description": {"type": "string", "description": "What was seen."},
            "severity": {
                "enum": ["red", "orange", "yellow", "blue", None],
                "description": "Suggested; default yellow (a type with a base "
                "severity in alerts.severity takes that).",
            },
            "site": {
                "type": ["string", "null"],
                "description": "The registry's site, if known; else derived from the location.",
            },
            "location": location,
        },
        "additionalProperties": False,
    }
    media_ref = oa.record({"media_id": text, "url": text, "content_type": text})
    return {
        "FieldReport": report,
        "MediaRef": media_ref,
        "FiledReport": oa.record(
            {
                "report_id": {"type": "string", "description": "'FR' + 26 characters."},
                "event_id": {"type": "string", "description": "The grid event it is part of."},
                "event": oa.ref("GridEvent"),
                "media": {"type": "array", "items": oa.ref("MediaRef")},
            }
        ),
    }  # fmt: skip


def _paths() -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    return {
        "/api/v1/reports": {
            "post": {
                "operationId": "fileReport",
                "summary": "File a field report (发现上报): it becomes (or joins) a grid event.",
                "description": "multipart/form-data: a 'report' part (JSON, FieldReport) and "
                "'media' parts (photos and videos, within the [field] limits), or "
                "application/json for a report without media. Placed in the reporter's grid, "
                "else the grid holding the location; joins the open events of its site.",
                "tags": ["reports"],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["report"],
                                "properties": {
                                    "report": oa.ref("FieldReport"),
                                    "media": {"type": "array", "items": binary},
                                },
                            },
                            "encoding": {"report": {"contentType": "application/json"}},
                        },
                        "application/json": {"schema": oa.ref("FieldReport")},
                    },
                },
                "responses": {
                    "201": oa.json_body("Filed.", oa.ref("FiledReport")),
                    **oa.errors(400, 403, 409, 413, 415, 422),
                },
            }
        }
    }


def setup(app: web.Application) -> None:
    limit = app[CONTEXT].settings.field.concurrent_uploads if CONTEXT in app else 2
    app[UPLOADS] = asyncio.Semaphore(limit)
    app.router.add_post("/api/v1/reports", post_report)
    oa.describe(app, _paths(), _schemas())
