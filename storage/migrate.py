"""Versioned schema migrations, applied at start-up by whichever worker gets there first.

Migrations are the ``NNNN_name.sql`` files beside this module plus the readings store,
whose shape depends on whether TimescaleDB is installed. An advisory lock serialises
workers that start together; each migration runs in its own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

import psycopg

from storage import timeseries

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x67726964  # "grid"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    apply: Callable[[psycopg.AsyncConnection], Awaitable[None]]


def _sql_migration(version: int, name: str, sql: str) -> Migration:
    async def apply(conn: psycopg.AsyncConnection) -> None:
        await conn.execute(sql)  # type: ignore[arg-type]  # trusted file shipped with the package

    return Migration(version, name, apply)


def all_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("storage.migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(_sql_migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.append(Migration(100, "readings_store", timeseries.create_readings_store))
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: psycopg.AsyncConnection) -> list[str]:
    """Bring the schema up to date; returns the names of the migrations applied now."""
    applied_now: list[str] = []
    await conn.set_autocommit(True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cur.fetchall()}
        for migration in all_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await migration.apply(conn)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            log.info("applied migration", extra={"migration": migration.name})
            applied_now.append(migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now
