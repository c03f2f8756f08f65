"""The grid worker's side without services: resource rows, distances, field-report checks and
their hit, the check-in payload given over HTTP, and ETag matching."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from alerts.correlation import DEFAULT_CORRELATION as CORRELATION
from alerts.correlation import DeviceContext, correlate, key_for, lookup_keys
from alerts.field_reports import (
    ReportLocation,
    ReportRequest,
    new_report_id,
    problem,
    report_hit,
)
from alerts.roles import Actor, Role
from api.media_api import _matches
from api.patrols_api import CheckinRequest, payload
from devices.device_import import DeviceFormat
from devices.resources import (
    ParsedResource,
    ResourceKind,
    haversine_m,
    iter_resource_lines,
    iter_resources,
)

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
M1 = Actor("m1", Role.GRID_MEMBER)


def test_resource_rows_are_checked_one_by_one() -> None:
    lines = [
        "resource_id,kind,name,lat,lon,phone,sensor_id,detail,radio",
        'HY-1,fire_hydrant,消火栓,22.9,113.3,,WP-1,"{""dn"": 100}",x',
        "MFS-1,micro_fire_station,微站,22.9,113.3,0750123,,,",
        "HY-2,fire_hydrant,,,113.3,,,,",
        "ST-1,micro_fire_station,,22.9,113.3,,WP-1,,",
        "X-1,fire_truck,,22.9,113.3,,,,",
        "HY-1,fire_hydrant,,22.9,113.3,,,,",
        "HY 3,fire_hydrant,,22.9,113.3,,,,",
        'HY-4,fire_hydrant,,22.9,113.3,,,"[1]",',
    ]
    rows = list(iter_resource_lines(lines, fmt=DeviceFormat.CSV, source="r.csv"))
    kept = {r.resource.resource_id: r.resource for r in rows if isinstance(r, ParsedResource)}
    issues = [r for r in rows if not isinstance(r, ParsedResource)]
    assert set(kept) == {"HY-1", "MFS-1"}
    assert kept["HY-1"].sensor_id == "WP-1" and kept["HY-1"].detail == {"dn": 100}
    assert kept["MFS-1"].kind is ResourceKind.MICRO_FIRE_STATION
    assert kept["MFS-1"].phone == "0750123"  # leading zero kept
    warnings = [i for i in issues if not i.is_error]
    assert len(warnings) == 1 and "radio" in warnings[0].reason
    errors = {(i.line, i.key): i.reason for i in issues if i.is_error}
    assert "lat and lon must be given together" in errors[(4, "HY-2")]
    assert "for fire hydrants" in errors[(5, "ST-1")]
    assert "not one of" in errors[(6, "X-1")]
    assert "duplicate resource_id, first on line 2" in errors[(7, "HY-1")]
    assert "must be 1–64" in errors[(8, None)]
    assert "JSON object" in errors[(9, "HY-4")]


def test_a_resource_csv_saved_by_a_chinese_excel_is_read_as_gb18030(tmp_path: Path) -> None:
    text = (
        "resource_id,kind,name,lat,lon\r\n"
        "MFS-1,micro_fire_station,幸福社区微型消防站,22.9,113.3\r\n"
    )
    gbk, utf8 = tmp_path / "r-gbk.csv", tmp_path / "r-utf8.csv"
    gbk.write_bytes(text.encode("gb18030"))
    utf8.write_bytes(b"\xef\xbb\xbf" + text.encode())  # with a BOM
    for path in (gbk, utf8):
        [row] = list(iter_resources(path))
        assert isinstance(row, ParsedResource), row
        assert row.resource.name == "幸福社区微型消防站"
    broken = tmp_path / "r-bad.jsonl"
    broken.write_bytes(b'{"resource_id": "\xff"}\n')
    [issue] = list(iter_resources(broken))
    assert not isinstance(issue, ParsedResource) and "not valid utf-8" in issue.reason


def test_resource_json_lines_keep_a_numeric_phone_as_text() -> None:
    lines = [
        orjson.dumps({"resource_id": "DT-1", "kind": "duty_team", "lat": 22.9, "lon": 113.3,
                      "phone": 13800000000}).decode(),
        "not json",
    ]  # fmt: skip
    rows = list(iter_resource_lines(lines, fmt=DeviceFormat.JSONL, source="r.jsonl"))
    assert isinstance(rows[0], ParsedResource) and rows[0].resource.phone == "13800000000"
    assert not isinstance(rows[1], ParsedResource) and rows[1].line == 2


def test_distances() -> None:
    assert haversine_m(22.0, 113.0, 23.0, 113.0) == pytest.approx(111_195, rel=1e-3)
    assert haversine_m(22.9, 113.3, 22.9, 113.3) == 0.0
    # a degree of longitude is shorter away from the equator
    assert haversine_m(22.9, 113.0, 22.9, 114.0) == pytest.approx(111_195 * 0.9212, rel=1e-3)


def request(**changes: object) -> ReportRequest:
    base: dict[str, object] = {
        "category": "fire",
        "type": "fire_hazard",
        "description": "楼道堆放杂物",
    }
    base.update(changes)
    return ReportRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"category": "weather"}, "category must be one of"),
        ({"type": "Fire Hazard"}, "type must be"),
        ({"description": "  "}, "description must say"),
        ({"description": "x" * 21}, "at most 20"),
        ({"severity": "purple"}, "severity must be"),
        ({"site": ""}, "site must be"),
        ({"location": ReportLocation(lat=22.9)}, "go together"),
        ({"location": ReportLocation(lat=95.0, lon=113.0)}, "outside -90..90"),
        ({"location": ReportLocation(lat=22.0, lon=190.0)}, "outside -180..180"),
    ],
)
def test_report_problems(changes: dict[str, object], fragment: str) -> None:
    found = problem(request(**changes), max_description=20)
    assert found is not None and fragment in found


def test_a_good_report_has_no_problem() -> None:
    good = request(severity="red", site="market-1", location=ReportLocation(22.9, 113.3, "东门"))
    assert problem(good, max_description=100) is None


def test_a_report_is_a_raised_hit_keyed_by_its_site_like_a_device_there() -> None:
    report_id = new_report_id(NOW.timestamp(), 12345)
    assert report_id.startswith("FR") and len(report_id) == 28
    media = [{"media_id": "MD1", "url": "/api/v1/snapshots/MD1", "content_type": "image/jpeg"}]
    hit = report_hit(report_id, request(location=ReportLocation(address="东门")), M1, 100.0, media)
    assert hit.raised and hit.device_id == report_id and hit.severity == "yellow"
    assert hit.evidence["media"] == media and hit.evidence["address"] == "东门"
    assert hit.evidence["reporter"] == {"id": "m1", "role": "grid_member"}
    at_market = DeviceContext(device_id=report_id, site="market-1", grid_code="G1")
    smoke = DeviceContext(device_id="SD-1", site="market-1", grid_code="G1")
    assert lookup_keys(hit, at_market)[0] == key_for("fire", "smoke_alarm", smoke, CORRELATION)
    (opened,) = correlate(hit, at_market, {}, NOW, entropy=1)
    assert opened.kind == "opened" and opened.event.correlation_key == "fire:site:market-1"
    # a report without a site is its own event
    alone = DeviceContext(device_id=report_id, grid_code="G1")
    assert lookup_keys(hit, alone)[0] == f"fire:device:{report_id}"


def test_a_checkin_given_over_http_is_the_canonical_uplink_payload() -> None:
    req = CheckinRequest(tag_id="PT-1", checklist={"exits_clear": False}, note="堵塞")
    ms, body = payload(req, "m1", NOW)
    assert ms == int(NOW.timestamp() * 1000)
    assert orjson.loads(body) == {
        "ts": ms,
        "event": "checkin",
        "detail": {
            "worker_id": "m1",
            "source": "api",
            "checklist": {"exits_clear": False},
            "note": "堵塞",
        },
    }
    scanned = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    ms, _ = payload(CheckinRequest(tag_id="PT-1", ts=scanned), "m1", NOW)
    assert ms == int(scanned.timestamp() * 1000)


def test_if_none_match() -> None:
    digest = "ab" * 32
    assert _matches(f'"{digest}"', digest)
    assert _matches(f'W/"{digest}", "other"', digest)
    assert _matches("*", digest)
    assert not _matches('"other"', digest) and not _matches("", digest)
