"""``gridwatch broker config``: broker accounts and ACL from the registry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.console import Console

from gridwatch.broker_access import BrokerAccessError, SyncResult, sync_accounts
from gridwatch.broker_files import (
    BrokerFiles,
    credentials_csv,
    reload_embedded,
    write_credentials,
    write_files,
)
from gridwatch.cli import common
from gridwatch.endpoints import command_database
from storage.migrate import migrate
from storage.tokens import append_audit

app = typer.Typer(help="Broker access: per-device credentials and the ACL.", no_args_is_help=True)
errors = Console(stderr=True, highlight=False)
CLI_ACTOR = "cli"


@app.command("config")
def config(
    out: Annotated[
        Path | None,
        typer.Option(help="Directory for passwd, acl, mosquitto.conf (default broker.files_dir)."),
    ] = None,
    rotate: Annotated[
        list[str] | None,
        typer.Option(help="Give this account (device id, or the service user) a new password."),
    ] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(
            help="Write new passwords to this CSV file (0600) instead of standard output."
        ),
    ] = None,
) -> None:
    """Give every registered device a broker account (user name = device id), write
    mosquitto's password file and ACL (each device may publish only its own uplink topics),
    and reload the embedded broker. New passwords are shown once."""
    settings = common.settings()
    directory = (out or settings.broker.files(settings.data_dir)).resolve()

    async def work() -> SyncResult:
        with command_database(settings) as dsn:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                await migrate(conn)
                await conn.set_autocommit(False)
                result = await sync_accounts(
                    conn, service_username=settings.broker.service_username, rotate=rotate or ()
                )
                await append_audit(
                    conn, token_id=None, actor=CLI_ACTOR, action="broker.config",
                    target="broker", outcome="ok", detail=result.summary(),
                )  # fmt: skip
                await conn.commit()
                return result

    try:
        result = common.run_async(work)
        files = write_files(settings, result, directory)
    except BrokerAccessError as exc:
        raise common.UserError(str(exc)) from None
    _report(result, files)
    issued = {u: p for u, p in result.issued.items() if u != settings.broker.service_username}
    if issued:
        if credentials is not None:
            write_credentials(credentials, issued)
            errors.print(f"{len(issued)} new password(s) written to {credentials} (0600)")
        else:
            errors.print(f"{len(issued)} new password(s), shown once:")
            sys.stdout.write(credentials_csv(issued))
    if settings.mqtt.url is None and (settings.broker.auth or settings.broker.tls_port):
        try:
            reloaded = reload_embedded(settings)
        except BrokerAccessError as exc:
            raise common.UserError(str(exc)) from None
        if reloaded:
            errors.print("the running embedded broker reloaded its password file and ACL")


def _report(result: SyncResult, files: BrokerFiles) -> None:
    errors.print(
        f"{result.devices} device account(s): {len(result.issued)} new or rotated, "
        f"{len(result.removed)} removed (no longer registered); files in {files.directory}"
    )
    for device_id, why in sorted(result.skipped.items()):
        errors.print(f"  skipped {device_id}: {why}")
    if any(a.kind == "service" for a in result.accounts) and files.service_password.exists():
        errors.print(f"gridwatch's own password: {files.service_password} (0600)")
