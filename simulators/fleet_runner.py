"""Play a :class:`~simulators.fleet.FleetModel` over MQTT in wall-clock time.

The wall clock is turned into simulated time (× ``speed``), due messages are drawn from the
model one at a time (so a slow broker or a low ``rate`` never piles messages up in memory:
the backlog is the model's schedule, and the progress line shows the lag), each is
rate-limited by a token bucket and handed to the publisher. The run ends once everything
due in the first ``duration`` (wall) seconds of simulated time has gone out, after
``messages`` messages, when the model has nothing more to send, on Ctrl-C or when
:attr:`stop` is set; a clean end publishes retained ``offline`` statuses and waits for the
broker's acknowledgements.

Clock and sleep are arguments: with a :class:`VirtualClock` the same loop runs without
waiting, which is what a dry run is, so a dry run and a live run that keeps up send the
same messages in the same order.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.live import Live
from rich.text import Text

from devices.messages import Kind
from simulators.fleet import FleetModel, Outgoing

_TICK_S = 0.25  # progress updates, and the longest sleep between checks of the limits
_RATE_WINDOW_S = 2.0
_MIN_SLEEP_S = 0.001  # so a due time a rounding error away still moves the clock


class VirtualClock:
    """A clock whose sleep moves it at once: the runner's loop without the waiting."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class Publisher(Protocol):
    """What :class:`gridwatch.mqtt_publish.BoundedPublisher` offers, as the runner uses it."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...

    def flush(self, timeout: float = 60.0) -> bool: ...


class StopFlag(Protocol):
    """A ``threading.Event`` or a ``multiprocessing`` one: set it to stop a run."""

    def is_set(self) -> bool: ...


class TokenBucket:
    """At most ``rate`` messages a second on average, with bursts of up to ``burst``.

    :meth:`delay` reserves one token and says how long to wait before using it; the bucket
    may go into debt, so waiting callers are served in order at exactly the rate.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self.burst
        self._last: float | None = None

    def delay(self, now: float) -> float:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass(frozen=True, slots=True)
class RunLimits:
    rate: float | None = None  # messages per second; None: as fast as the broker takes them
    duration: float | None = None  # wall seconds
    messages: int | None = None  # fleet messages (the closing offline statuses not counted)

    def __post_init__(self) -> None:
        for key in ("rate", "duration", "messages"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"{key} must be > 0, got {value}")


class StopReason(StrEnum):
    DURATION = "duration reached"
    MESSAGES = "message count reached"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"
    EXHAUSTED = "nothing more to send"


@dataclass(frozen=True, slots=True)
class RunStats:
    """Where a run stands; passed to the progress callback and returned at the end."""

    sent: int
    by_kind: Mapping[Kind, int]
    scenario: int  # of ``sent``, messages made by scenario steps
    elapsed: float  # wall seconds
    sim_time: float  # simulated seconds reached
    rate: float  # messages/s over the last ~2 s
    lag: float  # wall seconds the last message went out after it was due
    replayed: int = 0  # of ``sent``, messages held through an outage and sent late
    lost: int = 0  # messages pushed out of a full outage buffer


@dataclass(frozen=True, slots=True)
class RunReport:
    stats: RunStats
    stopped: StopReason
    offline_sent: int


class _Stop(Exception):
    def __init__(self, reason: StopReason) -> None:
        self.reason = reason


