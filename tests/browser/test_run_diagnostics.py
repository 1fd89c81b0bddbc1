"""The run page's verdict, over-fitting marker and histogram slider, and the runs table's
verdict column, in real Chromium against a real server fed by a real training run."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from app.spec import ExperimentSpec
from tests.app.test_verdict import OVERFITTING_SPEC
from tests.browser.conftest import open_page, screenshot
from tests.factories import make_spec


@pytest.fixture
def server_page(browser: Browser, live_server: str) -> Iterator[Page]:
    with open_page(browser, live_server) as page:
        yield page


def train_as_a_worker(url: str, spec: dict[str, Any]) -> int:
    """Submit, claim and train a run in this process the way a training child does:
    epochs and histograms streamed through the worker routes, then the finish."""
    from reglab import ReglabCallback
    from reglab.channels import ClaimedRunChannel
    from reglab.client import WorkerClient
    from reglab.sender import Sender
    from worker.training import train

    http = httpx.Client(base_url=url, timeout=30)
    run_id = http.post("/api/experiments", json=spec).json()["id"]
    claim = http.post(
        "/api/worker/claim", json={"worker_id": "w", "host": "h", "slot": "CPU", "wait": 0}
    ).json()
    assert claim["experiment_id"] == run_id
    token = claim["lease_token"]
    route = f"/api/worker/experiments/{run_id}"

    # Heartbeats keep the lease while this busy machine trains (the supervisor's job).
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(1.0):
            httpx.post(f"{url}{route}/heartbeat", json={"lease_token": token}, timeout=10)

    beating = threading.Thread(target=heartbeat, daemon=True)
    beating.start()
    worker = WorkerClient(url)
    sender = Sender(ClaimedRunChannel(worker, run_id, token)).start()
    try:
        result = train(ExperimentSpec.model_validate(spec), [ReglabCallback(sender=sender)])
        assert sender.close(timeout=60)
    finally:
        stop.set()
        beating.join()
        worker.close()
    finish = {
        "lease_token": token,
        "status": "succeeded",
        "test_metrics": result.test_metrics,
        "best_epoch": result.best_epoch,
    }
    http.post(f"{route}/finish", json=finish).raise_for_status()
    http.close()
    return run_id


def test_verdict_marker_histograms_and_the_table_column(
    server_page: Page, live_server: str
) -> None:
    spec = {**OVERFITTING_SPEC, "training": {**OVERFITTING_SPEC["training"], "histogram_every": 10}}
    overfit = train_as_a_worker(live_server, spec)
    queued = httpx.post(f"{live_server}/api/experiments", json=make_spec(name="waiting")).json()[
        "id"
    ]
    page = server_page

    page.goto(f"/runs/{overfit}")
    verdict = page.locator("#verdict")
    expect(verdict).to_have_text(re.compile(r"^over-fitting from epoch \d+$"))
    expect(verdict).to_have_class(re.compile("verdict-overfitting"))
    expect(page.locator("#verdict-hint")).to_contain_text("raise λ")
    from_epoch = int(verdict.inner_text().rsplit(" ", 1)[1])
    # The dotted marker on the data-loss chart sits at that epoch.
    page.wait_for_function(
        "() => document.querySelector('#chart-data-loss').layout?.shapes?.length === 1"
    )
    marker = page.evaluate("() => document.querySelector('#chart-data-loss').layout.shapes[0].x0")
    assert marker == from_epoch
    # The help explains the rule.
    page.locator("#verdict-help summary").click()
    expect(page.locator("#verdict-help")).to_contain_text("validation data loss is lowest")

    # Histograms at epochs 0, 10, 20, 30 and the last (39); the slider starts at the last.
    histograms = page.locator("#histograms")
    expect(histograms).to_be_visible()
    slider = page.locator("#histogram-epoch")
    expect(slider).to_have_attribute("max", "4")
    expect(page.locator("#histogram-epoch-label")).to_have_text("39")
    expect(page.locator("#histogram-grid .histogram")).to_have_count(3)  # two hidden + output
    bars = "() => document.querySelector('#histogram-dense_0').data[0].y.reduce((a, b) => a + b)"
    assert page.evaluate(bars) == 64 * 256  # every weight of the first kernel, binned
    last_edges = page.evaluate("() => document.querySelector('#histogram-dense_0').data[0].x")
    slider.fill("0")
    expect(page.locator("#histogram-epoch-label")).to_have_text("0")
    expect(page.locator("#histogram-grid")).to_have_attribute("data-epoch", "0")
    first_edges = page.evaluate("() => document.querySelector('#histogram-dense_0').data[0].x")
    assert first_edges != last_edges  # the weights spread while training
    screenshot(page, "run-diagnostics")

    page.goto("/")
    expect(page.locator(f'tr[data-id="{overfit}"] td.verdict')).to_have_text(
        f"over-fitting from {from_epoch}"
    )
    expect(page.locator(f'tr[data-id="{queued}"] td.verdict')).to_have_text("too early")
    expect(page.locator("#runs thead")).to_contain_text("Verdict")
    screenshot(page, "runs-verdict-column")


def test_a_run_without_histograms_hides_the_panel(server_page: Page, live_server: str) -> None:
    spec = make_spec(name="no histograms", training={"epochs": 2, "histogram_every": 0})
    run_id = train_as_a_worker(live_server, spec)
    server_page.goto(f"/runs/{run_id}")
    expect(server_page.locator("#verdict")).to_have_text("too early to tell")
    expect(server_page.locator("#histograms")).to_be_hidden()
    expect(server_page.locator("#batches")).to_be_attached()


def test_a_script_run_shows_its_own_facts_and_verdict(server_page: Page, live_server: str) -> None:
    script = {
        "task": "regression",
        "epochs": 12,
        "regularization": "L2 0.001",
        "dataset": "my measurements",
        "framework": "keras 3.15 (jax)",
    }
    run = httpx.post(f"{live_server}/api/runs", json={"name": "my script", "script": script})
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    points = [
        {
            "epoch": epoch,
            "values": {
                "data_loss": 1.0 - 0.05 * epoch,
                "val_data_loss": 1.0 - 0.1 * epoch if epoch <= 4 else 0.6 + 0.08 * (epoch - 4),
            },
        }
        for epoch in range(12)
    ]
    uploaded = httpx.post(f"{live_server}/api/runs/{run_id}/metrics", json={"points": points})
    assert uploaded.status_code == 200, uploaded.text

    page = server_page
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#run-name")).to_have_text(f"#{run_id} my script")
    expect(page.locator("#run-regularization")).to_have_text("L2 0.001")
    expect(page.locator("#facts")).to_contain_text("my measurements")
    expect(page.locator("#facts")).to_contain_text("your script (keras 3.15 (jax))")
    expect(page.locator("#verdict")).to_have_text("over-fitting from epoch 4")
    expect(page.locator("#clone")).to_be_hidden()
    expect(page.locator("#spec")).to_contain_text("my measurements")
    page.goto("/")
    expect(page.locator(f'tr[data-id="{run_id}"] td.verdict')).to_have_text("over-fitting from 4")


def test_a_retried_run_starts_its_curves_again(
    server_page: Page, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live page of a run whose training process died: the retry trains from epoch 0,
    and the page drops the first attempt's curves when the new attempt's status comes."""
    from app.settings import get_settings
    from reglab.client import WorkerClient

    monkeypatch.setenv("REGLAB_MAX_ATTEMPTS", "2")  # the server in this process reads it
    get_settings.cache_clear()
    run_id = httpx.post(f"{live_server}/api/experiments", json=make_spec(name="retried")).json()[
        "id"
    ]
    worker = WorkerClient(live_server)
    claim = worker.claim(worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=0)
    assert claim is not None and claim["experiment_id"] == run_id
    first = [
        {"epoch": epoch, "values": {"data_loss": 1.0 - 0.1 * epoch, "val_data_loss": 1.1}}
        for epoch in range(5)
    ]
    worker.upload_metrics(run_id, claim["lease_token"], first)
    page = server_page
    page.goto(f"/runs/{run_id}")
    curve = "document.getElementById('chart-data-loss')?.data?.[0]?.x"
    page.wait_for_function(f"{curve}?.length === 5")
    expect(page.locator("#facts")).to_contain_text("1 of")

    worker.finish(run_id, claim["lease_token"], status="failed", error="child died", retryable=True)
    again = worker.claim(worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=0)
    assert again is not None and again["experiment_id"] == run_id and again["attempt"] == 2
    second = [
        {"epoch": epoch, "values": {"data_loss": 0.5 - 0.1 * epoch, "val_data_loss": 0.6}}
        for epoch in range(2)
    ]
    worker.upload_metrics(run_id, again["lease_token"], second)
    page.wait_for_function(f"JSON.stringify({curve}) === '[0,1]'")
    training = page.evaluate("document.getElementById('chart-data-loss').data[0].y")
    assert training == pytest.approx([0.5, 0.4])
    expect(page.locator("#facts")).to_contain_text("2 of")
    expect(page.locator("#fact-epoch")).to_contain_text("2 /")
    worker.close()
