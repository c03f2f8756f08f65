"""``gridwatch tokens …``: API tokens from the command line — create, list, revoke.

``create`` prints the token once, alone on standard output (so that a script can capture
it), and what it is on standard error; only its hash is kept. ``list`` never shows a
secret. Creating and revoking are written to the audit log with actor ``cli``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import orjson
import psycopg
import typer
from rich.console import Console
from rich.table import Table

from alerts.roles import TOKEN_ROLES
from gridwatch.cli import common
from gridwatch.endpoints import command_database
from storage import tokens
from storage.tokens import ALL_GRIDS, TokenError, TokenRecord

app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)
CLI_ACTOR = "cli"
ROLES = ", ".join(sorted(r.value for r in TOKEN_ROLES))

T = TypeVar("T")


def _with_db(work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    settings = common.settings()

    async def main() -> T:
        with command_database(settings) as dsn:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                try:
                    result = await work(conn)
                except psycopg.errors.UndefinedTable:
                    raise common.UserError(
                        "the database has no token tables yet: start `gridwatch run` once "
                        "(it brings the schema up to date)"
                    ) from None
                except TokenError as exc:
                    raise common.UserError(str(exc)) from None
                await conn.commit()
                return result

    return common.run_async(main)


@app.command("create")
def create(
    role: Annotated[str, typer.Option(help=f"One of: {ROLES}.")],
    scope: Annotated[
        str,
        typer.Option(
            help=f"Grid code whose subtree the token sees ('{ALL_GRIDS}': all, admin only)."
        ),
    ],
    name: Annotated[str, typer.Option(help="Who or what holds the token (a person, a system).")],
    member: Annotated[
        str | None,
        typer.Option(help="Member id its actions are recorded under (default: the token id)."),
    ] = None,
) -> None:
    """Make a token and print it once; store it now, it cannot be shown again."""

    async def work(conn: psycopg.AsyncConnection) -> tokens.IssuedToken:
        issued = await tokens.create_token(
            conn, name=name, role=role, scope=scope, member_id=member
        )
        r = issued.record
        await tokens.append_audit(
            conn,
            token_id=None,
            actor=CLI_ACTOR,
            action="token.create",
            target=r.id,
            outcome="ok",
            detail={"role": r.role.value, "scope": r.scope, "name": r.name, "member": member},
        )
        return issued

    issued = _with_db(work)
    r = issued.record
    who = f", acting as {r.member_id}" if r.member_id else ""
    errors.print(
        f"token {r.id} for {r.name!r} ({r.role.value}, scope {r.scope}{who}); "
        "shown once, store it now:",
        markup=False,
        highlight=False,
    )
    typer.echo(issued.text)


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List tokens (never their secrets)."""

    async def work(conn: psycopg.AsyncConnection) -> list[TokenRecord]:
        return await tokens.list_tokens(conn, include_revoked=all_)

    records = _with_db(work)
    if as_json:
        for r in records:
            typer.echo(orjson.dumps(r.to_json()).decode())
        return
    table = Table()
    for column in ("id", "name", "role", "scope", "member", "created", "last used", "revoked"):
        # ids, roles and scopes are what people copy: never cut them
        table.add_column(column, no_wrap=column in ("id", "role", "scope"))
    for r in records:
        table.add_row(
            r.id,
            r.name,
            r.role.value,
            r.scope,
            r.member_id or "-",
            _when(r.created_at),
            _when(r.last_used_at),
            _when(r.revoked_at),
        )
    console.print(table)
    console.print(f"{len(records)} token(s)")


@app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="The token id (`tokens list`).")]) -> None:
    """Revoke a token: its next request is refused."""
    wanted = tokens.parse_token(token_id) or token_id
    if not tokens.is_token_id(wanted):
        raise common.UserError(f"{token_id!r} is not a token id (12 hex characters)")

    async def work(conn: psycopg.AsyncConnection) -> tuple[bool, TokenRecord | None]:
        before = await tokens.get_token(conn, wanted)
        if before is None:
            return False, None
        record = await tokens.revoke_token(conn, wanted)
        if before.active and record is not None:
            await tokens.append_audit(
                conn,
                token_id=None,
                actor=CLI_ACTOR,
                action="token.revoke",
                target=wanted,
                outcome="ok",
                detail={"name": record.name, "role": record.role.value},
            )
        return before.active, record

    now_revoked, record = _with_db(work)
    if record is None:
        raise common.UserError(f"no token {wanted}")
    state = "revoked" if now_revoked else "was already revoked"
    console.print(f"token {record.id} ({record.name}) {state} at {_when(record.revoked_at)}")


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")
