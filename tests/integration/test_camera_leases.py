"""Camera leases on a real PostgreSQL: every camera pulled by exactly one live worker, fair
shares, and a dead worker's cameras taken over on the next round."""

from __future__ import annotations

import pytest

from ingest.camera_leases import CameraLeases

pytestmark = pytest.mark.integration

CAMERAS = [f"cam-{i:03d}" for i in range(7)]


async def _rounds(workers: list[CameraLeases], times: int = 2) -> list[set[str]]:
    held: list[set[str]] = []
    for _ in range(times):
        held = [await w.round(CAMERAS) for w in workers]
    return held


async def test_workers_split_the_cameras_fairly_and_never_share_one(database: str) -> None:
    workers = [CameraLeases(database) for _ in range(3)]
    try:
        held = await _rounds(workers)
        assert set().union(*held) == set(CAMERAS)
        assert sum(len(h) for h in held) == len(CAMERAS)  # disjoint
        assert max(len(h) for h in held) <= 3  # ceil(7 / 3)
    finally:
        for w in workers:
            await w.close()


async def test_a_dead_workers_cameras_go_to_the_others(database: str) -> None:
    workers = [CameraLeases(database) for _ in range(2)]
    try:
        await _rounds(workers)
        await workers[0].close()  # its session ends: PostgreSQL frees its locks
        (alone,) = await _rounds(workers[1:])
        assert alone == set(CAMERAS)
    finally:
        for w in workers:
            await w.close()


async def test_a_worker_joining_later_gets_its_share(database: str) -> None:
    first = CameraLeases(database)
    second = CameraLeases(database)
    try:
        assert await first.round(CAMERAS) == set(CAMERAS)
        await second.round(CAMERAS)  # counts two workers; nothing free yet
        held = await _rounds([first, second])
        assert [len(h) for h in held] == [4, 3] or [len(h) for h in held] == [3, 4]
        assert held[0].isdisjoint(held[1])
    finally:
        await first.close()
        await second.close()


async def test_max_cameras_caps_a_worker_and_removed_cameras_are_let_go(database: str) -> None:
    capped = CameraLeases(database, max_cameras=2)
    try:
        assert len(await capped.round(CAMERAS)) == 2
        assert await capped.round([]) == set()
    finally:
        await capped.close()
