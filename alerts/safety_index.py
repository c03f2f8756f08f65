"""The safety index (平安指数): 0–100 per grid node, from weighted indicators, kept per day.

Scoring is pure (``score``): 100 minus one penalty per indicator, clamped to 0–100, and
every penalty is returned with the score so that people see why a score is low:

- **open events** by colour: ``weight × open × per_devices / max(devices, per_devices)`` —
  a node with up to ``per_devices`` devices (a basic grid, a village) counts its open events
  as they are; a bigger node counts them per ``per_devices`` devices, so that a county is
  not at 0 merely for being large;
- **device online rate**: ``weight × (1 − online / devices)``;
- **on-time close rate** (``alerts.figures``' definition): ``weight × (1 − rate)``;
- **camera health**: ``weight × (1 − healthy cameras / cameras)``.

An indicator without data (no devices, no cameras, nothing due yet) takes nothing off; its
value is None.

The indicators of a node at a moment ``as_of`` (``compute_daily`` and ``index_now``), over
its whole subtree:

- *open*: events first seen before ``as_of`` and not closed or false-alarmed by then;
- *devices*: registry devices placed in the subtree; *online* when ``device_state.status``
  is not ``'offline'`` and ``last_seen`` is within ``online_within`` (24 h) before
  ``as_of``. ``device_state`` keeps only the newest state, so a day computed after the fact
  sees the devices as they are when it runs (events, by contrast, are replayed exactly);
- *cameras*: devices of type ``camera``; *healthy* when online and not named by a
  ``camera_fault`` event open at ``as_of``;
- *on-time close rate*: over the events first seen in the ``on_time_window_days`` before
  ``as_of``.

The daily series: ``compute_daily(day)`` judges every node of the registry (basic grids,
villages, towns, county) at the end of ``day`` in China time — or now, for a day not over
yet, so running it again later in the day refreshes the row — and upserts
``safety_index_daily``; ``series`` reads it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from alerts.deadlines import DEFAULT_POLICY, DeadlinePolicy, require_aware
from alerts.figures import (
    ANY_OF_NODES_SQL,
    CHINA_TZ,
    ENDED_SQL,
    get_node,
    limit_params,
    period_events,
)
from alerts.workflow_enums import Severity
from devices.device_import import CAMERA_TYPE
from devices.registry_sql import fetch

CAMERA_FAULT_TYPE = "camera_fault"  # interface.md: the event type of camera health
_COLOURS = frozenset(s.value for s in Severity)


class SafetyIndexWeights(BaseModel):
    """How much each indicator may take off the safety index (100 = nothing wrong)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    open_red: float = Field(
        default=15.0,
        ge=0,
        description="Points off per open red (I) event (per `per_devices` devices).",
    )
    open_orange: float = Field(
        default=6.0,
        ge=0,
        description="Points off per open orange (II) event (per `per_devices` devices).",
    )
    open_yellow: float = Field(
        default=2.0,
        ge=0,
        description="Points off per open yellow (III) event (per `per_devices` devices).",
    )
    open_blue: float = Field(
        default=0.5,
        ge=0,
        description="Points off per open blue (IV) event (per `per_devices` devices).",
    )
    per_devices: float = Field(
        default=100.0,
        gt=0,
        description="Open events are counted per this many devices; a node with fewer devices "
        "counts them as they are.",
    )
    device_online: float = Field(
        default=20.0,
        ge=0,
        description="Points off when no device is online (linear in the offline share).",
    )
    on_time_close: float = Field(
        default=20.0,
        ge=0,
        description="Points off at an on-time close rate of 0 (linear in the late share).",
    )
    camera_health: float = Field(
        default=10.0,
        ge=0,
        description="Points off when no camera is healthy (linear in the faulty share).",
    )
    on_time_window_days: int = Field(
        default=30,
        ge=1,
        description="The on-time close rate counts the events first seen in these days.",
    )
    online_within: timedelta = Field(
        default=timedelta(hours=24),
        gt=timedelta(0),
        description="A device is online when not reported offline and heard from within this "
        "long (ISO 8601 duration, HH:MM:SS or seconds).",
    )


DEFAULT_WEIGHTS = SafetyIndexWeights()


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Indicators:
    """A node's indicators at one moment (module docstring: what each one counts)."""

    open_red: int = 0
    open_orange: int = 0
    open_yellow: int = 0
    open_blue: int = 0
    devices: int = 0
    devices_online: int = 0
    cameras: int = 0
    cameras_healthy: int = 0
    closed_on_time: int = 0
    on_time_base: int = 0

    def open_count(self, severity: Severity) -> int:
        value: int = getattr(self, f"open_{severity.value}")
        return value

    @property
    def device_online_rate(self) -> float | None:
        return _ratio(self.devices_online, self.devices)

    @property
    def camera_health(self) -> float | None:
        return _ratio(self.cameras_healthy, self.cameras)

    @property
    def on_time_close_rate(self) -> float | None:
        return _ratio(self.closed_on_time, self.on_time_base)

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "device_online_rate": self.device_online_rate,
            "camera_health": self.camera_health,
            "on_time_close_rate": self.on_time_close_rate,
        }


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one indicator did to the score: ``points`` (≤ 0) were added to 100."""

    indicator: str  # open_red … open_blue, device_online_rate, on_time_close_rate, camera_health
    value: float | None  # the count or rate; None when there is no data
    points: float


@dataclass(frozen=True, slots=True)
class SafetyScore:
    """The score (0–100) and every indicator's part in it, in a fixed order."""

    score: float
    contributions: tuple[Contribution, ...]

    @property
    def unclamped(self) -> float:
        return 100.0 + sum(c.points for c in self.contributions)


