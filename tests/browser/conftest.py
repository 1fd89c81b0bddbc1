"""Playwright for Python driving Debian's Chromium against the real server and worker."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

CHROMIUM = os.environ.get("REGLAB_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Playwright]:
    """One Playwright driver for every browser of the session."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        yield playwright


def launch(playwright: Playwright, *args: str) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*ARGS, *args])


@pytest.fixture(scope="session")
def browser(chromium: Playwright) -> Iterator[Browser]:
    browser = launch(chromium, "--disable-gpu")
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def browser_without_webgl(chromium: Playwright) -> Iterator[Browser]:
    """A Chromium that has no WebGL: no GPU and no software rasterizer to stand in, as on
    many VMs and remote desktops."""
    browser = launch(chromium, "--disable-gpu", "--disable-software-rasterizer")
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def browser_with_webgl(chromium: Playwright) -> Iterator[Browser]:
    """A Chromium whose WebGL is SwiftShader's, on the CPU."""
    browser = launch(chromium, "--use-angle=swiftshader", "--enable-unsafe-swiftshader")
    yield browser
    browser.close()


HAS_WEBGL = """() => {
  const gl = document.createElement("canvas").getContext("webgl");
  return Boolean(gl && gl.getExtension("ANGLE_instanced_arrays"));
}"""


@contextmanager
def open_page(browser: Browser, url: str, width: int = 1400) -> Iterator[Page]:
    """A fresh page on the server at `url`; JavaScript errors fail the test."""
    # Playwright's string predicates run through eval, which the pages' CSP forbids;
    # test_pages_work_under_the_content_security_policy checks the pages with it on.
    context = browser.new_context(
        base_url=url, viewport={"width": width, "height": 900}, bypass_csp=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(20_000)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture
def page(browser: Browser, stack: str) -> Iterator[Page]:
    """A fresh page on the running stack; JavaScript errors fail the test."""
    with open_page(browser, stack) as page:
        yield page


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under tests/artifacts/screenshots (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
