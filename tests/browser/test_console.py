"""The operator console as an operator uses it: an alarm reaches the list and the map live,
a dispatcher and a grid member take it through the workflow to closed, a viewer gets no
buttons, and the language toggle relabels the page. Screenshots of the main views are saved
to docs/screenshots/ for the README."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import cv2
import numpy as np
import psycopg
import pytest
from playwright.async_api import Locator, Page, expect

from storage.camera_status import save_statuses
from tests.browser.conftest import Console, PageMaker, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ORANGE = "#f97316"  # one smoke detector's alarm is orange (docs/interface.md colours)


def card(page: Page, grid: str) -> Locator:
    return page.locator(f'.event-card[data-grid="{grid}"]')


def polygon(page: Page, grid: str) -> Locator:
    return page.locator(f'path.grid-polygon[data-grid="{grid}"]')


async def act(page: Page, action: str, *, assignee: str | None = None, reason: str = "") -> None:
    """Click an action button, fill its form and submit it."""
    await page.locator(f'button.action[data-action="{action}"]').click()
    form = page.locator(f'.action-form form[data-action="{action}"]')
    if assignee is not None:
        select = form.locator('select[name="assignee"]')
        value = await select.locator("option", has_text=re.compile(".")).evaluate_all(
            "(options, id) => options.map(o => o.value).find(v => v.startsWith(id + '\\u0000'))",
            assignee,
        )
        assert value, f"{assignee} is not offered for {action}"
        await select.select_option(value)
    if reason:
        await form.locator('input[name="reason"]').fill(reason)
    await form.locator("button[type=submit]").click()


async def test_an_alarm_appears_in_the_list_and_colours_its_grid(
    console: Console, signed_in: PageMaker
) -> None:
    page = await signed_in("admin")
    grid, device = console.free_smoke_detector()
    shape = polygon(page, grid)
    await expect(shape).to_have_attribute("data-severity", "none")
    await expect(card(page, grid)).to_have_count(0)

    await console.raise_alarm(device)

    await expect(card(page, grid)).to_have_count(1)
    await expect(card(page, grid)).to_have_attribute("data-severity", "orange")
    await expect(card(page, grid)).to_contain_text("烟感报警")
    await expect(shape).to_have_attribute("data-severity", "orange")
    await expect(shape).to_have_attribute("fill", ORANGE)
    await screenshot(page, "live")


async def test_a_dispatcher_and_a_grid_member_take_an_alarm_to_closed(
    console: Console, signed_in: PageMaker
) -> None:
    grid, device = console.free_smoke_detector()
    member = console.grid_member[grid]
    dispatcher = await signed_in("admin")
    await console.raise_alarm(device)
    await card(dispatcher, grid).click()
    state = dispatcher.locator("#event-state")
    await expect(state).to_have_attribute("data-state", "reported")
    event_url = dispatcher.url
    await expect(dispatcher.locator("#readings-chart")).to_be_visible()

    await act(dispatcher, "dispatch", assignee=member, reason="请立即到场核查")
    await expect(state).to_have_attribute("data-state", "dispatched")
    await expect(dispatcher.locator("#history-rows tr")).to_have_count(2)
    await screenshot(dispatcher, "event")

    # The grid member, on their own console, accepts and reports back.
    worker = await signed_in(f"member:{grid}")
    await worker.goto(event_url)
    worker_state = worker.locator("#event-state")
    await expect(worker_state).to_have_attribute("data-state", "dispatched")
    await expect(worker.locator('button.action[data-action="dispatch"]')).to_have_count(0)
    await act(worker, "accept")
    await expect(worker_state).to_have_attribute("data-state", "accepted")
    await act(worker, "resolve", reason="厨房油烟，已处置")
    await expect(worker_state).to_have_attribute("data-state", "resolved")
    # the resolver may not verify their own work: the API offers them no verify button
    await expect(worker.locator('button.action[data-action="verify"]')).to_have_count(0)

    # The dispatcher's page followed the member's steps live, then verifies and closes.
    await expect(state).to_have_attribute("data-state", "resolved")
    await act(dispatcher, "verify")
    await expect(state).to_have_attribute("data-state", "verified")
    await act(dispatcher, "close", reason="结案")
    await expect(state).to_have_attribute("data-state", "closed")
    await expect(dispatcher.locator('button.action[data-action="close"]')).to_have_count(0)
    await expect(dispatcher.locator("#history-rows tr")).to_have_count(6)

    await dispatcher.locator("a.back").click()
    await expect(card(dispatcher, grid)).to_have_count(0)
    await expect(polygon(dispatcher, grid)).to_have_attribute("data-severity", "none")


async def test_a_viewer_sees_the_event_but_no_action_buttons(
    console: Console, signed_in: PageMaker
) -> None:
    grid, device = console.free_smoke_detector()
    viewer = await signed_in("viewer")
    await console.raise_alarm(device)
    await card(viewer, grid).click()
    await expect(viewer.locator("#event-state")).to_have_attribute("data-state", "reported")
    await expect(viewer.locator("#no-actions")).to_be_visible()
    await expect(viewer.locator("button.action")).to_have_count(0)

    # the same event, for the town centre above it, has the dispatcher's buttons
    town = await signed_in("town")
    await town.goto(viewer.url)
    await expect(town.locator('button.action[data-action="dispatch"]')).to_be_visible()


async def test_the_language_toggle_switches_the_labels(
    console: Console, signed_in: PageMaker
) -> None:
    page = await signed_in("admin")
    nav = page.locator("#nav a[data-view=live]")
    title = page.locator("#side h2 [data-i18n='list.title']")
    await expect(nav).to_have_text("地图与事件")
    await expect(title).to_have_text("未结事件")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

    await page.click("#lang")
    await expect(nav).to_have_text("Map & events")
    await expect(title).to_have_text("Open events")
    await expect(page.locator("#lang")).to_have_text("中文")
    await expect(page.locator("#stream-status")).to_have_text("Live")
    await expect(page.locator("#filter-severity option[value=red]")).to_have_text("Red (I)")
    await expect(page.locator("html")).to_have_attribute("lang", "en")

    # an event's page follows the toggle too, down to its action buttons
    grid, device = console.free_smoke_detector()
    await console.raise_alarm(device)
    await card(page, grid).click()
    dispatch = page.locator('button.action[data-action="dispatch"]')
    await expect(dispatch).to_have_text("Dispatch")
    await expect(page.locator("#event-state")).to_have_text("Reported")
    await page.click("#lang")
    await expect(dispatch).to_have_text("分拨派遣")
    await expect(page.locator("#event-state")).to_have_text("发现上报")
    await expect(page.locator("#event-head h2")).to_have_text("烟感报警")

    # the choice is kept for the next visit
    await page.click("#lang")
    await page.reload()
    await expect(page.locator("#event-state")).to_have_text("Reported")
    await expect(nav).to_have_text("Map & events")


async def test_the_figures_view_draws_its_charts(console: Console, signed_in: PageMaker) -> None:
    page = await signed_in("admin")
    await page.click("#nav a[data-view=figures]")
    charts = page.locator("#view-figures canvas")
    await expect(charts).to_have_count(6)
    await expect(page.locator("#kpi-received .value")).to_have_text(re.compile(r"^\d+$"))
    await expect(page.locator("#kpi-safety .value")).to_have_text(re.compile(r"^\d+\.\d$"))
    await screenshot(page, "figures")


def street_frame(seed: int) -> bytes:
    """A small synthetic camera picture (sky, road, two buildings) as JPEG."""
    frame = np.zeros((180, 320, 3), np.uint8)
    frame[:90] = (200, 160, 110)  # sky (BGR)
    frame[90:] = (90, 90, 90)  # road
    cv2.rectangle(frame, (20 + seed * 10, 40), (110 + seed * 10, 120), (60, 70, 160), -1)
    cv2.rectangle(frame, (180, 25), (290, 120), (120, 120, 60), -1)
    cv2.line(frame, (0, 150), (320, 150), (230, 230, 230), 2)
    ok, encoded = cv2.imencode(".jpg", frame)
    assert ok
    return encoded.tobytes()


async def test_the_camera_wall_shows_the_areas_cameras(
    console: Console, signed_in: PageMaker
) -> None:
    """Frames come from GET /api/v1/cameras/{id}/latest.jpg (here the preview a puller has
    stored, as after a restart); a camera with no frame shows a placeholder."""
    with_frame, faulty, *silent = console.cameras
    now = datetime.now(UTC)
    status = {
        "worker": "gw-other", "state": "connected", "fps_in": 5.0, "fps_analysed": 5.0,
        "frames_in": 900, "frames_dropped": 0, "reconnects": 0, "last_frame_at": now,
        "width": 1280, "height": 720, "last_error": None, "faults": [],
        "preview": None, "preview_at": None,
    }  # fmt: skip
    async with await psycopg.AsyncConnection.connect(console.conninfo) as conn:
        await save_statuses(
            conn,
            [
                {**status, "camera_id": with_frame, "preview": street_frame(0), "preview_at": now},
                {**status, "camera_id": faulty, "faults": ["covered"]},
            ],
        )
        await conn.commit()
    page = await signed_in("admin")
    await page.click("#nav a[data-view=cameras]")
    await expect(page.locator("figure.camera")).to_have_count(len(console.cameras))
    framed = page.locator(f'figure.camera[data-camera="{with_frame}"]')
    await expect(framed.locator("img")).to_be_visible()
    await expect(framed.locator("img")).to_have_attribute("src", re.compile(r"^blob:"))
    await expect(framed).to_contain_text("已连接")
    for camera in (faulty, *silent):
        tile = page.locator(f'figure.camera[data-camera="{camera}"]')
        await expect(tile.locator(".placeholder")).to_have_text("暂无画面")
        await expect(tile.locator("img")).to_be_hidden()
    covered = page.locator(f'figure.camera[data-camera="{faulty}"]')
    await expect(covered).to_contain_text("遮挡或黑屏")
    await screenshot(page, "cameras")
