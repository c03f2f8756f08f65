"""Read a device file (CSV or JSON lines) row by row into registry values and issues.

A county imports tens of thousands of devices at once, so rows are validated lazily: the
caller iterates, stores in batches and shows progress long before the last row is read.
Every bad row is reported with its line and reason and the good rows are kept. The grid a
device belongs to is checked later, against the stored grids (``devices.registry_store``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from devices import device_fields as fields
from devices.device_fields import FieldError
from devices.grid_codes import is_basic_grid_code
from devices.overrides import OverrideError, parse_overrides
from devices.profiles import UnknownDeviceType, get_profile, registered_types
from devices.registry import Device, FramePolygon, ImportIssue, Severity
from devices.tabular import (
    EXTENSIONS,
    RawRow,
    TableFormat,
    csv_rows,
    format_for,
    jsonl_rows,
    read_table,
    unknown_fields,
)

DeviceFormat = TableFormat  # the name callers know: a device file's format

KNOWN_FIELDS = (
    "device_id",
    "type",
    "name",
    "lat",
    "lon",
    "address",
    "site",
    "grid_code",
    "profile",
    "rtsp_url",
    "zones",
    "masks",
)
REQUIRED_FIELDS = ("device_id", "type")
CAMERA_FIELDS = ("rtsp_url", "zones", "masks")
# The contract names cameras as the type pulled over RTSP; profiles carry no such flag yet.
CAMERA_TYPE = "camera"


@dataclass(frozen=True, slots=True)
class ParsedDevice:
    """A row that passed its checks, with its line so later checks can point at it."""

    line: int
    device: Device


DeviceRow = ParsedDevice | ImportIssue
"""What iterating a device file yields; warnings about a kept row come before the row."""


def iter_devices(path: Path, *, fmt: DeviceFormat | None = None) -> Iterator[DeviceRow]:
    """Rows and issues of a device file, read as the caller iterates."""
    source = str(path)
    chosen = fmt or format_for(path)
    if chosen is None:
        known = ", ".join(sorted(EXTENSIONS))
        yield ImportIssue(source, Severity.ERROR, f"unknown device file type (use {known})")
        return
    yield from read_table(
        path, chosen, lambda lines: iter_device_lines(lines, fmt=chosen, source=source)
    )


def iter_device_lines(
    lines: Iterable[str], *, fmt: DeviceFormat, source: str
) -> Iterator[DeviceRow]:
    """Rows and issues of device text (a file, an HTTP upload), lazily."""
    raw_rows = _csv_rows(lines, source) if fmt is TableFormat.CSV else _jsonl_rows(lines, source)
    first_line: dict[str, int] = {}
    for item in raw_rows:
        if isinstance(item, ImportIssue):
            yield item
            continue
        line, row = item
        yield from _check_row(source, line, row, first_line)


def count_data_lines(path: Path) -> int:
    """Non-blank lines after a CSV header: the progress total (exact unless a quoted CSV
    field spans lines); counting bytes is ~100× faster than validating the rows."""
    count = 0
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                count += 1
    if format_for(path) is TableFormat.CSV and count:
        count -= 1
    return count


def _check_header(source: str) -> Callable[[list[str], int], Iterator[ImportIssue]]:
    def check(header: list[str], line: int) -> Iterator[ImportIssue]:
        problem = _header_problem(header)
        if problem is not None:
            yield ImportIssue(source, Severity.ERROR, problem, line=line)
            return
        yield from unknown_fields(source, line, header, KNOWN_FIELDS, set())

    return check


def _csv_rows(lines: Iterable[str], source: str) -> Iterator[RawRow | ImportIssue]:
    return csv_rows(lines, source, _check_header(source), key_column="device_id")


def _jsonl_rows(lines: Iterable[str], source: str) -> Iterator[RawRow | ImportIssue]:
    warned: set[str] = set()
    for item in jsonl_rows(lines, source):
        if not isinstance(item, ImportIssue):
            yield from unknown_fields(source, item[0], item[1], KNOWN_FIELDS, warned)
        yield item


def _header_problem(header: list[str]) -> str | None:
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        return f"header lacks required column(s) {', '.join(missing)}"
    doubled = sorted({name for name in header if name and header.count(name) > 1})
    if doubled:
        return f"header repeats column(s) {', '.join(doubled)}"
    return None


def _check_row(
    source: str, line: int, row: Mapping[str, object], first_line: dict[str, int]
) -> Iterator[DeviceRow]:
    key: str | None = None
    try:
        key = fields.device_id(row)
        if key in first_line:
            raise FieldError(f"duplicate device_id, first on line {first_line[key]}")
        first_line[key] = line
        device, warnings = _device(key, row)
    except (FieldError, OverrideError) as exc:
        yield ImportIssue(source, Severity.ERROR, str(exc), line=line, key=key)
        return
    for warning in warnings:
        yield ImportIssue(source, Severity.WARNING, warning, line=line, key=key)
    yield ParsedDevice(line, device)


def _device(device_id: str, row: Mapping[str, object]) -> tuple[Device, list[str]]:
    type_key = fields.text(row, "type", required=True)
    try:
        profile = get_profile(type_key)
    except UnknownDeviceType:
        known = ", ".join(registered_types())
        raise FieldError(f"type {type_key!r} is not registered (known: {known})") from None
    lat, lon = fields.position(row)
    grid_code = fields.text(row, "grid_code") or None
    if grid_code is not None and not is_basic_grid_code(grid_code):
        raise FieldError(
            f"grid_code {grid_code!r} must be a basic grid code (village code + -NN, "
            "e.g. 440981001005-03)"
        )
    if lat is None and grid_code is None:
        raise FieldError("needs lat/lon (to find its grid) or a grid_code")
    overrides = parse_overrides(fields.json_value(row, "profile"), profile)
    missing = sorted(profile.required_options - set(overrides.options))
    if missing:
        raise FieldError(f"a {type_key} needs profile.{missing[0]} ({profile.description})")
    warnings: list[str] = []
    rtsp: str | None = None
    zones: tuple[FramePolygon, ...] = ()
    masks: tuple[FramePolygon, ...] = ()
    if type_key == CAMERA_TYPE:
        rtsp = fields.rtsp_url(row)
        zones = fields.frame_polygons(row, "zones")
        masks = fields.frame_polygons(row, "masks")
    else:
        ignored = [name for name in CAMERA_FIELDS if fields.present(row, name) is not None]
        if ignored:
            warnings.append(f"{', '.join(ignored)} ignored: only cameras have them")
    device = Device(
        device_id=device_id,
        type=type_key,
        name=fields.text(row, "name"),
        lat=lat,
        lon=lon,
        address=fields.text(row, "address"),
        site=fields.text(row, "site"),
        grid_code=grid_code,
        profile=overrides,
        rtsp_url=rtsp,
        zones=zones,
        masks=masks,
    )
    return device, warnings


