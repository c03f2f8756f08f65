"""The registry in PostgreSQL: idempotent imports, listings, and the ingest path's index.

Imports copy the accepted rows into a temporary table and merge them with one
``INSERT … ON CONFLICT DO UPDATE … WHERE … IS DISTINCT FROM …``: a row that did not change
is not touched (its ``updated_at`` stays), so importing the same file twice changes nothing
and the report can say how many rows were inserted, updated and unchanged. Everything of
one import happens in one transaction; the ``NOTIFY`` sent in it reaches listeners only
once the rows are committed, so a service that refreshes on it sees them. It is sent only
when something changed: a no-op re-import does not make every service reload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import shapely
from psycopg import sql
from shapely.geometry import MultiPolygon, Polygon

from devices.device_import import (
    DeviceFormat,
    DeviceRow,
    ParsedDevice,
    count_data_lines,
    iter_devices,
)
from devices.geo import GridLocator
from devices.grids import parse_grids
from devices.placement import place_devices
from devices.registry import Device, DeviceEntry, Grid, ImportIssue
from devices.registry_rows import (
    DEVICE_COLUMNS,
    ENTRY_COLUMNS,
    GRID_COLUMNS,
    device_from_row,
    device_row,
    entry_from_row,
    grid_from_row,
    grid_row,
)
from devices.registry_sql import (
    Connection,
    UpsertCounts,
    column_list,
    copy_rows,
    copy_statement,
    create_staging,
    fetch,
    merge,
)

__all__ = [
    "REGISTRY_CHANNEL",
    "ImportReport",
    "ProgressCallback",
    "UpsertCounts",
    "get_device",
    "import_device_file",
    "import_devices",
    "import_grid_file",
    "import_grids",
    "list_devices",
    "list_grids",
    "load_device_index",
    "load_grid_locator",
    "notify",
    "upsert_devices",
    "upsert_grids",
]

REGISTRY_CHANNEL = "gridwatch_registry"
ProgressCallback = Callable[[int, int | None], None]
"""``on_progress(done, total)``: rows handled so far, and the total when it is known."""


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did to the registry and what the operator should fix in the file."""

    counts: UpsertCounts
    issues: tuple[ImportIssue, ...]

    @property
    def errors(self) -> tuple[ImportIssue, ...]:
        return tuple(i for i in self.issues if i.is_error)

    @property
    def warnings(self) -> tuple[ImportIssue, ...]:
        return tuple(i for i in self.issues if not i.is_error)


# ---------------------------------------------------------------- grids


async def import_grid_file(
    conn: Connection, path: Path, *, on_progress: ProgressCallback | None = None
) -> ImportReport:
    data = await asyncio.to_thread(path.read_bytes)
    return await import_grids(conn, data, source=str(path), on_progress=on_progress)


async def import_grids(
    conn: Connection,
    data: bytes,
    *,
    source: str,
    on_progress: ProgressCallback | None = None,
) -> ImportReport:
    """Check a grid file against the stored tree and merge its good features."""
    async with conn.transaction():
        existing = {code for (code,) in await fetch(conn, "SELECT code FROM grids")}
        checked = await asyncio.to_thread(parse_grids, data, source=source, existing=existing)
        counts = await upsert_grids(conn, checked.grids)
        if counts.changed:
            await notify(conn, "grids")
    if on_progress is not None:
        features = len(checked.grids) + sum(e.feature is not None for e in checked.errors)
        on_progress(features, features)
    return ImportReport(counts, checked.issues)


async def upsert_grids(conn: Connection, grids: Iterable[Grid]) -> UpsertCounts:
    """Merge checked grids; parents may come in any order (the parent key is deferred)."""
    async with conn.transaction():
        await create_staging(conn, "grids")
        written = await copy_rows(conn, "grids", GRID_COLUMNS, map(grid_row, grids))
        return await merge(conn, "grids", "code", GRID_COLUMNS, written)


async def list_grids(
    conn: Connection, *, subtree: str | None = None, with_geometry: bool = True
) -> list[Grid]:
    """Grids ordered by code, so every parent comes before its children."""
    selected: list[sql.Composable] = [sql.Identifier(c) for c in GRID_COLUMNS]
    if not with_geometry:
        selected[GRID_COLUMNS.index("geometry")] = sql.SQL("NULL")
    query = sql.SQL("SELECT {} FROM grids").format(sql.SQL(", ").join(selected))
    params: dict[str, object] = {}
    if subtree is not None:
        query += sql.SQL(" WHERE code = %(root)s OR %(root)s = ANY(ancestors)")
        params["root"] = subtree
    query += sql.SQL(" ORDER BY code")
    return [grid_from_row(row) for row in await fetch(conn, query, params)]


async def load_grid_locator(conn: Connection) -> tuple[GridLocator, frozenset[str]]:
    """The locator over the stored basic grids, and the codes of all stored basic grids."""
    rows = await fetch(conn, "SELECT code, geometry::text FROM grids WHERE level = 'grid'")
    codes = frozenset(code for code, _ in rows)
    drawn = [(code, text) for code, text in rows if text is not None]
    # One vectorised parse: a county has thousands of grids and this runs on every import.
    shapes = shapely.from_geojson([text for _, text in drawn]) if drawn else []
    areas = {
        code: shape
        for (code, _), shape in zip(drawn, shapes, strict=True)
        if isinstance(shape, Polygon | MultiPolygon)
    }
    return GridLocator(areas), codes


# ---------------------------------------------------------------- devices


