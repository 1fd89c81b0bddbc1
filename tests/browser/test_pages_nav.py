"""Every page's header carries the same nav, and the runs table keeps each date on one line;
in a real browser against the real server and worker, with a screenshot of each page."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import open_page, screenshot
from tests.factories import make_spec

NAV = [("Runs", "/"), ("Sweeps", "/sweeps"), ("New experiment", "/new"), ("Workers", "/workers")]
# Each page and the link of the nav that marks where it is.
CURRENT = {
    "runs": "/",
    "new": "/new",
    "sweeps": "/sweeps",
    "run": "/",
    "compare": "/",
    "sweep": "/sweeps",
    "workers": "/workers",
}


@pytest.fixture(scope="module")
def pages(stack: str) -> Iterator[dict[str, str]]:
    """The URL of each page, with a run and a sweep of their own to show."""
    run = httpx.post(f"{stack}/api/experiments", json=make_spec(name=f"nav-{secrets.token_hex(3)}"))
    assert run.status_code == 201, run.text
    sweep = httpx.post(
        f"{stack}/api/sweeps",
        json={
            "name": f"nav-sweep-{secrets.token_hex(3)}",
            "base": make_spec(),
            "axes": [{"path": "training.learning_rate", "values": [0.01, 0.02]}],
        },
    )
    assert sweep.status_code == 201, sweep.text
    run_id, sweep_id = run.json()["id"], sweep.json()["id"]
    yield {
        "runs": "/",
        "new": "/new",
        "sweeps": "/sweeps",
        "run": f"/runs/{run_id}",
        "compare": f"/compare?ids={run_id}",
        "sweep": f"/sweeps/{sweep_id}",
        "workers": "/workers",
    }
    httpx.post(f"{stack}/api/sweeps/{sweep_id}/cancel")  # spare the shared worker


@pytest.mark.parametrize("name", list(CURRENT))
def test_every_page_has_the_same_nav(page: Page, pages: dict[str, str], name: str) -> None:
    page.goto(pages[name])
    nav = page.locator("header.top nav").first
    links = nav.locator("a")
    expect(links).to_have_count(len(NAV))
    found = links.evaluate_all(
        "nodes => nodes.map(node => [node.textContent, node.getAttribute('href')])"
    )
    assert [tuple(pair) for pair in found] == NAV
    expect(nav.locator("a.current")).to_have_attribute("href", CURRENT[name])
    expect(page.locator("header.top").get_by_role("link", name="API")).to_have_attribute(
        "href", "/docs"
    )
    page.wait_for_load_state("load")
    screenshot(page, f"nav-{name}")


@pytest.mark.parametrize("width", [1400, 1100])
def test_the_runs_table_keeps_each_date_on_one_line(
    browser: Browser, stack: str, pages: dict[str, str], width: int
) -> None:
    with open_page(browser, stack, width=width) as page:
        page.goto("/")
        cell = page.locator("#runs tbody tr").first.locator("td.time")
        expect(cell).not_to_have_text("")
        lines = cell.evaluate(
            """cell => {
              const range = document.createRange();
              range.selectNodeContents(cell);
              return new Set([...range.getClientRects()].map((rect) => Math.round(rect.top))).size;
            }"""
        )
        assert lines == 1
        header = page.locator("#runs thead th.time")
        expect(header).to_have_text("Created")
        screenshot(page, f"runs-table-{width}")
