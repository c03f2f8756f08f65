"""Response resources in PostgreSQL: idempotent imports, listings, and the nearest ones to a
place with each hydrant's last known pressure.

Imports work like device imports (``devices.registry_store``): rows are checked, placed in a
basic grid (derived from the point when the row names none; a resource outside every grid is
kept unplaced, with a warning: a hydrant on a road between grids still serves both), and
merged in one transaction through a staging table, so re-importing a file changes nothing.
A hydrant's ``sensor_id`` that is not a registered ``water_pressure_sensor`` is warned about
and kept (the sensor may be imported later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from psycopg import sql
from psycopg.types.json import Jsonb

from devices.registry import ImportIssue, Severity
from devices.registry_sql import (
    Connection,
    column_list,
    copy_rows,
    create_staging,
    fetch,
    merge,
)
from devices.registry_store import ImportReport, ProgressCallback, load_grid_locator
from devices.resources import (
    EARTH_RADIUS_M,
    ParsedResource,
    Resource,
    ResourceKind,
    ResourceRow,
    iter_resources,
)

RESOURCE_COLUMNS: Final = (
    "resource_id", "kind", "name", "lat", "lon", "address", "grid_code", "grid_code_derived",
    "contact", "phone", "sensor_id", "detail",
)  # fmt: skip
PRESSURE_METRIC: Final = "pressure_mpa"


def resource_row(r: Resource) -> tuple[object, ...]:
    return (
        r.resource_id, r.kind.value, r.name, r.lat, r.lon, r.address, r.grid_code,
        r.grid_code_derived, r.contact, r.phone, r.sensor_id, Jsonb(dict(r.detail)),
    )  # fmt: skip


def resource_from_row(row: Sequence[Any]) -> Resource:
    (rid, kind, name, lat, lon, address, grid, derived, contact, phone, sensor, detail) = row
    return Resource(
        resource_id=rid,
        kind=ResourceKind(kind),
        lat=lat,
        lon=lon,
        name=name,
        address=address,
        grid_code=grid,
        grid_code_derived=derived,
        contact=contact,
        phone=phone,
        sensor_id=sensor,
        detail=detail or {},
    )


async def import_resource_file(
    conn: Connection, path: Path, *, on_progress: ProgressCallback | None = None
) -> ImportReport:
    rows = await asyncio.to_thread(lambda: list(iter_resources(path)))
    return await import_resources(conn, rows, source=str(path), on_progress=on_progress)


async def import_resources(
    conn: Connection,
    rows: Iterable[ResourceRow],
    *,
    source: str,
    on_progress: ProgressCallback | None = None,
) -> ImportReport:
    """Place and merge the good rows; returns the counts and every issue found."""
    items = list(rows)
    parsed = [i for i in items if isinstance(i, ParsedResource)]
    issues = [i for i in items if isinstance(i, ImportIssue)]
    async with conn.transaction():
        locator, basic = await load_grid_locator(conn)
        sensors = await _sensor_types(conn, {p.resource.sensor_id for p in parsed})
        kept: list[Resource] = []
        for item in parsed:
            placed, found = _place(
                item, locator.locate(item.resource.lon, item.resource.lat), basic, source
            )
            issues += found
            if placed is None:
                continue
            sensor = placed.sensor_id
            if sensor is not None and sensors.get(sensor) != "water_pressure_sensor":
                what = "not registered" if sensor not in sensors else f"a {sensors[sensor]}"
                issues.append(
                    ImportIssue(
                        source,
                        Severity.WARNING,
                        f"sensor_id {sensor} is {what}, not a registered water_pressure_sensor: "
                        "no pressure is shown until it is",
                        line=item.line,
                        key=placed.resource_id,
                    )
                )
            kept.append(placed)
        await create_staging(conn, "resources")
        written = await copy_rows(conn, "resources", RESOURCE_COLUMNS, map(resource_row, kept))
        counts = await merge(conn, "resources", "resource_id", RESOURCE_COLUMNS, written)
    if on_progress is not None:
        done = len(parsed) + sum(i.is_error and i.line is not None for i in issues)
        on_progress(done, done)
    issues.sort(key=lambda i: i.line or 0)
    return ImportReport(counts, tuple(issues))


def _place(
    item: ParsedResource, located: str | None, basic: frozenset[str], source: str
) -> tuple[Resource | None, list[ImportIssue]]:
    r = item.resource
    if r.grid_code is None:
        if located is None:
            warning = ImportIssue(
                source,
                Severity.WARNING,
                f"point lat {r.lat}, lon {r.lon} lies in no registered basic grid: kept "
                "unplaced (listed only to county-wide tokens, still found by distance)",
                line=item.line,
                key=r.resource_id,
            )
            return r, [warning]
        return replace(r, grid_code=located, grid_code_derived=True), []
    if r.grid_code not in basic:
        error = ImportIssue(
            source,
            Severity.ERROR,
            f"grid_code {r.grid_code} is not a registered grid",
            line=item.line,
            key=r.resource_id,
        )
        return None, [error]
    return r, []


async def _sensor_types(conn: Connection, ids: set[str | None]) -> dict[str, str]:
    wanted = sorted(i for i in ids if i)
    if not wanted:
        return {}
    rows = await fetch(
        conn, "SELECT device_id, type FROM devices WHERE device_id = ANY(%(ids)s)", {"ids": wanted}
    )
    return dict(rows)


async def list_resources(
    conn: Connection,
    *,
    subtree: str | None = None,
    kinds: Sequence[str] = (),
    limit: int = 100,
    offset: int = 0,
) -> list[Resource]:
    """Resources ordered by id; ``subtree`` keeps those placed in that grid's subtree (and so
    leaves out unplaced ones)."""
    conditions: list[sql.Composable] = []
    params: dict[str, object] = {"limit": limit, "offset": offset}
    if subtree is not None:
        conditions.append(
            sql.SQL(
                "grid_code IN (SELECT code FROM grids"
                " WHERE code = %(grid)s OR %(grid)s = ANY(ancestors))"
            )
        )
        params["grid"] = subtree
    if kinds:
        conditions.append(sql.SQL("kind = ANY(%(kinds)s)"))
        params["kinds"] = list(kinds)
    query = sql.SQL("SELECT {} FROM resources").format(column_list(RESOURCE_COLUMNS))
    if conditions:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    query += sql.SQL(" ORDER BY resource_id LIMIT %(limit)s OFFSET %(offset)s")
    return [resource_from_row(row) for row in await fetch(conn, query, params)]


_NEAREST: Final = f"""
WITH d AS (
    SELECT r.*, 2 * {EARTH_RADIUS_M} * asin(least(1.0, sqrt(
        power(sin(radians(r.lat - %(lat)s) / 2), 2)
        + cos(radians(%(lat)s)) * cos(radians(r.lat))
          * power(sin(radians(r.lon - %(lon)s) / 2), 2)))) AS distance_m
    FROM resources r
    WHERE r.kind = ANY(%(kinds)s) AND r.lat IS NOT NULL AND r.lon IS NOT NULL
), ranked AS (
    SELECT d.*, row_number() OVER (PARTITION BY d.kind ORDER BY d.distance_m, d.resource_id) AS n
    FROM d WHERE d.distance_m <= %(within)s
)
SELECT {", ".join(f"k.{c}" for c in RESOURCE_COLUMNS)}, k.distance_m,
       (s.last_values->>'{PRESSURE_METRIC}')::float8, s.last_ts, s.status,
       EXISTS (SELECT 1 FROM grid_events e
               WHERE e.category = 'water' AND e.state NOT IN ('closed', 'false_alarm')
                 AND k.sensor_id = ANY(e.device_ids))
