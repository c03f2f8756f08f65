"""Field reports (发现上报): what a grid worker saw, as a grid event like any device's.

A report is a hit of its own — device id the report id, category and type as the reporter
chose them, time of filing — with the reporter's place as its context: its grid, its
location and its **site**. It then goes through the correlator like a detector's hit, so a
fire report at a site where a smoke detector is alarming joins that event (and, as a second
source at one site, raises it to red by the default rules), and a report at a quiet place
opens a new event in ``reported``, dispatched through the same workflow.

Persisting (:func:`file_report`) happens in the caller's transaction: the event holders of
the report's keys are locked, the correlator's changes written (row, history, change log —
which is what the live stream, the MQTT feed and webhooks read), and the history names the
reporter: as the actor of ``report`` when the report opened the event, in a ``comment`` when
it joined one.

Pure apart from :func:`file_report`; time and randomness are arguments.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, cast

import msgspec
import psycopg
from psycopg import sql

from alerts.correlation import DeviceContext, EventChange, correlate, lookup_keys
from alerts.event import GridEvent, Location, new_event_id
from alerts.incidents import AlertRules
from alerts.roles import Actor, Assignee
from alerts.workflow import apply
from alerts.workflow_enums import Action, Severity
from detectors.base import RAISED, Category, Hit
from storage.events import COLUMNS, append_history, log_change, save_event

REPORT_PREFIX: Final = "FR"
REPORT_CATEGORIES: Final[tuple[str, ...]] = ("fire", "electrical", "water", "safety")
TYPE_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{1,47}")
DEFAULT_SEVERITY: Final = Severity.YELLOW
MAX_SITE: Final = 128
MAX_ADDRESS: Final = 200


class ReportLocation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    lat: float | None = None
    lon: float | None = None
    address: str = ""


class ReportRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The JSON part of ``POST /api/v1/reports``."""

    category: str
    type: str
    description: str
    severity: str | None = None
    site: str | None = None
    location: ReportLocation = msgspec.field(default_factory=ReportLocation)


def problem(req: ReportRequest, *, max_description: int) -> str | None:
    """Why the report cannot be filed as it is (for a 400), or None."""
    if req.category not in REPORT_CATEGORIES:
        return f"category must be one of {', '.join(REPORT_CATEGORIES)}, got {req.category!r}"
    if not TYPE_PATTERN.fullmatch(req.type):
        return (
            f"type must be 2–48 of a-z 0-9 _ starting with a letter (fire_hazard, "
            f"blocked_exit, dispute, …), got {req.type!r}"
        )
    if not req.description.strip():
        return "description must say what was seen"
    if len(req.description) > max_description:
        return f"description has at most {max_description} characters"
    if req.severity is not None and req.severity not in {s.value for s in Severity}:
        return f"severity must be red, orange, yellow or blue, got {req.severity!r}"
    if req.site is not None and not 0 < len(req.site.strip()) <= MAX_SITE:
        return f"site must be 1–{MAX_SITE} characters"
    where = req.location
    if (where.lat is None) != (where.lon is None):
        return "location.lat and location.lon go together"
    if where.lat is not None and where.lon is not None:
        if not (math.isfinite(where.lat) and -90 <= where.lat <= 90):
            return f"location.lat {where.lat} is outside -90..90"
        if not (math.isfinite(where.lon) and -180 <= where.lon <= 180):
            return f"location.lon {where.lon} is outside -180..180"
    if len(where.address) > MAX_ADDRESS:
        return f"location.address has at most {MAX_ADDRESS} characters"
    return None


def new_report_id(ts: float, entropy: int) -> str:
    """``'FR'`` + 26 characters, time-ordered like event ids."""
    return REPORT_PREFIX + new_event_id(ts, entropy)[len(REPORT_PREFIX) :]


