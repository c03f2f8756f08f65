"""The figures a centre reports for any node of the grid tree over a period.

``figures(conn, node=…, since=…, until=…)`` answers for a county, town, village or basic
grid and its whole subtree (``grid_code = node OR node = ANY(ancestors)``), with the same
counts for each direct child so that a town centre sees its villages. The aggregation runs
in PostgreSQL on the ``workflow`` jsonb column; no event is loaded into Python.

What the numbers count (domain.md, "The figures centres report"):

- **received** — events whose ``first_seen`` is in ``[since, until)``. Every other count
  is about these events, as they stood at ``until`` (an event closed after ``until`` is
  still open in a report that ends at ``until``).
- **closed** — received events that reached ``closed`` or ``false_alarm`` before
  ``until``. **close rate** (办结率) = closed / received.
- **on-time close rate** (按期结案率) = closed on time / due. The time limit of an event is
  the sum of the time limits of its five steps (dispatch, accept, resolve, verify, close)
  for its severity in the ``DeadlinePolicy`` (default: red 4 h 20 min, others 8 h), counted
  from ``reported_at``. *Closed on time*: it ended within that limit. *Due*: it has ended,
  or it is still open at ``min(until, now)`` and its limit has passed — so a late event
  cannot improve the rate by staying open, while one still inside its limit counts for
  neither side yet. Escalation (督办) hands the owner a fresh step deadline but does not
  extend the event's limit, and rework (退回返工) spends the same limit.
- **rework rate** (返工率) = closed events that were sent back at least once
  (``rework_count > 0``) / closed.
- **extension rate** (延期率) is 0: the workflow has no extension (延期) action yet, so no
  event can have been granted one. ``Figures.notes`` says so in every report.
- **open by severity** — events in the subtree open *now* (any ``first_seen``).
- **mean time to dispatch** — from ``reported_at`` to the first ``dispatch`` in the
  event's history (the workflow's ``dispatched_at`` when it has no history rows), over
  received events dispatched before ``until``. A send-back to a new assignee re-enters
  ``dispatched`` but is not a dispatch.
- **mean time to close** — from ``reported_at`` to the end (closed or false alarm), over
  the closed events.

Times on the workflow are the server's clock; ``first_seen`` is the device time of the
first hit and only places an event in the period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import psycopg

from alerts.deadlines import DEFAULT_POLICY, DeadlinePolicy, require_aware
from alerts.workflow_enums import DUE_STEP, Severity
from devices.registry_sql import fetch

# Mainland China keeps one offset all year: report days and CLI dates are in it.
CHINA_TZ = timezone(timedelta(hours=8), "CST")

EXTENSIONS_NOTE = (
    "extension rate (延期率) is 0 because the workflow has no extension (延期) action yet: "
    "no event can have been granted one"
)

# --- SQL vocabulary on `grid_events e`, shared with alerts.safety_index -------------------

REPORTED_SQL = "(e.workflow->>'reported_at')::timestamptz"
# When the event ended (closed or false alarm); NULL while it is open.
ENDED_SQL = (
    "COALESCE((e.workflow->>'closed_at')::timestamptz, "
    "(e.workflow->>'false_alarm_at')::timestamptz)"
)
# The event's whole time limit for its severity; parameters from ``limit_params``.
ALLOWED_SQL = (
    "CASE e.severity "
    + " ".join(f"WHEN '{s.value}' THEN %(allowed_{s.value})s::interval" for s in Severity)
    + " END"
)
# `node = ANY(ancestors)`, written as containment so that the GIN index on ancestors serves it.
SUBTREE_SQL = "(e.grid_code = %(node)s OR e.ancestors @> ARRAY[%(node)s]::text[])"
ANY_OF_NODES_SQL = "(e.grid_code = ANY(%(nodes)s) OR e.ancestors && %(nodes)s::text[])"
TERMINAL_SQL = "('closed', 'false_alarm')"

Scope = Literal["node", "nodes", "all"]
_SCOPES: Mapping[Scope, str] = {"node": SUBTREE_SQL, "nodes": ANY_OF_NODES_SQL, "all": "true"}


def time_limit(policy: DeadlinePolicy, severity: Severity) -> timedelta:
    """The whole time limit of an event: the sum of its steps' limits for ``severity``."""
    return sum((policy.duration(step, severity) for step in DUE_STEP.values()), timedelta())


def limit_params(policy: DeadlinePolicy) -> dict[str, timedelta]:
    """The parameters ``ALLOWED_SQL`` names."""
    return {f"allowed_{s.value}": time_limit(policy, s) for s in Severity}


