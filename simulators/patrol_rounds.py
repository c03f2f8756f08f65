"""Grid workers' patrol rounds for a simulated county: when each tag is scanned, by whom, and
what the checklist found.

Pure: from the tags (their ``patrol_interval``), the grid worker of each basic grid and a
window of time, a seeded list of check-ins in time order — each tag scanned once in most of
its periods, at a random moment of the period, by its grid's worker; a few periods are
skipped (``skip_share``: those become ``patrol_overdue`` events), and a few scans fail an
item of the checklist (``hazard_share``: ``fire_hazard`` events). The demo publishes them as
they fall due; ``payload`` is the canonical ``checkin`` event a tag reader sends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from random import Random

import orjson

from detectors.patrol import GRACE_SHARE
from detectors.patrol_schedule import Schedule
from devices.overrides import PATROL_INTERVAL, parse_duration
from devices.registry import Device

CHECKLIST = ("消防通道畅通", "灭火器完好", "无私拉电线", "无易燃杂物堆放")
HAZARD_NOTES = ("灭火器压力不足", "楼道堆放纸箱", "电动车室内充电", "安全出口上锁")


@dataclass(frozen=True, slots=True)
class Round:
    at: float  # epoch seconds
    tag_id: str
    worker_id: str
    checklist: Mapping[str, bool] = field(default_factory=dict)
    note: str | None = None

    def payload(self) -> bytes:
        detail: dict[str, object] = {"worker_id": self.worker_id, "checklist": dict(self.checklist)}
        if self.note:
            detail["note"] = self.note
        return orjson.dumps({"ts": round(self.at * 1000), "event": "checkin", "detail": detail})


def rounds(
    tags: Sequence[Device],
    workers: Mapping[str, str],
    start: float,
    end: float,
    *,
    seed: int,
    skip_share: float = 0.05,
    hazard_share: float = 0.02,
) -> list[Round]:
    """The check-ins of ``tags`` in ``[start, end)``, in time order (module docstring);
    ``workers`` maps a basic grid to its grid worker's id."""
    rng = Random(f"{seed}:rounds")
    out: list[Round] = []
    for tag in tags:
        interval = parse_duration(tag.profile.options.get(PATROL_INTERVAL))
        if interval is None or tag.grid_code is None:
            continue
        seconds = interval.total_seconds()
        schedule = Schedule(seconds, seconds * GRACE_SHARE)
        worker = workers.get(tag.grid_code, "unknown")
        for k in range(schedule.period(start), schedule.period(end) + 1):
            lo, hi = max(start, schedule.start(k)), min(end, schedule.end(k))
            if lo >= hi or rng.random() < skip_share:
                continue
            checklist = dict.fromkeys(CHECKLIST, True)
            note = None
            if rng.random() < hazard_share:
                checklist[rng.choice(CHECKLIST)] = False
                note = rng.choice(HAZARD_NOTES)
            out.append(Round(rng.uniform(lo, hi), tag.device_id, worker, checklist, note))
    out.sort(key=lambda r: (r.at, r.tag_id))
    return out