def _shortfall(weight: float, rate: float | None) -> float:
    return 0.0 if rate is None else 0.0 - weight * (1.0 - rate)


def score(indicators: Indicators, weights: SafetyIndexWeights = DEFAULT_WEIGHTS) -> SafetyScore:
    """The safety index of ``indicators`` under ``weights`` (module docstring: the formula)."""
    scale = weights.per_devices / max(float(indicators.devices), weights.per_devices)
    parts: list[Contribution] = []
    for severity in Severity:
        count = indicators.open_count(severity)
        weight: float = getattr(weights, f"open_{severity.value}")
        parts.append(Contribution(f"open_{severity.value}", count, 0.0 - weight * count * scale))
    for name, weight, rate in (
        ("device_online_rate", weights.device_online, indicators.device_online_rate),
        ("on_time_close_rate", weights.on_time_close, indicators.on_time_close_rate),
        ("camera_health", weights.camera_health, indicators.camera_health),
    ):
        parts.append(Contribution(name, rate, _shortfall(weight, rate)))
    total = 100.0 + sum(p.points for p in parts)
    return SafetyScore(min(100.0, max(0.0, total)), tuple(parts))


@dataclass(frozen=True, slots=True)
class NodeIndex:
    """A node's safety index at ``as_of``: the score and the indicators behind it."""

    code: str
    as_of: datetime
    indicators: Indicators
    result: SafetyScore

    @property
    def score(self) -> float:
        return self.result.score

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "as_of": self.as_of.isoformat(),
            "score": self.result.score,
            "indicators": self.indicators.to_json(),
            "contributions": {c.indicator: c.points for c in self.result.contributions},
        }


class DailyScore(NamedTuple):
    day: date
    score: float


# --- indicators from the database -------------------------------------------------------

_OPEN_AT = f"e.first_seen < %(as_of)s AND ({ENDED_SQL} IS NULL OR {ENDED_SQL} >= %(as_of)s)"
# Each event or device counts for every node on its path: its grid and the grid's ancestors.
_EVENT_PATH = "unnest(array_append(e.ancestors, e.grid_code)) AS n(code)"


def _queries(filtered: bool) -> tuple[str, str, str]:
    """The open-events, on-time and devices queries, for every node or for ``%(nodes)s``."""
    node_match = "n.code = ANY(%(nodes)s)" if filtered else "true"
    events_scope = ANY_OF_NODES_SQL if filtered else "true"
    grids_scope = (
        "(g.code = ANY(%(nodes)s) OR g.ancestors && %(nodes)s::text[])" if filtered else "true"
    )
    open_at = f"""SELECT n.code, e.severity, count(*)
FROM grid_events e CROSS JOIN LATERAL {_EVENT_PATH}
WHERE {_OPEN_AT} AND {events_scope} AND n.code IS NOT NULL AND {node_match}
GROUP BY 1, 2"""
    on_time = f"""WITH {period_events("nodes" if filtered else "all")}
SELECT n.code, count(*) FILTER (WHERE ev.on_time), count(*) FILTER (WHERE ev.due)
FROM ev CROSS JOIN LATERAL unnest(array_append(ev.ancestors, ev.grid_code)) AS n(code)
WHERE n.code IS NOT NULL AND {node_match}
GROUP BY 1"""
    devices = f"""WITH faulted AS (
    SELECT DISTINCT unnest(e.device_ids) AS device_id FROM grid_events e
    WHERE e.type = %(camera_fault)s AND {_OPEN_AT}
)
SELECT n.code, count(*), count(*) FILTER (WHERE o.online),
       count(*) FILTER (WHERE d.type = %(camera)s),
       count(*) FILTER (WHERE d.type = %(camera)s AND o.online AND f.device_id IS NULL)
FROM devices d
JOIN grids g ON g.code = d.grid_code
LEFT JOIN device_state s ON s.device_id = d.device_id
LEFT JOIN faulted f ON f.device_id = d.device_id
CROSS JOIN LATERAL (
    SELECT COALESCE(s.status IS DISTINCT FROM 'offline'
                    AND s.last_seen > %(as_of)s - %(online_within)s, false) AS online
) o
CROSS JOIN LATERAL unnest(array_append(g.ancestors, g.code)) AS n(code)
WHERE {grids_scope} AND {node_match}
GROUP BY 1"""
    return open_at, on_time, devices


_ALL_NODES = _queries(filtered=False)
_SOME_NODES = _queries(filtered=True)

