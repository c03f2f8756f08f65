"""Several publisher processes for one fleet, when one Python process cannot keep up.

A paho publisher spends ~50 µs of CPU on a QoS 1 message and the simulator ~20 µs more to
make it, so a single process tops out at 10–15k messages/s. Each worker process plays a
fixed share of the devices (by a hash of the device id) over its own connection, at its
share of the rate and message limit; a device's messages therefore keep their order and are
exactly those of a single-process run, while the interleaving between devices differs.
Workers report their progress to this process, which shows one line for all of them and
sums their reports. Ctrl-C stops every worker cleanly (each publishes its devices'
``offline`` statuses).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from devices.messages import Kind
from gridwatch.mqtt_publish import BoundedPublisher
from simulators.fleet_runner import RunLimits, RunReport, RunStats, StopReason, run_fleet
from simulators.fleet_setup import FleetPlan

_POLL_S = 0.25
_HALT_CHECK_S = 0.1
_JOIN_S = 30.0
_PROGRESS_SLOTS = 8  # per worker; progress is advisory, a full queue skips an update


class WorkerError(RuntimeError):
    """A worker could not run (the broker refused it, it crashed); the message says which."""


MQTT_VERSIONS = {"3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}
DEFAULT_INFLIGHT = 200
DEFAULT_MQTT_VERSION = "3.1.1"


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    """How the simulator connects: each worker with its own client (``client_id``-N when a
    prefix is given).

    MQTT 3.1.1 by default: most field devices speak it, and paho spends ~10 % less CPU on a
    QoS 1 message than with MQTT 5. An in-flight window of 200 measured best on paho 2.2
    (1,000 costs nearly twice the CPU a message; 50 waits on acknowledgements).
    """

    url: str
    username: str | None = None
    password: str | None = None
    client_id: str = ""
    inflight: int = DEFAULT_INFLIGHT  # unacknowledged QoS 1 messages a connection may have
    mqtt_version: str = DEFAULT_MQTT_VERSION

    def __post_init__(self) -> None:
        if self.mqtt_version not in MQTT_VERSIONS:
            raise ValueError(
                f"MQTT version must be one of {', '.join(MQTT_VERSIONS)}, got {self.mqtt_version!r}"
            )

    def publisher(self, index: int) -> BoundedPublisher:
        client_id = f"{self.client_id}-{index}" if self.client_id else ""
        return BoundedPublisher(
            self.url, client_id, inflight=self.inflight, username=self.username,
            password=self.password, protocol=MQTT_VERSIONS[self.mqtt_version],
        )


def shares(device_ids: Iterable[str], workers: int) -> list[set[str]]:
    """The devices of each worker: stable for a device id whatever else is in the fleet."""
    parts: list[set[str]] = [set() for _ in range(workers)]
    for device_id in device_ids:
        parts[zlib.crc32(device_id.encode("utf-8")) % workers].add(device_id)
    return parts


def split_limits(limits: RunLimits, workers: int) -> list[RunLimits]:
    """Each worker's limits: the rate and message count divided, the duration the same."""
    out = []
    for index in range(workers):
        messages = None
        if limits.messages is not None:
            messages = limits.messages // workers + (index < limits.messages % workers)
        out.append(RunLimits(
            rate=limits.rate / workers if limits.rate else None,
            duration=limits.duration,
            messages=messages,
        ))
    return out


def combine(stats: Sequence[RunStats]) -> RunStats:
    """One view of several workers: counts and rates summed, times and lag the largest."""
    by_kind: Counter[Kind] = Counter()
    for one in stats:
        by_kind.update(one.by_kind)
    return RunStats(
        sent=sum(s.sent for s in stats),
        by_kind=dict(by_kind),
        scenario=sum(s.scenario for s in stats),
        elapsed=max((s.elapsed for s in stats), default=0.0),
        sim_time=max((s.sim_time for s in stats), default=0.0),
        rate=sum(s.rate for s in stats),
        lag=max((s.lag for s in stats), default=0.0),
        replayed=sum(s.replayed for s in stats),
        lost=sum(s.lost for s in stats),
    )


_PRECEDENCE = (
    StopReason.INTERRUPTED,
    StopReason.STOPPED,
    StopReason.MESSAGES,
    StopReason.DURATION,
    StopReason.EXHAUSTED,
)


