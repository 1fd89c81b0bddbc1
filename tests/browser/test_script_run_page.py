"""A script run's page in Chromium against a live server: a plain Keras script with
penalties (Conv1D with an L2 kernel penalty, dropout, EarlyStopping and ReduceLROnPlateau
beside ReglabCallback) shows its data loss, penalty and gap, a verdict, its device and
test metrics, and its series described in its own words, with no empty chart; a script
without penalties or test metrics says why those are missing and shows its config; test
metrics sent after the final status still arrive; tags and notes are edited in place; a
run without an epoch draws no empty axes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import open_page, screenshot
from tests.factories import make_spec

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 8
SCRIPT = """\
import json
import sys

import keras
import numpy as np

from reglab import ReglabCallback

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
steps = np.arange(64, dtype="float32")
phase = rng.uniform(0, 2 * np.pi, size=(240, 1)).astype("float32")
x = (np.sin(steps / 5 + phase) + rng.normal(0, 0.3, size=(240, 64))).astype("float32")[..., None]
y = np.sin(phase[:, 0] + 64 / 5).astype("float32")
model = keras.Sequential([
    keras.Input((64, 1)),
    keras.layers.Conv1D(8, 5, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01)),
    keras.layers.Dropout(0.2),
    keras.layers.GlobalAveragePooling1D(),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
reglab = ReglabCallback("plain keras conv1d", dataset="noisy sines", task="regression",
                        batch_size=32, close_timeout=60)
model.fit(x[:160], y[:160], validation_data=(x[160:200], y[160:200]), epochs=EPOCHS,
          batch_size=32, verbose=0, callbacks=[
              keras.callbacks.EarlyStopping(patience=50, restore_best_weights=False),
              keras.callbacks.ReduceLROnPlateau(patience=2, factor=0.5),
              reglab,
          ])
reglab.log_test(model.evaluate(x[200:], y[200:], batch_size=32, verbose=0, return_dict=True))
print(json.dumps({"run_id": reglab.run_id, "error": reglab.error}))
""".replace("EPOCHS", str(EPOCHS))
# Each trace's point count ([null] until the chart is drawn, so a wait goes on).
POINTS = (
    "id => { const d = document.getElementById(id)?.data;"
    " return d ? d.map(t => t.x.length) : [null]; }"
)


@pytest.fixture
def server_page(browser: Browser, live_server: str) -> Iterator[Page]:
    with open_page(browser, live_server) as page:
        yield page


def run_script(url: str, folder: Path) -> int:
    """Run the plain Keras script against the server: its run's id."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REGLAB_")}
    env.update(REGLAB_SERVER_URL=url, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    (folder / "train.py").write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(folder / "train.py")],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["error"] is None
    return int(answer["run_id"])


def visible_empty_charts(page: Page) -> list[str]:
    """The charts on show that have no point: there must be none."""
    return page.evaluate(
        """() => [...document.querySelectorAll('#charts .chart')]
            .filter((chart) => chart.offsetParent !== null)
            .filter((chart) => !(chart.data ?? []).some((trace) => trace.x.length > 0))
            .map((chart) => chart.id)"""
    )


def test_a_plain_keras_script_with_penalties_shows_the_whole_lab(
    server_page: Page, live_server: str, tmp_path: Path
) -> None:
    run_id = run_script(live_server, tmp_path)
    page = server_page
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    for chart in ("chart-data-loss", "chart-gap", "chart-penalty"):
        expect(page.locator(f"#{chart}")).to_be_visible()
        page.wait_for_function(f"({POINTS})('{chart}').every(n => n === {EPOCHS})")
    assert page.evaluate(POINTS, "chart-data-loss") == [EPOCHS, EPOCHS]  # training, validation
    penalty = page.evaluate("document.getElementById('chart-penalty').data[0].y")
    assert all(value > 0 for value in penalty)  # λ·Σw² of a trained Conv1D kernel
    caption = page.locator("#chart-penalty").locator("xpath=..").locator(".chart-caption")
    expect(caption).to_contain_text("reg_loss: The epoch's mean penalty")
    expect(
        page.locator("#chart-data-loss").locator("xpath=..").locator(".chart-caption")
    ).to_contain_text("val_data_loss: val_loss - val_reg_loss")
    expect(page.locator("#verdict")).not_to_have_text("verdict …")
    expect(page.locator("#verdict")).not_to_contain_text("too early")
    expect(page.locator("#fact-device")).to_contain_text("CPU")
    expect(page.locator("#test-metrics")).to_contain_text("test_data_loss")
    expect(page.locator("#test-metrics")).to_contain_text("test_mae")
    expect(page.locator("#run-command")).to_contain_text("train.py")
    expect(page.locator("#spec-title")).to_have_text("What the script told")
    expect(page.locator(".chart-card.empty")).to_have_count(0)
    page.wait_for_function(f"({POINTS})('chart-norms').length > 0")
    assert visible_empty_charts(page) == []
    page.wait_for_timeout(300)  # the last redraw of the live charts
    path = screenshot(page, "script-run-penalties")
    assert path.stat().st_size > 50_000


def post(url: str, path: str, body: dict[str, object]) -> dict[str, object]:
    response = httpx.post(f"{url}{path}", json=body, timeout=30)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def test_a_script_without_penalties_says_why_and_edits_tags_and_notes(
    server_page: Page, live_server: str
) -> None:
    config = {"lr": 0.01, "width": 64, "augment": True}
    script = {"task": "classification", "epochs": 6, "config": config}
    run_id = post(live_server, "/api/runs", {"name": "no penalty", "script": script})["id"]
    values = [
        {
            "epoch": epoch,
            "values": {
                "loss": 1.0 - 0.1 * epoch,
                "val_loss": 1.1 - 0.08 * epoch,
                "data_loss": 1.0 - 0.1 * epoch,
                "val_data_loss": 1.1 - 0.08 * epoch,
                "accuracy": 0.5 + 0.05 * epoch,
                "val_accuracy": 0.45 + 0.05 * epoch,
            },
        }
        for epoch in range(6)
    ]
    post(live_server, f"/api/runs/{run_id}/metrics", {"points": values})
    page = server_page
    page.goto(f"/runs/{run_id}")
    page.wait_for_function(f"({POINTS})('chart-data-loss').every(n => n === 6)")
    expect(page.locator("#test-metrics")).to_contain_text("None yet")

    # The final status, then the test metrics after the event stream has ended.
    post(live_server, f"/api/runs/{run_id}/finish", {"status": "succeeded"})
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#test-metrics")).to_contain_text("The script reported none")
    expect(page.locator("#test-metrics")).to_contain_text("callback.log_test(")
    post(live_server, f"/api/runs/{run_id}/test-metrics", {"test_metrics": {"test_accuracy": 0.8}})
    expect(page.locator("#test-metrics")).to_contain_text("test_accuracy", timeout=10_000)
    expect(page.locator("#test-metrics")).to_contain_text("0.8000")

    # The penalty and per-layer charts are cards that say why, never empty axes.
    expect(page.locator("#chart-penalty")).to_be_hidden()
    note = page.locator("#chart-penalty").locator("xpath=..").locator(".chart-note")
    expect(note).to_contain_text("Penalty λ·R(w) in the loss")
    expect(note).to_contain_text("The script reported no reg_loss")
    expect(page.locator("#chart-norms").locator("xpath=..").locator(".chart-note")).to_contain_text(
        "no per-layer statistics"
    )
    expect(page.locator("#chart-gap")).to_be_visible()
    assert visible_empty_charts(page) == []
    expect(page.locator("#fact-device")).to_have_text("Devicenot reported")

    # Its config as a table.
    rows = page.locator("#script-config tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator('#script-config tr[data-key="lr"] td').nth(1)).to_have_text("0.01")
    expect(page.locator('#script-config tr[data-key="augment"] td').nth(1)).to_have_text("true")

    # Tags and notes, in place.
    tag = page.locator("#tag-input")
    tag.fill("team=vision")
    tag.press("Enter")
    expect(page.locator('#run-tags .tag[data-key="team"]')).to_contain_text("team=vision")
    tag.fill("baseline")
    page.locator("#tag-add").click()
    expect(page.locator('#run-tags .tag[data-key="baseline"]')).to_be_visible()
    expect(tag).to_have_value("")
    tag.fill("bad key=1")
    tag.press("Enter")
    expect(page.locator("#tag-error")).to_contain_text("should match pattern")
    page.locator("#edit-notes").click()
    page.locator("#notes-input").fill("no penalty: the baseline for the L2 sweep")
    page.locator("#notes-save").click()
    expect(page.locator("#run-notes")).to_have_text("no penalty: the baseline for the L2 sweep")
    expect(page.locator("#notes-editor")).to_be_hidden()
    screenshot(page, "script-run-without-penalty")
    page.locator('#run-tags .tag[data-key="team"] button.remove').click()
    expect(page.locator('#run-tags .tag[data-key="team"]')).to_have_count(0)
    run = httpx.get(f"{live_server}/api/experiments/{run_id}").json()
    assert run["tags"] == {"baseline": None}
    assert run["notes"] == "no penalty: the baseline for the L2 sweep"
    page.reload()
    expect(page.locator("#run-notes")).to_have_text("no penalty: the baseline for the L2 sweep")
    expect(page.locator("#run-tags .tag")).to_have_text(["baseline\u00d7"])


def test_a_run_without_an_epoch_draws_no_empty_axes(server_page: Page, live_server: str) -> None:
    run_id = post(live_server, "/api/experiments", make_spec(name="waiting"))["id"]
    page = server_page
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#charts-note")).to_have_text(
        "No epoch yet: the curves appear with the first one."
    )
    expect(page.locator("#charts")).to_be_hidden()
    expect(page.locator("#test-metrics")).to_contain_text("Evaluated once on the held-out test")
    httpx.post(f"{live_server}/api/experiments/{run_id}/cancel", timeout=30).raise_for_status()
    expect(page.locator("#charts-note")).to_contain_text("No epoch was stored")
    expect(page.locator("#test-metrics")).to_have_text(
        "None: the run was cancelled before its test evaluation."
    )
