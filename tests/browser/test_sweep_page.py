"""The sweep pages in a real Chromium against a real server.

No worker here: the test holds the runs' leases itself and reports their epochs through
the worker API, so each chart is checked against losses it chose (the end-to-end test
trains real runs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from app.client import WorkerClient
from tests.browser.conftest import open_page, screenshot
from tests.factories import make_spec

L2 = "model.layers[*].regularizer.l2"


@pytest.fixture
def server(live_server: str) -> Iterator[str]:
    yield live_server


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    with open_page(browser, server, width=1300) as page:
        yield page


def create_sweep(url: str, axes: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    body = {"name": "page sweep", "base": make_spec(), "axes": axes, **changes}
    response = httpx.post(f"{url}/api/sweeps", json=body)
    assert response.status_code == 201, response.text
    return response.json()


class Trainer:
    """Holds the leases of a sweep's runs and reports chosen losses for them."""

    def __init__(self, url: str, count: int) -> None:
        self.worker = WorkerClient(url)
        self.leases: dict[int, str] = {}
        while len(self.leases) < count:
            claim = self.worker.claim(worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=0)
            assert claim is not None
            # A pack's claim holds every member under one lease token.
            members = claim["pack"]["members"] if claim.get("pack") else [claim]
            for member in members:
                self.leases[member["experiment_id"]] = claim["lease_token"]

    def report(
        self, run_id: int, val: Sequence[float], train: Sequence[float], start: int = 0
    ) -> None:
        points = [
            {"epoch": start + epoch, "values": {"data_loss": t, "val_data_loss": v}}
            for epoch, (v, t) in enumerate(zip(val, train, strict=True))
        ]
        self.worker.upload_metrics(run_id, self.leases[run_id], points)

    def finish(self, run_id: int) -> None:
        self.worker.finish(run_id, self.leases[run_id], status="succeeded")


def count_of(chart: str, name: str) -> str:
    """A JavaScript condition: how many points the named trace of a chart has."""
    return f"document.getElementById('{chart}')?.data?.find(t => t.name === '{name}')?.x.length"


def trace(page: Page, chart: str, name: str) -> dict[str, Any]:
    return page.evaluate(
        "([id, name]) => { const t = document.getElementById(id).data.find((t) => t.name === name);"
        " return t && {x: t.x, y: t.y, type: t.type, customdata: t.customdata}; }",
        [chart, name],
    )


def test_path_plot_live_with_the_best_marked_and_compare_top(page: Page, server: str) -> None:
    sweep = create_sweep(server, [{"path": L2, "values": [0, 1e-4, 1e-3, 1e-2]}])
    ids = sweep["experiment_ids"]
    trainer = Trainer(server, 4)
    # Over-fitting at l2=0 (low training, high validation loss), under-fitting at 1e-2.
    finals = {ids[0]: (0.9, 0.05), ids[1]: (0.4, 0.2), ids[2]: (0.5, 0.35)}
    for run_id, (val, train) in finals.items():
        trainer.report(run_id, [1.0, val + 0.1, val], [0.8, train + 0.1, train])
        trainer.finish(run_id)
    trainer.report(ids[3], [1.2], [1.1])  # still running

    page.goto(f"/sweeps/{sweep['id']}")
    page.wait_for_function(f"{count_of('chart-path-0', 'best val_data_loss')} === 4")
    points = trace(page, "chart-path-0", "best val_data_loss")
    assert points["customdata"] == ids
    assert points["y"] == [0.9, 0.4, 0.5, 1.2]
    training = trace(page, "chart-path-0", "final data_loss (training)")
    assert training["y"] == [0.05, 0.2, 0.35, 1.1]
    best = trace(page, "chart-path-0", "best")
    assert best["customdata"] == [ids[1]]
    layout = page.evaluate("document.getElementById('chart-path-0').layout.xaxis")
    assert layout["type"] == "log"
    assert layout["ticktext"] == ["0", "0.0001", "0.001", "0.01"]
    assert best["x"] == [layout["tickvals"][1]]  # the best sits at l2=1e-4
    expect(page.locator("#sweep-best")).to_contain_text("l2=0.0001")
    expect(page.locator(f'#sweep-runs tr.best[data-id="{ids[1]}"]')).to_be_visible()

    # The last run ends worse than all; the page updates without losing the zoom.
    page.evaluate("Plotly.relayout('chart-path-0', {'yaxis.range': [0, 3]})")
    trainer.report(ids[3], [1.3, 1.25], [1.15, 1.1], start=1)
    trainer.finish(ids[3])
    expect(page.locator(f'#sweep-runs tr[data-id="{ids[3]}"]')).to_contain_text("succeeded")
    page.wait_for_function(
        "document.getElementById('chart-path-0').data"
        ".find(t => t.name === 'final data_loss (training)').y[3] === 1.1"
    )
    assert page.evaluate("document.getElementById('chart-path-0').layout.yaxis.range") == [0, 3]
    expect(page.locator("#cancel-sweep")).to_be_hidden()
    screenshot(page, "sweep-path")

    page.click("#compare-top")
    ranked = [ids[1], ids[2], ids[0], ids[3]]
    page.wait_for_url(f"**/compare?ids={','.join(map(str, ranked))}")
    page.wait_for_function("document.getElementById('chart-data-loss')?.data?.length === 8")


