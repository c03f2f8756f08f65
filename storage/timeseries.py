"""The readings store: a TimescaleDB hypertable when the extension exists, else native
range partitions by day.

Both paths keep the same table and the same unique key ``(device_id, metric, ts)`` so that
a replayed message is absorbed by ``ON CONFLICT DO NOTHING`` on either. Retention and
compression are TimescaleDB policies on one path; on the other, :func:`maintain` creates
partitions ahead and drops expired ones (any worker may run it; an advisory lock makes it
one at a time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

MAINTENANCE_LOCK = 0x72656164  # "read"

READINGS_COLUMNS = """
    device_id        text NOT NULL,
    metric           text NOT NULL,
    ts               timestamptz NOT NULL,
    value            double precision NOT NULL,
    seq              bigint,
    received_at      timestamptz NOT NULL,
    ts_from_arrival  boolean NOT NULL DEFAULT false
"""


@dataclass(frozen=True, slots=True)
class StoreKind:
    timescale: bool

    @property
    def name(self) -> str:
        return "timescaledb hypertable" if self.timescale else "native daily partitions"


async def timescale_available(conn: psycopg.AsyncConnection) -> bool:
    cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    return await cur.fetchone() is not None


async def store_kind(conn: psycopg.AsyncConnection) -> StoreKind:
    """Which path the existing readings table took (hypertable or partitioned)."""
    cur = await conn.execute(
        "SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'readings'::regclass"
    )
    return StoreKind(timescale=await cur.fetchone() is None)


async def create_readings_store(conn: psycopg.AsyncConnection) -> None:
    if await timescale_available(conn):
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        await conn.execute(sql.SQL("CREATE TABLE readings ({})").format(sql.SQL(READINGS_COLUMNS)))
        for statement in timescale_statements():
            await conn.execute(statement)
    else:
        await conn.execute(
            sql.SQL("CREATE TABLE readings ({}) PARTITION BY RANGE (ts)").format(
                sql.SQL(READINGS_COLUMNS)
            )
        )
    await conn.execute("CREATE UNIQUE INDEX readings_key ON readings (device_id, metric, ts)")


def timescale_statements() -> list[sql.Composable]:
    """Hypertable, compression by device and metric; policies are added by :func:`maintain`."""
    return [
        sql.SQL(
            "SELECT create_hypertable('readings', 'ts', chunk_time_interval => interval '1 day')"
        ),
        sql.SQL(
            "ALTER TABLE readings SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'device_id, metric',"
            " timescaledb.compress_orderby = 'ts DESC')"
        ),
    ]


def timescale_policy_statements(
    retention_days: int, compress_after_days: int
) -> list[sql.Composable]:
    return [
        sql.SQL(
            "SELECT add_compression_policy('readings', {}::interval, if_not_exists => true)"
        ).format(sql.Literal(f"{compress_after_days} days")),
        sql.SQL(
            "SELECT add_retention_policy('readings', {}::interval, if_not_exists => true)"
        ).format(sql.Literal(f"{retention_days} days")),
    ]


def partition_name(day: date) -> str:
    return f"readings_{day:%Y%m%d}"


def partition_ddl(day: date) -> sql.Composable:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF readings FOR VALUES FROM ({}) TO ({})"
    ).format(
        sql.Identifier(partition_name(day)),
        sql.Literal(start),
        sql.Literal(start + timedelta(days=1)),
    )


def wanted_partitions(today: date, retention_days: int, ahead_days: int) -> list[date]:
    """Every day that may receive readings: from the retention horizon to ``ahead`` days out."""
    first = today - timedelta(days=retention_days)
    return [first + timedelta(days=i) for i in range(retention_days + ahead_days + 1)]


def expired(existing: list[str], today: date, retention_days: int) -> list[str]:
    horizon = partition_name(today - timedelta(days=retention_days))
    return sorted(name for name in existing if name < horizon)


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    created: int
    dropped: list[str]


async def maintain(
    conn: psycopg.AsyncConnection,
    *,
    now: datetime,
    retention_days: int,
    ahead_days: int,
    compress_after_days: int,
) -> MaintenanceReport:
    """Make the readings store ready for ``now``: partitions or policies, expired data gone."""
    kind = await store_kind(conn)
    await conn.set_autocommit(True)
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (MAINTENANCE_LOCK,))
    row = await cur.fetchone()
    if not row or not row[0]:
        return MaintenanceReport(0, [])  # another worker is at it
    try:
        if kind.timescale:
            for statement in timescale_policy_statements(retention_days, compress_after_days):
                await conn.execute(statement)
            return MaintenanceReport(0, [])
        cur = await conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'readings'::regclass"
        )
        existing = [r[0] for r in await cur.fetchall()]
        created = 0
        for day in wanted_partitions(now.date(), retention_days, ahead_days):
            if partition_name(day) not in existing:
                await conn.execute(partition_ddl(day))
                created += 1
        dropped = expired(existing, now.date(), retention_days)
        for name in dropped:
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        if created or dropped:
            log.info(
                "readings partitions maintained",
                extra={"partitions_created": created, "partitions_dropped": len(dropped)},
            )
        return MaintenanceReport(created, dropped)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MAINTENANCE_LOCK,))

