"""CloudEvents 1.0 envelopes (JSON, structured mode) for what gridwatch sends downstream.

One envelope per ``event_log`` row, built the same way for MQTT, SSE and webhooks:

- ``id``: ``<grid event id>:<seq>`` — stable for that change (retries and replays carry
  the same id, so it doubles as the Standard Webhooks ``webhook-id`` and a consumer's
  de-duplication key) and unique across changes;
- ``source``: ``/gridwatch/<county code>`` (``/gridwatch/unplaced`` for an event with no
  grid); ``type``: ``gridwatch.event.<change>``; ``subject``: the grid event id;
- ``time``: when the change was logged (UTC, RFC 3339);
- ``datacontenttype``: ``application/json``; ``data``: the grid event after the change, as
  stored (embedded verbatim, never re-encoded);
- extension ``seq`` (integer): the change's position in the log — the SSE ``id:`` and the
  value to resume from.

Pure: bytes in, bytes out, no clock (times are arguments).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from outputs.log_reader import LogRow

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
"""The media type of a structured-mode CloudEvent (HTTP ``Content-Type``, MQTT 5 property)."""
DATA_CONTENT_TYPE = "application/json"
EVENT_TYPE_PREFIX = "gridwatch.event."
SUBSCRIPTION_DISABLED = "gridwatch.subscription.disabled"
UNPLACED = "unplaced"


class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str
    seq: int | None = None
    data: msgspec.Raw


_encoder = msgspec.json.Encoder()


def rfc3339(moment: datetime) -> str:
    """UTC, microseconds, ``Z``: ``2026-11-22T08:00:00.123456Z``."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def message_id(row: LogRow) -> str:
    return f"{row.event_id}:{row.seq}"


def county_of(row: LogRow) -> str | None:
    path = (*row.ancestors, row.grid_code) if row.grid_code else row.ancestors
    return path[0] if path else None


def source_of(row: LogRow) -> str:
    return f"/gridwatch/{county_of(row) or UNPLACED}"


def envelope(row: LogRow) -> bytes:
    """The CloudEvent of one change, as JSON bytes."""
    return _encoder.encode(
        Envelope(
            specversion=SPECVERSION,
            id=message_id(row),
            source=source_of(row),
            type=EVENT_TYPE_PREFIX + row.change,
            subject=row.event_id,
            time=rfc3339(row.at),
            datacontenttype=DATA_CONTENT_TYPE,
            seq=row.seq,
            data=msgspec.Raw(row.payload),
        )
    )


def subscription_disabled(
    subscription_id: int, at: datetime, data: dict[str, Any]
) -> tuple[str, bytes]:
    """The ``gridwatch.subscription.disabled`` notice: ``(id, JSON bytes)``."""
    notice_id = f"subscription-{subscription_id}-disabled-{int(at.timestamp() * 1000)}"
    body = _encoder.encode(
        Envelope(
            specversion=SPECVERSION,
            id=notice_id,
            source="/gridwatch/subscriptions",
            type=SUBSCRIPTION_DISABLED,
            subject=str(subscription_id),
            time=rfc3339(at),
            datacontenttype=DATA_CONTENT_TYPE,
            data=msgspec.Raw(_encoder.encode(data)),
        )
    )
    return notice_id, body
