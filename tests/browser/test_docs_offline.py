"""/docs and /redoc work with no internet: Swagger UI and ReDoc come from the server itself
(the fastapi-offline package's files), under the docs' content security policy.

Every request the page makes to another origin is refused and recorded; the test wants
none made, and the operations listed all the same."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, Route


@contextmanager
def offline_page(browser: Browser, server: str) -> Iterator[tuple[Page, list[str]]]:
    """A page that reaches `server` only (CSP enforced); yields it and the URLs of other
    origins it tried. JavaScript errors fail the test."""
    context = browser.new_context(base_url=server, viewport={"width": 1400, "height": 900})
    origin = urlsplit(server).netloc
    elsewhere: list[str] = []

    def only_the_server(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == origin or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort("internetdisconnected")

    context.route("**/*", only_the_server)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(30_000)
    try:
        yield page, elsewhere
    finally:
        context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def test_swagger_ui_lists_the_operations_offline(browser: Browser, live_server: str) -> None:
    with offline_page(browser, live_server) as (page, elsewhere):
        page.goto("/docs")
        page.locator(".opblock").first.wait_for()
        paths = page.locator(".opblock-summary-path").all_text_contents()
        assert "/api/experiments" in {path.replace("\u200b", "") for path in paths}
        assert page.locator(".opblock-patch").count() >= 1  # the tags and notes edit
        # The query parameters' documentation is there too.
        page.locator("#operations-experiments-list_experiments_api_experiments_get").click()
        page.get_by_text("in reglab's query language").first.wait_for()
    assert elsewhere == []


def test_redoc_lists_the_operations_offline(browser: Browser, live_server: str) -> None:
    with offline_page(browser, live_server) as (page, elsewhere):
        page.goto("/redoc")
        page.get_by_text("Query experiments").first.wait_for()
        assert page.locator("[role=menuitem], li[data-item-id]").count() > 10
    assert elsewhere == []
