"""Device file import: CSV and JSON lines, row checks, line numbers, laziness."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import overrides, profiles
from devices.device_import import (
    DeviceFormat,
    DeviceRow,
    ParsedDevice,
    count_data_lines,
    iter_device_lines,
    iter_devices,
)
from devices.overrides import ProfileOverrides, positive_number
from devices.profiles import DeviceProfile
from devices.registry import Device, FramePolygon, ImportIssue, Severity
from devices.registry_rows import device_from_row, device_row
from tests.unit.registry_data import (
    CSV_COLUMNS,
    GRIDS,
    camera,
    csv_text,
    device,
    jsonish,
    jsonl,
    write,
)


def as_file(text: str) -> io.StringIO:
    """Lines as a text file gives them (str.splitlines would also split at U+0085, U+2028)."""
    return io.StringIO(text, newline="")


def rows_of(items: list[DeviceRow]) -> list[Device]:
    return [item.device for item in items if isinstance(item, ParsedDevice)]


def issues_of(items: list[DeviceRow]) -> list[ImportIssue]:
    return [item for item in items if isinstance(item, ImportIssue)]


def read_csv(rows: list[dict[str, Any]]) -> list[DeviceRow]:
    return list(
        iter_device_lines(as_file(csv_text(rows)), fmt=DeviceFormat.CSV, source="devices.csv")
    )


def read_jsonl(rows: list[dict[str, Any]]) -> list[DeviceRow]:
    lines = as_file(jsonl(rows))
    return list(iter_device_lines(lines, fmt=DeviceFormat.JSONL, source="devices.jsonl"))


def only_error(items: list[DeviceRow]) -> ImportIssue:
    (issue,) = issues_of(items)
    assert issue.severity is Severity.ERROR
    return issue


GOOD = [
    device("SD-001"),
    device(
        "EF-001",
        2,
        type="electrical_fire_monitor",
        grid_code=GRIDS[2],
        profile={"codec": "vendor_hex", "heartbeat_interval_s": 600},
    ),
    camera("CAM-001", masks=[[[0, 0], [0.2, 0], [0.2, 0.2], [0, 0]]]),
    device("WP-001", type="water_pressure_sensor", lat=None, lon=None, grid_code=GRIDS[1]),
]


@pytest.mark.parametrize("read", [read_csv, read_jsonl], ids=["csv", "jsonl"])
def test_good_rows_become_typed_devices(read: Any) -> None:
    items = read(GOOD)

    assert issues_of(items) == []
    sd, ef, cam, wp = rows_of(items)
    assert sd.device_id == "SD-001" and sd.type == "smoke_detector"
    assert (sd.lat, sd.lon) == (22.505, 113.305)
    assert sd.site == "城东社区3栋" and sd.grid_code is None
    assert ef.profile == ProfileOverrides(codec="vendor_hex", heartbeat_interval_s=600.0)
    assert ef.grid_code == GRIDS[2]
    assert cam.rtsp_url and cam.rtsp_url.startswith("rtsp://")
    assert cam.zones == (FramePolygon(((0.1, 0.1), (0.6, 0.1), (0.6, 0.7), (0.1, 0.7))),)
    assert cam.masks == (FramePolygon(((0.0, 0.0), (0.2, 0.0), (0.2, 0.2))),)
    assert wp.lat is None and wp.grid_code == GRIDS[1]
    first = 2 if read is read_csv else 1  # CSV rows start after the header
    lines = [item.line for item in items if isinstance(item, ParsedDevice)]
    assert lines == list(range(first, first + 4))


def test_csv_and_json_lines_mean_the_same() -> None:
    assert rows_of(read_csv(GOOD)) == rows_of(read_jsonl(GOOD))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"device_id": ""}, "device_id is required"),
        ({"device_id": "SD/001"}, "no / + # or spaces"),
        ({"device_id": "SD+001"}, "no / + # or spaces"),
        ({"device_id": "SD#1"}, "no / + # or spaces"),
        ({"device_id": "烟感1"}, "no / + # or spaces"),
        ({"device_id": "X" * 65}, "must be 1–64"),
        ({"type": "fire_alarm"}, "type 'fire_alarm' is not registered (known: camera,"),
        ({"type": ""}, "type is required"),
        ({"lat": 113.305, "lon": 22.505}, "lat 113.305 is outside -90..90 (lat and lon swapped?)"),
        ({"lon": 200}, "lon 200"),
        ({"lat": "north"}, "lat must be a number"),
        ({"lon": None}, "lat and lon must be given together"),
        ({"lat": None, "lon": None}, "needs lat/lon (to find its grid) or a grid_code"),
        ({"grid_code": "440981001005"}, "must be a basic grid code"),
        ({"profile": {"alarm_db_m": 0.1}}, "profile.alarm_db_m is not a known override"),
        ({"profile": {"codec": "modbus"}}, "profile.codec 'modbus' is not a registered codec"),
        ({"profile": {"heartbeat_interval_s": -5}}, "heartbeat_interval_s must be a positive"),
        ({"profile": {"heartbeat_interval_s": True}}, "heartbeat_interval_s must be a positive"),
        ({"profile": ["codec"]}, "profile must be a JSON object"),
        ({"profile": "{codec: x}"}, "profile is not valid JSON"),
    ],
)
@pytest.mark.parametrize("read", [read_csv, read_jsonl], ids=["csv", "jsonl"])
def test_a_bad_row_is_reported_with_its_line_and_the_others_kept(
    read: Any, changes: dict[str, Any], reason: str
) -> None:
    rows = [device("SD-001"), {**device("SD-002"), **changes}, device("SD-003")]

    items = read(rows)

    issue = only_error(items)
    assert reason in issue.reason
    assert issue.line == (3 if read is read_csv else 2)
    assert [d.device_id for d in rows_of(items)] == ["SD-001", "SD-003"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"rtsp_url": None}, "a camera needs an rtsp_url"),
        ({"rtsp_url": "http://10.0.0.5/stream"}, "must start with rtsp:// or rtsps://"),
        ({"rtsp_url": "rtsp:///Streaming"}, "rtsp_url has no host"),
        ({"rtsp_url": "rtsp://10.0.0.5:abc/x"}, "rtsp_url cannot be read"),
        ({"rtsp_url": "rtsp://10.0.0.5/a b"}, "must not contain spaces"),
        ({"zones": [[[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]]]}, "zones[0][1] = [1.2, 0.1] is outside"),
        ({"zones": [[[0.1, 0.1], [0.5, 0.1]]]}, "zones[0] needs at least 3 distinct points"),
        ({"zones": [[[0, 0], [1, 1], [1, 0], [0, 1]]]}, "zones[0] is not a valid polygon: Self-"),
        ({"zones": [[[0, 0], [0.5, 0.5], [1, 1]]]}, "zones[0] is not a valid polygon"),
        ({"masks": [[[0, 0], [1, 0], "x"]]}, "masks[0][2] must be [x, y] numbers"),
        ({"masks": {"a": 1}}, "masks must be a list of polygons"),
        ({"masks": [[0, 0]]}, "masks[0][0] must be [x, y] numbers"),
    ],
)
@pytest.mark.parametrize("read", [read_csv, read_jsonl], ids=["csv", "jsonl"])
def test_camera_fields_are_checked(read: Any, changes: dict[str, Any], reason: str) -> None:
    items = read([{**camera("CAM-9"), **changes}])

    assert reason in only_error(items).reason
    assert rows_of(items) == []


def test_rtsps_is_accepted() -> None:
    (cam,) = rows_of(read_jsonl([camera(rtsp_url="RTSPS://cam.example:322/live")]))
    assert cam.rtsp_url == "RTSPS://cam.example:322/live"


def test_camera_fields_on_another_type_are_ignored_with_a_warning() -> None:
    items = read_jsonl([device(rtsp_url="rtsp://10.0.0.5/x", zones=[[[0, 0], [1, 0], [1, 1]]])])

    (issue,) = issues_of(items)
    assert issue.severity is Severity.WARNING
    assert issue.reason == "rtsp_url, zones ignored: only cameras have them"
    (kept,) = rows_of(items)
    assert kept.rtsp_url is None and kept.zones == ()


def test_a_duplicate_device_id_rejects_the_later_row() -> None:
    items = read_csv([device("SD-001"), device("SD-002"), device("SD-001", 2)])

    issue = only_error(items)
    assert (issue.line, issue.key) == (4, "SD-001")
    assert issue.reason == "duplicate device_id, first on line 2"
    assert rows_of(items)[0].lon == 113.305  # the first one is kept


def test_csv_line_numbers_count_blank_lines_and_quoted_newlines() -> None:
    text = (
        "device_id,type,name,lat,lon\n"
        "\n"
        'SD-1,smoke_detector,"two\nlines",22.505,113.305\n'
        "SD-2,smoke_detector,x,99,113.305\n"
    )
    items = list(iter_device_lines(as_file(text), fmt=DeviceFormat.CSV, source="d.csv"))

    assert only_error(items).line == 5
    (first,) = [item for item in items if isinstance(item, ParsedDevice)]
    assert first.line == 3 and first.device.name == "two\nlines"


def test_csv_header_problems_stop_the_file() -> None:
    items = list(
        iter_device_lines(["name,lat,lon\n", "x,1,2\n"], fmt=DeviceFormat.CSV, source="d.csv")
    )
    issue = only_error(items)
    assert issue.line == 1 and "lacks required column(s) device_id, type" in issue.reason

    doubled = ["device_id,type,lat,lat\n"]
    assert (
        "repeats column(s) lat"
        in only_error(list(iter_device_lines(doubled, fmt=DeviceFormat.CSV, source="d.csv"))).reason
    )

    assert (
        "empty file"
        in only_error(list(iter_device_lines([], fmt=DeviceFormat.CSV, source="d.csv"))).reason
    )


def test_unknown_columns_are_warned_once_and_extra_cells_are_an_error() -> None:
    text = "device_id,type,lat,lon,grid\nSD-1,smoke_detector,22.5,113.3,x\nSD-2,camera,1,2,x,y\n"
    items = list(iter_device_lines(as_file(text), fmt=DeviceFormat.CSV, source="d.csv"))

    warning, error = issues_of(items)
    assert (warning.severity, warning.line) == (Severity.WARNING, 1)
    assert warning.reason == "unknown field 'grid' is ignored"
    assert (error.line, error.key) == (3, "SD-2")
    assert "row has 6 cells but the header has 5" in error.reason


def test_json_lines_that_are_not_objects_are_row_errors() -> None:
    lines = ["[1, 2]\n", "\n", "{oops\n", orjson.dumps(device()).decode() + "\n"]
    items = list(iter_device_lines(lines, fmt=DeviceFormat.JSONL, source="d.jsonl"))

    first, second = issues_of(items)
    assert (first.line, first.reason) == (1, "each line must be a JSON object")
    assert second.line == 3 and second.reason.startswith("not JSON")
    assert len(rows_of(items)) == 1


def test_rows_are_checked_lazily_as_the_caller_iterates() -> None:
    def endless() -> Iterator[str]:
        yield "device_id,type,lat,lon\n"
        for n in itertools.count():
            yield f"SD-{n},smoke_detector,22.505,113.305\n"

    first = list(
        itertools.islice(iter_device_lines(endless(), fmt=DeviceFormat.CSV, source="stream.csv"), 3)
    )

    assert [row.device.device_id for row in first if isinstance(row, ParsedDevice)] == [
        "SD-0",
        "SD-1",
        "SD-2",
    ]


@pytest.mark.parametrize(
    ("name", "text"),
    [("d.csv", csv_text(GOOD)), ("d.jsonl", jsonl(GOOD)), ("d.NDJSON", jsonl(GOOD))],
)
def test_the_format_follows_the_extension(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    items = list(iter_devices(path))
    assert issues_of(items) == [] and len(rows_of(items)) == 4
    assert count_data_lines(path) == 4


def test_an_explicit_format_wins_and_an_unknown_extension_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "devices.txt", jsonl(GOOD))

    assert "unknown device file type" in only_error(list(iter_devices(path))).reason
    assert len(rows_of(list(iter_devices(path, fmt=DeviceFormat.JSONL)))) == 4


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_from_chinese_excel_is_read_in_its_encoding(tmp_path: Path, encoding: str) -> None:
    path = write(tmp_path / "设备.csv", csv_text(GOOD), encoding=encoding)

    items = list(iter_devices(path))

    assert issues_of(items) == []
    assert rows_of(items)[0].address == "广东省信宜市东镇街道城东社区3栋"


def test_a_file_that_breaks_its_encoding_midway_is_reported(tmp_path: Path) -> None:
    head = csv_text(GOOD).encode("utf-8") * 600  # past the sniffed head
    path = tmp_path / "broken.csv"
    path.write_bytes(head + "SD-X,smoke_detector,坏\n".encode("gb18030"))

    items = list(iter_devices(path))

    assert "file is not valid utf-8-sig" in issues_of(items)[-1].reason
    assert issues_of(items)[-1].line is None


def test_options_a_profile_declares_and_registered_keys_may_be_overridden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meter = DeviceProfile(
        "test_meter",
        "test",
        metrics={},
        heartbeat_interval_s=60.0,
        options={"alarm_ma": 300.0, "label": "x"},
    )
    monkeypatch.setitem(profiles._PROFILES, "test_meter", meter)
    monkeypatch.setitem(overrides._REGISTERED, "delay_s", positive_number)

    good = device(type="test_meter", profile={"alarm_ma": 500, "delay_s": 5})
    bad_type = device("B1", type="test_meter", profile={"alarm_ma": "high"})
    bad_check = device("B2", type="test_meter", profile={"delay_s": 0})
    items = read_jsonl([good, bad_type, bad_check])

    (kept,) = rows_of(items)
    assert kept.profile.options == {"alarm_ma": 500, "delay_s": 5}
    resolved = kept.profile.apply(meter)
    assert resolved.options["alarm_ma"] == 500 and resolved.options["label"] == "x"
    first, second = issues_of(items)
    assert "profile.alarm_ma must be like the type's default 300.0" in first.reason
    assert "profile.delay_s must be a positive number" in second.reason


def test_a_device_survives_the_trip_through_a_table_row() -> None:
    for original in rows_of(read_jsonl(GOOD)):
        row = [getattr(v, "obj", v) for v in device_row(original)]  # unwrap Jsonb
        assert device_from_row(orjson.loads(orjson.dumps(row))) == original


FIELD_NAMES = st.sampled_from(
    [
        "device_id",
        "type",
        "lat",
        "lon",
        "grid_code",
        "profile",
        "rtsp_url",
        "zones",
        "masks",
        "name",
        "site",
    ]
)


@settings(database=None, max_examples=200)
@given(base=st.sampled_from(GOOD), changes=st.dictionaries(FIELD_NAMES, jsonish(10), max_size=4))
def test_any_json_row_is_a_device_or_an_issue_never_an_exception(
    base: dict[str, Any], changes: dict[str, Any]
) -> None:
    items = read_jsonl([{**base, **changes}])
    assert all(isinstance(item, ParsedDevice | ImportIssue) for item in items)
    assert len(rows_of(items)) + len([i for i in issues_of(items) if i.is_error]) == 1


@settings(database=None, max_examples=200)
@given(cells=st.lists(st.text(max_size=12), min_size=1, max_size=14))
def test_any_csv_row_is_a_device_or_an_issue_never_an_exception(cells: list[str]) -> None:
    header = ",".join(CSV_COLUMNS) + "\n"
    out = io.StringIO()
    csv.writer(out).writerow(cells)
    items = list(
        iter_device_lines(as_file(header + out.getvalue()), fmt=DeviceFormat.CSV, source="fuzz.csv")
    )
    assert all(isinstance(item, ParsedDevice | ImportIssue) for item in items)
