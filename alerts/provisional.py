"""Provisional alerts: what detection found while the database was away, not yet recorded.

During a database outage ingest spools what devices send (:mod:`ingest.spool`) and keeps
detecting on it, but no grid event can be opened, correlated or dispatched: those live in
the database. A hit found then goes out at once as a provisional alert, a CloudEvent of
type ``gridwatch.provisional.raised`` (or ``.cleared``) with the device, its grid and
ancestors, the hit's type, category, suggested colour, time and value, and
``"recorded": false``. When the database is back the spool is written and the same hits
open (or join) grid events the usual way, with the usual changes on every output; a
provisional alert is a heads-up, never a grid event, and may repeat after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec

from alerts.correlation import DeviceContext
from detectors.base import Hit
from outputs.cloudevents import DATA_CONTENT_TYPE, SPECVERSION, UNPLACED, Envelope, rfc3339

TYPE_PREFIX = "gridwatch.provisional."


class ProvisionalAlert(msgspec.Struct, frozen=True, kw_only=True):
    """The ``data`` of a provisional CloudEvent."""

    device_id: str
    grid_code: str | None
    ancestors: tuple[str, ...]
    site: str
    address: str
    lat: float | None
    lon: float | None
    type: str
    category: str
    severity: str
    phase: str
    condition_key: str
    ts: str
    detected_at: str
    metric: str | None = None
    value: float | None = None
    worker: str = ""
    recorded: bool = False

    @property
    def county(self) -> str | None:
        path = (*self.ancestors, self.grid_code) if self.grid_code else self.ancestors
        return path[0] if path else None


def provisional_alert(
    hit: Hit, context: DeviceContext | None, detected_at: float, worker: str
) -> ProvisionalAlert:
    place = context or DeviceContext(device_id=hit.device_id)
    return ProvisionalAlert(
        device_id=hit.device_id,
        grid_code=place.grid_code,
        ancestors=place.ancestors,
        site=place.site,
        address=place.location.address,
        lat=place.location.lat,
        lon=place.location.lon,
        type=hit.type,
        category=str(hit.category),
        severity=str(hit.severity),
        phase=str(hit.phase),
        condition_key=hit.condition_key,
        ts=_time(hit.ts),
        detected_at=_time(detected_at),
        metric=hit.metric,
        value=hit.value,
        worker=worker,
    )


def provisional_alerts(
    hits: list[Hit], contexts: Mapping[str, DeviceContext], detected_at: float, worker: str
) -> list[ProvisionalAlert]:
    return [provisional_alert(h, contexts.get(h.device_id), detected_at, worker) for h in hits]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)
_alert_decoder = msgspec.json.Decoder(ProvisionalAlert)


def envelope(alert: ProvisionalAlert) -> bytes:
    """The CloudEvent: ``id`` is the condition and the hit's time, so the same hit seen
    twice (a restart replaying the spool) has the same id."""
    return _encoder.encode(
        Envelope(
            specversion=SPECVERSION,
            id=f"{alert.condition_key}@{alert.ts}:{alert.phase}",
            source=f"/gridwatch/{alert.county or UNPLACED}",
            type=TYPE_PREFIX + alert.phase,
            subject=alert.device_id,
            time=alert.detected_at,
            datacontenttype=DATA_CONTENT_TYPE,
            data=msgspec.Raw(_encoder.encode(alert)),
        )
    )


def from_envelope(body: bytes) -> tuple[Envelope, ProvisionalAlert]:
    """Read one back (raises ``msgspec.DecodeError`` or ``ValidationError`` on bad bytes)."""
    env = _decoder.decode(body)
    return env, _alert_decoder.decode(env.data)


def _time(epoch: float) -> str:
    return rfc3339(datetime.fromtimestamp(epoch, UTC))
