"""The grid-event value: ids, the CloudEvents data, the grid_events row mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.event import (
    ENTROPY_BITS,
    ID_LENGTH,
    Evidence,
    GridEvent,
    Location,
    event_id_time,
    new_event_id,
)
from alerts.roles import Actor, Assignee, Role
from alerts.workflow import apply, open_event
from alerts.workflow_enums import Action, Severity, State

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
TS0 = T0.timestamp()

# Every field interface.md says a grid event carries ("Downstream").
CONTRACT_FIELDS = {
    "id",
    "grid_code",
    "ancestors",
    "category",
    "type",
    "severity",
    "state",
    "device_ids",
    "site",
    "location",
    "first_seen",
    "last_seen",
    "alarm_count",
    "evidence",
    "assignee",
    "deadlines",
    "history",
}


def make_event(**changes: object) -> GridEvent:
    ws, _ = open_event(Severity.ORANGE, "fire", "smoke_alarm", T0)
    event = GridEvent(
        id=new_event_id(TS0, 7),
        correlation_key="fire:site:A栋",
        grid_code="440981001005-03",
        ancestors=("440981", "440981001", "440981001005"),
        category="fire",
        type="smoke_alarm",
        severity=ws.severity,
        state=ws.state,
        site="A栋",
        location=Location(lat=22.505, lon=113.305, address="幸福路1号"),
        device_ids=("smk-1",),
        types=("smoke_alarm",),
        active_conditions=("smk-1/device_events/alarm",),
        first_seen=TS0 + 0.5,
        last_seen=TS0 + 60.25,
        alarm_count=1,
        evidence=(
            Evidence(
                ts=TS0 + 0.5,
                device_id="smk-1",
                condition_key="smk-1/device_events/alarm",
                phase="raised",
                type="smoke_alarm",
                category="fire",
                severity="red",
                detail={"event": "alarm", "obscuration_db_m": 0.18},
            ),
        ),
        workflow=ws,
    )
    return msgspec.structs.replace(event, **changes)


def test_ids_are_time_ordered_and_carry_their_time() -> None:
    a = new_event_id(TS0, (1 << ENTROPY_BITS) - 1)
    b = new_event_id(TS0 + 0.001, 0)
    assert a.startswith("GE") and len(a) == ID_LENGTH == 28
    assert a < b
    assert event_id_time(b) == pytest.approx(TS0 + 0.001)
    assert new_event_id(TS0, 1) != new_event_id(TS0, 2)


@given(
    st.floats(min_value=0, max_value=2.8e11, allow_nan=False),
    st.floats(min_value=0, max_value=2.8e11, allow_nan=False),
    st.integers(0, (1 << ENTROPY_BITS) - 1),
    st.integers(0, (1 << ENTROPY_BITS) - 1),
)
def test_id_order_follows_milliseconds(t1: float, t2: float, e1: int, e2: int) -> None:
    if int(t1 * 1000) < int(t2 * 1000):
        assert new_event_id(t1, e1) < new_event_id(t2, e2)


@pytest.mark.parametrize(("ts", "entropy"), [(-1.0, 0), (TS0, -1), (TS0, 1 << ENTROPY_BITS)])
def test_id_refuses_out_of_range(ts: float, entropy: int) -> None:
    with pytest.raises(ValueError):
        new_event_id(ts, entropy)


def test_cloudevent_data_has_every_contract_field_as_json() -> None:
    ws, report = open_event(Severity.ORANGE, "fire", "smoke_alarm", T0)
    ws, dispatch = apply(
        ws,
        Action.DISPATCH,
        Actor("v1", Role.VILLAGE_LEAD),
        T0 + timedelta(minutes=3),
        assignee=Assignee("g1", Role.GRID_MEMBER),
    )
    event = make_event(workflow=ws, state=ws.state)
    data = event.to_cloudevent_data([report, dispatch])
    assert data.keys() >= CONTRACT_FIELDS
    assert json.loads(json.dumps(data)) == data  # builtins only
    assert data["ancestors"] == ["440981", "440981001", "440981001005"]
    assert data["severity"] == "orange" and data["state"] == "dispatched"
    assert data["location"] == {"lat": 22.505, "lon": 113.305, "address": "幸福路1号"}
    assert data["first_seen"] == "2026-11-22T08:00:00.500000Z"
    assert data["assignee"] == {"id": "g1", "role": "grid_member"}
    assert data["deadlines"] == {
        "step": "accept",
        "due": "2026-11-22T08:33:00Z",
        "owner": "grid_member",
        "level": 0,
    }
    assert [h["action"] for h in data["history"]] == ["report", "dispatch"]
    assert data["evidence"][0]["detail"] == {"event": "alarm", "obscuration_db_m": 0.18}


def test_row_round_trip_text_and_decoded_jsonb() -> None:
    event = make_event()
    row = event.to_row()
    assert set(row) >= {"id", "correlation_key", "workflow", "next_due", "version"}
    assert row["first_seen"] == datetime(2026, 11, 22, 8, 0, 0, 500000, tzinfo=UTC)
    assert row["next_due"] == event.workflow.due
    assert GridEvent.from_row(row) == event
    decoded = {k: json.loads(row[k]) for k in ("location", "evidence", "workflow")}
    assert GridEvent.from_row({**row, **decoded}) == event


def test_row_refuses_unknown_category_and_naive_time() -> None:
    row = make_event().to_row()
    with pytest.raises(ValueError, match="category"):
        GridEvent.from_row({**row, "category": "weather"})
    with pytest.raises(ValueError, match="naive"):
        GridEvent.from_row({**row, "first_seen": datetime(2026, 11, 22, 8, 0)})


def test_state_and_severity_must_be_the_workflows() -> None:
    with pytest.raises(ValueError, match="state"):
        make_event(state=State.CLOSED)
    with pytest.raises(ValueError, match="severity"):
        make_event(severity=Severity.RED)
    with pytest.raises(ValueError, match="first_seen"):
        make_event(first_seen=TS0 + 100)
