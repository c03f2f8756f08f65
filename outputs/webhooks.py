"""Webhooks: changes fanned out into a durable outbox per subscription, delivered signed,
in order, with retries (interface.md, "Downstream"; Standard Webhooks).

**Fan-out.** A worker reads the change log after the ``feed_cursor`` row
``webhook_fanout`` and, in one statement, writes a ``webhook_outbox`` row for every enabled
subscription whose filters match and moves the cursor, on condition that the cursor is
still where it read it: each change is queued exactly once per subscription, whichever
workers race for it (no lock; one round trip). A
subscription receives the changes logged after it was created (``start_seq``).

**Delivery.** Workers claim subscriptions that are due and have something queued
(``FOR UPDATE SKIP LOCKED`` in a short transaction, then a lease in the row: no transaction
stays open during HTTP, which would hold back every log reader's xmin). A claimed
subscription's outbox is delivered oldest first, one request at a time, so each receiver
sees its changes in log order. Every attempt is logged (``webhook_attempts``: status,
error, duration). A 2xx removes the outbox row; anything else (or no answer within the
timeout) keeps it and pauses the subscription for an exponential backoff with full jitter
(longer when the receiver sends ``Retry-After``). Retries carry the same ``webhook-id``
(the CloudEvent id) and body, with a fresh timestamp and signature.

**Disabling.** A subscription failing continuously for ``disable_after_s`` (or answering
410 Gone) is disabled: its queued rows are kept, nothing new is queued, a
``gridwatch.subscription.disabled`` CloudEvent is sent to it once (best effort) and logged.

Delivery is at least once: a worker that dies after the receiver's 2xx and before its
commit repeats that one request (same ``webhook-id``: receivers de-duplicate on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from standardwebhooks import Webhook

from ingest.backoff import Backoff
from outputs import LatencyHistogram, supervise
from outputs.cloudevents import envelope, message_id, subscription_disabled
from outputs.log_reader import ROW_COLUMNS, ChangeListener, EventFilter, LogReader, LogRow
from outputs.mqtt_feed import load_cursor
from outputs.webhook_policy import (
    Outcome,
    Subscription,
    fan_out_pairs,
    optional_set,
    retry_after_s,
    retry_delay,
)
from outputs.webhook_signing import sign_headers
from storage.events import EVENTS_CHANNEL

log = logging.getLogger(__name__)

CURSOR = "webhook_fanout"
OUTBOX_CHANNEL = "gridwatch_webhooks"
"""NOTIFY channel: something was queued for delivery (at commit of a fan-out)."""
_HEAD = 20  # outbox rows read at a time for one subscription
# Queue (subscription, seq) pairs and move the fan-out cursor from %(old)s to %(new)s, in
# one statement; nothing happens unless the cursor is still at %(old)s. Two workers that
# read the same changes: the second's UPDATE waits for the first to commit, then matches
# no row, so it queues nothing.
_QUEUE = (
    "WITH moved AS ("
    "  UPDATE feed_cursor SET seq = %(new)s, updated_at = now()"
    "  WHERE name = %(name)s AND seq = %(old)s RETURNING 1),"
    " queued AS ("
    "  INSERT INTO webhook_outbox (subscription_id, seq)"
    "  SELECT p.sub, p.seq FROM unnest(%(subs)s::bigint[], %(seqs)s::bigint[]) AS p (sub, seq)"
    "  WHERE EXISTS (SELECT 1 FROM moved) ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT (SELECT count(*) FROM moved),"
    "  CASE WHEN EXISTS (SELECT 1 FROM queued) THEN pg_notify(%(channel)s, '') END"
)
_OUTBOX_HEAD = sql.SQL(
    "SELECT o.seq, o.attempts, {} FROM webhook_outbox o LEFT JOIN event_log l ON l.seq = o.seq"
    " WHERE o.subscription_id = %s ORDER BY o.seq LIMIT %s"
).format(ROW_COLUMNS)


@dataclass(slots=True)
class WebhookStats:
    state: str = "starting"  # starting | running | failing
    fanned_out: int = 0
    delivered: int = 0
    failed: int = 0
    disabled: int = 0
    serving: int = 0
    last_error: str = ""
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def snapshot(self) -> dict[str, object]:
        return {
            "state": self.state,
            "fanned_out": self.fanned_out,
            "delivered": self.delivered,
            "failed": self.failed,
            "disabled": self.disabled,
            "serving": self.serving,
            "last_error": self.last_error,
            "latency_s": self.latency.snapshot(),
        }


@dataclass(frozen=True, slots=True)
class _Claim:
    id: int
    url: str
    secret: str


class WebhookDispatcher:
    """Fan-out and delivery worker: ``await dispatcher.run()`` until cancelled."""

    def __init__(
        self,
        conninfo: str,
        *,
        worker_id: str,
        timeout_s: float = 10.0,
        retry_min_s: float = 1.0,
        retry_max_s: float = 300.0,
        disable_after_s: float = 3 * 86400.0,
        concurrency: int = 8,
        pool_max: int = 4,
        poll_s: float = 5.0,
        attempts_retention_days: int = 14,
        batch: int = 500,
        strict_xmin: bool = True,
    ) -> None:
        self.conninfo = conninfo
        self.worker_id = worker_id
        self.timeout_s = timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.disable_after_s = disable_after_s
        self.concurrency = concurrency
        self.pool_max = pool_max
        self.poll_s = poll_s
        self.attempts_retention_days = attempts_retention_days
        self.lease_s = 2 * timeout_s + 10.0
        self.reader = LogReader(batch=batch, strict_xmin=strict_xmin)
        self.stats = WebhookStats()
        self._rng = random.Random()
        self._serving: dict[int, asyncio.Task[None]] = {}
        self._fan_cursor: int | None = None
        self._last_purge = 0.0

    @property
    def healthy(self) -> bool:
        return self.stats.state == "running"

    async def run(self) -> None:
        listener = ChangeListener(self.conninfo, (EVENTS_CHANNEL, OUTBOX_CHANNEL))
        listening = asyncio.create_task(listener.run(), name="webhooks-listen")
        try:
            await supervise("webhooks", lambda: self._serve(listener), on_crash=self._failed)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)

    def _failed(self, exc: BaseException) -> None:
        self.stats.state = "failing"
        self.stats.last_error = str(exc)

    async def _serve(self, listener: ChangeListener) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s, connect=min(self.timeout_s, 5.0))
        pool = AsyncConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=self.pool_max,
            kwargs={"autocommit": True},
            open=False,
        )
        retry = Backoff(0.2, 10.0)
        # Not `async with pool`: that waits for connections, and a database that is down at
        # start-up must be retried below like any other outage, not count as a crash.
        await pool.open(wait=False)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
        ) as http:
            try:
                while True:
                    try:
                        await self._loop(pool, http, listener)
                    except psycopg.Error as exc:
                        self._failed(exc)
                        delay = retry.next_delay()
                        log.warning(
                            "webhooks lost the database: %s; retrying in %.1f s", exc, delay
                        )
                        await asyncio.sleep(delay)
            finally:
                tasks = list(self._serving.values())
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                with contextlib.suppress(psycopg.Error, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self._release_all(pool)
                await pool.close()

    async def _loop(
        self, pool: AsyncConnectionPool, http: aiohttp.ClientSession, listener: ChangeListener
    ) -> None:
        await self._release_all(pool)  # leases left by an earlier run of this worker
        fan_conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        async with fan_conn:
            self.stats.state = "running"
            while True:
                mark = listener.mark()
                pending = await self._fan_out(fan_conn)
                free = self.concurrency - len(self._serving)
                wait = 0.0 if pending else self.poll_s
                if free > 0:
                    for claim in await self._claim(pool, free):
                        task = asyncio.create_task(
                            self._deliver(pool, http, claim), name=f"webhook-{claim.id}"
                        )
                        self._serving[claim.id] = task
                        task.add_done_callback(lambda _t, cid=claim.id: self._done(cid, listener))
                    due = await self._next_due(pool)
                    if due is not None:
                        wait = min(wait, max(0.0, due))
                self.stats.serving = len(self._serving)
                await self._purge(pool)
                if pending:
                    await asyncio.sleep(self.reader.settle_poll_s)
                else:
                    await listener.wait(mark, wait)

    def _done(self, subscription_id: int, listener: ChangeListener) -> None:
        task = self._serving.pop(subscription_id, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.stats.last_error = str(exc)
            log.error(
                "webhook delivery crashed",
                exc_info=exc,
                extra={"subscription_id": subscription_id},
            )
        listener.poke()

    # -- fan-out -----------------------------------------------------------------------------

    async def _fan_out(self, conn: psycopg.AsyncConnection) -> bool:
        """Queue what the log holds after the cursor; True when more may be there soon."""
        while True:
            if self._fan_cursor is None:
                self._fan_cursor = await _cursor(conn)
            result = await self.reader.read(conn, self._fan_cursor)
            if not result.rows:
                return result.pending
            pairs = fan_out_pairs(result.rows, await _enabled_subscriptions(conn))
            last = result.rows[-1].seq
            cur = await conn.execute(
                _QUEUE,
                {
                    "name": CURSOR,
                    "old": self._fan_cursor,
                    "new": last,
                    "subs": [sub for sub, _ in pairs],
                    "seqs": [seq for _, seq in pairs],
                    "channel": OUTBOX_CHANNEL,
                },
            )
            moved = await cur.fetchone()
            if not (moved and moved[0]):
                self._fan_cursor = None  # another worker queued these: go on from its cursor
                continue
            self._fan_cursor = last
            self.stats.fanned_out += len(pairs)
            if len(result.rows) < self.reader.batch:
                return result.pending  # all there was (a NOTIFY meanwhile wakes the loop again)

    # -- claiming ----------------------------------------------------------------------------

    async def _claim(self, pool: AsyncConnectionPool, limit: int) -> list[_Claim]:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE webhook_subscriptions s"
                " SET leased_by = %(me)s, lease_until = now() + make_interval(secs => %(lease)s)"
                " WHERE s.id IN ("
                "  SELECT c.id FROM webhook_subscriptions c"
                "  WHERE c.enabled AND c.next_attempt_at <= now()"
                "   AND (c.lease_until IS NULL OR c.lease_until < now())"
                "   AND NOT c.id = ANY(%(busy)s::bigint[])"
                "   AND EXISTS (SELECT 1 FROM webhook_outbox o WHERE o.subscription_id = c.id)"
                "  ORDER BY c.next_attempt_at LIMIT %(n)s FOR UPDATE SKIP LOCKED)"
                " RETURNING s.id, s.url, s.secret",
                {
                    "me": self.worker_id,
                    "lease": self.lease_s,
                    "busy": list(self._serving),
                    "n": limit,
                },
            )
            return [_Claim(*row) for row in await cur.fetchall()]

    async def _next_due(self, pool: AsyncConnectionPool) -> float | None:
        """Seconds until the next subscription not served here may be claimed."""
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM min(greatest(c.next_attempt_at,"
                "  coalesce(c.lease_until, c.next_attempt_at))) - now())::float8"
                " FROM webhook_subscriptions c"
                " WHERE c.enabled AND NOT c.id = ANY(%s::bigint[])"
                "  AND EXISTS (SELECT 1 FROM webhook_outbox o WHERE o.subscription_id = c.id)",
                (list(self._serving),),
            )
            row = await cur.fetchone()
            return None if row is None or row[0] is None else float(row[0])

    async def _release_all(self, pool: AsyncConnectionPool) -> None:
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE webhook_subscriptions SET leased_by = NULL, lease_until = NULL"
                " WHERE leased_by = %s",
                (self.worker_id,),
            )

    async def _purge(self, pool: AsyncConnectionPool) -> None:
        now = time.monotonic()
        if now - self._last_purge < 3600.0:
            return
        self._last_purge = now
        async with pool.connection() as conn:
            await conn.execute(
                "DELETE FROM webhook_attempts WHERE at < now() - make_interval(days => %s)",
                (self.attempts_retention_days,),
            )

    # -- delivery ----------------------------------------------------------------------------

    async def _deliver(
        self, pool: AsyncConnectionPool, http: aiohttp.ClientSession, claim: _Claim
    ) -> None:
        """Deliver the subscription's outbox in order until it is empty or an attempt fails."""
        signer = Webhook(claim.secret)
        while True:
            async with pool.connection() as conn:
                cur = await conn.execute(_OUTBOX_HEAD, (claim.id, _HEAD))
                head = await cur.fetchall()
            if not head:
                await self._release(pool, claim.id)
                return
            for seq, attempts, *columns in head:
                row = LogRow.from_record(columns) if columns[0] is not None else None
                if row is None:
                    await self._drop_missing(pool, claim.id, seq, attempts + 1)
                    continue
                started = time.perf_counter()
                try:
                    outcome = await self._post(
                        http, claim.url, signer, message_id(row), envelope(row)
                    )
                except asyncio.CancelledError:
                    await self._interrupted(pool, claim.id, row, attempts + 1, started)
                    raise
                if outcome.delivered:
                    self.stats.latency.observe(time.time() - row.at.timestamp())
                    await self._record_success(pool, claim.id, row, attempts + 1, outcome)
                else:
                    await self._record_failure(pool, http, claim, row, attempts + 1, outcome)
                    return

    async def _post(
        self, http: aiohttp.ClientSession, url: str, signer: Webhook, msg_id: str, body: bytes
    ) -> Outcome:
        now = datetime.now(UTC)
        headers = sign_headers(signer, msg_id, now, body)
        started = time.perf_counter()
        try:
            async with http.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.content.read(65536)  # let the connection be reused; body is ignored
                status = resp.status
                retry_after = retry_after_s(resp.headers.get("Retry-After"), now)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            duration = (time.perf_counter() - started) * 1000
            return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500], duration)
        duration = (time.perf_counter() - started) * 1000
        if 200 <= status < 300:
            return Outcome(True, status, None, duration)
        return Outcome(False, status, f"HTTP {status}", duration, retry_after)

    async def _record_success(
        self, pool: AsyncConnectionPool, sub_id: int, row: LogRow, attempt: int, outcome: Outcome
    ) -> None:
        async with pool.connection() as conn:
            await conn.execute(  # one statement, so one round trip and all or nothing
                "WITH gone AS (DELETE FROM webhook_outbox"
                "  WHERE subscription_id = %(sub)s AND seq = %(seq)s),"
                " logged AS (INSERT INTO webhook_attempts (subscription_id, seq, message_id,"
                "  attempt, status, error, duration_ms, delivered, worker) VALUES (%(sub)s,"
                "  %(seq)s, %(id)s, %(attempt)s, %(status)s, NULL, %(ms)s, true, %(me)s))"
                " UPDATE webhook_subscriptions SET failures = 0, failing_since = NULL,"
                " last_success_at = now(), lease_until = now() + make_interval(secs => %(lease)s)"
                " WHERE id = %(sub)s AND leased_by = %(me)s",
                {
                    "sub": sub_id, "seq": row.seq, "id": message_id(row), "attempt": attempt,
                    "status": outcome.status, "ms": outcome.duration_ms, "me": self.worker_id,
                    "lease": self.lease_s,
                },
            )  # fmt: skip
        self.stats.delivered += 1

    async def _record_failure(
        self,
        pool: AsyncConnectionPool,
        http: aiohttp.ClientSession,
        claim: _Claim,
        row: LogRow,
        attempt: int,
        outcome: Outcome,
    ) -> None:
        self.stats.failed += 1
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT failures FROM webhook_subscriptions WHERE id = %s FOR UPDATE", (claim.id,)
            )
            found = await cur.fetchone()
            if found is None:
                return  # deleted meanwhile
            delay = retry_delay(found[0] + 1, self.retry_min_s, self.retry_max_s, self._rng)
            if outcome.retry_after_s is not None:
                delay = max(delay, min(outcome.retry_after_s, self.retry_max_s))
            await conn.execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1"
                " WHERE subscription_id = %s AND seq = %s",
                (claim.id, row.seq),
            )
            await self._log_attempt(conn, claim.id, row.seq, message_id(row), attempt, outcome)
            cur = await conn.execute(
                "UPDATE webhook_subscriptions SET failures = failures + 1,"
                " failing_since = coalesce(failing_since, now()),"
                " next_attempt_at = now() + make_interval(secs => %s),"
                " leased_by = NULL, lease_until = NULL"
                " WHERE id = %s"
                " RETURNING failures, failing_since,"
                "  now() - failing_since >= make_interval(secs => %s)",
                (delay, claim.id, self.disable_after_s),
            )
            failures, failing_since, expired = await cur.fetchone() or (0, None, False)
            reason = None
            if outcome.status == 410:
                reason = "the receiver answered 410 Gone"
            elif expired:
                reason = f"failing continuously since {failing_since.isoformat()}"
            if reason is not None:
                await conn.execute(
                    "UPDATE webhook_subscriptions SET enabled = false, disabled_at = now(),"
                    " disabled_reason = %s WHERE id = %s",
                    (reason, claim.id),
                )
        log.info(
            "webhook delivery failed; retrying in %.1f s",
            delay,
            extra={"subscription_id": claim.id, "seq": row.seq, "error": outcome.error},
        )
        if reason is not None:
            await self._disabled(pool, http, claim, reason, failures, failing_since)

    async def _disabled(
        self,
        pool: AsyncConnectionPool,
        http: aiohttp.ClientSession,
        claim: _Claim,
        reason: str,
        failures: int,
        failing_since: datetime | None,
    ) -> None:
        """Tell the subscription (once, best effort) and the log that it was disabled."""
        self.stats.disabled += 1
        now = datetime.now(UTC)
        data = {
            "subscription_id": claim.id,
            "url": claim.url,
            "reason": reason,
            "failures": failures,
            "failing_since": failing_since.isoformat() if failing_since else None,
        }
        notice_id, body = subscription_disabled(claim.id, now, data)
        log.warning(
            "webhook subscription disabled: %s",
            reason,
            extra={"subscription_id": claim.id, "notice": body.decode()},
        )
        outcome = await self._post(http, claim.url, Webhook(claim.secret), notice_id, body)
        async with pool.connection() as conn:
            await self._log_attempt(conn, claim.id, None, notice_id, 1, outcome)

    async def _interrupted(
        self, pool: AsyncConnectionPool, sub_id: int, row: LogRow, attempt: int, started: float
    ) -> None:
        """Shutting down mid-request: log the attempt (the receiver may or may not have it;
        the change stays queued and goes again, with the same webhook-id)."""
        duration = (time.perf_counter() - started) * 1000
        outcome = Outcome(False, None, "interrupted by shutdown; outcome unknown", duration)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0), pool.connection() as conn, conn.transaction():
                await conn.execute(
                    "UPDATE webhook_outbox SET attempts = attempts + 1"
                    " WHERE subscription_id = %s AND seq = %s",
                    (sub_id, row.seq),
                )
                await self._log_attempt(conn, sub_id, row.seq, message_id(row), attempt, outcome)

    async def _drop_missing(
        self, pool: AsyncConnectionPool, sub_id: int, seq: int, attempt: int
    ) -> None:
        """The change is no longer in the log (retention): nothing to send; say so."""
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM webhook_outbox WHERE subscription_id = %s AND seq = %s", (sub_id, seq)
            )
            gone = Outcome(False, None, "change no longer in the event log", 0.0)
            await self._log_attempt(conn, sub_id, seq, f"?:{seq}", attempt, gone)

    async def _log_attempt(
        self,
        conn: psycopg.AsyncConnection,
        sub_id: int,
        seq: int | None,
        msg_id: str,
        attempt: int,
        outcome: Outcome,
    ) -> None:
        await conn.execute(
            "INSERT INTO webhook_attempts (subscription_id, seq, message_id, attempt, status,"
            " error, duration_ms, delivered, worker) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                sub_id, seq, msg_id, attempt, outcome.status, outcome.error,
                outcome.duration_ms, outcome.delivered, self.worker_id,
            ),
        )  # fmt: skip

    async def _release(self, pool: AsyncConnectionPool, sub_id: int) -> None:
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE webhook_subscriptions SET leased_by = NULL, lease_until = NULL"
                " WHERE id = %s AND leased_by = %s",
                (sub_id, self.worker_id),
            )


async def _cursor(conn: psycopg.AsyncConnection) -> int:
    """The fan-out's position (a plain read; the row is made once, by the first reader)."""
    cur = await conn.execute("SELECT seq FROM feed_cursor WHERE name = %s", (CURSOR,))
    row = await cur.fetchone()
    return int(row[0]) if row is not None else await load_cursor(conn, CURSOR)


async def _enabled_subscriptions(conn: psycopg.AsyncConnection) -> list[Subscription]:
    cur = await conn.execute(
        "SELECT id, start_seq, grid, severities, categories, changes"
        " FROM webhook_subscriptions WHERE enabled"
    )
    return [
        Subscription(
            id=sid,
            start_seq=start,
            filter=EventFilter(grid, optional_set(sev), optional_set(cat), optional_set(chg)),
        )
        for sid, start, grid, sev, cat, chg in await cur.fetchall()
    ]
