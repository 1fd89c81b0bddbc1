"""The dashboard in a real Chromium against a real server and worker."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from app.client import ReglabClient, WorkerClient
from tests.browser.conftest import screenshot
from tests.conftest import free_port, health, wait_for
from tests.factories import make_spec

POINTS = "id => document.getElementById(id)?.data?.[0]?.x?.length ?? 0"


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def wait_status(url: str, run_id: int, status: str, timeout: float = 120) -> dict[str, Any]:
    with ReglabClient(url) as client:
        wait_for(lambda: client.get(run_id)["status"] == status, timeout=timeout, interval=0.2)
        return client.get(run_id)


def run_id_of(page: Page) -> int:
    page.wait_for_url("**/runs/*")
    return int(page.url.rstrip("/").split("/")[-1])


def test_submit_watch_clone_and_compare(page: Page, stack: str) -> None:
    name = unique("flow")
    # Submit the default form (one knob changed: more epochs, to watch it train).
    page.goto("/new")
    page.fill('[name="name"]', name)
    page.fill('[name="training.epochs"]', "60")
    page.click("#submit")
    first = run_id_of(page)

    # The run appears in the table.
    page.goto("/")
    row = page.locator(f'#runs tbody tr[data-id="{first}"]')
    expect(row).to_contain_text(name)
    screenshot(page, "runs")
    row.get_by_role("link", name=name).click()
    page.wait_for_url(f"**/runs/{first}")

    # Its page shows the loss curve gaining points while it trains.
    page.wait_for_function(f"({POINTS})('chart-data-loss') >= 3", timeout=60_000)
    earlier = page.evaluate(POINTS, "chart-data-loss")
    page.wait_for_function(f"({POINTS})('chart-data-loss') > {earlier}")
    later = page.evaluate(POINTS, "chart-data-loss")
    assert earlier < later < 60 or later == 60
    expect(page.locator("#run-status")).to_have_text("running")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=120_000)
    page.wait_for_function(f"({POINTS})('chart-data-loss') === 60")
    expect(page.locator("#fact-device")).to_contain_text("CPU")
    expect(page.locator("#test-metrics")).to_contain_text("test_accuracy")
    expect(page.locator("#download-model")).to_be_visible()
    screenshot(page, "run")

    # Clone it with another L2 strength.
    page.click("#clone")
    page.wait_for_url(f"**/new?clone={first}")
    expect(page.locator('[name="name"]')).to_have_value(f"{name} (clone)")
    expect(page.locator('[name="model.layers.0.regularizer.l2"]')).to_have_value("0.01")
    page.fill('[name="model.layers.0.regularizer.l2"]', "0.0001")
    page.click("#submit")
    second = run_id_of(page)
    clone = wait_status(stack, second, "succeeded")
    assert clone["spec"]["model"]["layers"][0]["regularizer"]["l2"] == 0.0001

    # Pick both in the table and compare them.
    page.goto("/")
    for run_id in (first, second):
        page.locator(f'#runs tbody tr[data-id="{run_id}"] input[type=checkbox]').check()
    page.click("#compare")
    page.wait_for_url(f"**/compare?ids={first},{second}")
    page.wait_for_function("document.getElementById('chart-data-loss')?.data?.length === 4")
    traces = page.evaluate(
        "Array.from(document.getElementById('chart-data-loss').data,"
        " t => [t.name, t.line.dash, t.x.length])"
    )
    assert sorted(traces) == sorted(
        [
            [f"#{first} {name}", "solid", 60],
            [f"#{first} {name} (validation)", "dash", 60],
            [f"#{second} {name} (clone)", "solid", 60],
            [f"#{second} {name} (clone) (validation)", "dash", 60],
        ]
    )
    differing = page.locator("#spec-table tbody tr.differs")
    expect(differing).to_have_count(1)
    expect(differing.first).to_have_attribute("data-key", "model.layers.0.regularizer.l2")
    assert "differs" not in (
        page.locator('#spec-table tr[data-key="training.epochs"]').get_attribute("class") or ""
    )
    screenshot(page, "compare")
    page.check("#multiples")
    expect(page.locator(f"#chart-run-{first}")).to_be_visible()
    expect(page.locator(f"#chart-run-{second}")).to_be_visible()
    screenshot(page, "compare-multiples")


def test_an_invalid_value_is_shown_beside_its_field(page: Page, stack: str) -> None:
    with ReglabClient(stack) as client:
        before = client.list()["total"]
        page.goto("/new")
        page.fill('[name="model.layers.1.dropout"]', "1.5")
        page.click("#submit")
        field = page.locator('.field:has([name="model.layers.1.dropout"])')
        expect(field).to_have_class("field invalid")
        expect(field.locator(".field-error")).not_to_be_empty()
        screenshot(page, "new-invalid")
        assert client.list()["total"] == before


def test_user_text_is_never_html(page: Page, stack: str) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    evil = "<img src=x onerror=alert(1)>"
    with ReglabClient(stack) as client:
        run = client.submit(make_spec(name=evil, notes=f"<script>alert(2)</script>{evil}"))
        other = client.submit(make_spec(name=unique("plain")))
    wait_status(stack, other["id"], "succeeded")
    for path in (
        "/",
        f"/runs/{run['id']}",
        f"/compare?ids={run['id']},{other['id']}",
        f"/new?clone={run['id']}",
    ):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert page.locator("img[src=x]").count() == 0, path
    page.goto(f"/runs/{run['id']}")
    expect(page.locator("#run-name")).to_have_text(f"#{run['id']} {evil}")
    assert dialogs == []


def test_a_failed_run_shows_its_error_and_epoch(page: Page, stack: str) -> None:
    diverging = make_spec(
        name=unique("diverges"),
        dataset={"name": "noisy_regression"},
        model={"layers": [{"type": "dense", "units": 32}, {"type": "dense", "units": 32}]},
        training={"epochs": 5, "optimizer": "sgd", "learning_rate": 10.0, "batch_size": 4},
    )
    with ReglabClient(stack) as client:
        run = client.submit(diverging)
    wait_status(stack, run["id"], "failed")
    page.goto(f"/runs/{run['id']}")
    expect(page.locator("#run-error")).to_have_text(
        "Failed: diverged at epoch 0 (stopped at epoch 0)"
    )
    expect(page.locator("#run-status")).to_have_text("failed")
    expect(page.locator("#chart-score")).to_contain_text("Mean absolute error")
    screenshot(page, "run-failed")


def test_live_points_keep_zoom_hidden_traces_and_pause(page: Page, stack: str) -> None:
    with ReglabClient(stack) as client:
        run = client.submit(
            make_spec(name=unique("zoom"), training={"epochs": 400, "batch_size": 16})
        )
    page.goto(f"/runs/{run['id']}")
    page.wait_for_function(f"({POINTS})('chart-data-loss') >= 3", timeout=60_000)
    page.evaluate("""() => {
        const chart = document.getElementById('chart-data-loss');
        Plotly.relayout(chart, {'xaxis.range': [0, 2], 'yaxis.range': [0, 1]});
        Plotly.restyle(chart, {visible: 'legendonly'}, [1]);
        window.scrollTo(0, 400);
    }""")
    count = page.evaluate(POINTS, "chart-data-loss")
    page.wait_for_function(f"({POINTS})('chart-data-loss') > {count + 3}")
    state = page.evaluate("""() => {
        const chart = document.getElementById('chart-data-loss');
        return [chart.layout.xaxis.range, chart.layout.yaxis.range, chart.data[1].visible,
                window.scrollY];
    }""")
    assert state == [[0, 2], [0, 1], "legendonly", 400]

    page.click("#pause")
    paused_at = page.evaluate(POINTS, "chart-data-loss")
    with ReglabClient(stack) as client:
        epochs = client.get(run["id"])["epochs_done"]
        wait_for(lambda: client.get(run["id"])["epochs_done"] >= epochs + 5, timeout=30)
    assert page.evaluate(POINTS, "chart-data-loss") == paused_at
    page.click("#pause")
    page.wait_for_function(f"({POINTS})('chart-data-loss') > {paused_at + 4}")
    page.check("#log-scale")
    assert page.evaluate("document.getElementById('chart-data-loss').layout.yaxis.type") == "log"
    page.locator("#smoothing").fill("0.9")
    page.wait_for_function("document.getElementById('chart-data-loss').data[0].y[5] !== undefined")
    with ReglabClient(stack) as client:
        client.cancel(run["id"])
    expect(page.locator("#run-status")).to_have_text("cancelled")


@pytest.fixture
def lone_server(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]], dict]]:
    """A server of its own (no worker) that the test may stop and start again."""
    port = free_port()
    env = {
        **os.environ,
        "REGLAB_DATABASE_URL": f"sqlite:///{tmp_path / 'lone.db'}",
        "REGLAB_DATA_DIR": str(tmp_path / "data"),
    }
    processes: list[subprocess.Popen[bytes]] = []
    url = f"http://127.0.0.1:{port}"

    def start() -> None:
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "reglab.cli", "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for(lambda: health(url), timeout=30)

    start()
    yield url, processes, {"start": start}
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(10)


def test_a_page_that_loses_the_server_says_so_and_resumes(page: Page, lone_server: Any) -> None:
    url, processes, control = lone_server
    with ReglabClient(url) as client:
        run = client.submit(make_spec(name=unique("offline")))
    worker = WorkerClient(url)
    claim = worker.claim(worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=0)
    worker.upload_metrics(
        run["id"],
        claim["lease_token"],
        [{"epoch": 0, "values": {"data_loss": 1.0, "val_data_loss": 1.2}}],
    )
    page.goto(f"{url}/runs/{run['id']}")
    page.wait_for_function(f"({POINTS})('chart-data-loss') === 1")

    processes[-1].send_signal(signal.SIGTERM)
    processes[-1].wait(10)
    expect(page.locator("#connection")).to_contain_text("reconnecting", timeout=15_000)
    screenshot(page, "run-reconnecting")

    control["start"]()
    worker = WorkerClient(url)
    worker.upload_metrics(
        run["id"],
        claim["lease_token"],
        [{"epoch": 1, "values": {"data_loss": 0.8, "val_data_loss": 1.1}}],
    )
    page.wait_for_function(f"({POINTS})('chart-data-loss') === 2", timeout=20_000)
    expect(page.locator("#connection")).to_be_hidden()
    assert httpx.get(f"{url}/api/experiments/{run['id']}/metrics").json()["epochs"] == [0, 1]


def test_a_server_with_a_token_asks_for_it_once(browser: Any, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REGLAB_DATABASE_URL": f"sqlite:///{tmp_path / 'team.db'}",
        "REGLAB_DATA_DIR": str(tmp_path / "data"),
        "REGLAB_TOKEN": "team-secret",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "reglab.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: health(url), timeout=30)
        with ReglabClient(url, token="team-secret") as client:
            run = client.submit(make_spec(name=unique("team")))
        context = browser.new_context(base_url=url)
        page = context.new_page()
        page.goto(f"/runs/{run['id']}")
        expect(page.locator("#login-form")).to_be_visible()
        page.fill("#token", "wrong")
        page.click("#login-form button")
        expect(page.locator("#login-error")).to_have_text("Wrong token.")
        screenshot(page, "login")
        page.fill("#token", "team-secret")
        page.click("#login-form button")
        expect(page.locator("#run-name")).to_contain_text(run["name"])
        page.goto("/")
        expect(page.locator(f'#runs tbody tr[data-id="{run["id"]}"]')).to_be_visible()
        context.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def test_pages_work_under_the_content_security_policy(browser: Any, stack: str) -> None:
    """With the CSP enforced (no inline or eval'd script), every page draws."""
    with ReglabClient(stack) as client:
        first = client.submit(make_spec(name=unique("csp")))
        second = client.submit(make_spec(name=unique("csp")))
    for run in (first, second):
        wait_status(stack, run["id"], "succeeded")
    context = browser.new_context(base_url=stack)
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    expect(page.locator(f'#runs tbody tr[data-id="{first["id"]}"]')).to_be_visible()
    page.goto(f"/runs/{first['id']}")
    expect(page.locator("#chart-data-loss .scatterlayer .trace").first).to_be_attached()
    page.goto(f"/compare?ids={first['id']},{second['id']}")
    expect(page.locator("#chart-data-loss .scatterlayer .trace")).to_have_count(4)
    page.goto("/new")
    expect(page.locator('[name="training.epochs"]')).to_have_value("20")
    context.close()
    assert violations == [] and errors == []
