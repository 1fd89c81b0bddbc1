"""Sweeps end to end: `reglab serve` and `reglab worker` train every run of a sweep, and
the sweep page draws the path in Chromium."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM, screenshot
from tests.conftest import wait_for
from tests.factories import make_spec

pytestmark = pytest.mark.e2e
L2 = "model.layers[*].regularizer.l2"
FINAL = {"succeeded", "failed", "cancelled", "pruned"}
# Each run starts a training child (TensorFlow's import): about a minute a run on a busy
# two-core machine, so the deadline is generous; the runs themselves are seconds.


def create(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}/api/sweeps", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def finished(url: str, sweep_id: int, timeout: float = 900) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        return httpx.get(f"{url}/api/sweeps/{sweep_id}", timeout=30).json()

    wait_for(lambda: all(run["status"] in FINAL for run in read()["runs"]), timeout, 0.5)
    return read()


def test_a_sweep_of_four_tiny_runs_and_its_path_in_the_browser(stack: str) -> None:
    base = make_spec(
        name="e2e sweep base",
        dataset={"name": "moons", "n_samples": 200, "noise": 0.3},
        model={"layers": [{"type": "dense", "units": 16}]},
        training={
            "epochs": 4,
            "batch_size": 32,
            "learning_rate": 0.02,
            "seed": 1,
            "histogram_every": 0,
        },
    )
    sweep = create(
        stack,
        {"name": "e2e l2", "base": base, "axes": [{"path": L2, "values": [0, 1e-3, 0.1, 3.0]}]},
    )
    done = finished(stack, sweep["id"])
    runs = done["runs"]
    assert [run["status"] for run in runs] == ["succeeded"] * 4
    assert [run["point"][L2] for run in runs] == [0, 1e-3, 0.1, 3.0]
    assert all(run["epochs_done"] == 4 and run["best_val_data_loss"] is not None for run in runs)
    for run in runs:
        spec = httpx.get(f"{stack}/api/experiments/{run['id']}", timeout=30).json()["spec"]
        assert spec["model"]["layers"][0]["regularizer"] == {
            **spec["model"]["layers"][0]["regularizer"],
            "kind": "l2",
            "l2": run["point"][L2],
        }
    # A strong penalty holds the training data loss up: the under-fitting end of the path.
    assert runs[3]["data_loss"] > runs[0]["data_loss"]

    # Chromium in a thread of its own: the browser tests' session fixture may already run
    # Playwright's sync API on this thread, and it allows one per thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(check_path_plot, stack, sweep["id"], runs).result()


def check_path_plot(url: str, sweep_id: int, runs: list[dict[str, Any]]) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(base_url=url, viewport={"width": 1300, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"/sweeps/{sweep_id}")
        page.locator("#chart-path-0 .scatterlayer .trace .point").first.wait_for()
        # Four circles (best val_data_loss), four diamonds (final data_loss), one star (best).
        points = page.locator("#chart-path-0 .scatterlayer .trace .point")
        assert points.count() == 9
        best = min(runs, key=lambda run: run["best_val_data_loss"])
        label = f"{best['point'][L2]:g}"
        assert page.locator("#chart-path-0 .annotation-text").text_content() == f"best l2={label}"
        assert page.locator(f'#sweep-runs tr.best[data-id="{best["id"]}"]').count() == 1
        screenshot(page, "sweep-e2e")
        browser.close()
        assert errors == []
