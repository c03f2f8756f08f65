"""Outputs: grid-event changes leave gridwatch from here (interface.md, "Downstream").

Every output reads the change log (``event_log``) in ``seq`` order through
:mod:`outputs.log_reader` and wraps each row in a CloudEvents envelope
(:mod:`outputs.cloudevents`):

- :mod:`outputs.mqtt_feed` publishes every change at QoS 1 from a durable cursor;
- :mod:`outputs.webhooks` fans changes out into a durable outbox per subscription and
  delivers it, signed, with retries;
- the live stream (``api/stream.py``) is an HTTP room that reads the same log.

This module holds the two small things the workers share: a latency histogram kept as plain
numbers (the service reports it through ``health()`` and ``/metrics`` turns it into a
Prometheus histogram at scrape time) and a supervisor for long-lived worker loops.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ingest.backoff import Backoff

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
"""Upper bounds (seconds) of the delivery-latency buckets; +Inf is implied."""


@dataclass(slots=True)
class LatencyHistogram:
    """Cumulative-bucket latency counts, as Prometheus keeps them, without a registry."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1

    def snapshot(self) -> dict[str, object]:
        """``{"buckets": [[le, cumulative], ...], "sum": s, "count": n}``; le ``"+Inf"`` last."""
        cumulative, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            cumulative.append(["+Inf" if bound == float("inf") else bound, running])
        return {"buckets": cumulative, "sum": self.total, "count": self.count}


class CrashBudgetExceeded(RuntimeError):
    """A worker crashed more often than its budget allows; the service should stop loudly."""


async def supervise(
    name: str,
    body: Callable[[], Awaitable[None]],
    *,
    budget: int = 5,
    window_s: float = 300.0,
    backoff: Backoff | None = None,
    on_crash: Callable[[BaseException], None] | None = None,
) -> None:
    """Run ``body`` until it returns; restart it after an unexpected exception, logged with
    context, after a backoff. More than ``budget`` crashes within ``window_s`` raise
    :class:`CrashBudgetExceeded`. Expected trouble (a database or broker outage) is the
    body's own business: it retries those itself and never lets them out."""
    delays = backoff or Backoff(0.5, 30.0)
    crashes: deque[float] = deque()
    while True:
        try:
            await body()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            now = time.monotonic()
            crashes.append(now)
            while crashes and crashes[0] < now - window_s:
                crashes.popleft()
            log.exception(
                "%s crashed; restarting", name, extra={"worker": name, "crashes": len(crashes)}
            )
            if on_crash is not None:
                on_crash(exc)
            if len(crashes) > budget:
                raise CrashBudgetExceeded(
                    f"{name} crashed {len(crashes)} times within {window_s:.0f} s"
                ) from exc
            await asyncio.sleep(delays.next_delay())