def run_fleet(
    model: FleetModel,
    publisher: Publisher,
    *,
    qos: int = 1,
    limits: RunLimits | None = None,
    offline_on_stop: bool = True,
    on_progress: Callable[[RunStats], None] | None = None,
    on_sent: Callable[[Outgoing], None] | None = None,
    stop: StopFlag | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RunReport:
    limits = limits or RunLimits()
    speed = model.config.speed
    end_sim = float(limits.duration * speed) if limits.duration is not None else math.inf
    bucket = TokenBucket(limits.rate) if limits.rate else None
    wall0 = clock()
    by_kind: Counter[Kind] = Counter()
    sent = scenario = replayed = 0
    last_due = 0.0
    samples: deque[tuple[float, int]] = deque([(wall0, 0)])
    next_tick = wall0

    def stats(now: float) -> RunStats:
        while len(samples) > 1 and now - samples[1][0] >= _RATE_WINDOW_S:
            samples.popleft()
        then, sent_then = samples[0]
        rate = (sent - sent_then) / (now - then) if now > then else 0.0
        lag = max(0.0, (now - wall0) - last_due / speed) if sent else 0.0
        elapsed = now - wall0
        return RunStats(
            sent, dict(by_kind), scenario, elapsed, elapsed * speed, rate, lag, replayed,
            model.lost,
        )

    def check(now: float) -> None:
        nonlocal next_tick
        if stop is not None and stop.is_set():
            raise _Stop(StopReason.STOPPED)
        if now >= next_tick:
            next_tick = now + _TICK_S
            samples.append((now, sent))
            if on_progress is not None:
                on_progress(stats(now))

    def send(out: Outgoing) -> None:
        if bucket is not None:
            wait = bucket.delay(clock())
            if wait > 0:
                sleep(wait)
        publisher.publish(out.topic, out.payload, qos=qos, retain=out.retain)
        if on_sent is not None:
            on_sent(out)

    try:
        while True:
            now = clock()
            check(now)
            for out in model.messages_until(min((now - wall0) * speed, end_sim)):
                send(out)
                sent += 1
                by_kind[out.kind] += 1
                scenario += out.step is not None
                replayed += out.buffered_at is not None
                last_due = out.t
                if limits.messages is not None and sent >= limits.messages:
                    raise _Stop(StopReason.MESSAGES)
                check(clock())
            due = model.next_time()
            if due is None:
                raise _Stop(StopReason.EXHAUSTED)
            if due > end_sim:
                raise _Stop(StopReason.DURATION)
            now = clock()
            sim_now = (now - wall0) * speed
            if due <= sim_now:
                continue  # became due while sending
            sleep(max(min((due - sim_now) / speed, next_tick - now), _MIN_SLEEP_S))
    except _Stop as done:
        reason = done.reason
    except KeyboardInterrupt:
        reason = StopReason.INTERRUPTED
    final = stats(clock())
    offline = 0
    if offline_on_stop:
        for out in model.stop_messages(_stopped_at(reason, model.now, end_sim, final.sim_time)):
            send(out)
            offline += 1
    publisher.flush()
    if on_progress is not None:
        on_progress(final)
    return RunReport(final, reason, offline)


def _stopped_at(reason: StopReason, last_due: float, end_sim: float, reached: float) -> float:
    """The simulated time the closing statuses carry: where the run's own limits put the
    end (so a dry run and a live run agree), or where the clock was when it was stopped."""
    if reason is StopReason.DURATION:
        return end_sim
    if reason in (StopReason.MESSAGES, StopReason.EXHAUSTED):
        return last_due
    return max(last_due, reached)


class ProgressLine:
    """A live one-line summary on the console: totals, messages/s, simulated time, lag."""

    def __init__(self, console: Console, *, devices: int) -> None:
        self.console = console
        self.devices = devices
        self._live = Live(console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> ProgressLine:
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.__exit__(exc_type, exc, tb)

    def __call__(self, stats: RunStats) -> None:
        self._live.update(render_stats(stats, self.devices))


def render_stats(stats: RunStats, devices: int) -> Text:
    kinds = "  ".join(
        f"{kind.value} {stats.by_kind.get(kind, 0):,}"
        for kind in (Kind.TELEMETRY, Kind.HEARTBEAT, Kind.EVENT, Kind.STATUS)
    )
    sim = int(stats.sim_time)
    text = Text()
    text.append(f"{stats.sent:,} sent", style="bold")
    text.append(f"  {stats.rate:,.0f} msg/s", style="cyan")
    text.append(f"  {devices:,} devices  {kinds}  scenario {stats.scenario:,}")
    text.append(f"  sim +{sim // 3600:d}:{sim // 60 % 60:02d}:{sim % 60:02d}")
    if stats.replayed or stats.lost:
        text.append(f"  replayed {stats.replayed:,}  lost {stats.lost:,}")
    text.append(f"  lag {stats.lag:.1f} s", style="yellow" if stats.lag > 5 else "")
    return text
