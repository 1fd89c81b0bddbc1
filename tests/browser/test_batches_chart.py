"""The per-batch chart (static/js/batches.js) on the run page of a script run, in real
Chromium against the real server: ≤ 1,000 buckets drawn as a mean line over a min-max
band in which a planted spike survives; a run without batches leaves the section hidden.

The run page mounts the chart into its `<section id="batches" hidden>`; on a page that
lacks the section (before it was wired) the test adds one and mounts the chart itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import screenshot

STEPS, SPIKE_STEP, SPIKE = 5200, 4111, 42.5

MOUNT = """async (runId) => {
  let section = document.querySelector("#batches");
  if (!section) {
    section = document.createElement("section");
    section.id = "batches";
    section.hidden = true;
    document.querySelector("main").append(section);
    const module = await import("/static/js/batches.js");
    await module.mountBatchChart(section, runId);
  }
  return true;
}"""


@pytest.fixture
def run_page(browser: Browser, stack: str) -> Iterator[tuple[Page, list[str]]]:
    """A page whose errors are collected; those from batches.js fail the test (the run
    page's own script is not this test's subject)."""
    context = browser.new_context(
        base_url=stack, viewport={"width": 1400, "height": 1000}, bypass_csp=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
    page.set_default_timeout(30_000)
    yield page, errors
    context.close()
    assert [error for error in errors if "batches.js" in error] == []


def script_run(stack: str, name: str, steps: list[dict[str, Any]]) -> int:
    with httpx.Client(base_url=stack, timeout=30) as api:
        run = api.post("/api/runs", json={"name": name, "script": {"log_every": "batch"}})
        run.raise_for_status()
        run_id = int(run.json()["id"])
        epoch = {"points": [{"epoch": 0, "values": {"loss": 0.5, "val_loss": 0.6}}]}
        api.post(f"/api/runs/{run_id}/metrics", json=epoch).raise_for_status()
        for start in range(0, len(steps), 5000):
            chunk = {"points": steps[start : start + 5000]}
            api.post(f"/api/runs/{run_id}/batches", json=chunk).raise_for_status()
        api.post(f"/api/runs/{run_id}/finish", json={"status": "succeeded"}).raise_for_status()
    return run_id


def test_a_script_run_shows_its_batches_with_the_spike(
    run_page: tuple[Page, list[str]], stack: str
) -> None:
    page, _ = run_page
    steps = [
        {"step": step, "values": {"loss": 2.0 / (1 + step / 500), "accuracy": step / STEPS}}
        for step in range(STEPS)
    ]
    steps[SPIKE_STEP]["values"]["loss"] = SPIKE
    run_id = script_run(stack, "batches in the browser", steps)

    page.goto(f"/runs/{run_id}")
    page.wait_for_function("() => window.Plotly !== undefined")
    page.evaluate(MOUNT, run_id)
    section = page.locator("#batches")
    section.locator(".js-plotly-plot").nth(1).wait_for()
    assert section.is_visible()
    assert section.locator(".js-plotly-plot").count() == 2
    assert section.locator("a[download]").get_attribute("href") == (
        f"/api/experiments/{run_id}/batches.csv"
    )
    traces = page.evaluate(
        """() => [...document.querySelectorAll('#batches .js-plotly-plot')].map((plot) => ({
          series: plot.dataset.series,
          title: plot.layout.title.text,
          traces: plot.data.map((trace) => ({ name: trace.name, fill: trace.fill ?? null,
                                              x: trace.x.length, max: Math.max(...trace.y) })),
        }))"""
    )
    loss = next(chart for chart in traces if chart["series"] == "loss")
    assert "5,200 steps" in loss["title"]
    assert [trace["name"] for trace in loss["traces"]] == ["min", "min-max", "loss (mean)"]
    assert all(trace["x"] <= 1000 for trace in loss["traces"])
    band = next(trace for trace in loss["traces"] if trace["fill"] == "tonexty")
    assert band["max"] == SPIKE  # the spike is the band's top
    mean = next(trace for trace in loss["traces"] if trace["name"] == "loss (mean)")
    assert mean["max"] < SPIKE
    path = screenshot(page, "batches-chart")
    assert path.stat().st_size > 10_000


def test_a_run_without_batches_leaves_the_section_hidden(
    run_page: tuple[Page, list[str]], stack: str
) -> None:
    page, _ = run_page
    run_id = script_run(stack, "no batches", [])
    page.goto(f"/runs/{run_id}")
    page.wait_for_function("() => window.Plotly !== undefined")
    page.evaluate(MOUNT, run_id)
    assert page.locator("#batches").is_hidden()
    assert page.locator("#batches .js-plotly-plot").count() == 0