def report_hit(
    report_id: str,
    req: ReportRequest,
    reporter: Actor,
    ts: float,
    media: Sequence[Mapping[str, Any]] = (),
) -> Hit:
    """The report as a raised hit: it never clears (a person closes what a person reported)."""
    evidence: dict[str, Any] = {
        "report_id": report_id,
        "reporter": {"id": reporter.id, "role": reporter.role.value},
        "description": req.description.strip(),
        "media": [dict(m) for m in media],
    }
    if req.location.address:
        evidence["address"] = req.location.address
    return Hit(
        device_id=report_id,
        detector="report",
        rule=req.type,
        type=req.type,
        category=cast(Category, req.category),
        severity=cast(Any, req.severity or DEFAULT_SEVERITY.value),
        phase=RAISED,
        ts=ts,
        condition_key=f"{report_id}/report/{req.type}",
        evidence=evidence,
    )


def report_context(
    report_id: str,
    *,
    site: str,
    grid_code: str,
    ancestors: Sequence[str],
    location: Location,
    members: Sequence[Assignee] = (),
) -> DeviceContext:
    """Where the report is, as the correlator sees a device's place."""
    return DeviceContext(
        device_id=report_id,
        site=site,
        grid_code=grid_code,
        ancestors=tuple(ancestors),
        location=location,
        members=tuple(members),
    )


_HOLDERS: Final = sql.SQL(
    "SELECT {} FROM grid_events WHERE correlation_key = ANY(%s) FOR UPDATE"
).format(sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS))


async def file_report(
    conn: psycopg.AsyncConnection[Any],
    hit: Hit,
    place: DeviceContext,
    reporter: Actor,
    now: datetime,
    rules: AlertRules,
    *,
    entropy: int,
) -> tuple[GridEvent, list[EventChange]]:
    """Correlate the report's hit and write every change, in the caller's transaction.

    Returns the event the report is now part of and the changes made. Raises
    ``psycopg.errors.UniqueViolation`` or ``storage.events.EventConflict`` when a worker
    changed a holder meanwhile: roll back and file again.
    """
    keys = lookup_keys(hit, place, rules.correlation)
    cur = await conn.execute(_HOLDERS, (list(keys),))
    holders = [
        GridEvent.from_row(dict(zip(COLUMNS, row, strict=True))) for row in await cur.fetchall()
    ]
    holding = {e.correlation_key: e for e in holders if e.correlation_key is not None}
    changes = correlate(
        hit, place, holding, now, rules.correlation, rules.severity,
        entropy=entropy, workflow=rules.workflow,
    )  # fmt: skip
    own = next(c for c in changes if not c.linked and c.kind != "released")
    written: list[EventChange] = []
    for change in changes:
        if change is own:
            change = _signed(change, reporter, hit, now, rules)
        await save_event(conn, change.event, new=change.kind == "opened")
        await append_history(conn, change.event.id, change.history)
        if change.cloudevent is not None:
            await log_change(conn, change.event, change.cloudevent)
        written.append(change)
    return next(c.event for c in written if c.event.id == own.event.id), written


def _signed(
    change: EventChange, reporter: Actor, hit: Hit, now: datetime, rules: AlertRules
) -> EventChange:
    """The change with the reporter in its history: the actor of ``report`` on an event the
    report opened, a ``comment`` on one it joined."""
    report_id = hit.device_id
    if change.kind == "opened":
        history = tuple(
            msgspec.structs.replace(
                e,
                actor_id=reporter.id,
                actor_role=reporter.role,
                reason=f"field report {report_id}: {hit.evidence['description'][:200]}",
            )
            if e.action is Action.REPORT
            else e
            for e in change.history
        )
        return msgspec.structs.replace(change, history=history)
    event = change.event
    ws, entry = apply(
        event.workflow,
        Action.COMMENT,
        reporter,
        now,
        reason=f"field report {report_id} joined: {hit.evidence['description'][:200]}",
        config=rules.workflow,
    )
    joined = msgspec.structs.replace(event, workflow=ws)
    return msgspec.structs.replace(change, event=joined, history=(*change.history, entry))
