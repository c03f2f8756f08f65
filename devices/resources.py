"""Response resources (应急资源): who can get to an incident and whether the water is there.

A county registers its micro fire stations (微型消防站), fire hydrants and duty teams like its
devices: a CSV (with header) or JSON-lines file, one resource a row, checked row by row —
every bad row is reported with its line and reason, the good ones are kept.

Fields: ``resource_id`` (like a device id), ``kind`` (``micro_fire_station``,
``fire_hydrant``, ``duty_team``), ``name``, ``lat``/``lon`` (required: a resource is found
by distance), ``address``, optional ``grid_code`` (derived from the point when absent),
``contact`` and ``phone``, for a hydrant optional ``sensor_id`` (the
``water_pressure_sensor`` on it, whose last reading is the hydrant's pressure), and
``detail`` (a JSON object: staff, vehicles, opening hours, …).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from devices import device_fields as fields
from devices.device_fields import FieldError
from devices.grid_codes import is_basic_grid_code
from devices.registry import ImportIssue, Severity
from devices.tabular import (
    TableFormat,
    csv_rows,
    format_for,
    jsonl_rows,
    read_table,
    unknown_fields,
)

KNOWN_FIELDS: Final = (
    "resource_id", "kind", "name", "lat", "lon", "address", "grid_code", "contact", "phone",
    "sensor_id", "detail",
)  # fmt: skip
REQUIRED_FIELDS: Final = ("resource_id", "kind", "lat", "lon")
EARTH_RADIUS_M: Final = 6_371_008.8


class ResourceKind(StrEnum):
    MICRO_FIRE_STATION = "micro_fire_station"  # 微型消防站
    FIRE_HYDRANT = "fire_hydrant"  # 消火栓
    DUTY_TEAM = "duty_team"  # 值守/巡防队


@dataclass(frozen=True, slots=True)
class Resource:
    """One registered resource, as stored in ``resources`` (0007_field.sql)."""

    resource_id: str
    kind: ResourceKind
    lat: float
    lon: float
    name: str = ""
    address: str = ""
    grid_code: str | None = None
    grid_code_derived: bool = False
    contact: str = ""
    phone: str = ""
    sensor_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "resource_id": self.resource_id,
            "kind": self.kind.value,
            "name": self.name,
            "lat": self.lat,
            "lon": self.lon,
            "address": self.address,
            "grid_code": self.grid_code,
            "contact": self.contact,
            "phone": self.phone,
            "sensor_id": self.sensor_id,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True, slots=True)
class ParsedResource:
    line: int
    resource: Resource


ResourceRow = ParsedResource | ImportIssue


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (ample for 'which station is nearest' in a county)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def iter_resources(path: Path) -> Iterator[ResourceRow]:
    """Rows and issues of a resource file, read as the caller iterates."""
    source = str(path)
    fmt = format_for(path)
    if fmt is None:
        yield ImportIssue(source, Severity.ERROR, "unknown file type (use .csv or .jsonl)")
        return
    yield from read_table(
        path, fmt, lambda lines: iter_resource_lines(lines, fmt=fmt, source=source)
    )


def iter_resource_lines(
    lines: Iterable[str], *, fmt: TableFormat, source: str
) -> Iterator[ResourceRow]:
    raw = (
        csv_rows(lines, source, _check_header(source), key_column="resource_id")
        if fmt is TableFormat.CSV
        else jsonl_rows(lines, source)
    )
    first_line: dict[str, int] = {}
    warned: set[str] = set()
    for item in raw:
        if isinstance(item, ImportIssue):
            yield item
            continue
        line, row = item
        yield from unknown_fields(source, line, row, KNOWN_FIELDS, warned)
        key: str | None = None
        try:
            key = _resource_id(row)
            if key in first_line:
                raise FieldError(f"duplicate resource_id, first on line {first_line[key]}")
            first_line[key] = line
            yield ParsedResource(line, parse_resource(key, row))
        except FieldError as exc:
            yield ImportIssue(source, Severity.ERROR, str(exc), line=line, key=key)


def parse_resource(resource_id: str, row: Mapping[str, object]) -> Resource:
    kind_text = fields.text(row, "kind", required=True)
    try:
        kind = ResourceKind(kind_text)
    except ValueError:
        known = ", ".join(k.value for k in ResourceKind)
        raise FieldError(f"kind {kind_text!r} is not one of {known}") from None
    lat, lon = fields.position(row)
    if lat is None or lon is None:
        raise FieldError("lat and lon are required: resources are found by distance")
    grid_code = fields.text(row, "grid_code") or None
    if grid_code is not None and not is_basic_grid_code(grid_code):
        raise FieldError(
            f"grid_code {grid_code!r} must be a basic grid code (e.g. 440981001005-03)"
        )
    sensor_id = fields.text(row, "sensor_id") or None
    if sensor_id is not None:
        if kind is not ResourceKind.FIRE_HYDRANT:
            raise FieldError("sensor_id is for fire hydrants (the pressure sensor on them)")
        if not fields.DEVICE_ID.fullmatch(sensor_id):
            raise FieldError(f"sensor_id {sensor_id!r} is not a device id")
    detail = fields.json_value(row, "detail")
    if detail is None:
        detail = {}
    if not isinstance(detail, dict):
        raise FieldError("detail must be a JSON object")
    return Resource(
        resource_id=resource_id,
        kind=kind,
        lat=lat,
        lon=lon,
        name=fields.text(row, "name"),
        address=fields.text(row, "address"),
        grid_code=grid_code,
        contact=fields.text(row, "contact"),
        phone=_phone(row),
        sensor_id=sensor_id,
        detail=detail,
    )


def _resource_id(row: Mapping[str, object]) -> str:
    value = fields.text(row, "resource_id", required=True)
    if not fields.DEVICE_ID.fullmatch(value):
        raise FieldError(f"resource_id {value!r} must be 1–64 of A-Z a-z 0-9 _ . : -")
    return value


def _phone(row: Mapping[str, object]) -> str:
    """Kept as text (leading zeros and area codes matter), whatever JSON type it came as."""
    value = fields.present(row, "phone")
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return fields.text(row, "phone")


def _check_header(source: str) -> Callable[[list[str], int], Iterator[ImportIssue]]:
    def check(header: list[str], line: int) -> Iterator[ImportIssue]:
        missing = [n for n in REQUIRED_FIELDS if n not in header]
        if missing:
            yield ImportIssue(
                source, Severity.ERROR, f"header lacks column(s) {', '.join(missing)}", line=line
            )

    return check