async def import_device_file(
    conn: Connection,
    path: Path,
    *,
    fmt: DeviceFormat | None = None,
    on_progress: ProgressCallback | None = None,
    batch_size: int = 2000,
) -> ImportReport:
    total = await asyncio.to_thread(count_data_lines, path)
    rows = iter_devices(path, fmt=fmt)
    return await import_devices(
        conn, rows, source=str(path), total=total, on_progress=on_progress, batch_size=batch_size
    )


async def import_devices(
    conn: Connection,
    rows: Iterable[DeviceRow],
    *,
    source: str,
    total: int | None = None,
    on_progress: ProgressCallback | None = None,
    batch_size: int = 2000,
) -> ImportReport:
    """Merge parsed device rows, each placed in a stored basic grid.

    Rows are pulled from ``rows`` in batches on a worker thread (reading and checking a
    100k-row file is CPU work that must not stall the event loop), placed, and streamed
    into the staging table; ``on_progress`` is called after every batch.
    """
    issues: list[ImportIssue] = []
    done = written = 0
    iterator = iter(rows)
    async with conn.transaction():
        locator, basic_grids = await load_grid_locator(conn)
        await create_staging(conn, "devices")
        statement = copy_statement("devices", DEVICE_COLUMNS)
        async with conn.cursor() as cur, cur.copy(statement) as copy:
            while batch := await asyncio.to_thread(_take, iterator, batch_size):
                parsed = [item for item in batch if isinstance(item, ParsedDevice)]
                found = [item for item in batch if isinstance(item, ImportIssue)]
                # One row yields one ParsedDevice or one error with a line; the rest
                # (warnings, file-level errors) are not rows.
                done += len(parsed) + sum(i.is_error and i.line is not None for i in found)
                placed = place_devices(parsed, locator, basic_grids, source=source)
                issues += [*found, *placed.issues]
                for device in placed.devices:
                    await copy.write_row(device_row(device))
                written += len(placed.devices)
                if on_progress is not None:
                    on_progress(done, None if total is None else max(total, done))
        counts = await merge(conn, "devices", "device_id", DEVICE_COLUMNS, written)
        if counts.changed:
            await notify(conn, "devices")
    if on_progress is not None:
        on_progress(done, done)
    issues.sort(key=lambda i: i.line or 0)
    return ImportReport(counts, tuple(issues))


async def upsert_devices(conn: Connection, devices: Iterable[Device]) -> UpsertCounts:
    """Merge devices that are already placed (their grid_code is a stored basic grid)."""
    async with conn.transaction():
        await create_staging(conn, "devices")
        written = await copy_rows(conn, "devices", DEVICE_COLUMNS, map(device_row, devices))
        return await merge(conn, "devices", "device_id", DEVICE_COLUMNS, written)


# Devices placed in grid %(grid)s or any grid below it.
_IN_SUBTREE = sql.SQL(
    "grid_code IN (SELECT code FROM grids WHERE code = %(grid)s OR %(grid)s = ANY(ancestors))"
)


async def list_devices(
    conn: Connection,
    *,
    grid: str | None = None,
    type: str | None = None,
    site: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Device]:
    """Devices ordered by id; ``grid`` selects the devices of that grid's whole subtree."""
    conditions: list[sql.Composable] = []
    params: dict[str, object] = {"limit": limit, "offset": offset}
    if grid is not None:
        conditions.append(_IN_SUBTREE)
        params["grid"] = grid
    if type is not None:
        conditions.append(sql.SQL("type = %(type)s"))
        params["type"] = type
    if site is not None:
        conditions.append(sql.SQL("site = %(site)s"))
        params["site"] = site
    query = sql.SQL("SELECT {} FROM devices").format(column_list(DEVICE_COLUMNS))
    if conditions:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    query += sql.SQL(" ORDER BY device_id LIMIT %(limit)s OFFSET %(offset)s")
    return [device_from_row(row) for row in await fetch(conn, query, params)]


async def get_device(conn: Connection, device_id: str) -> Device | None:
    query = sql.SQL("SELECT {} FROM devices WHERE device_id = %(id)s").format(
        column_list(DEVICE_COLUMNS)
    )
    rows = await fetch(conn, query, {"id": device_id})
    return device_from_row(rows[0]) if rows else None


async def load_cameras(conn: Connection, *, grid: str | None = None) -> list[Device]:
    """The devices with a stream to pull, with their zones and masks; ``grid`` selects the
    cameras of that grid's whole subtree."""
    query = sql.SQL("SELECT {} FROM devices WHERE rtsp_url IS NOT NULL").format(
        column_list(DEVICE_COLUMNS)
    )
    params: dict[str, object] = {}
    if grid is not None:
        query += sql.SQL(" AND ") + _IN_SUBTREE
        params["grid"] = grid
    query += sql.SQL(" ORDER BY device_id")
    return [device_from_row(row) for row in await fetch(conn, query, params)]


async def load_device_index(conn: Connection) -> dict[str, DeviceEntry]:
    """Every device as the ingest path needs it in memory, keyed by device id."""
    query = sql.SQL("SELECT {} FROM devices").format(column_list(ENTRY_COLUMNS))
    return {entry.device_id: entry for entry in map(entry_from_row, await fetch(conn, query))}


async def notify(conn: Connection, what: str) -> None:
    """Tell running services to reload ``what`` ('grids' or 'devices'); sent on commit."""
    await conn.execute("SELECT pg_notify(%s, %s)", (REGISTRY_CHANNEL, what))


def _take(iterator: Iterator[DeviceRow], size: int) -> list[DeviceRow]:
    batch: list[DeviceRow] = []
    for item in iterator:
        batch.append(item)
        if len(batch) >= size:
            break
    return batch
