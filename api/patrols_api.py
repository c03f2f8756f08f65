"""Patrol check-ins over HTTP: ``POST /api/v1/patrols/checkins``.

A phone without its own broker account checks a tag in here. The check-in is published, as
gridwatch's own account, on the tag's uplink topic (``{root}/up/{tag_id}/event``, QoS 1) in
the same canonical payload a tag reader would send, so it is stored, de-duplicated and judged
by the patrol detector exactly like one that came over MQTT. The answer is ``202`` once the
broker has acknowledged it (the broker then holds it for gridwatch's persistent session);
``503`` when the broker cannot be reached, and nothing was sent.

The tag must be a ``patrol_tag`` in the token's scope (``404`` otherwise); the worker is the
token's member unless the body names one.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import orjson
from aiohttp import web

from api import openapi as oa
from api.auth import grid_ancestors, http_error, require, respond
from api.context import CONTEXT, ApiContext
from devices import registry_store
from devices.messages import Kind
from gridwatch.mqtt_publish import BoundedPublisher, PublishError
from ingest.topics import UplinkTopics

log = logging.getLogger(__name__)

TAG_TYPE: Final = "patrol_tag"
MAX_BODY: Final = 32 * 1024
MAX_ITEMS: Final = 32


class CheckinRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``POST /api/v1/patrols/checkins``."""

    tag_id: str
    worker_id: str | None = None
    ts: datetime | None = None
    checklist: dict[str, bool] | None = None
    hazard: bool | None = None
    note: str | None = None


def payload(req: CheckinRequest, worker: str, now: datetime) -> tuple[int, bytes]:
    """The canonical uplink payload of the check-in: its time (epoch ms) and bytes."""
    moment = req.ts if req.ts is not None else now
    ms = math.floor(moment.timestamp() * 1000)
    detail: dict[str, Any] = {"worker_id": worker, "source": "api"}
    if req.checklist is not None:
        detail["checklist"] = req.checklist
    if req.hazard is not None:
        detail["hazard"] = req.hazard
    if req.note:
        detail["note"] = req.note
    return ms, orjson.dumps({"ts": ms, "event": "checkin", "detail": detail})


def _check(req: CheckinRequest) -> str | None:
    if req.ts is not None and req.ts.tzinfo is None:
        return "ts needs its offset (2026-11-22T08:00:00+08:00)"
    if req.checklist is not None and len(req.checklist) > MAX_ITEMS:
        return f"a checklist has at most {MAX_ITEMS} items"
    if req.note is not None and len(req.note) > 500:
        return "note has at most 500 characters"
    if req.worker_id is not None and not 0 < len(req.worker_id) <= 64:
        return "worker_id must be 1–64 characters"
    return None


def _publish(ctx: ApiContext, topic: str, body: bytes) -> None:
    """Publish at QoS 1 and wait for the PUBACK (on a worker thread)."""
    # gridwatch's own account, as the service connects (imported here: the broker room is
    # optional for an API built without it)
    from gridwatch.broker_files import service_credentials

    settings = ctx.settings
    if ctx.mqtt_url is None:
        raise PublishError("this API runs without a broker")
    timeout = settings.field.checkin_timeout_s
    username, password = service_credentials(settings)
    publisher = BoundedPublisher(
        ctx.mqtt_url,
        client_id="",
        inflight=1,
        username=username,
        password=password,
        ca_file=settings.mqtt.tls_ca_file,
    )
    publisher.connect(timeout)
    try:
        publisher.publish(topic, body, qos=1)
        if not publisher.flush(timeout):
            raise PublishError(f"no acknowledgement from the broker within {timeout} s")
        if publisher.refused:
            raise PublishError("the broker refused the check-in (not authorised)")
    finally:
        publisher.client.disconnect()
        publisher.client.loop_stop()


async def post_checkin(request: web.Request) -> web.Response:
    who = await require(request, write=True)
    oa.check_params(request, ())
    ctx = request.app[CONTEXT]
    raw = bytearray()
    while chunk := await request.content.read(MAX_BODY):
        raw += chunk
        if len(raw) > MAX_BODY:
            raise http_error(413, "too_large", f"a check-in has at most {MAX_BODY} bytes")
    try:
        req = msgspec.json.decode(bytes(raw), type=CheckinRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise http_error(400, "bad_request", f"body: {exc}") from None
    if (why := _check(req)) is not None:
        raise http_error(400, "bad_request", why)
    worker = req.worker_id or who.member_id
    if worker is None:
        raise http_error(
            422, "no_worker", "name the worker (worker_id): this token has no member id"
        )
    async with ctx.pool.connection() as conn:
        tag = await registry_store.get_device(conn, req.tag_id)
        visible = False
        if tag is not None and tag.type == TAG_TYPE:
            if tag.grid_code is None:
                visible = who.can_see(None)
            else:
                visible = who.can_see(
                    tag.grid_code, await grid_ancestors(conn, tag.grid_code) or ()
                )
    if tag is None or not visible:
        raise http_error(404, "not_found", f"no patrol tag {req.tag_id!r}")
    ms, body = payload(req, worker, datetime.now(UTC))
    topic = UplinkTopics(ctx.settings.mqtt.topic_root).build(tag.device_id, Kind.EVENT)
    try:
        await asyncio.to_thread(_publish, ctx, topic, body)
    except (PublishError, OSError) as exc:
        log.warning("check-in not published: %s", exc, extra={"device_id": tag.device_id})
        raise http_error(503, "broker_unavailable", f"the check-in was not sent: {exc}") from None
    log.info(
        "patrol check-in published",
        extra={"device_id": tag.device_id, "worker_id": worker, "token_id": who.token_id},
    )
    answer = {
        "tag_id": tag.device_id,
        "worker_id": worker,
        "ts": datetime.fromtimestamp(ms / 1000, UTC).isoformat(),
        "topic": topic,
    }
    return respond(answer, status=202)


def _paths() -> dict[str, Any]:
    text = {"type": "string"}
    request_schema = {
        "type": "object",
        "required": ["tag_id"],
        "properties": {
            "tag_id": {"type": "string", "description": "The patrol tag's device id."},
            "worker_id": {
                "type": ["string", "null"],
                "description": "Default: the token's member id.",
            },
            "ts": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "When the tag was scanned (default: now).",
            },
            "checklist": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "boolean"},
                "description": "Item → true when fine, false when not (a hazard).",
            },
            "hazard": {"type": ["boolean", "null"]},
            "note": {"type": ["string", "null"], "maxLength": 500},
        },
        "additionalProperties": False,
    }
    accepted = oa.record(
        {
            "tag_id": text,
            "worker_id": text,
            "ts": {"type": "string", "format": "date-time"},
            "topic": text,
        }
    )
    return {
        "/api/v1/patrols/checkins": {
            "post": {
                "operationId": "checkIn",
                "summary": "Check a patrol tag in (the scan of a round).",
                "description": "Published on the tag's uplink topic as a 'checkin' event, like "
                "a tag reader's; 202 once the broker acknowledged it.",
                "tags": ["patrols"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": request_schema}},
                },
                "responses": {
                    "202": oa.json_body("Sent; it is stored and judged like any check-in.",
                                        accepted),
                    **oa.errors(400, 404, 413, 422, 503),
                },
            }
        }
    }  # fmt: skip


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/patrols/checkins", post_checkin)
    oa.describe(app, _paths())
