"""SQL plumbing of the registry store: staging tables, COPY, and the counting merge.

Separate from ``devices.registry_store`` so the store reads as what it does with grids and
devices, and the one tricky statement (the merge that skips unchanged rows and tells
inserted from updated) exists once for both tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, AsyncCopy, sql
from psycopg.rows import tuple_row

Connection = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """What a merge did; ``unchanged`` rows were equal to the stored ones and not touched."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated


async def fetch(
    conn: Connection, query: str | sql.Composable, params: dict[str, object] | None = None
) -> list[tuple[Any, ...]]:
    """All rows as tuples, whatever row factory the caller's connection uses."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params)  # type: ignore[arg-type]  # psycopg's Query is str | Composable
        return await cur.fetchall()


def column_list(names: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _staging(table: str) -> sql.Identifier:
    return sql.Identifier(f"gridwatch_import_{table}")


async def create_staging(conn: Connection, table: str) -> None:
    """A temporary twin of ``table`` that lives until the transaction ends."""
    # Dropped first: an outer transaction may still hold one from an earlier import.
    await conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(_staging(table)))
    await conn.execute(
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            _staging(table), sql.Identifier(table)
        )
    )


def copy_statement(table: str, names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(_staging(table), column_list(names))


async def copy_rows(
    conn: Connection, table: str, names: tuple[str, ...], rows: Iterable[tuple[object, ...]]
) -> int:
    """Stream rows into the staging table; returns how many were written."""
    written = 0
    async with conn.cursor() as cur, cur.copy(copy_statement(table, names)) as copy:
        written = await write_rows(copy, rows)
    return written


async def write_rows(copy: AsyncCopy, rows: Iterable[tuple[object, ...]]) -> int:
    written = 0
    for row in rows:
        await copy.write_row(row)
        written += 1
    return written


async def merge(
    conn: Connection, table: str, key: str, names: tuple[str, ...], written: int
) -> UpsertCounts:
    """Staging → table; rows equal to the stored ones are skipped by the WHERE clause."""
    others = [n for n in names if n != key]
    query = sql.SQL(
        "WITH merged AS ("
        " INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging}"
        " ON CONFLICT ({key}) DO UPDATE SET {sets}, updated_at = now()"
        " WHERE ({current}) IS DISTINCT FROM ({incoming})"
        # xmax is 0 only for a row version this statement inserted: inserted vs updated.
        " RETURNING (xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)"
        " FROM merged"
    ).format(
        target=sql.Identifier(table),
        cols=column_list(names),
        staging=_staging(table),
        key=sql.Identifier(key),
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(n)) for n in others
        ),
        current=sql.SQL(", ").join(sql.Identifier(table, n) for n in others),
        incoming=sql.SQL(", ").join(sql.Identifier("excluded", n) for n in others),
    )
    ((inserted, updated),) = await fetch(conn, query)
    return UpsertCounts(inserted, updated, written - inserted - updated)