def test_two_settings_draw_a_heat_map(page: Page, server: str) -> None:
    sweep = create_sweep(
        server,
        [
            {"path": L2, "values": [1e-4, 1e-2]},
            {"path": "model.layers[0].dropout", "values": [0.0, 0.5]},
        ],
    )
    trainer = Trainer(server, 4)
    losses = [0.6, 0.3, 0.8, 0.7]  # (1e-4, 0), (1e-4, 0.5), (1e-2, 0), (1e-2, 0.5)
    for run_id, loss in zip(sweep["experiment_ids"], losses, strict=True):
        trainer.report(run_id, [loss], [loss / 2])
        trainer.finish(run_id)
    page.goto(f"/sweeps/{sweep['id']}")
    page.wait_for_function(
        "document.getElementById('chart-heatmap')?.data?.[0]?.type === 'heatmap'"
    )
    heat = page.evaluate(
        "(() => { const t = document.getElementById('chart-heatmap').data[0];"
        " return {x: t.x, y: t.y, z: t.z}; })()"
    )
    assert heat == {"x": ["0.0001", "0.01"], "y": ["0", "0.5"], "z": [[0.6, 0.8], [0.3, 0.7]]}
    best = page.evaluate("document.getElementById('chart-heatmap').data[1]")
    assert (best["name"], best["x"], best["y"]) == ("best", ["0.0001"], ["0.5"])
    for index in (0, 1):  # a path plot per setting as well
        expect(page.locator(f"#chart-path-{index} .scatterlayer .trace").first).to_be_attached()
    screenshot(page, "sweep-heatmap")


def test_three_settings_draw_parallel_coordinates(page: Page, server: str) -> None:
    sweep = create_sweep(
        server,
        [
            {"path": L2, "values": [1e-4, 1e-2]},
            {"path": "model.layers[0].dropout", "values": [0.2]},
            {"path": "training.learning_rate", "values": [1e-3, 1e-2]},
        ],
        mode="grid",
    )
    trainer = Trainer(server, 4)
    for run_id, loss in zip(sweep["experiment_ids"], [0.5, 0.4, 0.6, 0.7], strict=True):
        trainer.report(run_id, [loss], [loss])
        trainer.finish(run_id)
    page.goto(f"/sweeps/{sweep['id']}")
    page.wait_for_function(
        "document.getElementById('chart-parcoords')?.data?.[0]?.type === 'parcoords'"
    )
    dimensions = page.evaluate(
        "document.getElementById('chart-parcoords').data[0]"
        ".dimensions.map(d => [d.label, d.values])"
    )
    assert [label for label, _ in dimensions] == [
        "log10 l2",
        "dropout",
        "log10 learning_rate",
        "best val_data_loss",
    ]
    assert dimensions[0][1] == [-4, -4, -2, -2]
    assert dimensions[3][1] == [0.5, 0.4, 0.6, 0.7]
    expect(page.locator("#chart-parcoords .parcoords")).to_be_attached()
    expect(page.locator("#chart-heatmap")).to_have_count(0)
    screenshot(page, "sweep-parcoords")


