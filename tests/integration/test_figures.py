"""Figures and the safety index against a real PostgreSQL, on events whose workflow JSON and
history come from the real state machine.

The tree: county C → towns T1, T2 (empty) → villages V1, V2 under T1 → basic grids G1, G2
in V1 and G3 in V2. The report period is October 2026 (China time). Every expected number
below is worked out by hand from the event table in ``EVENTS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import msgspec
import orjson
import psycopg
import pytest
import typer
from typer.testing import CliRunner

from alerts.figures import CHINA_TZ, UnknownNode, figures
from alerts.roles import SYSTEM_ACTOR, Actor, Assignee, Role
from alerts.safety_index import (
    DailyScore,
    compute_daily,
    index_now,
    indicators_at,
    series,
)
from alerts.workflow import apply, open_event
from alerts.workflow_enums import Action, Severity
from alerts.workflow_state import encode_state
from gridwatch.cli.report_cmd import report

pytestmark = pytest.mark.integration

C, T1, T2 = "440981", "440981001", "440981002"
V1, V2 = "440981001001", "440981001002"
G1, G2, G3 = "440981001001-01", "440981001001-02", "440981001002-01"
GRIDS = {  # code: (name, level, parent)
    C: ("台山县", "county", None),
    T1: ("城关镇", "town", C),
    T2: ("北陡镇", "town", C),
    V1: ("东村", "village", T1),
    V2: ("西村", "village", T1),
    G1: ("东村一网格", "grid", V1),
    G2: ("东村二网格", "grid", V1),
    G3: ("西村一网格", "grid", V2),
}

SINCE = datetime(2026, 10, 1, tzinfo=CHINA_TZ)
UNTIL = datetime(2026, 11, 1, tzinfo=CHINA_TZ)
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=CHINA_TZ)
MIN, HOUR = timedelta(minutes=1), timedelta(hours=1)

SYS = SYSTEM_ACTOR
GM1, GM2 = Actor("g1", Role.GRID_MEMBER), Actor("g2", Role.GRID_MEMBER)
LEAD = Actor("v1", Role.VILLAGE_LEAD)
TOWN = Actor("t1", Role.TOWN_CENTRE)
M_G1, M_G2 = Assignee("g1", Role.GRID_MEMBER), Assignee("g2", Role.GRID_MEMBER)


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=CHINA_TZ)


@dataclass
class Ev:
    id: str
    grid: str
    severity: Severity
    category: str
    type: str
    reported: datetime
    steps: list[tuple[timedelta, Action, Actor, dict[str, Any]]] = field(default_factory=list)
    devices: tuple[str, ...] = ()


EVENTS = [
    # Closed in 80 min, red limit 4 h 20 min: on time. Dispatched after 5 min.
    Ev("E1", G1, Severity.RED, "fire", "smoke_alarm", at(10, 2, 8), [
        (5 * MIN, Action.DISPATCH, SYS, {"assignee": M_G1}),
        (8 * MIN, Action.ACCEPT, GM1, {}),
        (40 * MIN, Action.RESOLVE, GM1, {"reason": "burnt food, sensor cleaned"}),
        (60 * MIN, Action.VERIFY, LEAD, {}),
        (80 * MIN, Action.CLOSE, LEAD, {}),
    ]),
    # Sent back to another member (rework, re-enters dispatched), escalated when the close
    # step ran late, closed by the town after 9 h > 8 h: late. First dispatch after 20 min.
    Ev("E2", G1, Severity.ORANGE, "electrical", "residual_current_high", at(10, 3, 8), [
        (20 * MIN, Action.DISPATCH, LEAD, {"assignee": M_G1}),
        (30 * MIN, Action.ACCEPT, GM1, {}),
        (2 * HOUR, Action.RESOLVE, GM1, {"reason": "breaker reset"}),
        (130 * MIN, Action.SEND_BACK, LEAD, {"reason": "no photo", "assignee": M_G2}),
        (140 * MIN, Action.ACCEPT, GM2, {}),
        (3 * HOUR, Action.RESOLVE, GM2, {"reason": "leaking socket replaced, photo"}),
        (4 * HOUR, Action.VERIFY, LEAD, {}),
        (5 * HOUR, Action.ESCALATE, SYS, {"reason": "督办: close was due"}),
        (9 * HOUR, Action.CLOSE, TOWN, {}),
    ]),
    # A false alarm after 15 min, never dispatched: closed, on time.
    Ev("E3", G2, Severity.YELLOW, "water", "pressure_low", at(10, 4, 8), [
        (15 * MIN, Action.MARK_FALSE_ALARM, LEAD, {"reason": "valve test by the water company"}),
    ]),
    # Dispatched after 10 min and still open: past its 8 h limit by the end of October.
    Ev("E4", G2, Severity.BLUE, "device", "device_offline", at(10, 5, 8), [
        (10 * MIN, Action.DISPATCH, SYS, {"assignee": M_G2}),
        (40 * MIN, Action.ESCALATE, SYS, {"reason": "督办: accept was due"}),
    ], ("wp-4",)),
    # Opened an hour before the period ends: open, not yet due.
    Ev("E5", G3, Severity.RED, "video", "camera_fault", at(10, 31, 23), [], ("cam-3",)),
    # Opened before the period, still open: only in "open now".
    Ev("E6", G1, Severity.ORANGE, "fire", "smoke_alarm", at(9, 20, 8), [
        (10 * MIN, Action.DISPATCH, SYS, {"assignee": M_G1}),
    ]),
    # After the period.
    Ev("E7", G1, Severity.YELLOW, "fire", "smoke_alarm", at(11, 5, 8), [
        (5 * MIN, Action.MARK_FALSE_ALARM, LEAD, {"reason": "cooking smoke"}),
    ]),
    # Received in the period, closed within its limit but after the period ends (02:00).
    Ev("E8", G2, Severity.ORANGE, "fire", "smoke_alarm", at(10, 31, 20), [
        (10 * MIN, Action.DISPATCH, SYS, {"assignee": M_G2}),
        (20 * MIN, Action.ACCEPT, GM2, {}),
        (3 * HOUR, Action.RESOLVE, GM2, {"reason": "extinguished, wiring isolated"}),
        (4 * HOUR, Action.VERIFY, LEAD, {}),
        (6 * HOUR, Action.CLOSE, LEAD, {}),
    ]),
]  # fmt: skip

# (device_id, type, grid, status, last_seen); None status = never said; no last_seen = no row
DEVICES = [
    ("sd-1", "smoke_detector", G1, "online", at(10, 31, 20)),
    ("sd-2", "smoke_detector", G1, "offline", at(10, 31, 23)),
    ("cam-1", "camera", G1, None, at(10, 31, 23, 30)),
    ("wp-4", "water_pressure_sensor", G2, "online", at(10, 29, 8)),  # silent for 2 days
    ("ef-5", "electrical_fire_monitor", G2, None, None),  # never heard from
    ("cam-3", "camera", G3, "online", at(10, 31, 23, 59)),  # online, but E5 says faulty
]


def ancestors(code: str) -> list[str]:
    path: list[str] = []
    parent = GRIDS[code][2]
    while parent is not None:
        path.insert(0, parent)
        parent = GRIDS[parent][2]
    return path


def insert_event(conn: psycopg.Connection, ev: Ev) -> None:
    ws, entry = open_event(ev.severity, ev.category, ev.type, ev.reported)
    history = [entry]
    for offset, action, actor, options in ev.steps:
        ws, entry = apply(ws, action, actor, ev.reported + offset, **options)
        history.append(entry)
    conn.execute(
        "INSERT INTO grid_events (id, grid_code, ancestors, category, type, severity, state,"
        " device_ids, first_seen, last_seen, workflow)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
        (
            ev.id, ev.grid, ancestors(ev.grid), ev.category, ev.type, ev.severity.value,
            ws.state.value, list(ev.devices), ev.reported, ev.reported,
            encode_state(ws).decode(),
        ),
    )  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO grid_event_history (event_id, at, action, actor_id, entry)"
            " VALUES (%s, %s, %s, %s, %s::jsonb)",
            [
                (ev.id, h.at, h.action.value, h.actor_id, msgspec.json.encode(h).decode())
                for h in history
            ],
        )


@pytest.fixture(scope="module")
def db(database: str) -> str:
    with psycopg.connect(database) as conn:
        for code, (name, level, parent) in GRIDS.items():
            conn.execute(
                "INSERT INTO grids (code, name, level, parent, ancestors)"
                " VALUES (%s, %s, %s, %s, %s)",
                (code, name, level, parent, ancestors(code)),
            )
        for device_id, type_, grid, status, seen in DEVICES:
            conn.execute(
                "INSERT INTO devices (device_id, type, grid_code) VALUES (%s, %s, %s)",
                (device_id, type_, grid),
            )
            if seen is not None:
                conn.execute(
                    "INSERT INTO device_state (device_id, last_seen, status) VALUES (%s, %s, %s)",
                    (device_id, seen, status),
                )
        for ev in EVENTS:
            insert_event(conn, ev)
    return database


async def connect(conninfo: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(conninfo)


# --- figures ------------------------------------------------------------------------------


async def test_town_figures_over_the_period(db: str) -> None:
    async with await connect(db) as conn:
        f = await figures(conn, node=T1, since=SINCE, until=UNTIL, now=NOW)
    assert (f.node.code, f.node.name, f.node.level) == (T1, "城关镇", "town")
    assert f.as_of == UNTIL
    # E1 E2 E3 E4 E5 E8 received; E1 E2 E3 closed by the end of October.
    assert (f.received, f.closed, f.close_rate) == (6, 3, 0.5)
    # On time: E1, E3. Due: the three closed and E4 (open past 8 h); E5 and E8 not yet due.
    assert (f.closed_on_time, f.on_time_base, f.on_time_close_rate) == (2, 4, 0.5)
    assert f.reworked == 1
    assert f.rework_rate == pytest.approx(1 / 3)
    assert f.extension_rate == 0.0
    assert any("延期" in note for note in f.notes)
    # First dispatch: E1 5 min, E2 20 min (not the send-back), E4 10 min, E8 10 min.
    assert f.mean_time_to_dispatch_s == pytest.approx((300 + 1200 + 600 + 600) / 4)
    # E1 80 min, E2 9 h, E3 15 min.
    assert f.mean_time_to_close_s == pytest.approx((4800 + 32400 + 900) / 3)
    # Open now, whenever received: E5 red, E6 orange, E4 blue (E8 has closed since).
    assert f.open_by_severity == {"red": 1, "orange": 1, "yellow": 0, "blue": 1}
    assert f.open_now == 3
    assert f.by_category == {"fire": 2, "device": 1, "electrical": 1, "video": 1, "water": 1}
    assert list(f.by_category) == ["fire", "device", "electrical", "video", "water"]
    assert f.time_limits["red"] == timedelta(hours=4, minutes=20)
    assert f.time_limits["blue"] == timedelta(hours=8)

    v1, v2 = f.children
    assert (v1.node.code, v1.node.level, v2.node.code) == (V1, "village", V2)
    assert (v1.received, v1.closed, v1.close_rate) == (5, 3, 0.6)
    assert (v1.closed_on_time, v1.on_time_base, v1.reworked) == (2, 4, 1)
    assert (v2.received, v2.closed, v2.close_rate, v2.on_time_close_rate) == (1, 0, 0.0, None)
    assert (v2.mean_time_to_dispatch_s, v2.mean_time_to_close_s) == (None, None)


async def test_village_sees_its_grids_and_county_its_towns(db: str) -> None:
    async with await connect(db) as conn:
        village = await figures(conn, node=V1, since=SINCE, until=UNTIL, now=NOW)
        county = await figures(conn, node=C, since=SINCE, until=UNTIL, now=NOW)
    g1, g2 = village.children
    assert (g1.node.code, g1.received, g1.closed, g1.close_rate) == (G1, 2, 2, 1.0)
    assert (g1.closed_on_time, g1.on_time_base, g1.rework_rate) == (1, 2, 0.5)
    assert g1.mean_time_to_dispatch_s == pytest.approx(750)
    assert g1.mean_time_to_close_s == pytest.approx((4800 + 32400) / 2)
    # G2: E3 closed on time, E4 due and open, E8 open and not due.
    assert (g2.node.code, g2.received, g2.closed) == (G2, 3, 1)
    assert g2.close_rate == pytest.approx(1 / 3)
    assert (g2.closed_on_time, g2.on_time_base) == (1, 2)
    assert g2.mean_time_to_dispatch_s == pytest.approx(600)

    assert (county.received, county.closed, county.on_time_close_rate) == (6, 3, 0.5)
    t1, t2 = county.children
    assert (t1.node.code, t1.received, t1.closed) == (T1, 6, 3)
    assert (t2.node.code, t2.received, t2.closed, t2.close_rate) == (T2, 0, 0, None)


async def test_basic_grid_has_no_children(db: str) -> None:
    async with await connect(db) as conn:
        g1 = await figures(conn, node=G1, since=SINCE, until=UNTIL, now=NOW)
        g3 = await figures(conn, node=G3, since=SINCE, until=UNTIL, now=NOW)
    assert g1.children == ()
    assert (g1.received, g1.closed) == (2, 2)
    assert g1.open_by_severity == {"red": 0, "orange": 1, "yellow": 0, "blue": 0}  # E6
    assert (g3.received, g3.closed, g3.close_rate, g3.on_time_close_rate) == (1, 0, 0.0, None)
    assert g3.open_by_severity["red"] == 1
    assert g3.by_category == {"video": 1}


async def test_counts_are_as_events_stood_at_the_end_of_the_period(db: str) -> None:
    until = at(10, 3, 12)  # E2 is 4 h old: accepted back, not closed, not yet due
    async with await connect(db) as conn:
        f = await figures(conn, node=G1, since=SINCE, until=until, now=NOW)
    assert (f.received, f.closed, f.close_rate) == (2, 1, 0.5)
    assert (f.closed_on_time, f.on_time_base, f.on_time_close_rate) == (1, 1, 1.0)
    assert (f.reworked, f.rework_rate) == (0, 0.0)  # E2's rework is only counted once closed
    assert f.mean_time_to_dispatch_s == pytest.approx(750)
    assert f.mean_time_to_close_s == pytest.approx(4800)


async def test_an_open_event_is_late_only_once_its_limit_has_passed_by_now(db: str) -> None:
    since = at(10, 5, 0)
    async with await connect(db) as conn:
        early = await figures(conn, node=G2, since=since, until=UNTIL, now=at(10, 5, 12))
        later = await figures(conn, node=G2, since=since, until=UNTIL, now=NOW)
    assert early.as_of == at(10, 5, 12)
    assert (early.received, early.on_time_base, early.on_time_close_rate) == (2, 0, None)
    assert (later.received, later.on_time_base, later.on_time_close_rate) == (2, 1, 0.0)


async def test_bad_requests_are_refused(db: str) -> None:
    async with await connect(db) as conn:
        with pytest.raises(UnknownNode, match="440999"):
            await figures(conn, node="440999", since=SINCE, until=UNTIL)
        with pytest.raises(ValueError, match="timezone-aware"):
            await figures(conn, node=C, since=datetime(2026, 10, 1), until=UNTIL)
        with pytest.raises(ValueError, match="empty"):
            await figures(conn, node=C, since=UNTIL, until=SINCE)


# --- safety index -------------------------------------------------------------------------

# Judged at the end of 31 October (China time), with the default weights:
# G1: open orange E6 (−6); 2 of 3 devices online (−6.67); on time 1 of 2 (−10)
# G2: open orange E8 and blue E4 (−6.5); 0 of 2 online (−20); on time 1 of 2 (−10)
# G3: open red E5 (−15); its camera online but faulted by E5 (−10); nothing due
# V1: orange ×2, blue (−12.5); 2 of 5 online (−12); on time 2 of 4 (−10)
# T1: red, orange ×2, blue (−27.5); 3 of 6 online (−10); 2 of 4 (−10); 1 of 2 cameras (−5)
EXPECTED_OCT_31 = {
    G1: 100 - 6 - 20 / 3 - 10,
    G2: 100 - 6.5 - 20 - 10,
    G3: 100 - 15 - 10,
    V1: 100 - 12.5 - 12 - 10,
    V2: 100 - 15 - 10,
    T1: 100 - 27.5 - 10 - 10 - 5,
    T2: 100.0,
    C: 100 - 27.5 - 10 - 10 - 5,
}


async def stored(
    conn: psycopg.AsyncConnection, day: date
) -> dict[str, tuple[float, dict[str, Any]]]:
    cur = await conn.execute(
        "SELECT grid_code, score, indicators FROM safety_index_daily WHERE day = %s", (day,)
    )
    return {code: (score, indicators) for code, score, indicators in await cur.fetchall()}


async def test_compute_daily_scores_every_node_and_series_reads_it_back(db: str) -> None:
    day = date(2026, 10, 31)
    async with await connect(db) as conn:
        assert await compute_daily(conn, day, now=NOW) == len(GRIDS)
        assert await compute_daily(conn, day, now=NOW) == len(GRIDS)  # an upsert
        await conn.commit()
        rows = await stored(conn, day)
        assert {code: score for code, (score, _) in rows.items()} == pytest.approx(EXPECTED_OCT_31)
        g1 = rows[G1][1]
        assert g1["as_of"] == UNTIL.isoformat()
        assert (g1["open_orange"], g1["devices"], g1["devices_online"]) == (1, 3, 2)
        assert (g1["cameras"], g1["cameras_healthy"], g1["camera_health"]) == (1, 1, 1.0)
        assert (g1["closed_on_time"], g1["on_time_base"]) == (1, 2)
        assert g1["contributions"]["device_online_rate"] == pytest.approx(-20 / 3)
        assert rows[G3][1]["on_time_close_rate"] is None

        (point,) = await series(conn, G1, 30, until=day)
        assert isinstance(point, DailyScore)
        assert point.day == day
        assert point.score == pytest.approx(EXPECTED_OCT_31[G1])
        await compute_daily(conn, date(2026, 10, 30), now=NOW)
        days = [p.day for p in await series(conn, G1, 30, until=day)]
        assert days == [date(2026, 10, 30), day]
        assert [p.day for p in await series(conn, G1, 1, until=day)] == [day]
        assert await series(conn, G1, 30, until=date(2026, 9, 1)) == []


async def test_a_day_not_over_is_judged_now_and_a_future_day_is_refused(db: str) -> None:
    async with await connect(db) as conn:
        await compute_daily(conn, date(2026, 10, 5), now=at(10, 5, 12))
        rows = await stored(conn, date(2026, 10, 5))
        assert rows[G2][1]["as_of"] == at(10, 5, 12).isoformat()
        assert rows[G2][1]["open_blue"] == 1  # E4, dispatched and open at noon
        with pytest.raises(ValueError, match="not begun"):
            await compute_daily(conn, date(2026, 11, 11), now=NOW)
        await conn.rollback()


async def test_index_now_for_one_node_matches_the_all_nodes_pass(db: str) -> None:
    async with await connect(db) as conn:
        every = await indicators_at(conn, UNTIL)
        for code in (G1, G3, V1, T1, C):
            one = await index_now(conn, code, now=UNTIL)
            assert one.indicators == every[code], code
            assert one.score == pytest.approx(EXPECTED_OCT_31[code])
        assert (await index_now(conn, T2, now=UNTIL)).score == 100.0
        # 10 November: every device silent for over 24 h, the camera down; E6 still open;
        # in the 30 days before, only E7 (a false alarm in 5 min) is due, and on time.
        g1 = await index_now(conn, G1, now=NOW)
        assert (g1.indicators.devices_online, g1.indicators.cameras_healthy) == (0, 0)
        assert (g1.indicators.closed_on_time, g1.indicators.on_time_base) == (1, 1)
        assert g1.score == pytest.approx(100 - 6 - 20 - 10)
        with pytest.raises(UnknownNode):
            await index_now(conn, "440999")


# --- the command --------------------------------------------------------------------------


def test_report_command_prints_figures_children_and_index(db: str) -> None:
    app = typer.Typer()
    app.command()(report)
    runner = CliRunner()
    env = {"GRIDWATCH_DB_URL": db}
    args = ["--node", T1, "--since", "2026-10-01", "--until", "2026-10-31"]

    done = runner.invoke(app, [*args, "--json"], env=env)
    assert done.exit_code == 0, done.output
    doc = orjson.loads(done.stdout)
    figures_doc = doc["figures"]
    assert (figures_doc["received"], figures_doc["closed"], figures_doc["close_rate"]) == (
        6,
        3,
        0.5,
    )
    assert figures_doc["on_time_close_rate"] == 0.5
    assert figures_doc["open_by_severity"] == {"red": 1, "orange": 1, "yellow": 0, "blue": 1}
    assert [c["code"] for c in figures_doc["children"]] == [V1, V2]
    assert figures_doc["children"][0]["received"] == 5
    assert figures_doc["until"] == UNTIL.isoformat()
    assert 0 <= doc["safety_index"]["score"] <= 100
    assert set(doc["safety_index"]["contributions"]) >= {"open_red", "camera_health"}
    assert isinstance(doc["safety_index"]["series"], list)

    done = runner.invoke(app, args, env=env)
    assert done.exit_code == 0, done.output
    for text in ("城关镇", "办结率", "按期结案率", "50.00%", "东村", "西村", "平安指数", "daily"):
        assert text in done.stdout, text


def test_report_command_names_an_unknown_node(db: str) -> None:
    app = typer.Typer()
    app.command()(report)
    done = CliRunner().invoke(app, ["--node", "440999"], env={"GRIDWATCH_DB_URL": db})
    assert done.exit_code != 0
    assert "440999" in str(done.exception)
