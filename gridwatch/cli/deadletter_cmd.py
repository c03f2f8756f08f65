"""``gridwatch deadletter list|replay``: what was turned away, and sending it again."""

from __future__ import annotations

from typing import Annotated

import orjson
import psycopg
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from gridwatch.broker_access import BrokerAccessError
from gridwatch.broker_files import service_credentials
from gridwatch.cli import common
from gridwatch.endpoints import command_broker_url, command_database
from gridwatch.mqtt_publish import BoundedPublisher, PublishError
from storage.dead_letters import (
    DeadLetterFilter,
    count_dead_letters,
    list_dead_letters,
    mark_replayed,
    reject_summary,
)

app = typer.Typer(help="Inspect and replay rejected messages.", no_args_is_help=True)
console = Console()

Reason = Annotated[
    str | None, typer.Option("--reason", help="Only this reason, e.g. unknown_device.")
]
Device = Annotated[str | None, typer.Option("--device", help="Only this device id.")]


@app.command("list")
def list_cmd(
    reason: Reason = None,
    device: Device = None,
    limit: Annotated[int, typer.Option(help="Most rows shown.")] = 50,
    replayed: Annotated[bool, typer.Option("--replayed", help="Include replayed ones.")] = False,
    summary: Annotated[
        bool, typer.Option("--summary", help="Counts per device and reason.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List dead letters (newest kept for the retention period), or a per-device summary."""
    settings = common.settings()
    flt = DeadLetterFilter(reason=reason, device_id=device, include_replayed=replayed)

    async def main() -> None:
        with command_database(settings) as dsn:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                if summary:
                    table = Table("device", "reason", "count", "last")
                    for dev, why, n, last in await reject_summary(conn):
                        table.add_row(dev or "-", why, str(n), f"{last:%Y-%m-%d %H:%M:%S}")
                    console.print(table)
                    return
                rows = await list_dead_letters(conn, flt, limit)
                total = await count_dead_letters(conn, flt)
        if as_json:
            for r in rows:
                letter = {
                    "id": r.id,
                    "received_at": r.received_at.isoformat(),
                    "topic": r.topic,
                    "device_id": r.device_id,
                    "reason": r.reason,
                    "detail": r.detail,
                    "payload": r.payload.decode("utf-8", "replace"),
                }
                typer.echo(orjson.dumps(letter).decode())
            return
        table = Table("id", "received", "device", "reason", "detail", "payload")
        for r in rows:
            table.add_row(
                str(r.id),
                f"{r.received_at:%m-%d %H:%M:%S}",
                r.device_id or "-",
                r.reason,
                r.detail[:60],
                r.payload[:40].decode("utf-8", "replace"),
            )
        console.print(table)
        console.print(f"{len(rows)} of {total} shown")

    common.run_async(main)


@app.command("replay")
def replay(
    reason: Reason = None,
    device: Device = None,
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Only these ids (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Most messages replayed in one go.")] = 100_000,
) -> None:
    """Publish dead letters again, to their original topics, through the running broker.

    Use it after fixing what rejected them (e.g. registering the device). Each replayed
    message goes through validation again: one that fails again is dead-lettered again.
    """
    settings = common.settings()
    flt = DeadLetterFilter(reason=reason, device_id=device, ids=tuple(ids or ()))
    url = command_broker_url(settings)
    if url is None:
        raise common.UserError(
            "no broker to replay to: start `gridwatch run` or set GRIDWATCH_MQTT_URL"
        )

    async def main() -> None:
        with command_database(settings) as dsn:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                letters = await list_dead_letters(conn, flt, limit)
                if not letters:
                    console.print("nothing to replay")
                    return
                try:
                    username, password = service_credentials(settings)  # broker.auth: the ACL
                    publisher = BoundedPublisher(
                        url, client_id="", username=username, password=password,
                        ca_file=settings.mqtt.tls_ca_file,
                    )  # fmt: skip
                    publisher.connect()
                except (PublishError, BrokerAccessError) as exc:
                    raise common.UserError(str(exc)) from None
                done: list[int] = []
                with Progress(console=console) as progress:
                    task = progress.add_task("replaying", total=len(letters))
                    for letter in letters:
                        publisher.publish(letter.topic, letter.payload, qos=1)
                        done.append(letter.id)
                        progress.advance(task)
                    publisher.close()
                await mark_replayed(conn, done)
                await conn.commit()
                console.print(f"replayed {len(done)} message(s)")

    common.run_async(main)
