"""Patrol tags at a district's scale, without I/O: what ticking them and counting their
figures costs.

One district has 4,064 patrol tags (docs/domain.md). This builds that many tags (80 % daily,
20 % weekly), gives them 30 days of check-ins (each period scanned once, 5 % missed) and
prints:

* a tick sweep over every tag (``DetectionRuntime.tick``: what the detection stage does each
  second), with no tag due and with every tag overdue at once;
* a check-in through the engine (``on_event``) per second;
* ``evaluate`` over the 30 days for every tag (what ``alerts.patrol_figures`` runs on top of
  its two queries for a county report);
* the detector state of all tags in memory and as JSON.

    .venv/bin/python bench/patrols.py                 # 4,064 tags, 30 days
    .venv/bin/python bench/patrols.py --tags 20000 --days 90
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

from detectors.engine import DeviceDetectors
from detectors.patrol_schedule import Schedule, evaluate
from detectors.runtime import DetectionRuntime
from devices.messages import DeviceEvent
from devices.profiles import DeviceProfile, get_profile

DAY = 86400.0
START = 1_800_000_000.0  # 2027-01-15, a fixed start so runs compare


def profiles() -> dict[str, DeviceProfile]:
    base = get_profile("patrol_tag")
    return {i: base.with_overrides({"patrol_interval": i}) for i in ("P1D", "P7D")}


def fleet(count: int) -> dict[str, DeviceProfile]:
    kinds = profiles()
    rng = random.Random(1)
    return {f"PT-{n:05d}": kinds["P1D" if rng.random() < 0.8 else "P7D"] for n in range(count)}


def scans(schedule: Schedule, days: int, rng: random.Random) -> list[tuple[float, str | None]]:
    first, last = schedule.period(START), schedule.period(START + days * DAY)
    out = []
    for k in range(first, last):
        if rng.random() >= 0.05:
            out.append((rng.uniform(schedule.start(k), schedule.end(k)), "gm-1"))
    return out


def timed(label: str, work: int, run: object) -> float:
    gc.collect()
    t0 = time.perf_counter()
    run()  # type: ignore[operator]
    elapsed = time.perf_counter() - t0
    print(f"{label:<48} {elapsed * 1000:9.1f} ms  ({work / elapsed:,.0f}/s)")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tags", type=int, default=4064)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    tags = fleet(args.tags)
    runtime = DetectionRuntime()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    runtime.adopt(tags, {}, START)
    first = runtime.tick(tags, START)  # starts every tag's duty
    runtime.commit(first)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    state_bytes = sum(s.size_diff for s in after.compare_to(before, "filename"))
    daily = sum(p.options["patrol_interval"] == "P1D" for p in tags.values())
    print(f"{args.tags:,} patrol tags ({daily:,} daily)")

    timed("tick sweep, nothing due", args.tags, lambda: runtime.tick(tags, START + 60))
    late = START + 20 * DAY
    done = runtime.tick(tags, late)
    timed("tick sweep, every tag overdue at once", args.tags, lambda: runtime.tick(tags, late))
    print(f"{'  hits raised by that sweep':<48} {len(done.hits):9,}")
    runtime.commit(done)

    engine = runtime.engine(next(iter(tags.values())))
    events = [
        DeviceEvent(tag, late + n, None, "checkin", {"worker_id": "gm-1"}, late + n)
        for n, tag in enumerate(tags)
    ]

    def checkins() -> None:
        for event in events:
            runtime.engine(tags[event.device_id]).on_event(
                runtime.states[event.device_id], event, late
            )

    timed("check-ins through the engine", len(events), checkins)

    rng = random.Random(2)
    schedules = {
        i: DeviceDetectors.for_profile(p).by_key["patrol"].schedule for i, p in profiles().items()
    }
    histories = [
        (
            schedules[p.options["patrol_interval"]],
            scans(schedules[p.options["patrol_interval"]], args.days, rng),
        )
        for p in tags.values()
    ]
    periods = sum(s.period(START + args.days * DAY) - s.period(START) for s, _ in histories)

    def figures() -> None:
        for schedule, history in histories:
            evaluate(
                schedule,
                history,
                schedule.period(START),
                schedule.period(START + args.days * DAY) - 1,
            )

    timed(f"evaluate {args.days} days of every tag ({periods:,} periods)", periods, figures)
    encoded = sum(len(engine.encode_state(s)) for s in runtime.states.values())
    print(f"{'detector state in memory':<48} {state_bytes / 1024:9.1f} KiB")
    print(f"{'detector state as JSON':<48} {encoded / 1024:9.1f} KiB")


if __name__ == "__main__":
    main()
