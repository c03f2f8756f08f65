"""A grid event (网格事件) as a value: one incident in one grid, backed by one or more hits.

:class:`GridEvent` mirrors one row of ``grid_events`` (``storage/migrations/0003_events.sql``)
column for column; ``to_row``/``from_row`` are that mapping, and ``to_cloudevent_data`` is
the ``data`` of the CloudEvents the outputs publish (interface.md, "Downstream").

Times. ``first_seen``/``last_seen`` are **epoch seconds (float)**, the device time of the
hits (``Hit.ts``), so that correlation windows are plain arithmetic on the numbers the
detectors emit; the columns are ``timestamptz`` and ``to_row``/``from_row`` convert (to the
microsecond). The workflow (``WorkflowState``, ``HistoryEntry``) keeps timezone-aware
``datetime``s of the server's clock, as the workflow room defines them.

Evidence is bounded: the correlator keeps the latest ``CorrelationConfig.evidence_limit``
items (default 20). Each item names the hit it came from exactly (condition key, phase,
``ts``), which makes the evidence also the event's memory of the hits it has applied: see
``GridEvent.has_applied``.

Pure: nothing here reads a clock or does I/O; ``new_event_id`` takes its time and its random
bits as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast, get_args

import msgspec

from alerts.roles import Assignee
from alerts.workflow_enums import DUE_STEP, Severity, State
from alerts.workflow_state import HistoryEntry, WorkflowState
from detectors.base import Category, Hit, Phase

_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CATEGORIES: Final[tuple[str, ...]] = get_args(Category)
ID_PREFIX: Final = "GE"
TIME_BITS: Final = 48  # milliseconds since the epoch: good until the year 10889
ENTROPY_BITS: Final = 80
ID_LENGTH: Final = len(ID_PREFIX) + (TIME_BITS + ENTROPY_BITS) // 5 + 1  # 'GE' + 26


def _base32(value: int, chars: int) -> str:
    out = []
    for _ in range(chars):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_event_id(ts: float, entropy: int) -> str:
    """``'GE'`` + 26 Crockford base32 characters: 48 bits of milliseconds since the epoch,
    then 80 bits of ``entropy`` (the caller's random bits, e.g. ``secrets.randbits(80)``),
    ULID-style. Ids sort by ``ts`` as text (and as ``text`` in PostgreSQL's C collation)."""
    ms = int(ts * 1000)
    if not 0 <= ms < 1 << TIME_BITS:
        raise ValueError(f"event id time {ts!r} is out of range")
    if not 0 <= entropy < 1 << ENTROPY_BITS:
        raise ValueError(f"entropy must be a {ENTROPY_BITS}-bit non-negative integer")
    return ID_PREFIX + _base32(ms, 10) + _base32(entropy, 16)


def event_id_time(event_id: str) -> float:
    """The time (epoch seconds, ms precision) encoded in an id made by ``new_event_id``."""
    if len(event_id) != ID_LENGTH or not event_id.startswith(ID_PREFIX):
        raise ValueError(f"{event_id!r} is not a grid event id")
    ms = 0
    for char in event_id[len(ID_PREFIX) : len(ID_PREFIX) + 10]:
        ms = ms * 32 + _CROCKFORD.index(char)
    return ms / 1000


def ts_to_datetime(ts: float) -> datetime:
    """Epoch seconds → aware UTC ``datetime`` (for ``timestamptz`` columns and JSON)."""
    return datetime.fromtimestamp(ts, UTC)


class Location(msgspec.Struct, frozen=True, kw_only=True):
    """Where the event is: the position and address of the device that opened it."""

    lat: float | None = None
    lon: float | None = None
    address: str = ""


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """One hit as the event keeps it: what was seen, where, when and the readings behind it.

    ``severity`` is the detector's suggestion, ``detail`` the hit's own evidence (readings,
    a snapshot URL for video). ``linked`` marks a hit of another category at the same site
    recorded for the severity rules (see ``alerts.correlation``); it is not one of this
    event's alarms.
    """

    ts: float
    device_id: str
    condition_key: str
    phase: Phase
    type: str
    category: Category
    severity: str
    metric: str | None = None
    value: float | None = None
    detail: dict[str, Any] = msgspec.field(default_factory=dict)
    linked: bool = False

    @classmethod
    def from_hit(cls, hit: Hit, *, linked: bool = False) -> Evidence:
        return cls(
            ts=hit.ts,
            device_id=hit.device_id,
            condition_key=hit.condition_key,
            phase=hit.phase,
            type=hit.type,
            category=hit.category,
            severity=hit.severity,
            metric=hit.metric,
            value=hit.value,
            detail=dict(hit.evidence),
            linked=linked,
        )

    @property
    def own_raise(self) -> bool:
        """A raise of one of the event's own conditions (not a clear, not a linked hit)."""
        return self.phase == "raised" and not self.linked

    def is_hit(self, hit: Hit) -> bool:
        """Whether this item records ``hit`` (same condition, phase and device time)."""
        same_condition = self.condition_key == hit.condition_key
        return same_condition and self.phase == hit.phase and self.ts == hit.ts


class GridEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One ``grid_events`` row (less the bookkeeping columns ``created_at``/``updated_at``
    the database fills, and ``next_due``, which is ``workflow.due``).

    ``correlation_key`` is set while the event holds its key (the database allows one holder
    per key); ``state`` and ``severity`` are the workflow's, repeated as columns for indexes.
    ``device_ids`` and ``active_conditions`` count only the event's own hits (its category);
    ``types`` also lists the types of linked hits. ``version`` starts at 1 and grows by one
    with every change (optimistic concurrency between workers).
    """

    id: str
    correlation_key: str | None
    grid_code: str | None
    ancestors: tuple[str, ...] = ()
    category: Category
    type: str
    severity: Severity
    state: State
    site: str = ""
    location: Location = msgspec.field(default_factory=Location)
    device_ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    active_conditions: tuple[str, ...] = ()
    first_seen: float
    last_seen: float
    alarm_count: int = 0
    evidence: tuple[Evidence, ...] = ()
    workflow: WorkflowState
    version: int = 1

    def __post_init__(self) -> None:
        if self.state is not self.workflow.state:
            raise ValueError(
                f"state {self.state} differs from the workflow's {self.workflow.state}"
            )
        if self.severity is not self.workflow.severity:
            raise ValueError(
                f"severity {self.severity} differs from the workflow's {self.workflow.severity}"
            )
        if self.first_seen > self.last_seen:
            raise ValueError("first_seen is after last_seen")
        if self.version < 1 or self.alarm_count < 0:
            raise ValueError("version must be ≥ 1 and alarm_count ≥ 0")

    @property
    def is_open(self) -> bool:
        """Not closed and not a false alarm (the workflow may still move it)."""
        return not self.state.terminal

    @property
    def assignee(self) -> Assignee | None:
        return self.workflow.assignee

    def has_applied(self, hit: Hit) -> bool:
        """Whether ``hit`` (its condition key, phase and ``ts``) is among the evidence kept."""
        return any(item.is_hit(hit) for item in self.evidence)

    def to_cloudevent_data(self, history: Sequence[HistoryEntry] = ()) -> dict[str, Any]:
        """The grid event as CloudEvents ``data`` (JSON-ready builtins; times RFC 3339 UTC).

        ``history`` is the event's history from ``grid_event_history``, oldest first; the
        contract's event carries it, so pass all of it where the event is published whole.
        """
        ws = self.workflow
        step = DUE_STEP.get(ws.state)
        owner = ws.owner
        data = {
            "id": self.id,
            "grid_code": self.grid_code,
            "ancestors": list(self.ancestors),
            "category": self.category,
            "type": self.type,
            "severity": self.severity.value,
            "state": self.state.value,
            "device_ids": list(self.device_ids),
            "types": list(self.types),
            "active_conditions": list(self.active_conditions),
            "site": self.site,
            "location": self.location,
            "first_seen": ts_to_datetime(self.first_seen),
            "last_seen": ts_to_datetime(self.last_seen),
            "alarm_count": self.alarm_count,
            "evidence": list(self.evidence),
            "assignee": ws.assignee,
            "deadlines": {
                "step": step.value if step else None,
                "due": ws.due,
                "owner": owner.value if owner else None,
                "level": ws.level,
            },
            "reported_at": ws.reported_at,
            "updated_at": ws.updated_at,
            "closed_at": ws.closed_at or ws.false_alarm_at,
            "history": list(history),
            "version": self.version,
        }
        out: dict[str, Any] = msgspec.to_builtins(data)
        return out

    def to_row(self) -> dict[str, Any]:
        """Column → value for ``grid_events``: arrays as lists, ``timestamptz`` as aware
        datetimes, ``jsonb`` columns as JSON text (bind them as ``jsonb``)."""
        return {
            "id": self.id,
            "correlation_key": self.correlation_key,
            "grid_code": self.grid_code,
            "ancestors": list(self.ancestors),
            "category": self.category,
            "type": self.type,
            "severity": self.severity.value,
            "state": self.state.value,
            "site": self.site,
            "location": _json(self.location),
            "device_ids": list(self.device_ids),
            "types": list(self.types),
            "active_conditions": list(self.active_conditions),
            "first_seen": ts_to_datetime(self.first_seen),
            "last_seen": ts_to_datetime(self.last_seen),
            "alarm_count": self.alarm_count,
            "evidence": _json(self.evidence),
            "workflow": _json(self.workflow),
            "next_due": self.workflow.due,
            "version": self.version,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> GridEvent:
        """The event from a ``grid_events`` row (``jsonb`` columns as text, bytes or already
        decoded); raises ``msgspec.ValidationError`` or ``ValueError`` on a malformed one."""
        return cls(
            id=row["id"],
            correlation_key=row["correlation_key"],
            grid_code=row["grid_code"],
            ancestors=tuple(row["ancestors"]),
            category=_category(row["category"]),
            type=row["type"],
            severity=Severity(row["severity"]),
            state=State(row["state"]),
            site=row["site"],
            location=_from_json(row["location"], Location),
            device_ids=tuple(row["device_ids"]),
            types=tuple(row["types"]),
            active_conditions=tuple(row["active_conditions"]),
            first_seen=_epoch(row["first_seen"]),
            last_seen=_epoch(row["last_seen"]),
            alarm_count=row["alarm_count"],
            evidence=_from_json(row["evidence"], tuple[Evidence, ...]),
            workflow=_from_json(row["workflow"], WorkflowState),
            version=row["version"],
        )


_encoder = msgspec.json.Encoder()
T = TypeVar("T")


def _json(value: Any) -> str:
    return _encoder.encode(value).decode()


def _from_json(value: Any, type_: type[T]) -> T:
    if isinstance(value, str | bytes | bytearray):
        return msgspec.json.decode(value, type=type_)
    return msgspec.convert(value, type_)


def _category(value: str) -> Category:
    if value not in CATEGORIES:
        raise ValueError(f"unknown event category {value!r} (known: {', '.join(CATEGORIES)})")
    return cast(Category, value)


def _epoch(value: datetime | float) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive time {value!r} in a timestamptz column")
        return value.timestamp()
    return float(value)
