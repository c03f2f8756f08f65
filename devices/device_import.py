"""Read a device file (CSV or JSON lines) row by row into registry values and issues.

A county imports tens of thousands of devices at once, so rows are validated lazily: the
caller iterates, stores in batches and shows progress long before the last row is read.
Every bad row is reported with its line and reason and the good rows are kept. The grid a
device belongs to is checked later, against the stored grids (``devices.registry_store``).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import orjson

from devices import device_fields as fields
from devices.device_fields import FieldError
from devices.grid_codes import is_basic_grid_code
from devices.overrides import OverrideError, parse_overrides
from devices.profiles import UnknownDeviceType, get_profile, registered_types
from devices.registry import Device, FramePolygon, ImportIssue, Severity

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
_SNIFF_BYTES = 64 * 1024


class DeviceFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


_EXTENSIONS = {
    ".csv": DeviceFormat.CSV,
    ".jsonl": DeviceFormat.JSONL,
    ".ndjson": DeviceFormat.JSONL,
}


@dataclass(frozen=True, slots=True)
class ParsedDevice:
    """A row that passed its checks, with its line so later checks can point at it."""

    line: int
    device: Device


DeviceRow = ParsedDevice | ImportIssue
"""What iterating a device file yields; warnings about a kept row come before the row."""


def format_for(path: Path) -> DeviceFormat | None:
    return _EXTENSIONS.get(path.suffix.lower())


def iter_devices(path: Path, *, fmt: DeviceFormat | None = None) -> Iterator[DeviceRow]:
    """Rows and issues of a device file, read as the caller iterates."""
    source = str(path)
    chosen = fmt or format_for(path)
    if chosen is None:
        known = ", ".join(sorted(_EXTENSIONS))
        yield ImportIssue(source, Severity.ERROR, f"unknown device file type (use {known})")
        return
    # JSON is UTF-8 by definition; CSV from a Chinese Excel is often GB18030.
    encoding = "utf-8-sig" if chosen is DeviceFormat.JSONL else _sniff_encoding(path)
    with path.open(encoding=encoding, newline="") as handle:
        try:
            yield from iter_device_lines(handle, fmt=chosen, source=source)
        except UnicodeDecodeError as exc:
            yield ImportIssue(source, Severity.ERROR, f"file is not valid {encoding}: {exc}")


def iter_device_lines(
    lines: Iterable[str], *, fmt: DeviceFormat, source: str
) -> Iterator[DeviceRow]:
    """Rows and issues of device text (a file, an HTTP upload), lazily."""
    raw_rows = _csv_rows(lines, source) if fmt is DeviceFormat.CSV else _jsonl_rows(lines, source)
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
    if format_for(path) is DeviceFormat.CSV and count:
        count -= 1
    return count


_RawRow = tuple[int, Mapping[str, object]]


def _csv_rows(lines: Iterable[str], source: str) -> Iterator[_RawRow | ImportIssue]:
    reader = csv.reader(lines)
    header: list[str] | None = None
    last_line = 0
    for cells in reader:
        line, last_line = last_line + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lstrip("\ufeff") for cell in cells]
            problem = _header_problem(header)
            if problem is not None:
                yield ImportIssue(source, Severity.ERROR, problem, line=line)
                return
            yield from _unknown_fields(source, line, header, set())
            continue
        if len(cells) > len(header):
            yield ImportIssue(
                source,
                Severity.ERROR,
                f"row has {len(cells)} cells but the header has {len(header)}",
                line=line,
                key=cells[0].strip() or None,
            )
            continue
        yield line, dict(zip(header, cells, strict=False))
    if header is None:
        yield ImportIssue(source, Severity.ERROR, "empty file: no header row")


def _jsonl_rows(lines: Iterable[str], source: str) -> Iterator[_RawRow | ImportIssue]:
    warned: set[str] = set()
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield ImportIssue(source, Severity.ERROR, f"not JSON: {exc}", line=line)
            continue
        if not isinstance(row, dict):
            yield ImportIssue(source, Severity.ERROR, "each line must be a JSON object", line=line)
            continue
        yield from _unknown_fields(source, line, row, warned)
        yield line, row


def _header_problem(header: list[str]) -> str | None:
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        return f"header lacks required column(s) {', '.join(missing)}"
    doubled = sorted({name for name in header if name and header.count(name) > 1})
    if doubled:
        return f"header repeats column(s) {', '.join(doubled)}"
    return None


def _unknown_fields(
    source: str, line: int, names: Iterable[str], warned: set[str]
) -> Iterator[ImportIssue]:
    """Each unknown field once per file: likely a typo (``grid`` for ``grid_code``)."""
    for name in names:
        if name and name not in KNOWN_FIELDS and name not in warned:
            warned.add(name)
            yield ImportIssue(
                source, Severity.WARNING, f"unknown field {name!r} is ignored", line=line
            )


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


def _sniff_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) when the head decodes as such, else GB18030."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=len(head) < _SNIFF_BYTES)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8-sig"
