"""Property-based fuzzing of the HTTP API against its real database: whatever body or query a
caller sends, every route answers with a reason (4xx JSON) or does what was asked, never a
500, and the service keeps answering.

The application runs in a thread of its own (its own event loop and connection pool) so that
hypothesis can drive it from ordinary synchronous tests, with an admin token, on the
registry and events of ``test_api``'s world.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from api.context import ApiContext
from api.http import make_app
from gridwatch.config import load_settings
from tests.integration.test_api import World, world  # noqa: F401  (the module's fixture)

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FIELDS = [
    "action", "reason", "assignee", "version", "id", "role", "url", "filters", "grid",
    "severity", "types", "name", "description", "event_id", "device_id", "worker_id", "lat",
    "lon", "accuracy_m", "at", "kind", "media", "enabled", "secret", "category", "note",
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["dispatch", "close", "grid_member", "red", "*", "440999", "https://x"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=6),
    max_leaves=16,
)
TEXT = st.text(max_size=30) | st.sampled_from(["", "\x00", "a\x00b", "网格", "x" * 5000])
CODES = st.sampled_from(["440999", "440999001", "440999001001-01", "999999"]) | TEXT
# Bodies shaped like each route's request, so that fuzzing gets past the decoder into the
# checks and the database (a body of random keys is refused at the first unknown field).
SHAPED = {
    "actions": st.fixed_dictionaries(
        {"action": st.sampled_from(
            ["dispatch", "accept", "reassign", "resolve", "verify", "send_back", "close",
             "mark_false_alarm", "urge", "comment"]) | TEXT},
        optional={
            "reason": TEXT,
            "assignee": st.fixed_dictionaries(
                {"id": TEXT | st.sampled_from(["m1", "v1"]),
                 "role": st.sampled_from(["grid_member", "village_lead", "town_centre"]) | TEXT}
            ) | JSON,
            "version": st.integers(min_value=-(2**70), max_value=2**70) | JSON,
        },
    ),
    "subscriptions": st.fixed_dictionaries(
        {"url": st.sampled_from(["https://example.com/hook", "http://127.0.0.1:9/x"]) | TEXT},
        optional={
            "secret": TEXT,
            "description": TEXT,
            "filters": st.fixed_dictionaries({}, optional={
                "grid": CODES, "severity": st.lists(st.sampled_from(["red", "blue"]) | TEXT),
                "category": st.lists(TEXT), "change": st.lists(TEXT)}) | JSON,
        },
    ),
    "checkins": st.fixed_dictionaries(
        {"tag_id": TEXT},
        optional={
            "worker_id": TEXT, "ts": st.sampled_from(["2026-11-22T08:00:00Z", "9999-99-99"]) | TEXT,
            "checklist": st.dictionaries(TEXT, st.booleans() | JSON, max_size=3),
            "hazard": st.booleans() | JSON, "note": TEXT,
        },
    ),
    "reports": st.fixed_dictionaries(
        {"category": st.sampled_from(["fire", "electrical", "water", "other"]) | TEXT,
         "type": TEXT, "description": TEXT},
        optional={"severity": st.sampled_from(["red", "orange"]) | TEXT, "site": TEXT,
                  "location": st.dictionaries(
                      st.sampled_from(["lat", "lon", "address", "grid_code"]),
                      st.floats() | CODES, max_size=4)},
    ),
}  # fmt: skip


def body_for(path: str) -> st.SearchStrategy[bytes]:
    """Shaped bodies for the route, any JSON, and bytes that are not JSON at all. The
    stdlib's json writes integers past 64 bits and Infinity, which a caller may send too."""
    shaped = SHAPED.get(path.rsplit("/", 1)[-1], JSON)
    return (shaped | JSON).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200)


