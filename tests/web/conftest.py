"""Fixtures for page tests.

Browser tests (``@pytest.mark.browser``) drive Debian's Chromium through Playwright against a real
``o2o serve`` started here on a fresh SQLite database with the demo data; they are skipped, with
the reason, when /usr/bin/chromium is missing (CI installs it). Screenshots go to
test-artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PHONE_WIDTH, DESKTOP_WIDTH = 375, 1280

# Fresh phone numbers for accounts the tests create (the live database persists for the session).
_phones = itertools.count(random.randint(0, 9_000_000) * 100)


def new_phone() -> str:
    return f"135{next(_phones) % 10**8:08d}"


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``o2o serve`` on a free port: fresh SQLite file, demo data, no embedded worker."""
    folder = tmp_path_factory.mktemp("live")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("O2O_")}
    env.update(
        O2O_DATABASE_URL=f"sqlite:///{folder / 'web.db'}",
        O2O_DEMO="true",
        O2O_SANDBOX_PAYMENTS="true",
        O2O_SECRET_KEY="web-test-secret-" + "x" * 40,
        O2O_EMBEDDED_WORKER="false",
        O2O_DATA_DIR=str(folder),
        O2O_LOG_LEVEL="warning",
    )
    log = open(folder / "server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "o2o.cli", "serve", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise AssertionError((folder / "server.log").read_text(errors="replace"))
            time.sleep(0.1)
        else:
            raise AssertionError("server did not become ready in 60 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _context(browser: Any, base: str, width: int) -> Any:
    mobile = width < 600
    return browser.new_context(
        base_url=base,
        viewport={"width": width, "height": 812 if mobile else 900},
        is_mobile=mobile,
        has_touch=mobile,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
    )


@pytest.fixture
def phone(browser: Any, live_server: str) -> Iterator[Any]:
    """A page in a fresh phone-sized browser context (375 px, no cookies)."""
    context = _context(browser, live_server, PHONE_WIDTH)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()


@pytest.fixture
def desktop(browser: Any, live_server: str) -> Iterator[Any]:
    context = _context(browser, live_server, DESKTOP_WIDTH)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()


def screenshot(page: Any, name: str) -> Path:
    """Full-page PNG as test-artifacts/screenshots/<name>-<width>.png; also checks that the page
    does not scroll sideways (375 px phones)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    path = SCREENSHOTS / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
    return path


def login(page: Any, phone_number: str, password: str, next_url: str = "") -> None:
    page.goto("/login" + (f"?next={next_url}" if next_url else ""))
    page.get_by_label("手机号").fill(phone_number)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()
