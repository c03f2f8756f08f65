"""Patrol figures of a grid node over a period: patrols due, done, on time, overdue — per basic
grid and per grid worker.

Counted from the registry (patrol tags, their interval and registration time) and the
check-ins stored as the tags' ``checkin`` device events, with the same schedule the patrol
detector keeps (:mod:`detectors.patrol_schedule`), so the figures and the ``patrol_overdue``
events agree:

- **due** — periods of the node's tags whose deadline (end + grace) lies in
  ``[since, min(until, now))`` and that began after the tag was registered;
- **on time** — due periods a check-in did within their window (up to the deadline);
- **overdue** — due periods no check-in did in time (``due − on time``);
- **on-time rate** — on time / due (None when nothing was due);
- **done** — check-ins (patrols walked) in ``[since, min(until, now))``, every scan counted,
  an extra one or a late one too.

Per worker: an on-time period is credited to the worker who checked it in; an overdue one is
charged to the tag's grid worker (the first ``grid_member`` of its basic grid); a check-in
counts as done for its worker.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import psycopg

from alerts.deadlines import require_aware
from alerts.figures import Node, get_node
from detectors.config import resolve
from detectors.patrol import PatrolConfig, schedule_of
from detectors.patrol_schedule import Schedule, evaluate
from devices.overrides import ProfileOverrides
from devices.profiles import get_profile
from devices.registry_sql import fetch

TAG_TYPE: Final = "patrol_tag"
UNKNOWN_WORKER: Final = "(unknown)"
NO_WORKER: Final = "(no grid worker)"

_TAGS = """
SELECT d.device_id, d.profile, extract(epoch FROM d.created_at)::float8, g.code, g.name,
       g.members
FROM devices d JOIN grids g ON g.code = d.grid_code
WHERE d.type = %(type)s AND (g.code = %(node)s OR g.ancestors @> ARRAY[%(node)s]::text[])
ORDER BY d.device_id
"""
_CHECKINS = """
SELECT device_id, extract(epoch FROM ts)::float8, detail->>'worker_id'
FROM device_events
WHERE kind = 'event' AND event = 'checkin' AND device_id = ANY(%(tags)s)
  AND ts >= %(start)s AND ts < %(end)s
