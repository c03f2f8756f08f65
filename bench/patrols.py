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
* the detector state of all tags in memory and as JSON;
* what the worker owning patrol deadlines adds (:mod:`ingest.patrol_owner`): choosing the
  tags a tick decides, and deciding every tag at once after taking in a check-in stored by
  another worker; with ``--db`` (a scratch PostgreSQL cluster is started, 31 check-ins per
  tag stored) also its reads at a deadline where every tag is due: the row locks and the
  one query for their committed check-ins.

    .venv/bin/python bench/patrols.py                 # 4,064 tags, 30 days
    .venv/bin/python bench/patrols.py --tags 20000 --days 90
    .venv/bin/python bench/patrols.py --db            # + the owner's reads on PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ingest.py is not ingest/

import psycopg

from detectors.engine import DeviceDetectors
from detectors.patrol_schedule import Schedule, evaluate
from detectors.runtime import DetectionRuntime
from devices.messages import DeviceEvent
from devices.profiles import DeviceProfile, get_profile
from ingest.patrol_owner import committed_checkins, decide, lock_states, select

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
    parser.add_argument("--db", action="store_true", help="also time the owner's reads")
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

    owner_figures(runtime, tags, late, events)
    if args.db:
        from storage.migrate import migrate  # only with --db
        from tests.services import running_cluster

        async def reads(conninfo: str) -> None:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await migrate(conn)
            await owner_reads(conninfo, tags, late, events)

        with running_cluster() as cluster:
            cluster.create_database("gw_bench")
            asyncio.run(reads(cluster.conninfo_for("gw_bench")))


def owner_figures(
    runtime: DetectionRuntime,
    tags: dict[str, DeviceProfile],
    late: float,
    events: list[DeviceEvent],
) -> None:
    """The deadline owner's work in memory on top of the tick sweep."""
    engines = {d: runtime.engine(p) for d, p in tags.items()}
    states = runtime.states
    quiet = START + 60
    timed(
        "owner: choose tags to decide, none due",
        len(tags),
        lambda: select(engines, states, quiet, False),
    )
    timed(
        "owner: choose, with overdue tags rechecked",
        len(tags),
        lambda: select(engines, states, late, True),
    )
    by_tag = {e.device_id: [e] for e in events}

    def decide_all() -> None:
        for d, engine in engines.items():
            decide(engine, states[d], by_tag[d], late + 86400.0)

    timed("owner: take in a check-in, then tick, every tag", len(tags), decide_all)


async def owner_reads(
    conninfo: str,
    tags: dict[str, DeviceProfile],
    late: float,
    events: list[DeviceEvent],
) -> None:
    """The owner's two statements when every tag is due at once, on a real database."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        rng = random.Random(3)
        rows = [
            (e.device_id, late - rng.uniform(0, 30 * DAY), '{"worker_id": "gm-1"}')
            for e in events
            for _ in range(30)
        ] + [(e.device_id, e.ts, '{"worker_id": "gm-1"}') for e in events]
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO device_events (device_id, ts, event, detail, received_at)"
                " VALUES (%s, to_timestamp(%s), 'checkin', %s, now()) ON CONFLICT DO NOTHING",
                rows,
            )
            await cur.executemany(
                "INSERT INTO detector_state (device_id, state) VALUES (%s, '{}')"
                " ON CONFLICT DO NOTHING",
                [(d,) for d in tags],
            )
        await conn.commit()
        await conn.execute("ANALYZE device_events")
        await conn.commit()
        ids = sorted(tags)
        newest = {d: late - 1.0 for d in ids}  # what it knows: all but the newest check-in
        unknown = dict.fromkeys(ids)  # it knows none (all 31 read)
        print(f"{len(rows):,} check-ins stored for {len(ids):,} tags")
        for label, work in (
            ("owner: lock every tag's row", lambda: lock_states(conn, ids)),
            (
                "owner: one query, one newer check-in a tag",
                lambda: committed_checkins(conn, newest),
            ),
            (
                "owner: one query, knowing none (31 a tag)",
                lambda: committed_checkins(conn, unknown),
            ),
        ):
            best = min([await _timed_async(work) for _ in range(5)])
            await conn.rollback()
            print(f"{label:<48} {best * 1000:9.1f} ms  ({len(ids) / best:,.0f} tags/s)")


async def _timed_async(work: object) -> float:
    t0 = time.perf_counter()
    await work()  # type: ignore[operator]
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