def period_events(scope: Scope) -> str:
    """A CTE ``ev``: the events first seen in ``[%(since)s, %(until)s)`` — in the subtree of
    ``%(node)s``, of any of ``%(nodes)s``, or all — as they stood at ``%(until)s``.

    Columns: id, grid_code, ancestors, category, severity, reported, ended (NULL if open
    at until), dispatched (first dispatch, NULL if none before until), and the booleans
    on_time, due and reworked of the module docstring (NULL counts as false). Also takes
    ``%(as_of)s`` (``min(until, now)``) and ``limit_params``.
    """
    return f"""ev AS (
    SELECT e.id, e.grid_code, e.ancestors, e.category, e.severity, w.reported,
           CASE WHEN w.ended < %(until)s THEN w.ended END AS ended,
           CASE WHEN w.dispatched < %(until)s THEN w.dispatched END AS dispatched,
           w.ended < %(until)s AND w.ended <= w.reported + w.allowed AS on_time,
           w.ended < %(until)s OR w.reported + w.allowed < %(as_of)s AS due,
           w.ended < %(until)s
               AND COALESCE((e.workflow->>'rework_count')::int, 0) > 0 AS reworked
    FROM grid_events e
    CROSS JOIN LATERAL (
        SELECT {REPORTED_SQL} AS reported, {ENDED_SQL} AS ended, {ALLOWED_SQL} AS allowed,
               COALESCE(
                   (SELECT min(h.at) FROM grid_event_history h
                     WHERE h.event_id = e.id AND h.action = 'dispatch'),
                   (e.workflow->>'dispatched_at')::timestamptz
               ) AS dispatched
    ) w
    WHERE e.first_seen >= %(since)s AND e.first_seen < %(until)s AND {_SCOPES[scope]}
)"""


# One row of counts over `ev` (also over a LEFT JOIN that leaves ev's columns NULL).
_TALLY_SQL = """count(ev.id), count(ev.ended),
    count(*) FILTER (WHERE ev.on_time), count(*) FILTER (WHERE ev.due),
    count(*) FILTER (WHERE ev.reworked),
    avg(extract(epoch FROM ev.dispatched - ev.reported))::float8,
    avg(extract(epoch FROM ev.ended - ev.reported))::float8"""

_TOTALS = f"WITH {period_events('node')} SELECT {_TALLY_SQL} FROM ev"
_BY_CATEGORY = (
    f"WITH {period_events('node')} "
    "SELECT ev.category, count(*) FROM ev GROUP BY 1 ORDER BY 2 DESC, 1"
)
_CHILDREN = f"""WITH {period_events("node")}
SELECT c.code, c.name, c.level, {_TALLY_SQL}
FROM grids c
LEFT JOIN ev ON ev.grid_code = c.code OR c.code = ANY(ev.ancestors)
WHERE c.parent = %(node)s
GROUP BY c.code, c.name, c.level
ORDER BY c.code"""
_OPEN_NOW = f"""SELECT e.severity, count(*) FROM grid_events e
WHERE e.state NOT IN {TERMINAL_SQL} AND {SUBTREE_SQL}
GROUP BY 1"""


class UnknownNode(LookupError):
    """The code names no grid of the registry."""

    def __init__(self, code: str) -> None:
        super().__init__(f"no grid {code!r} in the registry")
        self.code = code