def test_seed_repeats_draw_a_band_and_the_list_links_them(page: Page, server: str) -> None:
    sweep = create_sweep(server, [], seeds=3, name="seeds only")
    other = httpx.post(
        f"{server}/api/experiments",
        json=make_spec(name="lone", training={"epochs": 3, "learning_rate": 0.01}),
    ).json()
    trainer = Trainer(server, 4)
    for offset, run_id in enumerate(sweep["experiment_ids"]):
        trainer.report(run_id, [1.0 + offset * 0.1, 0.8 + offset * 0.1], [0.9, 0.7])
        trainer.finish(run_id)
    trainer.report(other["id"], [0.5, 0.45], [0.4, 0.3])  # still running
    page.goto("/sweeps")
    row = page.locator(f'#sweeps tbody tr[data-id="{sweep["id"]}"]')
    expect(row).to_contain_text("seeds only")
    expect(row).to_contain_text("3 / 3 done")
    row.get_by_role("link", name="seeds only").click()
    page.wait_for_url(f"**/sweeps/{sweep['id']}")
    page.wait_for_function(
        "document.getElementById('chart-seeds')?.data?.some(t => t.name === 'validation ± 1 std')"
    )
    band = trace(page, "chart-seeds", "validation ± 1 std")
    mean = trace(page, "chart-seeds", "validation data loss, mean of 3 seeds")
    assert mean["y"] == pytest.approx([1.1, 0.9])
    assert band["y"] == pytest.approx([1.2, 1.0])  # mean + sample std (0.1)
    screenshot(page, "sweep-seeds")

    # The compare view draws the seed group as a mean and a band, the lone run as lines
    # (a copy of one seed is no seed repeat: test_dashboard's identical runs stay lines).
    ids = [*sweep["experiment_ids"], other["id"]]
    page.goto(f"/compare?ids={','.join(map(str, ids))}")
    page.wait_for_function("document.getElementById('chart-data-loss')?.data?.length === 8")
    names = page.evaluate("document.getElementById('chart-data-loss').data.map(t => t.name)")
    label = " ".join(f"#{i}" for i in sweep["experiment_ids"]) + " · mean ± 1 std of 3 runs"
    assert names == [
        f"{label} - 1 std",
        f"{label} + 1 std",
        label,
        f"{label} (validation) - 1 std",
        f"{label} (validation) + 1 std",
        f"{label} (validation)",
        f"#{other['id']} lone",
        f"#{other['id']} lone (validation)",
    ]
    assert trace(page, "chart-data-loss", f"{label} (validation)")["y"] == pytest.approx([1.1, 0.9])
    high = trace(page, "chart-data-loss", f"{label} (validation) + 1 std")
    assert high["y"] == pytest.approx([1.2, 1.0])
    expect(page.locator("#legend .legend-item")).to_have_count(2)
    # A new epoch of a grouped run would move the band; the lone run's lines grow live.
    trainer.report(other["id"], [0.44], [0.25], start=2)
    lone = f"#{other['id']} lone"
    page.wait_for_function(f"{count_of('chart-data-loss', lone)} === 3")
    screenshot(page, "compare-seed-band")
    page.uncheck("#bands")
    page.wait_for_function("document.getElementById('chart-data-loss')?.data?.length === 8")
    assert page.evaluate(
        "document.getElementById('chart-data-loss').data.every(t => !t.name.includes('std'))"
    )
