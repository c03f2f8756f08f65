"""Registry values ↔ rows of the ``grids`` and ``devices`` tables (0001_registry.sql).

Kept apart from the SQL so the mapping is tested without a database and both directions
sit side by side: a column added on one side and forgotten on the other shows up here.
jsonb values leave as plain lists/dicts (never tuples) so that re-importing the same file
produces equal jsonb and the upsert sees the row as unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from psycopg.types.json import Jsonb
from shapely.geometry import MultiPolygon, Polygon, shape

from devices.grid_geometry import to_geojson
from devices.overrides import ProfileOverrides
from devices.registry import (
    Device,
    DeviceEntry,
    FramePolygon,
    Grid,
    GridGeometry,
    GridLevel,
    Member,
    MemberRole,
)

GRID_COLUMNS = ("code", "name", "level", "parent", "members", "geometry", "ancestors")
DEVICE_COLUMNS = (
    "device_id",
    "type",
    "name",
    "lat",
    "lon",
    "address",
    "site",
    "grid_code",
    "grid_code_derived",
    "profile",
    "rtsp_url",
    "zones",
    "masks",
)
ENTRY_COLUMNS = ("device_id", "type", "site", "grid_code", "profile")

Row = Sequence[Any]
"""One database row in the column order above (psycopg's tuple rows)."""


def grid_row(grid: Grid) -> tuple[object, ...]:
    return (
        grid.code,
        grid.name,
        grid.level.value,
        grid.parent,
        Jsonb([m.to_json() for m in grid.members]),
        None if grid.geometry is None else Jsonb(to_geojson(grid.geometry)),
        list(grid.ancestors),
    )


def grid_from_row(row: Row) -> Grid:
    code, name, level, parent, members, geometry, ancestors = row
    return Grid(
        code=code,
        name=name,
        level=GridLevel(level),
        parent=parent,
        members=tuple(
            Member(m["id"], m["name"], MemberRole(m["role"]), m.get("phone", ""))
            for m in _json(members) or ()
        ),
        geometry=geometry_from_json(_json(geometry)),
        ancestors=tuple(ancestors or ()),
    )


def geometry_from_json(raw: object) -> GridGeometry | None:
    """A stored GeoJSON geometry; None when absent (upper levels) or not polygonal."""
    if raw is None:
        return None
    geometry = shape(raw)
    return geometry if isinstance(geometry, Polygon | MultiPolygon) else None


def device_row(device: Device) -> tuple[object, ...]:
    return (
        device.device_id,
        device.type,
        device.name,
        device.lat,
        device.lon,
        device.address,
        device.site,
        device.grid_code,
        device.grid_code_derived,
        Jsonb(device.profile.to_json()),
        device.rtsp_url,
        _polygons_json(device.zones),
        _polygons_json(device.masks),
    )


def device_from_row(row: Row) -> Device:
    (
        device_id,
        type_key,
        name,
        lat,
        lon,
        address,
        site,
        grid_code,
        derived,
        profile,
        rtsp_url,
        zones,
        masks,
    ) = row
    return Device(
        device_id=device_id,
        type=type_key,
        name=name,
        lat=lat,
        lon=lon,
        address=address,
        site=site,
        grid_code=grid_code,
        grid_code_derived=derived,
        profile=ProfileOverrides.from_json(_json(profile) or {}),
        rtsp_url=rtsp_url,
        zones=_polygons(_json(zones)),
        masks=_polygons(_json(masks)),
    )


def entry_from_row(row: Row) -> DeviceEntry:
    device_id, type_key, site, grid_code, profile = row
    return DeviceEntry(
        device_id=device_id,
        type=type_key,
        site=site,
        grid_code=grid_code,
        profile=ProfileOverrides.from_json(_json(profile) or {}),
    )


def _polygons_json(polygons: tuple[FramePolygon, ...]) -> Jsonb | None:
    # No zones is stored as NULL, so "no zones" has one spelling and compares unchanged.
    return Jsonb([p.to_json() for p in polygons]) if polygons else None


def _polygons(raw: Any) -> tuple[FramePolygon, ...]:
    return tuple(FramePolygon(tuple((float(x), float(y)) for x, y in p)) for p in raw or ())


def _json(value: Any) -> Any:
    """jsonb comes back decoded from psycopg, but as text when selected with ``::text``."""
    if isinstance(value, str | bytes):
        return orjson.loads(value)
    return value