FROM ranked k
LEFT JOIN devices v ON v.device_id = k.sensor_id AND v.type = 'water_pressure_sensor'
LEFT JOIN device_state s ON s.device_id = v.device_id
WHERE k.n <= %(per_kind)s
ORDER BY k.kind, k.distance_m, k.resource_id
"""


async def nearest(
    conn: Connection,
    lat: float,
    lon: float,
    *,
    kinds: Sequence[ResourceKind] = tuple(ResourceKind),
    per_kind: int = 2,
    within_m: float = 10_000.0,
) -> dict[str, list[dict[str, Any]]]:
    """The ``per_kind`` nearest resources of each kind within ``within_m`` of a place, by
    kind, nearest first; a hydrant with a registered pressure sensor carries that sensor's
    last pressure (MPa), when it was measured, the sensor's status and whether a water
    event of it is open."""
    found: dict[str, list[dict[str, Any]]] = {k.value: [] for k in kinds}
    if per_kind <= 0 or not kinds:
        return found
    params = {
        "lat": lat,
        "lon": lon,
        "kinds": [k.value for k in kinds],
        "per_kind": per_kind,
        "within": within_m,
    }
    for row in await fetch(conn, _NEAREST, params):
        columns = len(RESOURCE_COLUMNS)
        resource = resource_from_row(row[:columns])
        distance, pressure, measured, status, alarm = row[columns:]
        item = {**resource.to_json(), "distance_m": round(distance, 1)}
        if resource.kind is ResourceKind.FIRE_HYDRANT:
            item["water"] = {
                "pressure_mpa": pressure,
                "measured_at": measured.isoformat() if measured is not None else None,
                "sensor_status": status,
                "alarm": bool(alarm) if resource.sensor_id else None,
            }
        else:
            item["water"] = None
        found[resource.kind.value].append(item)
    return found
