"""The operator console in a real headless Chromium (Debian's ``/usr/bin/chromium`` driven by
Playwright; no browser is downloaded) against gridwatch running in-process on the session's
real mosquitto and PostgreSQL, with a small generated county imported.

One gridwatch and one browser serve the whole module (the fixtures and the tests share one
event loop, so the service keeps running while a test awaits the page); each test gets its
own browser context, so tokens in one page's storage never leak into another's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from devices import registry_store
from gridwatch.mqtt_publish import BoundedPublisher
from simulators.county import CountySpec, generate_county
from simulators.county_files import write_county
from storage import tokens
from storage.migrate import migrate
from storage.timeseries import maintain
from tests.integration.conftest import make_settings, running_service

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1440, "height": 900}
# Waits on the page: long enough for a loaded 2-core machine, short enough to fail clearly.
WAIT_MS = 20_000
SPEC = CountySpec(towns=2, villages_per_town=2, grids_per_village=3, cameras=3, density=1.0, seed=7)

_seq = itertools.count(1)
_databases = itertools.count()


@dataclass
class Console:
    """gridwatch with its console, a browser, the county's facts and the tokens."""

    base: str
    browser: Browser
    broker_url: str
    conninfo: str
    tokens: dict[str, str]
    smoke: dict[str, list[str]]  # basic grid → its smoke detectors
    grid_member: dict[str, str]  # basic grid → its grid member's id
    cameras: list[str]
    used: set[str] = field(default_factory=set)

    def free_smoke_detector(self) -> tuple[str, str]:
        """(grid, device): a smoke detector no other test has set off, in a grid where no
        other test has raised anything (so a grid's colour is this test's doing)."""
        for grid, devices in sorted(self.smoke.items()):
            if grid not in self.used and devices:
                self.used.add(grid)
                return grid, devices[0]
        raise AssertionError("the county has no untouched grid with a smoke detector left")

    async def publish(self, device_id: str, kind: str, payload: dict[str, Any]) -> None:
        def send() -> None:
            with BoundedPublisher(self.broker_url) as publisher:
                publisher.publish(f"gridwatch/v1/up/{device_id}/{kind}", orjson.dumps(payload))

        await asyncio.to_thread(send)

    async def raise_alarm(self, device_id: str) -> None:
        """Some smoke readings of the last half hour, then the detector's alarm."""
        now = time.time()
        for minutes in range(30, 0, -3):
            value = 0.02 + 0.01 * (30 - minutes) / 3
            await self.publish(
                device_id,
                "telemetry",
                {
                    "ts": int((now - 60 * minutes) * 1000),
                    "seq": next(_seq),
                    "values": {"smoke_obscuration_db_m": round(value, 3), "battery_pct": 87.0},
                },
            )
        alarm = {"ts": int(now * 1000), "seq": next(_seq), "event": "alarm"}
        await self.publish(device_id, "event", {**alarm, "detail": {"channel": "smoke"}})


@pytest.fixture(scope="module")
def database(pg_cluster: Any) -> str:
    """A freshly migrated database of its own (the integration tests' template is theirs: a
    session that runs both must not create it twice)."""
    name = f"gw_browser_{next(_databases)}"
    pg_cluster.create_database(name)
    conninfo: str = pg_cluster.conninfo_for(name)

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            await migrate(conn)
            await maintain(
                conn, now=datetime.now(UTC), retention_days=90, ahead_days=3, compress_after_days=7
            )

    asyncio.run(run())
    return conninfo


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(
    mosquitto_broker: Any,
    database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Console]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: scripts/setup installs it"  # noqa: ASYNC240
    county = generate_county(SPEC)
    files = write_county(county, tmp_path_factory.mktemp("county"))
    county_code = SPEC.code
    town = next(g.code for g in county.grids if g.level.value == "town")
    made: dict[str, str] = {}
    async with await psycopg.AsyncConnection.connect(database) as conn:
        await registry_store.import_grid_file(conn, files.grids)
        await conn.commit()
        await registry_store.import_device_file(conn, files.devices[0])
        await conn.commit()
        basic = [g for g in county.grids if g.level.value == "grid"]
        member = {
            g.code: next(m.id for m in g.members if m.role.value == "grid_member") for g in basic
        }
        wanted = {
            "admin": ("admin", "*", None),
            "viewer": ("viewer", county_code, None),
            "town": ("town_centre", town, None),
            **{f"member:{code}": ("grid_member", code, mid) for code, mid in member.items()},
        }
        for name, (role, scope, member_id) in wanted.items():
            issued = await tokens.create_token(
                conn, name=name, role=role, scope=scope, member_id=member_id
            )
            made[name] = issued.text
        await conn.commit()
    smoke: dict[str, list[str]] = {}
    for device in county.devices:
        if device.type == "smoke_detector" and device.grid_code:
            smoke.setdefault(device.grid_code, []).append(device.device_id)
    settings = make_settings(
        mosquitto_broker.url, database, tmp_path_factory.mktemp("gridwatch"),
        video={"enabled": False},
    )  # fmt: skip
    async with running_service(settings) as running, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield Console(
                base=running.service.http_url,
                browser=browser,
                broker_url=mosquitto_broker.url,
                conninfo=database,
                tokens=made,
                smoke=smoke,
                grid_member=member,
                cameras=[d.device_id for d in county.devices if d.type == "camera"],
            )
        finally:
            await browser.close()


PageMaker = Callable[[str], Awaitable[Page]]


@pytest_asyncio.fixture(loop_scope="module")
async def signed_in(console: Console) -> AsyncIterator[PageMaker]:
    """Open the console in a fresh browser context and sign in with the named token."""
    contexts = []
    errors: list[str] = []

    async def make(token_name: str) -> Page:
        context = await console.browser.new_context(viewport=VIEWPORT, locale="zh-CN")
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{token_name}: {error}"))
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        await page.goto(console.base + "/")
        await page.fill("#token-input", console.tokens[token_name])
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#stream-status")).to_have_attribute("data-state", "live")
        return page

    yield make
    for context in contexts:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