@dataclass(frozen=True, slots=True)
class Node:
    """A node of the grid tree: county, town, village or basic grid."""

    code: str
    name: str
    level: str


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """The period's counts for one node; rates are None when their base is 0."""

    received: int
    closed: int
    closed_on_time: int
    on_time_base: int  # closed, plus open and past their time limit
    reworked: int
    mean_time_to_dispatch_s: float | None
    mean_time_to_close_s: float | None

    @property
    def close_rate(self) -> float | None:
        return _ratio(self.closed, self.received)

    @property
    def on_time_close_rate(self) -> float | None:
        return _ratio(self.closed_on_time, self.on_time_base)

    @property
    def rework_rate(self) -> float | None:
        return _ratio(self.reworked, self.closed)

    def tally_json(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "closed": self.closed,
            "close_rate": self.close_rate,
            "closed_on_time": self.closed_on_time,
            "on_time_base": self.on_time_base,
            "on_time_close_rate": self.on_time_close_rate,
            "reworked": self.reworked,
            "rework_rate": self.rework_rate,
            "mean_time_to_dispatch_s": self.mean_time_to_dispatch_s,
            "mean_time_to_close_s": self.mean_time_to_close_s,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildFigures(Tally):
    """The counts of one direct child of the node asked for."""

    node: Node

    def to_json(self) -> dict[str, Any]:
        node = {"code": self.node.code, "name": self.node.name, "level": self.node.level}
        return {**node, **self.tally_json()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures(Tally):
    """A node's figures for ``[since, until)`` (module docstring: what each one counts)."""

    node: Node
    since: datetime
    until: datetime
    as_of: datetime  # min(until, now): when "open and past its limit" was judged
    open_by_severity: Mapping[str, int]  # now; red, orange, yellow, blue, all present
    by_category: Mapping[str, int]  # received events per category, most first
    children: tuple[ChildFigures, ...]
    time_limits: Mapping[str, timedelta]  # the on-time limit per severity
    extension_rate: float = 0.0
    notes: tuple[str, ...] = (EXTENSIONS_NOTE,)

    @property
    def open_now(self) -> int:
        return sum(self.open_by_severity.values())

    def to_json(self) -> dict[str, Any]:
        """A plain JSON document (what ``gridwatch report --json`` and the API give)."""
        return {
            "node": {"code": self.node.code, "name": self.node.name, "level": self.node.level},
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "as_of": self.as_of.isoformat(),
            **self.tally_json(),
            "extension_rate": self.extension_rate,
            "open_now": self.open_now,
            "open_by_severity": dict(self.open_by_severity),
            "by_category": dict(self.by_category),
            "time_limits_s": {k: v.total_seconds() for k, v in self.time_limits.items()},
            "children": [c.to_json() for c in self.children],
            "notes": list(self.notes),
        }


def _tally(row: Sequence[Any]) -> dict[str, Any]:
    received, closed, on_time, due, reworked, dispatch_s, close_s = row
    return {
        "received": received,
        "closed": closed,
        "closed_on_time": on_time,
        "on_time_base": due,
        "reworked": reworked,
        "mean_time_to_dispatch_s": dispatch_s,
        "mean_time_to_close_s": close_s,
    }


async def get_node(conn: psycopg.AsyncConnection[Any], code: str) -> Node:
    """The grid ``code``; raises ``UnknownNode`` when the registry has none."""
    rows = await fetch(conn, "SELECT code, name, level FROM grids WHERE code = %(c)s", {"c": code})
    if not rows:
        raise UnknownNode(code)
    return Node(*rows[0])


async def top_nodes(conn: psycopg.AsyncConnection[Any]) -> list[Node]:
    """The roots of the grid tree (usually one county)."""
    rows = await fetch(
        conn, "SELECT code, name, level FROM grids WHERE parent IS NULL ORDER BY code", {}
    )
    return [Node(*r) for r in rows]


async def figures(
    conn: psycopg.AsyncConnection[Any],
    *,
    node: str,
    since: datetime,
    until: datetime,
    policy: DeadlinePolicy | None = None,
    now: datetime | None = None,
) -> Figures:
    """The figures of ``node`` and its subtree for events first seen in ``[since, until)``.

    ``policy`` gives the time limits behind the on-time rate (default: the workflow's
    defaults); ``now`` (default: the clock) bounds when an open event is judged late.
    Raises ``UnknownNode`` for a code the registry does not hold, ``ValueError`` for naive
    times or an empty period.
    """
    for name, moment in (("since", since), ("until", until)):
        require_aware(moment, name)
    if until <= since:
        raise ValueError(f"the period is empty: until ({until}) is not after since ({since})")
    now = datetime.now(UTC) if now is None else now
    require_aware(now)
    policy = policy or DEFAULT_POLICY
    found = await get_node(conn, node)
    as_of = min(until, now)
    params: dict[str, object] = {
        "node": node,
        "since": since,
        "until": until,
        "as_of": as_of,
        **limit_params(policy),
    }
    (totals,) = await fetch(conn, _TOTALS, params)
    by_category = {category: n for category, n in await fetch(conn, _BY_CATEGORY, params)}
    children = tuple(
        ChildFigures(node=Node(code, name, level), **_tally(rest))
        for code, name, level, *rest in await fetch(conn, _CHILDREN, params)
    )
    open_counts = dict(await fetch(conn, _OPEN_NOW, {"node": node}))
    return Figures(
        node=found,
        since=since,
        until=until,
        as_of=as_of,
        **_tally(totals),
        open_by_severity={s.value: open_counts.get(s.value, 0) for s in Severity},
        by_category=by_category,
        children=children,
        time_limits={s.value: time_limit(policy, s) for s in Severity},
    )