class Server:
    """The API on 127.0.0.1:<port>, served from its own thread and event loop."""

    def __init__(self, conninfo: str, data_dir: Path) -> None:
        self.conninfo = conninfo
        self.settings = load_settings(environ={}, db={"url": conninfo}, data_dir=data_dir)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        pool = AsyncConnectionPool(self.conninfo, min_size=1, max_size=4, open=False)
        await pool.open()
        runner = web.AppRunner(make_app(ApiContext(pool, self.settings, _health)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await pool.close()

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(30), "the API did not start"
        return self

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()

    def call(
        self, method: str, path: str, token: str, body: bytes | None = None
    ) -> tuple[int, bytes, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Content-Type") or ""
        finally:
            conn.close()


def _health() -> dict[str, Any]:
    return {"components": {}}


@pytest.fixture(scope="module")
def server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    with Server(world.conninfo, tmp_path_factory.mktemp("fuzz")) as running:
        yield running


@pytest.fixture(scope="module")
def routes(server: Server, world: World) -> dict[str, list[str]]:  # noqa: F811
    """Each route with its path variables filled with ids that exist (where they can)."""
    with psycopg.connect(world.conninfo) as conn:
        ids = {
            "events": next(iter(world.events)),
            "grids": "440999001",
            "devices": "sd-g1-1",
        }
        row = conn.execute("SELECT id FROM webhook_subscriptions LIMIT 1").fetchone()
        ids["subscriptions"] = str(row[0]) if row else "1"
    app = make_app(ApiContext(None, server.settings, _health))  # type: ignore[arg-type]
    found: dict[str, list[str]] = {}
    for route in app.router.routes():
        if route.method in ("HEAD", "DELETE") or route.resource is None:
            continue
        path = route.resource.canonical
        parts = path.strip("/").split("/")
        filled = []
        for i, part in enumerate(parts):
            if part.startswith("{"):
                owner = parts[i - 1] if i else ""
                part = ids.get(owner, "x1")
            filled.append(part)
        found.setdefault(route.method, []).append("/" + "/".join(filled))
    return found


def _answered(status: int, body: bytes, content_type: str, what: str) -> None:
    assert status < 500, (what, status, body[:300])
    if status >= 400 and content_type.startswith("application/json"):
        assert "error" in orjson.loads(body), (what, body[:300])


def test_every_post_route_answers_any_body_without_a_500(
    server: Server, routes: dict[str, list[str]], world: World  # noqa: F811
) -> None:
    posts = routes["POST"]
    assert {p.rsplit("/", 1)[-1] for p in posts} <= set(SHAPED), posts  # a new route: shape it
    admin = world.tokens["admin"]

    @FUZZ
    @given(request=st.sampled_from(posts).flatmap(lambda p: st.tuples(st.just(p), body_for(p))))
    def fuzz(request: tuple[str, bytes]) -> None:
        path, body = request
        status, answer, content_type = server.call("POST", path, admin, body)
        _answered(status, answer, content_type, f"POST {path} {body[:100]!r}")

    fuzz()


def test_every_get_route_answers_any_query_without_a_500(
    server: Server, routes: dict[str, list[str]], world: World  # noqa: F811
) -> None:
    gets = [p for p in routes["GET"] if p != "/api/v1/stream"]  # the stream never ends
    tokens = [world.tokens["admin"], world.tokens["town1"], world.tokens["member_m1"]]
    params = st.dictionaries(
        st.sampled_from(["grid", "severity", "state", "open", "limit", "cursor", "since",
                         "until", "node", "days", "q", "type", "category", "device", "metric"])
        | st.text(max_size=6),
        st.text(max_size=30) | st.integers().map(str),
        max_size=4,
    )  # fmt: skip

    @FUZZ
    @given(path=st.sampled_from(gets), query=params, token=st.sampled_from(tokens))
    def fuzz(path: str, query: dict[str, str], token: str) -> None:
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        status, answer, content_type = server.call("GET", url, token)
        _answered(status, answer, content_type, f"GET {url}")

    fuzz()
    status, _, _ = server.call("GET", "/healthz", "")
    assert status == 200  # still serving
