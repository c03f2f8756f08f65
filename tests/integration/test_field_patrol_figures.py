"""Patrol figures against PostgreSQL: due, done, on time and overdue per grid and worker,
from tags in the registry and check-ins stored as their device events — in the figures
module, over ``GET /api/v1/figures`` and in ``gridwatch report``'s JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.patrol_figures import patrol_figures
from detectors.patrol_schedule import CHINA_TZ, Schedule
from gridwatch.cli.report_cmd import build
from tests.integration.field_world import G2, G3, V1, C, World, api_app, build_world, get_json

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
# the start of a China-time day three weeks ago: the report's window is its 7 days
BASE = datetime.now(CHINA_TZ).replace(hour=0, minute=0, second=0, microsecond=0) - 21 * DAY
UNTIL = BASE + 7 * DAY


def weekly_end() -> datetime:
    """The Monday 00:00 whose weekly period is due (12 h grace) within the window."""
    s = Schedule(7 * 86400.0, 12 * 3600.0)
    k = s.last_decided(UNTIL.timestamp())
    if s.deadline(k) >= UNTIL.timestamp():
        k -= 1
    return datetime.fromtimestamp(s.end(k), CHINA_TZ)


def at(day: int, hour: int, worker: str) -> tuple[datetime, str]:
    return BASE + day * DAY + timedelta(hours=hour), worker


# tag: (grid, created, profile, check-ins)
TAGS: dict[str, tuple[str, datetime, dict[str, Any], list[tuple[datetime, str]]]] = {
    "PT-D": (
        G2,
        BASE - DAY + timedelta(hours=15),
        {"patrol_interval": "P1D"},  # grace 2.4 h
        [
            at(-1, 10, "m2"),  # before the window: not counted, and the day is before duty
            at(0, 9, "m2"),  # day 0 on time
            # day 1 missed
            at(3, 1, "m9"),  # 01:00 on day 3 does day 2, late but in grace, by a colleague
            at(3, 10, "m2"),  # day 3
            # day 4 missed
            at(5, 8, "m2"),  # day 5
            at(5, 17, "m2"),  # an extra round on day 5: done, no period
            at(6, 23, "m2"),  # day 6: its deadline is after the window
        ],
    ),
    "PT-W": (
        G2,
        BASE - 14 * DAY,
        {"patrol_interval": "P7D", "detectors": {"patrol": {"grace": "PT12H"}}},
        [(weekly_end() + timedelta(hours=1), "m2")],  # Monday 01:00: in grace, on time
    ),
    "PT-X": (G3, BASE - 30 * DAY, {"patrol_interval": "P1D"}, []),  # nobody patrols
    "PT-NEW": (G3, UNTIL + DAY, {"patrol_interval": "P1D"}, []),  # registered after
}


@pytest.fixture(scope="module")
def world(database: str) -> World:
    extra = [
        (tag, "patrol_tag", grid, f"site-{tag}", 22.905, 113.315, profile)
        for tag, (grid, _, profile, _) in TAGS.items()
    ]
    made = build_world(database, extra)
    with psycopg.connect(database) as conn:
        for tag, (_, created, _, scans) in TAGS.items():
            conn.execute("UPDATE devices SET created_at = %s WHERE device_id = %s", (created, tag))
            for ts, worker in scans:
                conn.execute(
                    "INSERT INTO device_events (device_id, ts, event, detail, received_at)"
                    " VALUES (%s, %s, 'checkin', %s, %s)",
                    (tag, ts, Jsonb({"worker_id": worker}), ts),
                )
    return made


async def test_patrol_figures_count_due_done_on_time_and_overdue(world: World) -> None:
    async with await psycopg.AsyncConnection.connect(world.conninfo) as conn:
        v1 = await patrol_figures(conn, node=V1, since=BASE, until=UNTIL)
        county = await patrol_figures(conn, node=C, since=BASE, until=UNTIL)
        g3 = await patrol_figures(conn, node=G3, since=BASE, until=UNTIL)
    # PT-D: days 0–5 due (day 6's deadline is after the window), 1 and 4 missed;
    # PT-W: one week due, done in grace
    t = v1.total
    assert (t.tags, t.due, t.on_time, t.overdue, t.done) == (2, 7, 5, 2, 7)
    assert t.on_time_rate == pytest.approx(5 / 7)
    grid = v1.by_grid[G2]
    assert (grid.tags, grid.due, grid.on_time, grid.done) == (2, 7, 5, 7)
    m2, m9 = v1.by_worker["m2"], v1.by_worker["m9"]
    # m2 did four periods on time and answers for the two missed ones (its grid's worker)
    assert (m2.due, m2.on_time, m2.overdue, m2.done) == (6, 4, 2, 6)
    assert m2.name == "陈网格员" and m2.grids == {G2}
    assert (m9.due, m9.on_time, m9.done) == (1, 1, 1)
    # PT-X: seven days due in the window (the day before it included: its deadline is
    # 02:24 on the first day), none done, all charged to m3; PT-NEW is not due yet
    x = g3.total
    assert (x.tags, x.due, x.on_time, x.done) == (2, 7, 0, 0)
    assert g3.by_worker["m3"].overdue == 7
    assert county.total.due == 14 and county.total.on_time == 5


async def test_patrol_figures_in_the_api_and_the_report(world: World, tmp_path: Path) -> None:
    since, until = BASE.isoformat(), UNTIL.isoformat()
    async with api_app(world.conninfo, tmp_path) as base, aiohttp.ClientSession() as session:
        status, body = await get_json(
            session, base + "/api/v1/figures", world.tokens["town1"], node=V1, since=since,
            until=until,
        )  # fmt: skip
        assert status == 200, body
        patrols = body["patrols"]
        assert patrols["node"]["code"] == V1
        assert (patrols["due"], patrols["on_time"], patrols["overdue"]) == (7, 5, 2)
        workers = {w["worker_id"]: w for w in patrols["by_worker"]}
        assert workers["m2"]["overdue"] == 2 and workers["m9"]["on_time"] == 1
        # a grid member sees its own grid only
        status, _ = await get_json(session, base + "/api/v1/figures", world.tokens["m1"], node=G2)
        assert status == 403
    async with await psycopg.AsyncConnection.connect(world.conninfo) as conn:
        report = await build(conn, G3, BASE, UNTIL, datetime.now(UTC))
    out = report.to_json()["patrols"]
    assert out["due"] == 7 and out["overdue"] == 7 and out["by_grid"][0]["code"] == G3