def run_workers(
    plan: FleetPlan,
    broker: BrokerSpec,
    *,
    workers: int,
    qos: int = 1,
    offline_on_stop: bool = True,
    on_progress: Callable[[RunStats], None] | None = None,
    stop: threading.Event | None = None,
) -> RunReport:
    ids = [d.device_id for d in plan.devices]
    parts = [part for part in shares(ids, workers) if part]
    limits = split_limits(plan.limits, len(parts))
    jobs = [(i, part, lim) for i, (part, lim) in enumerate(zip(parts, limits, strict=True))
            if lim.messages is None or lim.messages > 0]
    context = multiprocessing.get_context("spawn")  # no threads or locks inherited
    halt = context.Event()
    progress: Any = context.Queue(maxsize=_PROGRESS_SLOTS * len(jobs))
    results: Any = context.Queue()
    inboxes: dict[int, Any] = {index: context.Queue() for index, _, _ in jobs}
    processes = {
        index: context.Process(
            target=_worker,
            args=(index, inboxes[index], broker, qos, offline_on_stop, halt, progress, results,
                  os.getpid()),
            name=f"fleet-worker-{index}",
            daemon=True,
        )
        for index, _, _ in jobs
    }
    # Starting is quick (the plans follow through the inboxes, so no large pickle has to
    # wait for a worker to read it); meanwhile SIGINT is ignored, which the workers inherit
    # from birth: a Ctrl-C to the whole process group is this process's to relay.
    with _sigint_ignored():
        for process in processes.values():
            process.start()
    latest: dict[int, RunStats] = {}
    reports: dict[int, RunReport] = {}
    errors: list[str] = []
    gone: set[int] = set()
    interrupted = False
    try:
        for index, part, lim in jobs:
            inboxes[index].put(plan.share(part, lim))
        while len(reports) + len(errors) < len(processes):
            try:
                _collect(processes, progress, results, latest, reports, errors, gone)
                if errors or (stop is not None and stop.is_set()):
                    halt.set()
                if on_progress is not None and latest:
                    on_progress(combine(list(latest.values())))
            except KeyboardInterrupt:
                interrupted = True
                halt.set()
    finally:
        halt.set()
        for process in processes.values():
            process.join(_JOIN_S)
            if process.is_alive():
                process.terminate()
                process.join()
    if errors:
        raise WorkerError("; ".join(errors))
    done = [reports[i] for i in sorted(reports)]
    stats = combine([r.stats for r in done])
    if on_progress is not None:
        on_progress(stats)
    reasons = {r.stopped for r in done}
    stopped = StopReason.INTERRUPTED if interrupted else next(
        reason for reason in _PRECEDENCE if reason in reasons
    )
    return RunReport(stats, stopped, sum(r.offline_sent for r in done))


class _Halt:
    """A worker's stop flag: the parent's event, or the parent gone (a worker must never
    outlive the command that started it). Looked at every ~0.1 s, not on every message."""

    def __init__(self, event: Any, parent: int) -> None:
        self.event = event
        self.parent = parent
        self._next = 0.0
        self._set = False

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self._set and now >= self._next:
            self._next = now + _HALT_CHECK_S
            self._set = self.event.is_set() or os.getppid() != self.parent
        return self._set


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored meanwhile (in the main thread; elsewhere it goes to the main thread
    anyway). A spawned process keeps an ignored signal ignored, so a Ctrl-C that reaches
    the whole process group cannot kill a worker half-started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _collect(
    processes: dict[int, Any],
    progress: Any,
    results: Any,
    latest: dict[int, RunStats],
    reports: dict[int, RunReport],
    errors: list[str],
    gone: set[int],
) -> None:
    """Take what the workers said in the last poll interval."""
    while True:
        try:
            index, stats = progress.get_nowait()
        except queue.Empty:
            break
        latest[index] = stats
    try:
        index, report, error = results.get(timeout=_POLL_S)
    except queue.Empty:
        for index, process in processes.items():
            finished = index in reports or any(e.startswith(f"worker {index}:") for e in errors)
            if finished or process.exitcode is None:
                continue
            # A worker that ended cleanly has put its result before exiting; allow one more
            # poll for it to arrive before calling it lost.
            if process.exitcode != 0 or index in gone:
                errors.append(f"worker {index}: exited with status {process.exitcode}")
            gone.add(index)
        return
    if error is not None:
        errors.append(f"worker {index}: {error}")
    else:
        reports[index] = report
        latest[index] = report.stats


def _worker(
    index: int,
    inbox: Any,
    broker: BrokerSpec,
    qos: int,
    offline_on_stop: bool,
    halt: Any,
    progress: Any,
    results: Any,
    parent: int,
) -> None:
    """One worker process: its share of the fleet over its own connection."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through ``halt``

    def report_progress(stats: RunStats) -> None:
        with contextlib.suppress(queue.Full):  # the next update says more
            progress.put_nowait((index, stats))

    try:
        plan: FleetPlan = inbox.get()
        model = plan.model()
        with broker.publisher(index) as publisher:
            report = run_fleet(
                model, publisher, qos=qos, limits=plan.limits, offline_on_stop=offline_on_stop,
                on_progress=report_progress, stop=_Halt(halt, parent),
            )
    except Exception as exc:  # reported to the parent, which stops the others and says why
        results.put((index, None, f"{type(exc).__name__}: {exc}"))
        return
    results.put((index, report, None))
