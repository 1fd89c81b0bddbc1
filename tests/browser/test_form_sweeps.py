"""Sweeps and seed repeats from the new-experiment form, in a real browser against the
real server and worker."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_new_form import classic, open_form, record_posts, total

SWEEP_URL = re.compile(r"/sweeps/(\d+)$")
INVALID = re.compile(r"\binvalid\b")


def tiny(page: Page, name: str) -> None:
    page.fill('[name="name"]', name)
    page.fill('[name="training.epochs"]', "2")
    page.fill('[name="model.layers.0.units"]', "8")
    page.fill('[name="model.layers.1.units"]', "4")


def open_sweep(page: Page) -> None:
    """Open the collapsed section with the keyboard."""
    section = page.locator("#sweep-section")
    expect(section).not_to_have_attribute("open", "")
    page.locator("#sweep-section > summary").focus()
    page.keyboard.press("Enter")
    expect(section).to_have_attribute("open", "")


def cancel_all(stack: str, ids: list[int]) -> None:
    """The sweep's runs are not needed beyond their specs: spare the shared worker."""
    for run_id in ids:
        httpx.post(f"{stack}/api/experiments/{run_id}/cancel")


def test_a_sweep_of_l2_with_two_seeds_queues_eight_runs(page: Page, stack: str) -> None:
    open_form(page)
    count = page.locator("#sweep-count")
    submit = page.locator("#submit")
    expect(submit).to_have_text("Queue experiment")
    open_sweep(page)
    expect(count).to_have_text("No sweep: queues 1 run.")

    tiny(page, "l2 sweep")
    page.get_by_role("button", name="Add axis").click()
    path = page.locator('[name="axes.0.path"]')
    expect(path).to_be_focused()
    expect(path).to_have_value("model.layers[*].regularizer.l2")
    # Each layer of the form has its own choices too.
    expect(path.locator('option[value="model.layers[1].dropout"]')).to_have_text("Layer 2 dropout")
    page.fill('[name="axes.0.values"]', "0, 1e-4, 1e-3, 1e-2")
    page.fill('[name="seeds"]', "2")
    expect(count).to_have_text("Queues 8 runs (4 values \u00d7 2 seeds)")
    expect(submit).to_have_text("Queue sweep: 8 runs")
    expect(page.locator("#sweep-summary")).to_have_text("— queues 8 runs")

    # A second axis over a range multiplies the count, and shows the points it takes.
    page.get_by_role("button", name="Add axis").click()
    page.select_option('[name="axes.1.path"]', "model.layers[0].dropout")
    page.fill('[name="axes.1.values"]', "0.1 … 0.5, 3")
    expect(count).to_have_text("Queues 24 runs (4 \u00d7 3 values \u00d7 2 seeds)")
    expect(page.locator(".sweep-axis").nth(1).locator(".axis-preview")).to_have_text(
        "→ 0.1, 0.3, 0.5"
    )
    page.fill('[name="axes.1.values"]', "1e-3 ... 1e-1, 3 log")
    expect(page.locator(".sweep-axis").nth(1).locator(".axis-preview")).to_have_text(
        "→ 0.001, 0.01, 0.1"
    )
    screenshot(page, "new-form-sweep")
    page.get_by_role("button", name="Remove axis 2").click()
    expect(count).to_have_text("Queues 8 runs (4 values \u00d7 2 seeds)")

    # Random mode counts its draws; back to the grid.
    expect(page.locator('[name="draws"]')).to_be_hidden()
    page.select_option('[name="mode"]', "random")
    page.fill('[name="draws"]', "3")
    expect(count).to_have_text("Queues 6 runs (3 draws \u00d7 2 seeds)")
    page.select_option('[name="mode"]', "grid")
    expect(page.locator('[name="draws"]')).to_be_hidden()
    expect(count).to_have_text("Queues 8 runs (4 values \u00d7 2 seeds)")

    page.route("**/api/experiments", lambda route: route.abort())  # a sweep never posts here
    submit.click()
    page.wait_for_url(SWEEP_URL)
    match = SWEEP_URL.search(page.url)
    assert match is not None
    sweep = httpx.get(f"{stack}/api/sweeps/{match.group(1)}").json()
    ids = sweep["experiment_ids"]
    try:
        assert len(ids) == 8
        assert sweep["seeds"] == 2
        assert sweep["axes"][0]["path"] == "model.layers[*].regularizer.l2"
        assert sweep["axes"][0]["values"] == [0, 1e-4, 1e-3, 1e-2]
        assert sweep["base"]["training"]["epochs"] == 2
        points: set[tuple[float, float, int]] = set()
        for run_id in ids:
            spec: dict[str, Any] = httpx.get(f"{stack}/api/experiments/{run_id}").json()["spec"]
            layers = spec["model"]["layers"]
            points.add(
                (
                    layers[0]["regularizer"]["l2"],
                    layers[1]["regularizer"]["l2"],
                    spec["training"]["seed"],
                )
            )
        assert points == {(l2, l2, seed) for l2 in (0, 1e-4, 1e-3, 1e-2) for seed in (0, 1)}
    finally:
        cancel_all(stack, ids)


