"""``gridwatch grids …`` and ``gridwatch devices …``: the registry from the command line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import orjson
import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from devices import registry_store
from devices.registry_store import ImportReport, ProgressCallback
from gridwatch.cli import common
from gridwatch.endpoints import command_database

grids_app = typer.Typer(help="The grid tree: import and list.", no_args_is_help=True)
devices_app = typer.Typer(help="Devices: import, list, show.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

MAX_ISSUES_SHOWN = 200


def _with_db(work: Callable[[psycopg.AsyncConnection], Awaitable[None]]) -> None:
    settings = common.settings()

    async def main() -> None:
        with command_database(settings) as dsn:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                await work(conn)

    common.run_async(main)


def _import(
    path: Path,
    what: str,
    run: Callable[[psycopg.AsyncConnection, ProgressCallback], Awaitable[ImportReport]],
) -> None:
    if not path.is_file():
        raise common.UserError(f"{path}: no such file")
    outcome: list[ImportReport] = []

    async def work(conn: psycopg.AsyncConnection) -> None:
        with Progress(
            TextColumn(f"importing {what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
        ) as progress:
            task = progress.add_task(what, total=None)

            def on_progress(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            outcome.append(await run(conn, on_progress))
        await conn.commit()

    _with_db(work)
    report = outcome[0]
    for issue in report.issues[:MAX_ISSUES_SHOWN]:
        errors.print(str(issue), style="red" if issue.is_error else "yellow", markup=False)
    if len(report.issues) > MAX_ISSUES_SHOWN:
        errors.print(f"… and {len(report.issues) - MAX_ISSUES_SHOWN} more issues")
    c = report.counts
    console.print(
        f"{what}: {c.inserted} inserted, {c.updated} updated, {c.unchanged} unchanged; "
        f"{len(report.errors)} rejected, {len(report.warnings)} warnings"
    )
    if report.errors:
        raise typer.Exit(1)


@grids_app.command("import")
def grids_import(
    path: Annotated[Path, typer.Argument(help="GeoJSON FeatureCollection of grids.")],
) -> None:
    """Import (upsert) a grid tree; every bad feature is reported and the good ones kept."""
    _import(
        path, "grids", lambda conn, cb: registry_store.import_grid_file(conn, path, on_progress=cb)
    )


@grids_app.command("list")
def grids_list(
    subtree: Annotated[str | None, typer.Option(help="Only this grid code and below.")] = None,
) -> None:
    """List grids with level, parent and members."""

    async def work(conn: psycopg.AsyncConnection) -> None:
        grids = await registry_store.list_grids(conn, subtree=subtree, with_geometry=False)
        table = Table("code", "name", "level", "parent", "members")
        for g in grids:
            members = ", ".join(f"{m.name} ({m.role.value})" for m in g.members)
            table.add_row(g.code, g.name, g.level.value, g.parent or "-", members)
        console.print(table)
        console.print(f"{len(grids)} grid(s)")

    _with_db(work)


@devices_app.command("import")
def devices_import(
    path: Annotated[Path, typer.Argument(help="Devices as CSV (with header) or JSON lines.")],
) -> None:
    """Import (upsert) devices; grid codes are derived from lat/lon when absent."""
    _import(
        path,
        "devices",
        lambda conn, cb: registry_store.import_device_file(conn, path, on_progress=cb),
    )


@devices_app.command("list")
def devices_list(
    grid: Annotated[str | None, typer.Option(help="Only devices in this grid subtree.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Only this device type.")] = None,
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    limit: Annotated[int, typer.Option(help="Most rows shown.")] = 100,
    offset: Annotated[int, typer.Option(help="Rows skipped.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List devices."""

    async def work(conn: psycopg.AsyncConnection) -> None:
        devices = await registry_store.list_devices(
            conn, grid=grid, type=type_, site=site, limit=limit, offset=offset
        )
        if as_json:
            for d in devices:
                typer.echo(orjson.dumps(d, default=_plain).decode())
            return
        table = Table("device", "type", "name", "grid", "site")
        for d in devices:
            table.add_row(d.device_id, d.type, d.name, d.grid_code or "-", d.site)
        console.print(table)
        console.print(f"{len(devices)} device(s) shown")

    _with_db(work)


@devices_app.command("show")
def devices_show(device_id: Annotated[str, typer.Argument(help="The device id.")]) -> None:
    """One device: registry entry and its latest state (last seen, values, status)."""

    async def work(conn: psycopg.AsyncConnection) -> None:
        device = await registry_store.get_device(conn, device_id)
        if device is None:
            raise common.UserError(f"no device {device_id!r}")
        cur = await conn.execute(
            "SELECT last_seen, last_ts, last_seq, last_values, status, status_at, messages"
            " FROM device_state WHERE device_id = %s",
            (device_id,),
        )
        row = await cur.fetchone()
        state = (
            dict(
                zip(
                    (
                        "last_seen",
                        "last_ts",
                        "last_seq",
                        "last_values",
                        "status",
                        "status_at",
                        "messages",
                    ),
                    row,
                    strict=True,
                )
            )
            if row
            else None
        )
        shown = {"device": device, "state": state}
        console.print_json(orjson.dumps(shown, default=_plain).decode())

    _with_db(work)


def _plain(value: object) -> object:
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[attr-defined]
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}  # type: ignore[attr-defined]
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    return str(value)
