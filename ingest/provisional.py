"""Detection that goes on while the database is away (the pipeline's outage handler).

The real detection state moves only with committed batches; spooled batches are judged
again, for real, when the spool is written. Meanwhile a fork of that state (made when the
outage begins, thrown away when the spool is in) follows the spooled batches and the clock,
so a smoke alarm, a threshold or a device going silent during the outage is still found,
and goes out at once as a provisional alert (:mod:`alerts.provisional`). Patrol deadlines
are left to the database's return: whether a patrol was done depends on check-ins other
workers stored. Devices this
worker had not seen before the outage start from a fresh state, since their saved state is
in the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from detectors.base import Hit
from detectors.patrol import OVERDUE
from detectors.runtime import DetectionRuntime
from devices.messages import Accepted
from ingest.validate import KnownDevice
from storage.ingest_writer import IngestBatch

log = logging.getLogger(__name__)

Publish = Callable[[list[Hit], float], None]


def accepted(batch: IngestBatch) -> list[Accepted]:
    """The batch's accepted messages in arrival order (as detection sees them)."""
    out: list[Accepted] = [*batch.readings, *batch.heartbeats, *batch.events, *batch.statuses]
    out.sort(key=lambda m: m.received_at)
    return out


class ProvisionalDetection:
    def __init__(
        self,
        runtime: Callable[[], DetectionRuntime],
        known: Callable[[], Mapping[str, KnownDevice]],
        publish: Publish,
        *,
        tick_s: float = 1.0,
    ) -> None:
        self._runtime = runtime
        self._known = known
        self._publish = publish
        self.tick_s = tick_s
        self._fork: DetectionRuntime | None = None
        self._last_tick = 0.0
        self.hits = 0
        self.outages = 0

    @property
    def active(self) -> bool:
        return self._fork is not None

    def _forked(self) -> DetectionRuntime:
        if self._fork is None:
            self._fork = self._runtime().fork()
            self.outages += 1
            log.warning("database away: detecting on spooled messages, alerts provisional")
        return self._fork

    def spooled(self, batch: IngestBatch, now: float) -> None:
        fork = self._forked()
        messages = accepted(batch)
        known = self._known()
        profiles = {d: known[d].profile for d in {m.device_id for m in messages} if d in known}
        fresh = fork.missing(profiles)
        if fresh:
            fork.adopt({d: profiles[d] for d in fresh}, {}, now)
        done = fork.run(messages, profiles, now)
        fork.commit(done)
        self._found(done.hits, now)

    def tick(self, now: float) -> None:
        """The clock goes on while the database is away, messages or not: a device that
        falls silent is found too."""
        if now - self._last_tick < self.tick_s:
            return
        self._last_tick = now
        fork = self._forked()
        known = self._known()
        profiles = {d: known[d].profile for d in fork.states if d in known}
        done = fork.tick(profiles, now)
        fork.commit(done)
        self._found(done.hits, now)

    def recovered(self) -> None:
        if self._fork is not None:
            log.info("database back and spool written: provisional detection ends")
        self._fork = None

    def _found(self, hits: list[Hit], now: float) -> None:
        # A patrol deadline needs the check-ins other workers stored (ingest/patrol_owner.py),
        # which are out of reach now: it is decided when the database is back.
        hits = [h for h in hits if h.type != OVERDUE]
        if not hits:
            return
        self.hits += len(hits)
        try:
            self._publish(hits, now)
        except Exception:  # a heads-up that failed must not stop the spooling
            log.exception("provisional alerts not sent")