def test_a_bad_axis_shows_the_server_message_beside_its_row(page: Page, stack: str) -> None:
    # What the server says about dropout 1.5 on the classic, asked directly.
    answer = httpx.post(
        f"{stack}/api/sweeps",
        json={
            "name": "bad dropout",
            "base": classic(),
            "axes": [{"path": "model.layers[*].dropout", "values": [0.2, 1.5]}],
        },
    )
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["detail"]
    assert problem["field"] == "axes.0.values.1"
    expected = str(problem["msg"]).removeprefix("Value error, ")

    open_form(page)
    before = total(stack)
    posts = record_posts(page)
    open_sweep(page)
    page.get_by_role("button", name="Add axis").click()
    page.select_option('[name="axes.0.path"]', "model.layers[*].dropout")
    values = page.locator('[name="axes.0.values"]')
    row = page.locator(".sweep-axis").first
    values_field = row.locator(".field", has=values)

    # Values that are not numbers, or a grid range without its count, stay in the browser.
    values.fill("0.2, abc")
    page.locator("#submit").click()
    expect(values_field).to_have_class(INVALID)
    expect(values_field.locator(".field-error")).to_have_text('"abc" is not a number.')
    expect(values).to_be_focused()
    values.fill("0.1 … 0.5")
    page.locator("#submit").click()
    expect(values_field.locator(".field-error")).to_have_text(
        "Say how many points the grid takes from this range: LOW … HIGH, N."
    )
    assert posts == []

    values.fill("0.2, 1.5")
    page.locator("#submit").click()
    expect(values_field.locator(".field-error")).to_have_text(expected)
    expect(values_field).to_have_class(INVALID)
    expect(page.locator(".form-error")).to_contain_text("The server did not accept this sweep")
    expect(page.locator("#submit")).to_have_text("Queue sweep: 2 runs")
    expect(page.locator("#submit")).to_be_enabled()
    screenshot(page, "new-form-sweep-error")
    assert [url.rsplit("/", 1)[-1] for url in posts] == ["sweeps"]
    assert total(stack) == before
    expect(page).to_have_url(re.compile(r"/new$"))

    # A base-spec problem of a sweep lands beside the experiment's own field.
    values.fill("0.2, 0.4")
    page.fill('[name="dataset.validation_split"]', "0.5")
    page.fill('[name="dataset.test_split"]', "0.4")
    page.locator("#submit").click()
    expect(page.locator('[data-error-for="dataset"]')).to_have_text(
        "validation_split + test_split leaves under 20% for training"
    )
    expect(values_field.locator(".field-error")).to_have_text("")
    assert total(stack) == before
