"""The HTTP API against gridwatch running in-process on the session's real mosquitto and
PostgreSQL: tokens and scope, workflow actions, and cursor pagination.

The tree: county C → towns T1, T2 → villages V1 (in T1), V2 (in T2) → basic grids G1, G2
(in V1) and G3 (in V2). Events are made by the real correlator from device alarms and
stored with the storage functions the alert stage uses; tokens are made with
``storage.tokens``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.correlation import DeviceContext, correlate
from alerts.event import Location
from alerts.roles import Assignee, Role
from detectors.base import Hit, condition_key
from storage import tokens
from storage.events import append_history, log_change, save_event
from tests.integration.conftest import make_settings, running_service

pytestmark = pytest.mark.integration

C, T1, T2 = "440999", "440999001", "440999002"
V1, V2 = "440999001001", "440999002001"
G1, G2, G3 = "440999001001-01", "440999001001-02", "440999002001-01"
GRIDS = {  # code: (name, level, parent, members)
    C: ("示范县", "county", None, []),
    T1: ("城关镇", "town", C, [("t1", "城关镇综治中心", "town_centre")]),
    T2: ("北陡镇", "town", C, [("t2", "北陡镇综治中心", "town_centre")]),
    V1: ("东村", "village", T1, [("v1", "李村长", "village_lead")]),
    V2: ("西村", "village", T2, [("v2", "王村长", "village_lead")]),
    G1: ("东村一网格", "grid", V1, [("m1", "张网格员", "grid_member")]),
    G2: ("东村二网格", "grid", V1, [("m2", "陈网格员", "grid_member")]),
    G3: ("西村一网格", "grid", V2, [("m3", "赵网格员", "grid_member")]),
}
# (device_id, type, grid, site, rtsp_url)
DEVICES = [
    ("sd-g1-1", "smoke_detector", G1, "building-1", None),
    ("sd-g2-1", "smoke_detector", G2, "building-2", None),
    ("cam-g3-1", "camera", G3, "square-3", "rtsp://admin:s3cret@10.0.0.9:554/live"),
    ("sd-g3-1", "smoke_detector", G3, "building-3", None),
]
# Events per basic grid; some share their first_seen, to exercise the cursor's tie-break.
EVENTS_PER_GRID = {G1: 9, G2: 4, G3: 7}
TOKENS = {  # name: (role, scope, member)
    "admin": ("admin", "*", None),
    "town1": ("town_centre", T1, None),
    "county_viewer": ("viewer", C, None),
    "lead_v1": ("village_lead", V1, "v1"),
    "member_m1": ("grid_member", G1, "m1"),
    "revoked": ("county_centre", C, None),
}


def ancestors(code: str) -> tuple[str, ...]:
    path: list[str] = []
    parent = GRIDS[code][2]
    while parent is not None:
        path.insert(0, parent)
        parent = GRIDS[parent][2]
    return tuple(path)


def members(code: str) -> tuple[Assignee, ...]:
    return tuple(Assignee(i, Role(r)) for i, _, r in GRIDS[code][3] if r != "town_centre")


@dataclass
class World:
    conninfo: str
    tokens: dict[str, str] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)  # event id → basic grid


async def make_events(conn: psycopg.AsyncConnection, t0: float) -> dict[str, str]:
    made: dict[str, str] = {}
    n = 0
    for grid, count in EVENTS_PER_GRID.items():
        for i in range(count):
            n += 1
            device = DeviceContext(
                device_id=f"sd-{n}",
                site=f"site-{n}",
                grid_code=grid,
                ancestors=ancestors(grid),
                location=Location(lat=22.25, lon=112.79, address=f"{GRIDS[grid][0]} {i}号"),
                members=members(grid),
            )
            ts = t0 + 60 * (n // 3)  # three events a minute: equal first_seen
            hit = Hit(
                device_id=device.device_id, detector="device_events", rule="alarm",
                type="smoke_alarm", category="fire", severity="red", phase="raised", ts=ts,
                condition_key=condition_key(device.device_id, "device_events", "alarm"),
            )  # fmt: skip
            (change,) = correlate(hit, device, {}, datetime.now(UTC), entropy=secrets.randbits(80))
            await save_event(conn, change.event, new=True)
            await append_history(conn, change.event.id, change.history)
            await log_change(conn, change.event, "opened")
            made[change.event.id] = grid
    return made


@pytest.fixture(scope="module")
def world(database: str) -> World:
    with psycopg.connect(database) as conn:
        for code, (name, level, parent, people) in GRIDS.items():
            people_json = [
                {"id": i, "name": n, "role": r, "phone": "0750-0000"} for i, n, r in people
            ]
            conn.execute(
                "INSERT INTO grids (code, name, level, parent, ancestors, members)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (code, name, level, parent, list(ancestors(code)), Jsonb(people_json)),
            )
        square = [
            [112.78, 22.24],
            [112.80, 22.24],
            [112.80, 22.26],
            [112.78, 22.26],
            [112.78, 22.24],
        ]
        conn.execute(
            "UPDATE grids SET geometry = %s WHERE code = %s",
            (Jsonb({"type": "Polygon", "coordinates": [square]}), G1),
        )
        for device_id, type_, grid, site, url in DEVICES:
            conn.execute(
                "INSERT INTO devices (device_id, type, grid_code, site, rtsp_url)"
                " VALUES (%s, %s, %s, %s, %s)",
                (device_id, type_, grid, site, url),
            )
        conn.execute(
            "INSERT INTO device_state (device_id, last_seen, status, last_values, messages)"
            " VALUES ('sd-g1-1', now(), 'online', '{\"battery_pct\": 90}', 12)"
        )

    async def setup() -> World:
        made = World(database)
        async with await psycopg.AsyncConnection.connect(database) as conn:
            made.events = await make_events(conn, time.time() - 86400)
            for name, (role, scope, member) in TOKENS.items():
                issued = await tokens.create_token(
                    conn, name=name, role=role, scope=scope, member_id=member
                )
                made.tokens[name] = issued.text
            await tokens.revoke_token(conn, tokens.parse_token(made.tokens["revoked"]) or "")
            await conn.commit()
        return made

    return asyncio.run(setup())


class Api:
    """An HTTP client of the running service that speaks JSON."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def call(
        self, method: str, path: str, token: str | None, *, params: Any = None, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.base + path, headers=headers, params=params, json=body
        ) as response:
            data = await response.json() if response.content_type == "application/json" else None
            return response.status, data

    async def get(self, path: str, token: str | None, **params: Any) -> tuple[int, Any]:
        return await self.call("GET", path, token, params=params or None)

    async def act(self, event_id: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await self.call("POST", f"/api/v1/events/{event_id}/actions", token, body=body)

    async def all_events(self, token: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            status, page = await self.get("/api/v1/events", token, **query)
            assert status == 200, page
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items


@pytest.fixture
async def api(mosquitto_broker: Any, world: World, data_dir: Path) -> AsyncIterator[Api]:
    settings = make_settings(mosquitto_broker.url, world.conninfo, data_dir)
    async with running_service(settings) as running, aiohttp.ClientSession() as session:
        yield Api(running.service.http_url, session)


async def event_row(conninfo: str, event_id: str) -> tuple[int, str, int, int]:
    """(version, state, history rows, change-log rows) of an event."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(
            "SELECT version, state,"
            " (SELECT count(*) FROM grid_event_history WHERE event_id = e.id),"
            " (SELECT count(*) FROM event_log WHERE event_id = e.id)"
            " FROM grid_events e WHERE id = %s",
            (event_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        return row


async def audit_rows(conninfo: str, event_id: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(
            "SELECT token_id, actor, action, outcome, status, detail FROM audit_log"
            " WHERE target = %s ORDER BY id",
            (event_id,),
        )
        return await cur.fetchall()


def in_grid(world: World, *grids: str) -> list[str]:
    return sorted(e for e, g in world.events.items() if g in grids)


def token_id(text: str) -> str:
    found = tokens.parse_token(text)
    assert found is not None
    return found


# --- authentication ---------------------------------------------------------------------------


async def test_every_endpoint_but_health_needs_a_valid_token(api: Api, world: World) -> None:
    some_event = next(iter(world.events))
    paths = [
        "/api/v1/events", f"/api/v1/events/{some_event}", "/api/v1/grids", f"/api/v1/grids/{C}",
        "/api/v1/devices", "/api/v1/devices/sd-g1-1", "/api/v1/figures", "/api/v1/openapi.json",
    ]  # fmt: skip
    forged = "gw_" + token_id(world.tokens["admin"]) + "_" + "A" * 43  # a real id, wrong secret
    for token in (None, "not-a-token", forged, world.tokens["revoked"]):
        for path in paths:
            status, body = await api.get(path, token)
            assert status == 401, (token, path)
            assert body["error"] == "unauthorized"
        status, _ = await api.act(some_event, token or "", {"action": "comment", "reason": "x"})
        assert status == 401
    status, body = await api.get("/healthz", None)
    assert status == 200 and body["status"] == "ok"
    for path in paths:
        status, _ = await api.get(path, world.tokens["admin"])
        assert status == 200, path


# --- scope --------------------------------------------------------------------------------------


async def test_a_town_token_sees_its_subtree_only(api: Api, world: World) -> None:
    town = world.tokens["town1"]
    seen = await api.all_events(town, limit=4)
    assert sorted(e["id"] for e in seen) == in_grid(world, G1, G2)
    assert all(T1 in e["ancestors"] for e in seen)

    elsewhere = in_grid(world, G3)[0]
    status, body = await api.get(f"/api/v1/events/{elsewhere}", town)
    assert (status, body["error"]) == (404, "not_found")  # as if it did not exist
    status, missing = await api.get("/api/v1/events/GE-NO-SUCH-EVENT", town)
    assert (status, missing["error"]) == (404, "not_found")
    assert body["reason"].replace(elsewhere, "X") == missing["reason"].replace(
        "GE-NO-SUCH-EVENT", "X"
    )
    status, _ = await api.act(elsewhere, town, {"action": "comment", "reason": "peek"})
    assert status == 404

    # filters naming a grid outside the scope, or no grid at all, are refused alike
    for grid in (T2, G3, C, "440999-nowhere"):
        status, body = await api.get("/api/v1/events", town, grid=grid)
        assert (status, body["error"]) == (403, "outside_scope"), grid
    status, page = await api.get("/api/v1/events", town, grid=G2, limit=100)
    assert status == 200 and sorted(e["id"] for e in page["items"]) == in_grid(world, G2)

    mine = in_grid(world, G1)[0]
    status, event = await api.get(f"/api/v1/events/{mine}", town)
    assert status == 200 and event["id"] == mine and event["history"][0]["action"] == "report"


async def test_a_town_token_sees_its_part_of_the_registry_and_figures(
    api: Api, world: World
) -> None:
    town = world.tokens["town1"]
    status, grids = await api.get("/api/v1/grids", town)
    assert status == 200
    assert [g["code"] for g in grids["items"]] == [T1, V1, G1, G2]
    assert (await api.get(f"/api/v1/grids/{G3}", town))[0] == 404
    assert (await api.get(f"/api/v1/grids/{C}", town))[0] == 404  # above the scope
    assert (await api.get("/api/v1/grids", town, subtree=T2))[0] == 403
    status, grid = await api.get(f"/api/v1/grids/{V1}", town)
    assert status == 200 and [c["code"] for c in grid["children"]] == [G1, G2]
    assert grid["members"][0]["id"] == "v1"

    status, devices = await api.get("/api/v1/devices", town)
    assert status == 200
    assert [d["device_id"] for d in devices["items"]] == ["sd-g1-1", "sd-g2-1"]
    assert (await api.get("/api/v1/devices/cam-g3-1", town))[0] == 404
    assert (await api.get("/api/v1/devices", town, grid=V2))[0] == 403
    status, device = await api.get("/api/v1/devices/sd-g1-1", town)
    assert status == 200 and device["state"]["status"] == "online"

    status, report = await api.get("/api/v1/figures", town)
    assert status == 200 and report["figures"]["node"]["code"] == T1
    assert report["figures"]["received"] == len(in_grid(world, G1, G2))
    assert (await api.get("/api/v1/figures", town, node=C))[0] == 403
    assert (await api.get("/api/v1/figures", town, node=V1))[0] == 200


async def test_camera_passwords_stay_out_of_answers(api: Api, world: World) -> None:
    status, device = await api.get("/api/v1/devices/cam-g3-1", world.tokens["admin"])
    assert status == 200
    assert device["device"]["rtsp_url"] == "rtsp://admin:***@10.0.0.9:554/live"


async def test_bad_parameters_are_named(api: Api, world: World) -> None:
    admin = world.tokens["admin"]
    for params, word in [
        ({"states": "reported"}, "states"),
        ({"state": "burning"}, "burning"),
        ({"limit": "501"}, "limit"),
        ({"since": "2026-11-01T08:00:00"}, "since"),  # no offset
        ({"cursor": "garbage"}, "cursor"),
        ({"open": "yes"}, "open"),
    ]:
        status, body = await api.get("/api/v1/events", admin, **params)
        assert status == 400, params
        assert word in body["reason"], (params, body)


# --- actions ------------------------------------------------------------------------------------


async def test_a_viewers_action_is_refused_and_changes_nothing(api: Api, world: World) -> None:
    event_id = in_grid(world, G2)[0]
    before = await event_row(world.conninfo, event_id)
    viewer = world.tokens["county_viewer"]
    status, body = await api.act(
        event_id, viewer, {"action": "dispatch", "assignee": {"id": "m2", "role": "grid_member"}}
    )
    assert status == 403 and body["error"] == "read_only" and body["reason"]
    assert await event_row(world.conninfo, event_id) == before
    (audit,) = await audit_rows(world.conninfo, event_id)
    assert audit[:5] == (token_id(viewer), token_id(viewer), "dispatch", "refused", 403)
    assert audit[5]["error"] == "read_only"


async def test_a_village_lead_dispatches_to_a_grid_member(api: Api, world: World) -> None:
    event_id = in_grid(world, G1)[0]
    version, state, history_rows, log_rows = await event_row(world.conninfo, event_id)
    assert state == "reported"
    lead = world.tokens["lead_v1"]
    status, event = await api.act(
        event_id,
        lead,
        {
            "action": "dispatch",
            "reason": "去现场看看",
            "assignee": {"id": "m1", "role": "grid_member"},
        },
    )
    assert status == 200, event
    assert event["state"] == "dispatched" and event["version"] == version + 1
    assert event["assignee"] == {"id": "m1", "role": "grid_member"}
    last = event["history"][-1]
    assert (last["action"], last["actor_id"], last["actor_role"]) == (
        "dispatch",
        "v1",
        "village_lead",
    )
    assert last["reason"] == "去现场看看" and last["from_state"] == "reported"

    assert await event_row(world.conninfo, event_id) == (
        version + 1,
        "dispatched",
        history_rows + 1,
        log_rows + 1,
    )
    async with await psycopg.AsyncConnection.connect(world.conninfo) as conn:
        cur = await conn.execute(
            "SELECT change, payload->>'state' FROM event_log WHERE event_id = %s"
            " ORDER BY seq DESC LIMIT 1",
            (event_id,),
        )
        assert await cur.fetchone() == ("state_changed", "dispatched")
    audit = await audit_rows(world.conninfo, event_id)
    assert audit[-1][:5] == (token_id(lead), "v1", "dispatch", "ok", 200)
    assert audit[-1][5]["from_state"] == "reported" and audit[-1][5]["to_state"] == "dispatched"

    # the grid member accepts it as the assignee; the read shows it
    status, event = await api.act(event_id, world.tokens["member_m1"], {"action": "accept"})
    assert status == 200 and event["state"] == "accepted"
    status, read = await api.get(f"/api/v1/events/{event_id}", world.tokens["town1"])
    assert status == 200 and [h["action"] for h in read["history"]] == [
        "report",
        "dispatch",
        "accept",
    ]


async def test_refused_actions_answer_the_workflows_reason(api: Api, world: World) -> None:
    event_id = in_grid(world, G1)[-1]
    before = await event_row(world.conninfo, event_id)
    lead, member = world.tokens["lead_v1"], world.tokens["member_m1"]
    cases = [
        # an illegal transition: a reported event is not closed
        (lead, {"action": "close"}, 409, "illegal_transition", "possible now"),
        # a grid member may not dispatch
        (member, {"action": "dispatch", "assignee": {"id": "m2", "role": "grid_member"}},
         403, "not_permitted", "village_lead"),
        # m3 is a member of another village's grid
        (lead, {"action": "dispatch", "assignee": {"id": "m3", "role": "grid_member"}},
         422, "invalid_assignee", "not a member"),
        (lead, {"action": "mark_false_alarm"}, 422, "missing_reason", "reason"),
        (lead, {"action": "auto_close", "reason": "x"}, 422, "unknown_action", "auto_close"),
        (lead, {"action": "dispatch", "extra": 1}, 400, "bad_request", "extra"),
        (lead, {"action": "comment", "reason": "x", "version": 99}, 409, "version_conflict", "99"),
    ]  # fmt: skip
    for token, body, status, code, word in cases:
        got_status, got = await api.act(event_id, token, body)
        assert (got_status, got["error"]) == (status, code), (body, got)
        assert word in got["reason"], got
    assert await event_row(world.conninfo, event_id) == before
    audit = await audit_rows(world.conninfo, event_id)
    assert [a[3] for a in audit] == ["refused"] * len(cases)
    assert [a[4] for a in audit] == [c[2] for c in cases]
    async with api.session.post(  # not JSON at all
        f"{api.base}/api/v1/events/{event_id}/actions",
        data=b"{not json",
        headers={"Authorization": f"Bearer {lead}"},
    ) as response:
        assert response.status == 400


async def test_a_comment_on_an_event_in_scope_is_recorded_as_an_update(
    api: Api, world: World
) -> None:
    event_id = in_grid(world, G3)[0]
    status, event = await api.act(
        event_id, world.tokens["admin"], {"action": "comment", "reason": "已电话联系物业"}
    )
    assert status == 200 and event["state"] == "reported"
    assert event["history"][-1]["actor_role"] == "admin"
    async with await psycopg.AsyncConnection.connect(world.conninfo) as conn:
        cur = await conn.execute(
            "SELECT change FROM event_log WHERE event_id = %s ORDER BY seq DESC LIMIT 1",
            (event_id,),
        )
        assert await cur.fetchone() == ("updated",)


# --- listing --------------------------------------------------------------------------------------


async def test_cursor_pagination_returns_every_event_exactly_once(api: Api, world: World) -> None:
    admin = world.tokens["admin"]
    for limit in (1, 2, 3, 7, 500):
        items = await api.all_events(admin, limit=limit)
        ids = [e["id"] for e in items]
        assert len(ids) == len(set(ids)) == len(world.events), limit
        assert set(ids) == set(world.events)
        order = [(e["first_seen"], e["id"]) for e in items]
        assert order == sorted(order, reverse=True)

    # filters hold across pages
    g1 = await api.all_events(admin, grid=G1, limit=2)
    assert sorted(e["id"] for e in g1) == in_grid(world, G1)
    status, reported = await api.get("/api/v1/events", admin, state="reported", limit=500)
    assert status == 200 and all(e["state"] == "reported" for e in reported["items"])
    status, page = await api.get(
        "/api/v1/events", admin, state="reported,dispatched,accepted", open="true", limit=500
    )
    assert status == 200 and len(page["items"]) == len(world.events)
    status, page = await api.get("/api/v1/events", admin, open="false")
    assert status == 200 and page["items"] == []
    status, page = await api.get("/api/v1/events", admin, category="water")
    assert status == 200 and page["items"] == []
    status, page = await api.get("/api/v1/events", admin, since="2999-01-01")
    assert status == 200 and page["items"] == []
    status, page = await api.get("/api/v1/events", admin, until="2000-01-01T00:00:00Z")
    assert status == 200 and page["items"] == []
