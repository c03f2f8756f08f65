"""The OpenAPI description of the grid-event routes (``api.events_api``, ``api.event_actions``)."""

from __future__ import annotations

from typing import Any

import msgspec

from alerts.event import CATEGORIES, Evidence, Location
from alerts.roles import Assignee
from alerts.workflow_enums import Severity
from alerts.workflow_state import HistoryEntry
from api import openapi as oa
from api.event_actions import MAX_REASON, PERSON_ACTIONS
from api.event_choices import schema as choice_schema


def schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [HistoryEntry, Assignee, Evidence, Location], ref_template="#/components/schemas/{name}"
    )
    time = {"type": "string", "format": "date-time"}
    strings = {"type": "array", "items": {"type": "string"}}
    event_properties: dict[str, Any] = {
        "id": {"type": "string", "description": "'GE' + 26 characters, time-ordered."},
        "grid_code": {"type": ["string", "null"], "description": "Basic grid; null: unplaced."},
        "ancestors": {**strings, "description": "County, town, village codes."},
        "category": {"enum": list(CATEGORIES)},
        "type": {"type": "string", "description": "smoke_alarm, pressure_drop, …"},
        "severity": oa.ref("Severity"),
        "state": oa.ref("State"),
        "device_ids": strings,
        "types": strings,
        "active_conditions": strings,
        "site": {"type": "string"},
        "location": oa.ref("Location"),
        "first_seen": time,
        "last_seen": time,
        "alarm_count": {"type": "integer", "minimum": 0},
        "evidence": {"type": "array", "items": oa.ref("Evidence")},
        "assignee": oa.nullable(oa.ref("Assignee")),
        "deadlines": {
            "type": "object",
            "required": ["step", "due", "owner", "level"],
            "properties": {
                "step": {"type": ["string", "null"], "description": "The action due now."},
                "due": oa.nullable(time),
                "owner": {"type": ["string", "null"], "description": "Role that owns it."},
                "level": {"type": "integer", "minimum": 0, "description": "Escalations."},
            },
            "additionalProperties": False,
        },
        "reported_at": time,
        "updated_at": time,
        "closed_at": oa.nullable(time),
        "history": {
            "type": "array",
            "items": oa.ref("HistoryEntry"),
            "description": "Oldest first; empty in listings (read the event for it).",
        },
        "version": {"type": "integer", "minimum": 1},
    }
    return {
        **components,
        "Severity": {"enum": [s.value for s in Severity], "description": "四色预警, red first."},
        "GridEvent": {
            "type": "object",
            "description": "A grid event (网格事件), as in the `data` of its CloudEvents.",
            "required": list(event_properties),
            "properties": event_properties,
            "additionalProperties": False,
        },
        "EventDetail": {
            "type": "object",
            "description": "A grid event with its history and what the caller may do now.",
            "required": [*event_properties, "allowed_actions"],
            "properties": {
                **event_properties,
                "allowed_actions": {
                    "type": "array",
                    "items": oa.ref("AllowedAction"),
                    "description": "The workflow actions this token may take now, in "
                    "workflow order (none for a viewer; a finished event takes only comments).",
                },
                "resources": {
                    **oa.nullable(oa.ref("NearestResources")),
                    "description": "Fire and electrical events with a position: the nearest "
                    "micro fire stations, hydrants (with their pressure now) and duty teams; "
                    "null for other events.",
                },
            },
            "additionalProperties": False,
        },
        "AllowedAction": choice_schema(),
        "EventPage": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": {"type": "array", "items": oa.ref("GridEvent")},
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "Pass as `cursor` for the next page; null on the last.",
                },
            },
            "additionalProperties": False,
        },
        "ActionRequest": {
            "type": "object",
            "required": ["action"],
            "properties": {
                "action": {"enum": [a.value for a in PERSON_ACTIONS]},
                "reason": {
                    "type": ["string", "null"],
                    "maxLength": MAX_REASON,
                    "description": "Why; required for send_back, mark_false_alarm, escalate, "
                    "urge, comment.",
                },
                "assignee": oa.nullable(oa.ref("Assignee")),
                "version": {
                    "type": ["integer", "null"],
                    "description": "Act only if the event is still at this version (else 409).",
                },
            },
            "additionalProperties": False,
        },
    }


def paths(max_limit: int, default_limit: int) -> dict[str, Any]:
    event_id = oa.path_param("id", "The grid event id.")
    return {
        "/api/v1/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "Grid events in the token's scope, newest first_seen first.",
                "tags": ["events"],
                "parameters": [
                    oa.query("grid", {"type": "string"}, "Only this grid's subtree (403 when "
                             "outside the token's scope)."),
                    oa.query("state", {"type": "array", "items": oa.ref("State")},
                             "Only these states (repeat, or comma-separate)."),
                    oa.query("severity", {"type": "array", "items": oa.ref("Severity")},
                             "Only these severities."),
                    oa.query("category", {"type": "array", "items": {"enum": list(CATEGORIES)}},
                             "Only these categories."),
                    oa.query("since", {"type": "string"}, "first_seen at or after. "
                             + oa.TIME_DESCRIPTION),
                    oa.query("until", {"type": "string"}, "first_seen before. "
                             + oa.TIME_DESCRIPTION),
                    oa.query("open", {"type": "boolean"},
                             "true: only open events; false: only closed and false alarms."),
                    oa.query("limit", {"type": "integer", "minimum": 1, "maximum": max_limit,
                                       "default": default_limit}, "Page size."),
                    oa.query("cursor", {"type": "string"}, "`next_cursor` of the page before."),
                ],
                "responses": {
                    "200": oa.json_body("One page of events.", oa.ref("EventPage")),
                    **oa.errors(400, 403, 404),
                },
            }
        },
        "/api/v1/events/{id}": {
            "get": {
                "operationId": "getEvent",
                "summary": "One grid event with its history (404 outside the scope).",
                "tags": ["events"],
                "parameters": [event_id],
                "responses": {
                    "200": oa.json_body("The event.", oa.ref("EventDetail")),
                    **oa.errors(400, 404),
                },
            }
        },
        "/api/v1/events/{id}/actions": {
            "post": {
                "operationId": "takeAction",
                "summary": "Take a workflow action as the token's actor.",
                "description": "dispatch/reassign need an assignee from the members of the "
                "event's grid or the grids above; who may take which step is the workflow's "
                "rule. A refused action changes nothing and is audited.",
                "tags": ["events"],
                "parameters": [event_id],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": oa.ref("ActionRequest")}},
                },
                "responses": {
                    "200": oa.json_body("The event after the action.", oa.ref("GridEvent")),
                    **oa.errors(400, 403, 404, 409, 422),
                },
            }
        },
    }  # fmt: skip
