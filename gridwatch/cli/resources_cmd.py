"""``gridwatch resources …``: micro fire stations, hydrants and duty teams from the command
line, imported like devices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import psycopg
import typer
from rich.console import Console
from rich.table import Table

from devices.resource_store import import_resource_file, list_resources
from devices.resources import ResourceKind
from gridwatch.cli.registry_cmd import _import, _with_db

app = typer.Typer(
    help="Response resources (micro fire stations, hydrants, duty teams): import, list.",
    no_args_is_help=True,
)
console = Console()


@app.command("import")
def resources_import(
    path: Annotated[Path, typer.Argument(help="Resources as CSV (with header) or JSON lines.")],
) -> None:
    """Import (upsert) resources; grid codes are derived from lat/lon when absent."""
    _import(path, "resources", lambda conn, cb: import_resource_file(conn, path, on_progress=cb))


@app.command("list")
def resources_list(
    grid: Annotated[str | None, typer.Option(help="Only resources in this grid subtree.")] = None,
    kind: Annotated[ResourceKind | None, typer.Option(help="Only this kind of resource.")] = None,
    limit: Annotated[int, typer.Option(help="Most rows shown.")] = 100,
    offset: Annotated[int, typer.Option(help="Rows skipped.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List resources with their place and contact."""

    async def work(conn: psycopg.AsyncConnection) -> None:
        found = await list_resources(
            conn,
            subtree=grid,
            kinds=[kind.value] if kind else (),
            limit=limit,
            offset=offset,
        )
        if as_json:
            for r in found:
                typer.echo(orjson.dumps(r.to_json()).decode())
            return
        table = Table("resource", "kind", "name", "grid", "contact", "phone", "sensor")
        for r in found:
            table.add_row(
                r.resource_id,
                r.kind.value,
                r.name,
                r.grid_code or "-",
                r.contact,
                r.phone,
                r.sensor_id or "",
            )
        console.print(table)
        console.print(f"{len(found)} resource(s) shown")

    _with_db(work)
