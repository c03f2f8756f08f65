"""A small county for the field tests (patrols, reports, resources): grids with geometry and
members, a smoke detector, a hydrant's pressure sensor and a patrol tag at a market, tokens.

County C → towns T1, T2 → villages V1, V2 → basic grids G1, G2 (in V1; members m1, m2) and
G3 (in V2; member m3). G1 is the square 113.30–113.31 E × 22.90–22.91 N, G2 the one east
of it, G3 further east.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
from aiohttp import web
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from api.context import ApiContext
from api.http import make_app
from gridwatch.config import load_settings
from storage import tokens
from storage.media import MediaStore

C, T1, T2 = "440999", "440999001", "440999002"
V1, V2 = "440999001001", "440999002001"
G1, G2, G3 = "440999001001-01", "440999001001-02", "440999002001-01"
GRIDS = {  # code: (name, level, parent, ancestors, members, west longitude)
    C: ("示范县", "county", None, (), [], None),
    T1: ("城关镇", "town", C, (C,), [("t1", "城关镇综治中心", "town_centre")], None),
    T2: ("北陡镇", "town", C, (C,), [], None),
    V1: ("东村", "village", T1, (C, T1), [("v1", "李村长", "village_lead")], None),
    V2: ("西村", "village", T2, (C, T2), [("v2", "王村长", "village_lead")], None),
    G1: ("东村一网格", "grid", V1, (C, T1, V1), [("m1", "张网格员", "grid_member")], 113.30),
    G2: ("东村二网格", "grid", V1, (C, T1, V1), [("m2", "陈网格员", "grid_member")], 113.31),
    G3: ("西村一网格", "grid", V2, (C, T2, V2), [("m3", "赵网格员", "grid_member")], 113.40),
}
MARKET = (22.905, 113.305)  # lat, lon of the market in G1
# device_id, type, grid, site, lat, lon, profile
DEVICES: list[tuple[str, str, str, str, float, float, dict[str, Any]]] = [
    ("SD-M1", "smoke_detector", G1, "market-1", 22.9051, 113.3051, {}),
    ("WP-H1", "water_pressure_sensor", G1, "hydrant-1", 22.9060, 113.3060, {}),
]
TOKENS = {  # name: (role, scope, member)
    "admin": ("admin", "*", None),
    "m1": ("grid_member", G1, "m1"),
    "m3": ("grid_member", G3, "m3"),
    "town1": ("town_centre", T1, None),
    "viewer": ("viewer", C, None),
}


def square(west: float) -> dict[str, Any]:
    ring = [[west, 22.90], [west + 0.01, 22.90], [west + 0.01, 22.91], [west, 22.91]]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


@dataclass
class World:
    conninfo: str
    tokens: dict[str, str] = field(default_factory=dict)


def build_world(conninfo: str, extra_devices: Sequence[tuple[Any, ...]] = ()) -> World:
    with psycopg.connect(conninfo) as conn:
        for code, (name, level, parent, ancestors, people, west) in GRIDS.items():
            members = [{"id": i, "name": n, "role": r, "phone": "0750-0000"} for i, n, r in people]
            conn.execute(
                "INSERT INTO grids (code, name, level, parent, ancestors, members, geometry)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    code, name, level, parent, list(ancestors), Jsonb(members),
                    Jsonb(square(west)) if west is not None else None,
                ),
            )  # fmt: skip
        for device_id, type_, grid, site, lat, lon, profile in [*DEVICES, *extra_devices]:
            conn.execute(
                "INSERT INTO devices (device_id, type, grid_code, site, lat, lon, profile)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (device_id, type_, grid, site, lat, lon, Jsonb(profile)),
            )

    async def made() -> World:
        world = World(conninfo)
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            for name, (role, scope, member) in TOKENS.items():
                issued = await tokens.create_token(
                    conn, name=name, role=role, scope=scope, member_id=member
                )
                world.tokens[name] = issued.text
            await conn.commit()
        return world

    return asyncio.run(made())


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_json(
    session: aiohttp.ClientSession, url: str, token: str, **params: Any
) -> tuple[int, Any]:
    async with session.get(url, headers=auth(token), params=params or None) as response:
        body = await response.read()
        is_json = response.content_type == "application/json"
        return response.status, orjson.loads(body) if is_json else body


async def rows(conninfo: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


@contextlib.asynccontextmanager
async def api_app(conninfo: str, data_dir: Path, **sections: Any) -> AsyncIterator[str]:
    """The whole HTTP API on a free port, without the ingest pipeline; its base URL."""
    pool = AsyncConnectionPool(conninfo, min_size=1, max_size=4, open=False)
    await pool.open()
    settings = load_settings(environ={}, data_dir=data_dir, **sections)
    context = ApiContext(pool, settings, lambda: {"components": {}})
    context.media = MediaStore(data_dir / "media")
    runner = web.AppRunner(make_app(context), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
        await pool.close()
