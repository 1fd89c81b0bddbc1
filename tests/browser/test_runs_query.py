"""The runs page as a query, in Chromium against a live server: sortable headings (the
order in the address), the filter box with the server's 422 message beside it, the column
picker for settings, metric summaries and tags, tags in the table, and a view that comes
back whole from its link or the Back button."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import open_page, screenshot
from tests.reglab.test_frames import Fed, feed


@pytest.fixture
def fed(live_server: str) -> Fed:
    return feed(live_server)


@pytest.fixture
def server_page(browser: Browser, live_server: str) -> Iterator[Page]:
    with open_page(browser, live_server) as page:
        yield page


def shown_ids(page: Page) -> list[int]:
    return [
        int(i) for i in page.locator("#runs tbody tr").evaluate_all("r => r.map(x => x.dataset.id)")
    ]


def expect_ids(page: Page, ids: list[int]) -> None:
    """Wait until the table shows exactly these runs, in this order."""
    pattern = ",".join(map(str, ids))
    rows = "[...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.id).join()"
    page.wait_for_function(f"want => {rows} === want", arg=pattern)
    assert shown_ids(page) == ids


def address(page: Page) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(page.url).query).items()}


def test_sort_filter_and_columns_live_in_the_address(
    server_page: Page, browser: Browser, live_server: str, fed: Fed
) -> None:
    page = server_page
    page.goto("/")
    expect_ids(page, sorted(fed.all, reverse=True))  # newest first
    expect(page.locator('#runs th[data-field="created"]')).to_have_attribute(
        "aria-sort", "descending"
    )
    expect(page.locator("#runs thead th.time")).to_have_text("Created")
    tags = page.locator(f'#runs tr[data-id="{fed.a}"] td.name .tags .tag')
    expect(tags).to_have_text(["team=vision", "baseline"])

    # Sort: a click orders by the column, a second click the other way; runs without a
    # value stay last.
    best = page.locator('#runs th[data-field="metrics.val_data_loss.best"] button.sort')
    best.click()
    expect_ids(page, [fed.b, fed.a, fed.script, fed.queued])
    assert address(page)["order"] == "metrics.val_data_loss.best asc"
    expect(page.locator('#runs th[data-field="metrics.val_data_loss.best"]')).to_have_attribute(
        "aria-sort", "ascending"
    )
    best.click()
    expect_ids(page, [fed.script, fed.a, fed.b, fed.queued])
    assert address(page)["order"] == "metrics.val_data_loss.best desc"
    page.locator('#runs th[data-field="status"] button.sort').click()
    page.locator('#runs th[data-field="name"] button.sort').click(modifiers=["Shift"])
    expect_ids(page, [fed.b, fed.queued, fed.a, fed.script])  # failed, queued, succeeded x2
    assert address(page)["order"] == "status asc, name asc"
    expect(page.locator('#runs th[data-field="name"]')).to_have_attribute("data-rank", "2")

    # Filter: the language, applied with Enter; the runs page keeps the order.
    box = page.locator("#filter")
    box.fill("tags.team = 'vision' or tags.team = 'audio'")
    box.press("Enter")
    expect_ids(page, [fed.b, fed.a])
    assert address(page)["filter"] == "tags.team = 'vision' or tags.team = 'audio'"
    expect(page.locator("#filter-error")).to_have_text("")

    # Columns: a setting, a metric summary and a tag, from the picker.
    page.locator("#column-picker summary").click()
    setting = page.locator('#pick-params input[data-field="params.model.layers.0.regularizer.l2"]')
    setting.check()
    page.locator('#pick-metrics input[data-field="metrics.accuracy.last"]').check()
    page.locator('#pick-tags input[data-field="tags.team"]').check()
    expect(page.locator("#column-picker summary")).to_have_text("Columns (+3)")
    assert address(page)["cols"] == (
        "params.model.layers.0.regularizer.l2,metrics.accuracy.last,tags.team"
    )
    row_a = page.locator(f'#runs tr[data-id="{fed.a}"]')
    expect(row_a.locator('td[data-field="params.model.layers.0.regularizer.l2"]')).to_have_text(
        "0.0100"
    )
    expect(row_a.locator('td[data-field="metrics.accuracy.last"]')).to_have_text("0.9000")
    expect(page.locator(f'#runs tr[data-id="{fed.b}"] td[data-field="tags.team"]')).to_have_text(
        "audio"
    )
    # Any other field, checked by the server: a typo gets its message.
    field = page.locator("#column-field")
    field.fill("params.nope")
    page.locator("#column-add").click()
    expect(page.locator("#column-error")).to_contain_text("unknown field 'params.nope'")
    field.fill("params.model.layers[*].dropout")
    field.press("Enter")
    expect(row_a.locator('td[data-field="params.model.layers[*].dropout"]')).to_have_text("0.1000")
    screenshot(page, "runs-column-picker")
    page.locator("#column-picker summary").click()  # closed
    # A column added sorts too.
    page.locator('#runs th[data-field="params.model.layers.0.regularizer.l2"] button.sort').click()
    expect_ids(page, [fed.b, fed.a])
    screenshot(page, "runs-query")
    shared = page.url

    # The link alone brings the whole view back in a fresh page.
    with open_page(browser, live_server) as other:
        other.goto(shared)
        expect_ids(other, [fed.b, fed.a])
        expect(other.locator("#filter")).to_have_value(
            "tags.team = 'vision' or tags.team = 'audio'"
        )
        heads = other.locator("#runs thead th.extra")
        expect(heads).to_have_count(4)
        expect(
            other.locator('#runs th[data-field="params.model.layers.0.regularizer.l2"]')
        ).to_have_attribute("aria-sort", "ascending")
        expect(
            other.locator(f'#runs tr[data-id="{fed.a}"] td[data-field="tags.team"]')
        ).to_have_text("vision")

    # Back: the view before the last sort.
    page.go_back()
    expect_ids(page, [fed.b, fed.a])
    assert address(page)["order"] == "status asc, name asc"
    expect(page.locator('#runs th[data-field="status"]')).to_have_attribute(
        "aria-sort", "ascending"
    )


def test_a_bad_filter_shows_the_server_s_message(
    server_page: Page, live_server: str, fed: Fed
) -> None:
    page = server_page
    page.goto("/")
    expect_ids(page, sorted(fed.all, reverse=True))
    box = page.locator("#filter")
    box.fill("metrics.val_data_loss.best >")
    box.press("Enter")
    message = page.locator("#filter-error")
    expect(message).to_have_text("at 29: expected a value after '>', found the end")
    expect(box).to_have_attribute("aria-invalid", "true")
    box.fill("name = 'unclosed")
    page.locator("#filter-apply").click()
    expect(message).to_contain_text("at 8:")
    screenshot(page, "runs-filter-error")
    # An example from the help replaces it, and the message goes.
    page.locator("#filter-help summary").click()
    page.locator("#filter-help code[data-example]", has_text="tags.team = 'vision'").click()
    expect(message).to_have_text("")
    expect(box).to_have_attribute("aria-invalid", "false")
    expect_ids(page, [])
    expect(page.locator("#empty .when-filtered")).to_be_visible()  # no run is a sweep's
    box.fill("dataset = 'my data'")
    box.press("Enter")
    expect_ids(page, [fed.script])
    # A bad order from a hand-made link is named too.
    page.goto("/?order=" + re.sub(" ", "%20", "colour desc"))
    expect(message).to_contain_text("order: at 1: unknown field 'colour'")
    # Clearing the box shows every run again.
    page.goto("/?filter=status%20%3D%20'queued'")
    expect_ids(page, [fed.queued])
    page.locator("#filter").fill("")
    expect_ids(page, sorted(fed.all, reverse=True))
    assert "filter" not in address(page)
