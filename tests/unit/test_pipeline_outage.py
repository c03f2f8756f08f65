"""The pipeline's outage bookkeeping without a database: when the database is lost while
no message comes, the outage handler is ticked on the clock; when it answers again the
outage is declared over, even though nothing was spooled."""

from __future__ import annotations

from typing import Any, cast

import psycopg

from ingest.pipeline import IngestPipeline
from storage.ingest_writer import IngestBatch


class Outage:
    def __init__(self) -> None:
        self.ticks = 0
        self.recoveries = 0

    def spooled(self, batch: IngestBatch, now: float) -> None:
        raise AssertionError("nothing is spooled here")

    def tick(self, now: float) -> None:
        self.ticks += 1

    def recovered(self) -> None:
        self.recoveries += 1


class Connection:
    closed = False

    async def close(self) -> None:
        self.closed = True


class Stage:
    def __init__(self) -> None:
        self.fail = True

    async def periodic(self, conn: object, now: float) -> None:
        if self.fail:
            raise psycopg.OperationalError("server closed the connection")


async def test_an_outage_that_spooled_nothing_ends_when_the_database_answers() -> None:
    async def connect() -> Any:
        return Connection()

    pipeline = IngestPipeline(cast(Any, None), cast(Any, None), connect, retry_min_s=0.0,
                              retry_max_s=0.0)  # fmt: skip
    outage, stage = Outage(), Stage()
    pipeline.outage = outage
    pipeline.stages = [cast(Any, stage)]
    await pipeline._periodic()  # the database is lost between batches
    assert not pipeline.db_ok and outage.recoveries == 0
    pipeline._retry_at = float("inf")  # its backoff has not passed: the clock goes on
    await pipeline._periodic()
    assert outage.ticks == 1
    pipeline._retry_at = 0.0
    stage.fail = False
    await pipeline._periodic()  # it answers
    assert pipeline.db_ok and outage.recoveries == 1
