"""The console's files: served without a token under a strict Content-Security-Policy,
nothing outside its directory, and a dictionary that is complete in both languages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import detectors
from alerts.event import CATEGORIES
from alerts.roles import Role
from alerts.workflow_enums import Action, Severity, State
from api.console import STATIC_DIR
from api.context import ApiContext
from api.http import make_app
from detectors.video.camera_health import FAULTS
from devices.profiles import registered_types
from gridwatch.cli.demo_cmd import console_banner
from gridwatch.config import load_settings


class _NoPool:
    def connection(self) -> Any:
        raise AssertionError("the console's files need no database")


@pytest.fixture
async def client() -> Any:
    context = ApiContext(_NoPool(), load_settings(environ={}), lambda: {"components": {}})  # type: ignore[arg-type]
    async with TestClient(TestServer(make_app(context))) as test_client:
        yield test_client


async def test_the_page_needs_no_token_and_is_locked_down(client: TestClient) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert '<script type="module" src="/console/js/app.js">' in await response.text()
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/console/js/app.js", "text/javascript"),
        ("/console/i18n.json", "application/json"),
        ("/console/console.css", "text/css"),
        ("/console/vendor/leaflet/leaflet.js", "text/javascript"),
        ("/console/vendor/chartjs/chart.umd.min.js", "text/javascript"),
    ],
)
async def test_assets_are_served_with_their_type(
    client: TestClient, path: str, content_type: str
) -> None:
    response = await client.get(path)
    assert response.status == 200, path
    assert response.content_type == content_type


@pytest.mark.parametrize(
    "path",
    [
        "/console/../http.py",
        "/console/%2e%2e/http.py",
        "/console/js/../../__init__.py",
        "/console/js",
        "/console/.hidden",
        "/console/nothing.js",
    ],
)
async def test_nothing_outside_the_static_files_is_served(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404, path


def _dictionary() -> dict[str, dict[str, str]]:
    return json.loads((STATIC_DIR / "i18n.json").read_text(encoding="utf-8"))


def test_both_languages_have_every_key_and_no_blank() -> None:
    words = _dictionary()
    assert set(words) == {"zh", "en"}
    assert set(words["zh"]) == set(words["en"])
    for lang, table in words.items():
        blank = [k for k, v in table.items() if not v.strip()]
        assert not blank, (lang, blank)
    assert words["zh"]["nav.live"] != words["en"]["nav.live"]


def test_every_key_the_page_and_the_code_use_is_in_the_dictionary() -> None:
    known = set(_dictionary()["zh"])
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n(?:-title|-placeholder)?="([^"]+)"', html))
    for script in (STATIC_DIR / "js").glob("*.js"):
        code = script.read_text(encoding="utf-8")
        used |= set(re.findall(r'\bt\(\s*"([a-z_]+\.[a-z_.]+)"', code))
        used |= set(re.findall(r'i18n: "([a-z_]+\.[a-z_.]+)"', code))
    assert used, "no keys found: the patterns no longer match the code"
    assert not used - known, sorted(used - known)


def _detector_types() -> set[str]:
    """The event types the detectors raise (each names its type in a ``Label``)."""
    root = Path(detectors.__file__).parent
    found: set[str] = set()
    for source in root.rglob("*.py"):
        found |= set(re.findall(r'Label\(\s*"([a-z_]+)"', source.read_text(encoding="utf-8")))
    assert len(found) > 10, "the Label pattern no longer matches the detectors"
    return found


def test_every_value_the_api_answers_has_a_label() -> None:
    known = set(_dictionary()["zh"])
    wanted = (
        {f"state.{s.value}" for s in State}
        | {f"action.{a.value}" for a in Action}
        | {f"severity.{s.value}" for s in Severity}
        | {f"category.{c}" for c in CATEGORIES}
        | {f"role.{r.value}" for r in Role}
        | {f"devtype.{t}" for t in registered_types()}
        | {f"fault.{f}" for f in FAULTS}
        | {f"camstate.{s}" for s in ("connecting", "connected", "disconnected", "stopped")}
        | {f"stream.{s}" for s in ("live", "connecting", "offline")}
        | {f"type.{t}" for t in _detector_types()}
    )
    assert not wanted - known, sorted(wanted - known)


def test_the_demo_names_the_console_and_its_admin_token(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("gw_0123456789ab_secret\n", encoding="utf-8")
    banner = console_banner("http://127.0.0.1:8080", tmp_path)
    assert "operator console http://127.0.0.1:8080/" in banner
    assert banner.endswith("admin token: gw_0123456789ab_secret")
    (tmp_path / "admin-token").unlink()
    assert "tokens create --role admin" in console_banner("http://127.0.0.1:8080", tmp_path)