_UPSERT = """INSERT INTO safety_index_daily (grid_code, day, score, indicators)
VALUES (%s, %s, %s, %s)
ON CONFLICT (grid_code, day) DO UPDATE SET score = EXCLUDED.score, indicators = EXCLUDED.indicators
"""


async def indicators_at(
    conn: psycopg.AsyncConnection[Any],
    as_of: datetime,
    weights: SafetyIndexWeights = DEFAULT_WEIGHTS,
    *,
    policy: DeadlinePolicy | None = None,
    nodes: list[str] | None = None,
) -> dict[str, Indicators]:
    """Indicators at ``as_of`` of every node that has an event or a device (or of ``nodes``
    only); a node missing from the answer has nothing: ``Indicators()``."""
    require_aware(as_of, "as_of")
    open_q, on_time_q, devices_q = _ALL_NODES if nodes is None else _SOME_NODES
    params: dict[str, object] = {
        "as_of": as_of,
        "since": as_of - timedelta(days=weights.on_time_window_days),
        "until": as_of,
        "online_within": weights.online_within,
        "camera": CAMERA_TYPE,
        "camera_fault": CAMERA_FAULT_TYPE,
        "nodes": nodes,
        **limit_params(policy or DEFAULT_POLICY),
    }
    counts: dict[str, dict[str, int]] = {}
    for code, severity, n in await fetch(conn, open_q, params):
        if severity in _COLOURS:
            counts.setdefault(code, {})[f"open_{severity}"] = n
    for code, on_time, due in await fetch(conn, on_time_q, params):
        counts.setdefault(code, {}).update(closed_on_time=on_time, on_time_base=due)
    for code, devices, online, cameras, healthy in await fetch(conn, devices_q, params):
        counts.setdefault(code, {}).update(
            devices=devices, devices_online=online, cameras=cameras, cameras_healthy=healthy
        )
    return {code: Indicators(**values) for code, values in counts.items()}


async def index_now(
    conn: psycopg.AsyncConnection[Any],
    node: str,
    weights: SafetyIndexWeights = DEFAULT_WEIGHTS,
    *,
    policy: DeadlinePolicy | None = None,
    now: datetime | None = None,
) -> NodeIndex:
    """The safety index of ``node`` at ``now`` (default: the clock), not stored.

    Raises ``alerts.figures.UnknownNode`` for a code the registry does not hold.
    """
    await get_node(conn, node)
    as_of = datetime.now(UTC) if now is None else now
    found = await indicators_at(conn, as_of, weights, policy=policy, nodes=[node])
    values = found.get(node, Indicators())
    return NodeIndex(node, as_of, values, score(values, weights))


def _stored(index: NodeIndex) -> dict[str, Any]:
    doc = index.to_json()
    return {**doc["indicators"], "as_of": doc["as_of"], "contributions": doc["contributions"]}


async def compute_daily(
    conn: psycopg.AsyncConnection[Any],
    day: date,
    weights: SafetyIndexWeights = DEFAULT_WEIGHTS,
    *,
    policy: DeadlinePolicy | None = None,
    now: datetime | None = None,
    tz: tzinfo = CHINA_TZ,
) -> int:
    """Score every grid node for ``day`` and upsert ``safety_index_daily``; returns the
    number of rows written. Runs in the caller's transaction (the caller commits).

    The nodes are judged at the end of ``day`` in ``tz``, or at ``now`` (default: the
    clock) if the day is not over; ``indicators`` keeps the indicators, the moment they
    were judged at (``as_of``) and each indicator's points. A day that has not begun is a
    ``ValueError``.
    """
    now = datetime.now(UTC) if now is None else now
    require_aware(now)
    start = datetime.combine(day, time(), tz)
    if start > now:
        raise ValueError(f"{day} has not begun yet")
    as_of = min(start + timedelta(days=1), now)
    codes = [code for (code,) in await fetch(conn, "SELECT code FROM grids ORDER BY code", {})]
    found = await indicators_at(conn, as_of, weights, policy=policy)
    rows = []
    for code in codes:
        values = found.get(code, Indicators())
        index = NodeIndex(code, as_of, values, score(values, weights))
        rows.append((code, day, index.score, Jsonb(_stored(index))))
    async with conn.cursor() as cur:
        await cur.executemany(_UPSERT, rows)
    return len(rows)


async def series(
    conn: psycopg.AsyncConnection[Any],
    node: str,
    days: int,
    *,
    until: date | None = None,
    tz: tzinfo = CHINA_TZ,
) -> list[DailyScore]:
    """The stored daily scores of ``node`` for the ``days`` days ending with ``until``
    (default: today in ``tz``), oldest first; days never computed are absent."""
    if days < 1:
        raise ValueError("days must be at least 1")
    last = datetime.now(tz).date() if until is None else until
    rows = await fetch(
        conn,
        "SELECT day, score FROM safety_index_daily"
        " WHERE grid_code = %(node)s AND day > %(first)s AND day <= %(last)s ORDER BY day",
        {"node": node, "first": last - timedelta(days=days), "last": last},
    )
    return [DailyScore(day, score) for day, score in rows]