"""


@dataclass(slots=True)
class PatrolTally:
    """Counts for a node, a basic grid or a worker; ``tags`` only for places."""

    due: int = 0
    on_time: int = 0
    done: int = 0
    tags: int = 0

    @property
    def overdue(self) -> int:
        return self.due - self.on_time

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.due if self.due else None

    def tally_json(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "done": self.done,
            "on_time": self.on_time,
            "overdue": self.overdue,
            "on_time_rate": self.on_time_rate,
        }


@dataclass(slots=True)
class _Grid(PatrolTally):
    name: str = ""


@dataclass(slots=True)
class _Worker(PatrolTally):
    name: str = ""
    grids: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True, kw_only=True)
class PatrolFigures:
    node: Node
    since: datetime
    until: datetime
    as_of: datetime
    total: PatrolTally
    by_grid: Mapping[str, _Grid]
    by_worker: Mapping[str, _Worker]

    def to_json(self) -> dict[str, Any]:
        return {
            "node": {"code": self.node.code, "name": self.node.name, "level": self.node.level},
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "as_of": self.as_of.isoformat(),
            "tags": self.total.tags,
            **self.total.tally_json(),
            "by_grid": [
                {"code": code, "name": g.name, "tags": g.tags, **g.tally_json()}
                for code, g in sorted(self.by_grid.items())
            ],
            "by_worker": [
                {
                    "worker_id": worker,
                    "name": w.name,
                    "grids": sorted(w.grids),
                    **w.tally_json(),
                }
                for worker, w in sorted(self.by_worker.items())
            ],
        }


@dataclass(frozen=True, slots=True)
class _Tag:
    tag_id: str
    schedule: Schedule
    registered: float
    grid: str
    worker: str  # who answers for its missed patrols


def _schedule(profile: Mapping[str, Any]) -> Schedule:
    resolved = ProfileOverrides.from_json(profile).apply(get_profile(TAG_TYPE))
    cfg = resolve(resolved).detectors.get("patrol")
    return schedule_of(cfg if isinstance(cfg, PatrolConfig) else PatrolConfig(), resolved)


def _periods(s: Schedule, registered: float, since: float, as_of: float) -> tuple[int, int]:
    """The first and last period with ``since <= deadline < as_of`` that began after the
    tag was registered (first > last: none)."""
    first = s.last_decided(since)
    if s.deadline(first) < since:
        first += 1
    last = s.last_decided(as_of)
    if s.deadline(last) >= as_of:
        last -= 1
    return max(first, s.first_due(registered)), last


async def patrol_figures(
    conn: psycopg.AsyncConnection[Any],
    *,
    node: str,
    since: datetime,
    until: datetime,
    now: datetime | None = None,
) -> PatrolFigures:
    """The patrol figures of ``node``'s subtree for ``[since, until)`` (module docstring).
    Raises ``alerts.figures.UnknownNode`` for a code the registry does not hold."""
    for name, moment in (("since", since), ("until", until)):
        require_aware(moment, name)
    now = datetime.now(UTC) if now is None else now
    require_aware(now)
    found = await get_node(conn, node)
    as_of = min(until, now)
    t0, t1 = since.timestamp(), as_of.timestamp()
    tags: list[_Tag] = []
    names: dict[str, str] = {}
    grids: dict[str, _Grid] = {}
    for tag_id, profile, registered, code, grid_name, members in await fetch(
        conn, _TAGS, {"type": TAG_TYPE, "node": node}
    ):
        for m in members or ():
            names.setdefault(m.get("id", ""), m.get("name", ""))
        worker = next((m["id"] for m in members or () if m.get("role") == "grid_member"), NO_WORKER)
        tags.append(_Tag(tag_id, _schedule(profile or {}), registered, code, worker))
        grids.setdefault(code, _Grid(name=grid_name)).tags += 1
    total = PatrolTally(tags=len(tags))
    workers: dict[str, _Worker] = defaultdict(_Worker)
    spans = {t.tag_id: _periods(t.schedule, t.registered, t0, t1) for t in tags}
    # from two periods before the first counted one, so a scan in the first one's grace
    # is judged as the detector judged it
    starts = [
        t.schedule.start(max(spans[t.tag_id][0] - 2, t.schedule.first_due(t.registered)))
        for t in tags
    ]
    checkins: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
    if tags:
        rows = await fetch(
            conn,
            _CHECKINS,
            {
                "tags": [t.tag_id for t in tags],
                "start": datetime.fromtimestamp(min(*starts, t0), UTC),
                "end": as_of,
            },
        )
        for tag_id, ts, worker in rows:
            checkins[tag_id].append((ts, worker))
    for tag in tags:
        first, last = spans[tag.tag_id]
        scans = checkins[tag.tag_id]
        walked = Counter(w or UNKNOWN_WORKER for ts, w in scans if t0 <= ts < t1)
        for worker, n in walked.items():
            workers[worker].done += n
            workers[worker].grids.add(tag.grid)
        grids[tag.grid].done += sum(walked.values())
        total.done += sum(walked.values())
        if first > last:
            continue
        begin = max(first - 2, tag.schedule.first_due(tag.registered))
        for outcome in evaluate(tag.schedule, scans, begin, last):
            if outcome.period < first:
                continue
            credited = (outcome.worker or UNKNOWN_WORKER) if outcome.done else tag.worker
            for tally in (total, grids[tag.grid], workers[credited]):
                tally.due += 1
                tally.on_time += outcome.done
            workers[credited].grids.add(tag.grid)
    for worker_id, w in workers.items():
        w.name = names.get(worker_id, "")
    return PatrolFigures(
        node=found,
        since=since,
        until=until,
        as_of=as_of,
        total=total,
        by_grid=grids,
        by_worker=dict(workers),
    )
