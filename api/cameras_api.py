"""``/api/v1/cameras``: every camera in the token's scope with how its stream is doing, and
its newest frame.

A camera is pulled by one worker at a time (``ingest.camera_leases``); whichever worker
answers, the list comes from ``camera_status`` (written by the puller every
``video.lease_s``). ``latest.jpg`` is the puller's newest sampled frame when this worker
pulls the camera, otherwise the small frame the puller last stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from api import openapi as oa
from api.auth import check_grid_param, http_error, principal, respond
from api.context import CONTEXT
from api.registry_api import device_json, visible_device
from devices import registry_store
from storage.camera_status import list_statuses, stored_preview

# A status older than this many lease rounds means no worker is pulling the camera.
STALE_ROUNDS = 3


async def list_cameras(request: web.Request) -> web.Response:
    who = principal(request)
    oa.check_params(request, ("grid",))
    grid = oa.one(request, "grid")
    context = request.app[CONTEXT]
    async with context.pool.connection() as conn:
        if grid is not None:
            await check_grid_param(conn, who, grid)
        elif not who.unrestricted:
            grid = who.scope
        cameras = await registry_store.load_cameras(conn, grid=grid)
        statuses = {
            s.camera_id: s for s in await list_statuses(conn, [d.device_id for d in cameras])
        }
    stale_after = timedelta(seconds=STALE_ROUNDS * context.settings.video.lease_s)
    now = datetime.now(UTC)
    items = []
    for device in cameras:
        status = statuses.get(device.device_id)
        item: dict[str, Any] = {"device": device_json(device), "status": None, "pulled": False}
        if status is not None:
            item["status"] = status.to_json()
            item["pulled"] = now - status.updated_at < stale_after
        items.append(item)
    return respond({"items": items})


async def latest_jpeg(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    oa.check_params(request, ())
    camera_id = request.match_info["id"]
    context = request.app[CONTEXT]
    async with context.pool.connection() as conn:
        device = await visible_device(conn, who, camera_id)
        data = await context.camera_jpeg(camera_id) if context.camera_jpeg else None
        taken = datetime.now(UTC)
        if data is None:
            stored = await stored_preview(conn, camera_id)
            if stored is not None:
                data, taken = stored
    if data is None or not device.rtsp_url:
        raise http_error(404, "no_frame", f"no frame of camera {camera_id!r} yet")
    return web.Response(
        body=data,
        content_type="image/jpeg",
        headers={"Cache-Control": "no-store", "Last-Modified": _http_date(taken)},
    )


def _http_date(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/cameras": {
            "get": {
                "operationId": "listCameras",
                "summary": "Cameras in the token's scope, with stream state, fps and faults.",
                "tags": ["cameras"],
                "parameters": [
                    oa.query("grid", {"type": "string"}, "Only this grid's subtree."),
                ],
                "responses": {
                    "200": oa.json_body("The cameras.", oa.ref("CameraList")),
                    **oa.errors(400, 403),
                },
            }
        },
        "/api/v1/cameras/{id}/latest.jpg": {
            "get": {
                "operationId": "getCameraLatestFrame",
                "summary": "The camera's newest frame as JPEG (404: unknown, outside the "
                "scope, or no frame yet).",
                "tags": ["cameras"],
                "parameters": [oa.path_param("id", "The camera's device id.")],
                "responses": {
                    "200": {
                        "description": "JPEG image.",
                        "content": {"image/jpeg": {"schema": {"type": "string",
                                                              "format": "binary"}}},
                    },
                    **oa.errors(404),
                },
            }
        },
    }  # fmt: skip


def _schemas() -> dict[str, Any]:
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    status = {
        "type": ["object", "null"],
        "properties": {
            "camera_id": {"type": "string"},
            "worker": {"type": "string", "description": "Client id of the pulling worker."},
            "state": {"enum": ["connecting", "connected", "disconnected", "stopped"]},
            "fps_in": {"type": "number"},
            "fps_analysed": {"type": "number"},
            "frames_in": {"type": "integer"},
            "frames_dropped": {"type": "integer"},
            "reconnects": {"type": "integer"},
            "last_frame_at": nullable_time,
            "width": {"type": ["integer", "null"]},
            "height": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]},
            "faults": {"type": "array", "items": {"type": "string"},
                       "description": "Camera-health conditions raised now."},
            "preview_at": nullable_time,
            "updated_at": {"type": "string", "format": "date-time"},
        },
    }  # fmt: skip
    return {
        "CameraList": {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["device", "status", "pulled"],
                        "properties": {
                            "device": oa.ref("Device"),
                            "status": status,
                            "pulled": {
                                "type": "boolean",
                                "description": "A worker reported the camera recently.",
                            },
                        },
                    },
                }
            },
        }
    }


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/cameras", list_cameras)
    app.router.add_get("/api/v1/cameras/{id}/latest.jpg", latest_jpeg)
    oa.describe(app, _paths(), _schemas())
