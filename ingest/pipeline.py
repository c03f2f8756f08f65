"""The ingest pipeline: MQTT batches → validate and deduplicate → store → acknowledge → hand on.

Two stages joined by a bounded queue, so that checking one batch overlaps writing the one
before it. When the database is slow the queue fills, the classifier stops taking from the
MQTT source, the source stops reading its socket, and the broker holds the rest: nothing is
dropped on the way, and nothing is acknowledged before it is committed or spooled.

**Database outage.** With a spool (:mod:`ingest.spool`), a batch that cannot be written is
saved to disk instead, and acknowledged; the outage handler
(:mod:`ingest.provisional`) keeps detecting on it so operators still see alarms. The
database is tried again after a backoff, not for every batch; once it answers, the spool is
written oldest first, through the same stages, before any new batch, and only then do the
stages' timed checks (liveness, deadlines) resume. When the spool is full the pipeline
falls back to holding messages in the broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import psycopg

from devices.messages import Accepted, DeviceEvent, Heartbeat, Reading, Rejection, StatusChange
from ingest.backoff import Backoff
from ingest.dedup import SeqDeduper
from ingest.detection_stage import Stage
from ingest.mqtt_source import Delivery, MqttSource
from ingest.rate_limit import DeviceRateLimiter
from ingest.spool import DiskSpool, encode_batch, merge
from ingest.validate import Validator
from storage.ingest_writer import IngestBatch, IngestWriter, WriteResult

log = logging.getLogger(__name__)

StoredHook = Callable[[IngestBatch], Awaitable[None]]


class OutageHandler(Protocol):
    """What goes on while the database is away: told of every spooled batch, ticked between
    batches, and told when the spool is written and the database is back."""

    def spooled(self, batch: IngestBatch, now: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def recovered(self) -> None: ...


@dataclass(slots=True)
class IngestStats:
    received: int = 0
    stored_messages: int = 0
    readings_rows: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    write_errors: int = 0
    unspooled_batches: int = 0  # spooled during an outage, written since
    first_received_at: float = 0.0  # wall clock of the first batch taken off MQTT
    last_stored_at: float = 0.0  # wall clock of the latest commit

    def snapshot(self) -> dict[str, object]:
        return {
            "received": self.received,
            "stored_messages": self.stored_messages,
            "readings_rows": self.readings_rows,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
            "batches": self.batches,
            "write_errors": self.write_errors,
            "unspooled_batches": self.unspooled_batches,
            "first_received_at": self.first_received_at,
            "last_stored_at": self.last_stored_at,
        }


def classify(
    deliveries: list[Delivery],
    validator: Validator,
    deduper: SeqDeduper,
    limiter: DeviceRateLimiter | None = None,
) -> IngestBatch:
    batch = IngestBatch()
    for delivery in deliveries:
        result = validator.check(delivery.message)
        if isinstance(result, Rejection):
            batch.rejections.append(result)
            continue
        if not isinstance(result, StatusChange) and deduper.is_repeat(result.device_id, result.seq):
            batch.duplicates += 1
            continue
        if limiter is not None and (dropped := limiter.admit(result, delivery.message)):
            if isinstance(dropped, Rejection):
                batch.rejections.append(dropped)  # one sample; the rest are only counted
            continue
        if isinstance(result, Reading):
            batch.readings.append(result)
        elif isinstance(result, Heartbeat):
            batch.heartbeats.append(result)
        elif isinstance(result, DeviceEvent):
            batch.events.append(result)
        else:
            batch.statuses.append(result)
    return batch


class IngestPipeline:
    def __init__(
        self,
        source: MqttSource,
        validator: Validator,
        connect: Callable[[], Awaitable[psycopg.AsyncConnection]],
        *,
        batch_max: int = 5000,
        queue_batches: int = 4,
        dedup_window: int = 256,
        retry_min_s: float = 0.2,
        retry_max_s: float = 10.0,
    ) -> None:
        self.source = source
        self.validator = validator
        self._connect = connect
        self.batch_max = batch_max
        self.deduper = SeqDeduper(dedup_window)
        self.limiter: DeviceRateLimiter | None = None  # per-device rate limit, when set
        self.stats = IngestStats()
        self.listeners: list[StoredHook] = []
        self.spooled_listeners: list[StoredHook] = []
        self._queue: asyncio.Queue[tuple[list[Delivery], IngestBatch] | None] = asyncio.Queue(
            queue_batches
        )
        self._backoff = Backoff(retry_min_s, retry_max_s)
        self._stopping = asyncio.Event()
        self.db_ok = False
        # Work in each batch's transaction and on a timer (detection → grid events).
        self.stages: list[Stage] = []
        self.idle_s = 0.5
        self._conn: psycopg.AsyncConnection | None = None
        self._writer: IngestWriter | None = None
        self._retry_at = 0.0  # monotonic time before which a lost database is not tried
        # Batches that cannot be written wait here (acknowledged) while the database is away.
        self.spool: DiskSpool | None = None
        self.outage: OutageHandler | None = None
        self._spool_full_logged = False

    def queue_depth(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        """Run until :meth:`stop`; then write what was already taken and return."""
        classifier = asyncio.create_task(self._classify_loop(), name="ingest-classify")
        writer = asyncio.create_task(self._write_loop(), name="ingest-write")
        try:
            await classifier
        finally:
            await self._queue.put(None)
            await writer

    def stop(self) -> None:
        self._stopping.set()

    async def _classify_loop(self) -> None:
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                taking = asyncio.create_task(self.source.next_batch(self.batch_max))
                done, _ = await asyncio.wait(
                    {taking, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if taking not in done:
                    taking.cancel()
                    break
                deliveries = taking.result()
                if not self.stats.received:
                    self.stats.first_received_at = time.time()
                self.stats.received += len(deliveries)
                batch = classify(deliveries, self.validator, self.deduper, self.limiter)
                await self._queue.put((deliveries, batch))
        finally:
            stopping.cancel()

    async def _write_loop(self) -> None:
        """Store batches in order; between them (and when idle) run the stages' timed work."""
        try:
            while True:
                try:
                    item = await asyncio.wait_for(self._queue.get(), self.idle_s)
                except TimeoutError:
                    await self._periodic()
                    continue
                if item is None:
                    break
                if not await self._store(*item):
                    return
                await self._periodic()
            await self._periodic()  # what the timers and cameras found meanwhile, not lost
            await self._final_checkpoint()
        finally:
            if self._conn is not None and not self._conn.closed:
                await self._conn.close()

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
            self._writer = IngestWriter(self._conn)
        return self._conn

    async def _in_transaction(self, conn: psycopg.AsyncConnection, fresh: list[Accepted]) -> None:
        for stage in self.stages:
            await stage.in_transaction(conn, fresh)

    async def _store(self, deliveries: list[Delivery], batch: IngestBatch) -> bool:
        """Store one batch: in the database, or in the spool while the database is away, or
        else hold it (unacknowledged) and retry with backoff; False when stopping gave up."""
        while True:
            if await self._write_through(batch):
                break
            if await self._spool(batch):
                break
            if self._stopping.is_set() and self._backoff.attempt > 3:
                log.error(
                    "stopping with %d messages unstored; the broker will redeliver them",
                    len(deliveries),
                )
                return False
            await asyncio.sleep(max(0.05, self._retry_at - time.monotonic()))
        self.source.ack(deliveries)
        return True

    async def _write_through(self, batch: IngestBatch) -> bool:
        """Write the spool's backlog, then this batch; False when the database is away (it
        is tried again only once its backoff has passed) or the backlog is not all in."""
        if not self.db_ok and time.monotonic() < self._retry_at:
            return False
        if not await self._drain():
            return False
        try:
            result = await self._commit(batch)
        except psycopg.Error as exc:
            await self._lost_database(exc)
            return False
        self._outage_over()
        await self._stored(batch, result)
        return True

    def _outage_over(self) -> None:
        """The database answered and the spool is written (also after an outage that spooled
        nothing: its provisional detection, started on the clock, ends too)."""
        self.db_ok = True
        if self.outage is not None:
            self.outage.recovered()

    async def _commit(self, batch: IngestBatch) -> WriteResult:
        """One batch in one transaction with the stages' work."""
        try:
            await self._connection()
            assert self._writer is not None
            result = await self._writer.write(batch, then=self._in_transaction)
        except psycopg.Error:
            for stage in self.stages:
                stage.rolled_back()
            raise
        for stage in self.stages:
            stage.committed()
        self._backoff.reset()
        self._retry_at = 0.0
        self.db_ok = True
        return result

    async def _stored(self, batch: IngestBatch, result: WriteResult) -> None:
        stats = self.stats
        stats.batches += 1
        stats.last_stored_at = time.time()
        stats.stored_messages += len(batch) - len(batch.rejections)
        stats.readings_rows += result.readings_rows
        stats.duplicates += batch.duplicates
        for r in batch.rejections:
            stats.rejected[r.reason.value] += 1
        for listener in self.listeners:
            await listener(batch)

    async def _spool(self, batch: IngestBatch) -> bool:
        """Save the batch to the spool (then it may be acknowledged); False when there is no
        spool or it is full."""
        spool = self.spool
        if spool is None:
            return False
        data = encode_batch(batch)
        if not spool.has_room(len(data)):
            if not self._spool_full_logged:
                log.error(
                    "spool full (%d bytes); holding messages in the broker until the database"
                    " is back",
                    spool.bytes,
                )
                self._spool_full_logged = True
            return False
        self._spool_full_logged = False
        await asyncio.to_thread(spool.append, data, len(batch) - len(batch.rejections))
        if self.outage is not None:
            self.outage.spooled(batch, time.time())
        for listener in self.spooled_listeners:
            await listener(batch)
        return True

    async def _drain(self, budget_s: float = 1.0) -> bool:
        """Write spooled batches, oldest first, for up to ``budget_s``; True when none is
        left (so that new batches may go straight to the database again)."""
        spool = self.spool
        if spool is None or spool.empty():
            return True
        started = time.monotonic()
        while run := await asyncio.to_thread(spool.oldest_run, self.batch_max):
            batch = merge([item.batch for item in run])
            try:
                result = await self._commit(batch)
            except psycopg.Error as exc:
                await self._lost_database(exc)
                return False
            for item in run:
                spool.remove(item)
            self.stats.unspooled_batches += len(run)
            await self._stored(batch, result)
            if time.monotonic() - started > budget_s and not spool.empty():
                return False
        log.info("spool written to the database", extra={"batches": self.stats.unspooled_batches})
        return True

    async def _lost_database(self, exc: Exception) -> None:
        self.db_ok = False
        self.stats.write_errors += 1
        self._retry_at = time.monotonic() + self._backoff.next_delay()
        if self._conn is not None and not self._conn.closed:
            await self._conn.close()
        self._conn = None
        log.warning("database write failed (%s); retrying", exc)

    async def _periodic(self) -> None:
        """The stages' timed work, once the database is reachable and the spool is written
        (a tick before that would judge devices whose messages are still in the spool); until
        then the outage handler's."""
        now = time.time()
        waiting = not self.db_ok and time.monotonic() < self._retry_at
        if waiting or not await self._drain():
            if self.outage is not None:
                self.outage.tick(now)
            return
        if not self.stages:
            return
        try:
            conn = await self._connection()
            for stage in self.stages:
                await stage.periodic(conn, now)
        except psycopg.Error as exc:
            await self._lost_database(exc)
            return
        self._outage_over()

    async def _final_checkpoint(self) -> None:
        for stage in self.stages:
            checkpoint = getattr(stage, "checkpoint", None)
            if checkpoint is None:
                continue
            try:
                await checkpoint(await self._connection())
            except psycopg.Error as exc:
                log.warning("final checkpoint failed: %s", exc)
