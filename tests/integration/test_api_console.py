"""What the operator console reads beyond the events: each event's ``allowed_actions``, a
device's readings, and the per-area and daily figures — against gridwatch running in-process
on the real PostgreSQL, each answer also checked against the served OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.figures import CHINA_TZ
from tests.integration.test_api import (  # noqa: F401  (fixtures used by name)
    G1,
    G2,
    G3,
    T1,
    T2,
    V1,
    Api,
    C,
    World,
    api,
    in_grid,
    world,
)
from tests.integration.test_api_openapi import validate

pytestmark = pytest.mark.integration

GRIDS_OF = {T1: (G1, G2), T2: (G3,)}
COLOURS = ("red", "orange", "yellow", "blue")


Doc = dict[str, Any]


def conforms(doc: Doc, method: str, template: str, status: int, body: Any) -> None:
    """``body`` is what the served document says ``method template`` answers with ``status``."""
    response = doc["paths"][template][method]["responses"][str(status)]
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    validate(body, response["content"]["application/json"]["schema"], doc, template)


@pytest.fixture
async def doc(api: Api, world: World) -> Doc:  # noqa: F811
    status, served = await api.get("/api/v1/openapi.json", world.tokens["admin"])
    assert status == 200
    return served


# --- allowed_actions ---------------------------------------------------------------------------


async def test_each_token_is_offered_what_the_workflow_would_let_it_do(
    api: Api,  # noqa: F811
    world: World,  # noqa: F811
    doc: Doc,
) -> None:
    event_id = in_grid(world, G1)[0]
    path = f"/api/v1/events/{event_id}"

    status, as_lead = await api.get(path, world.tokens["lead_v1"])
    assert status == 200
    conforms(doc, "get", "/api/v1/events/{id}", 200, as_lead)
    offered = {a["action"]: a for a in as_lead["allowed_actions"]}
    dispatch = offered["dispatch"]
    assert dispatch["assignee"] == "required" and dispatch["reason"] == "optional"
    # the members of G1 and of the village above it; the town centre is above the lead
    assert dispatch["assignees"] == [
        {"id": "m1", "role": "grid_member", "name": "张网格员"},
        {"id": "v1", "role": "village_lead", "name": "李村长"},
    ]
    assert offered["mark_false_alarm"]["reason"] == "required"
    assert "accept" not in offered and "verify" not in offered

    status, as_viewer = await api.get(path, world.tokens["county_viewer"])
    assert status == 200 and as_viewer["allowed_actions"] == []

    status, as_member = await api.get(path, world.tokens["member_m1"])
    member_actions = [a["action"] for a in as_member["allowed_actions"]]
    assert "dispatch" not in member_actions and "comment" in member_actions

    # what is offered is taken: the lead dispatches to an offered member, who then may accept
    status, _ = await api.act(
        event_id,
        world.tokens["lead_v1"],
        {"action": "dispatch", "assignee": {"id": "m1", "role": "grid_member"}},
    )
    assert status == 200
    status, as_member = await api.get(path, world.tokens["member_m1"])
    member_actions = [a["action"] for a in as_member["allowed_actions"]]
    assert member_actions[0] == "accept"
    status, _ = await api.act(event_id, world.tokens["member_m1"], {"action": "accept"})
    assert status == 200
    status, as_lead = await api.get(path, world.tokens["lead_v1"])
    assert "dispatch" not in {a["action"] for a in as_lead["allowed_actions"]}


# --- readings ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def readings(world: World) -> datetime:  # noqa: F811
    """Ten minutes of readings of two metrics for sd-g1-1 and sd-g3-1, and one two days old."""
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    rows = []
    for device in ("sd-g1-1", "sd-g3-1"):
        for minute in range(10):
            ts = end - timedelta(minutes=9 - minute)
            rows.append((device, "smoke_obscuration_db_m", ts, 0.01 * minute, ts))
            rows.append((device, "battery_pct", ts, 90.0 - minute, ts))
        old = end - timedelta(days=2)
        rows.append((device, "battery_pct", old, 99.0, old))
    with psycopg.connect(world.conninfo) as conn:
        conn.cursor().executemany(
            "INSERT INTO readings (device_id, metric, ts, value, received_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )
    return end


async def test_readings_come_oldest_first_from_the_window(
    api: Api,  # noqa: F811
    world: World,  # noqa: F811
    readings: datetime,
    doc: Doc,
) -> None:
    admin = world.tokens["admin"]
    path = "/api/v1/devices/sd-g1-1/readings"
    status, page = await api.get(path, admin)
    assert status == 200
    conforms(doc, "get", "/api/v1/devices/{id}/readings", 200, page)
    assert page["device_id"] == "sd-g1-1" and page["truncated"] is False
    assert len(page["items"]) == 20  # the two-day-old reading is outside the default 24 h
    stamps = [datetime.fromisoformat(r["ts"]) for r in page["items"]]
    assert stamps == sorted(stamps) and stamps[-1] == readings

    status, page = await api.get(path, admin, metric="smoke_obscuration_db_m")
    assert [r["value"] for r in page["items"]] == pytest.approx([0.01 * m for m in range(10)])

    status, page = await api.get(path, admin, metric="battery_pct", limit="3")
    assert page["truncated"] is True
    assert [r["value"] for r in page["items"]] == [83.0, 82.0, 81.0]  # the newest three

    since = (readings - timedelta(days=3)).isoformat()
    status, page = await api.get(path, admin, metric="battery_pct", since=since)
    assert len(page["items"]) == 11 and page["items"][0]["value"] == 99.0


async def test_readings_keep_to_the_tokens_scope_and_name_bad_parameters(
    api: Api,  # noqa: F811
    world: World,  # noqa: F811
    readings: datetime,
    doc: Doc,
) -> None:
    town = world.tokens["town1"]
    assert (await api.get("/api/v1/devices/sd-g1-1/readings", town))[0] == 200
    for device in ("sd-g3-1", "no-such-device"):
        status, body = await api.get(f"/api/v1/devices/{device}/readings", town)
        assert status == 404 and body["error"] == "not_found"
        conforms(doc, "get", "/api/v1/devices/{id}/readings", 404, body)
    for params in (
        {"metrics": "x"},
        {"limit": "0"},
        {"since": "2026-11-02", "until": "2026-11-01"},
    ):
        status, body = await api.get("/api/v1/devices/sd-g1-1/readings", town, **params)
        assert status == 400, params
        conforms(doc, "get", "/api/v1/devices/{id}/readings", 400, body)


# --- figures by area and by day ------------------------------------------------------------------


async def test_open_events_devices_and_cameras_per_area_below(
    api: Api,  # noqa: F811
    world: World,  # noqa: F811
    doc: Doc,
) -> None:
    status, answer = await api.get("/api/v1/figures/nodes", world.tokens["admin"], node=C)
    assert status == 200
    conforms(doc, "get", "/api/v1/figures/nodes", 200, answer)
    assert answer["node"]["code"] == C and answer["node"]["name"] == "示范县"
    children = {c["code"]: c["indicators"] for c in answer["children"]}
    assert set(children) == {T1, T2}
    # the same counts as the open events listed per town, colour by colour
    admin = world.tokens["admin"]
    for town in (T1, T2):
        listed = await api.all_events(admin, grid=town, open="true")
        assert len(listed) == len(in_grid(world, *GRIDS_OF[town])) > 0
        for colour in COLOURS:
            expected = sum(e["severity"] == colour for e in listed)
            assert children[town][f"open_{colour}"] == expected, (town, colour)
    total = answer["node"]["indicators"]
    assert sum(total[f"open_{c}"] for c in COLOURS) == len(world.events)
    assert (children[T1]["devices"], children[T1]["devices_online"]) == (2, 1)
    assert (children[T2]["devices"], children[T2]["cameras"]) == (2, 1)
    assert all(0 <= c["score"] <= 100 for c in answer["children"])

    status, own = await api.get("/api/v1/figures/nodes", world.tokens["town1"])
    assert status == 200 and own["node"]["code"] == T1
    assert [c["code"] for c in own["children"]] == [V1]
    status, body = await api.get("/api/v1/figures/nodes", world.tokens["town1"], node=C)
    assert status == 403 and body["error"] == "outside_scope"


async def test_the_daily_safety_index_series(
    api: Api,  # noqa: F811
    world: World,  # noqa: F811
    doc: Doc,
) -> None:
    today = datetime.now(CHINA_TZ).date()
    days = [today - timedelta(days=n) for n in (40, 3, 1)]
    with psycopg.connect(world.conninfo) as conn:
        for n, day in enumerate(days):
            conn.execute(
                "INSERT INTO safety_index_daily (grid_code, day, score, indicators)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (grid_code, day) DO UPDATE"
                " SET score = EXCLUDED.score",
                (T2, day, 80.0 + n, Jsonb({})),
            )
    status, answer = await api.get("/api/v1/figures/series", world.tokens["admin"], node=T2)
    assert status == 200
    conforms(doc, "get", "/api/v1/figures/series", 200, answer)
    assert answer["node"] == T2 and answer["days"] == 30
    # oldest first; 40 days ago is outside the 30 days; today's the service computed itself
    assert answer["items"][:2] == [
        {"day": d.isoformat(), "score": s} for d, s in ((days[1], 81.0), (days[2], 82.0))
    ]
    assert [p["day"] for p in answer["items"][2:]] in ([], [today.isoformat()])
    status, answer = await api.get(
        "/api/v1/figures/series", world.tokens["admin"], node=T2, days="2"
    )
    assert [p["day"] for p in answer["items"]][:1] == [days[2].isoformat()]
    status, _ = await api.get("/api/v1/figures/series", world.tokens["admin"], days="0")
    assert status == 400
    status, _ = await api.get("/api/v1/figures/series", world.tokens["town1"], node=T2)
    assert status == 403
