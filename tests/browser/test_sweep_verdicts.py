"""The sweep page's honest statistics in a real Chromium against a real server: the best
point by its mean over seeds, the runner-up's band, whether the winner beats seed noise,
"Add seeds", what a marginal chart is, and parallel coordinates with and without WebGL.

No worker: the test holds the runs' leases and reports losses it chose (see
test_sweep_page.py), so every number on the page is checked against known ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import HAS_WEBGL, SCREENSHOTS, open_page, screenshot
from tests.browser.test_sweep_page import L2, Trainer, create_sweep, trace

DROPOUT = "model.layers[*].dropout"
RATE = "training.learning_rate"
THREE_AXES = [
    {"path": L2, "values": [0, 0.01]},
    {"path": DROPOUT, "values": [0, 0.5]},
    {"path": RATE, "values": [1e-3, 1e-2]},
]


@pytest.fixture
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    with open_page(browser, live_server, width=1300) as page:
        yield page


def runs_of(url: str, sweep_id: int) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/sweeps/{sweep_id}")
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["runs"]
    return runs


def three_axis_loss(point: dict[str, float]) -> float:
    """Best at l2=0.01, dropout=0, learning rate 1e-2 (0.5); each axis adds its own cost."""
    return (
        0.5
        + (0.1 if point[L2] == 0 else 0.0)
        + (0.05 if point[DROPOUT] == 0.5 else 0.0)
        + (0.2 if point[RATE] == 1e-3 else 0.0)
    )


def train_three_axes(url: str) -> dict[str, Any]:
    """The 3-axis grid of the issue, one seed per point, 8 finished runs."""
    sweep = create_sweep(url, THREE_AXES, name="three axes")
    trainer = Trainer(url, 8)
    for run in runs_of(url, sweep["id"]):
        loss = three_axis_loss(run["point"])
        trainer.report(run["id"], [loss + 0.2, loss], [loss, loss * 0.8])
        trainer.finish(run["id"])
    return sweep


def legend(page: Page, chart: str) -> str:
    return page.locator(f"#{chart} .legend").inner_text()


def names(page: Page, chart: str) -> list[str]:
    found: list[str] = page.evaluate(
        "(id) => document.getElementById(id).data.map((t) => t.name)", chart
    )
    return found


def opacities(page: Page, chart: str, name: str) -> list[float]:
    found: list[float] = page.evaluate(
        "([id, name]) => document.getElementById(id).data.find((t) => t.name === name)"
        ".marker.opacity",
        [chart, name],
    )
    return found


def test_three_axes_say_what_a_marginal_is_and_grow_with_seeds(
    page: Page, live_server: str
) -> None:
    sweep = train_three_axes(live_server)
    page.goto(f"/sweeps/{sweep['id']}")
    chart = "chart-path-0"
    caption = page.locator(f"#{chart}-caption")

    # Each axis opens on the slice through the best point: one run per setting, no band.
    for index in range(3):
        expect(page.locator(f"#chart-path-{index}")).to_have_attribute("data-view", "slice")
    expect(caption).to_contain_text(
        "Slice through the best point: dropout=0, learning_rate=0.01 fixed, l2 varies."
    )
    expect(caption).to_contain_text("One run per setting: no seed repeats, so no band")
    slice_line = trace(page, chart, "best val_data_loss (line through the runs)")
    assert slice_line["y"] == pytest.approx([0.6, 0.5])
    assert opacities(page, chart, "best val_data_loss") == [0.95, 0.95]

    # The marginal says it is a mean over the other settings, and draws every run faint.
    page.click("#view-0-marginal")
    expect(page.locator(f"#{chart}")).to_have_attribute("data-view", "marginal")
    mean_name = "best val_data_loss: mean over the other settings (n = 4)"
    page.wait_for_function(
        f"document.getElementById('{chart}').data.some(t => t.name === '{mean_name}')"
    )
    assert trace(page, chart, mean_name)["y"] == pytest.approx([0.725, 0.625])
    expect(page.locator(f"#{chart} .legend")).to_contain_text(
        "mean over the other settings (n = 4)"
    )
    expect(caption).to_contain_text(
        "the mean over the other settings (n = 4; dropout, learning_rate vary)"
    )
    expect(caption).to_contain_text("no band")
    assert not any("std" in name for name in names(page, chart))
    pooled = opacities(page, chart, "best val_data_loss, each run (other settings pooled)")
    assert len(pooled) == 8 and max(pooled) < 0.95  # lighter than the slice's seed repeats
    expect(page.locator("#chart-path-1")).to_have_attribute("data-view", "slice")

    # One seed per point: no judgement, and an offer to add seeds.
    expect(page.locator("#sweep-best")).to_contain_text(
        "Best mean: l2=0.01 · dropout=0 · learning_rate=0.01"
    )
    expect(page.locator("#sweep-judgement")).to_contain_text("no judgement possible")
    expect(page.locator("#add-seeds-form")).to_be_visible()
    expect(page.locator("#add-seeds-why")).to_contain_text("no judgement is possible")
    screenshot(page, "sweep-three-axes-one-seed")

    # Add a seed to every point: the page follows the eight new runs as they train.
    page.fill("#seed-count", "1")
    page.click("#add-seeds")
    expect(page.locator("#sweep-runs tbody tr")).to_have_count(16)
    expect(page.locator("#add-seeds-status")).to_contain_text("Queued 1 seed more")
    new_runs = [run for run in runs_of(live_server, sweep["id"]) if run["status"] == "queued"]
    assert len(new_runs) == 8
    trainer = Trainer(live_server, 8)
    best_point = {L2: 0.01, DROPOUT: 0.0, RATE: 1e-2}
    for run in new_runs:
        # The best point's second seed lands worse: within seed noise of the runner-up.
        point = {path: run["point"][path] for path in best_point}
        loss = three_axis_loss(point) + (0.06 if point == best_point else 0.02)
        if point == {**best_point, DROPOUT: 0.5}:
            loss = 0.53  # the runner-up: 0.55 and 0.53
        trainer.report(run["id"], [loss + 0.2, loss], [loss, loss * 0.8])
        trainer.finish(run["id"])

    expect(page.locator("#sweep-judgement")).to_contain_text("within seed noise")
    expect(page.locator("#sweep-judgement")).to_contain_text(
        "l2=0.01 · dropout=0 · learning_rate=0.01 beats l2=0.01 · dropout=0.5 · learning_rate=0.01"
    )
    expect(page.locator("#sweep-best")).to_contain_text("over 2 seeds")
    expect(page.locator("#add-seeds-form")).to_be_visible()
    # The marginal, now with seed repeats: its band is ± 1 std over the seeds.
    expect(page.locator(f"#{chart} .legend")).to_contain_text("± 1 std over 2 seeds")
    expect(caption).to_contain_text("The band is ± 1 std over 2 seeds")
    expect(page.locator(f"#{chart} .legend")).to_contain_text(
        "mean over the other settings (n = 4 settings \N{MULTIPLICATION SIGN} 2 seeds)"
    )
    # The slice of the second axis: each setting's mean ± 1 std over its 2 seeds, and the
    # runner-up's band across the chart.
    slice_names = names(page, "chart-path-1")
    assert "best val_data_loss: mean of 2 seeds" in slice_names
    assert "best val_data_loss ± 1 std over 2 seeds" in slice_names
    assert any(name.startswith("runner-up l2=0.01 · dropout=0.5") for name in slice_names)
    assert trace(page, "chart-path-1", "best")["y"] == pytest.approx([0.53])
    expect(page.locator("#chart-path-1-caption")).to_contain_text("± 1 std over 2 seeds")
    screenshot(page, "sweep-three-axes-two-seeds")


def test_parallel_coordinates_with_and_without_webgl(
    browser_without_webgl: Browser, browser_with_webgl: Browser, live_server: str
) -> None:
    sweep = train_three_axes(live_server)
    url = f"/sweeps/{sweep['id']}"
    with open_page(browser_without_webgl, live_server, width=1300) as page:
        assert page.evaluate(HAS_WEBGL) is False  # the browser really has none
        page.goto(url)
        fallback = page.locator("#parcoords-fallback table")
        expect(fallback).to_be_visible()
        expect(page.locator("#parcoords-note")).to_contain_text("no WebGL")
        expect(page.locator("#chart-parcoords")).to_be_hidden()
        rows = fallback.locator("tbody tr")
        expect(rows).to_have_count(8)
        # Sorted by loss, the best first and starred; a heading sorts by its setting.
        expect(rows.first).to_contain_text("★ 0.5")
        expect(rows.first).to_have_class("best")
        first_loss = rows.first.locator("td.loss")
        assert "rgb(253,231,37)" in (first_loss.get_attribute("style") or "")
        fallback.get_by_role("button", name="loss").click()
        expect(rows.first).to_contain_text("0.85")  # descending now: the worst first
        expect(page.locator("body")).not_to_contain_text("get.webgl.org")
        expect(page.locator(".no-webgl")).to_have_count(0)
        screenshot(page, "sweep-parcoords-without-webgl")
        page.locator("#chart-parcoords").locator("..").screenshot(
            path=str(SCREENSHOTS / "sweep-points-table.png")
        )
        # No other page draws a WebGL chart either.
        run_id = sweep["experiment_ids"][0]
        for other in (f"/runs/{run_id}", f"/compare?ids={run_id},{run_id + 1}", "/", "/sweeps"):
            page.goto(other)
            page.wait_for_load_state("networkidle")
            expect(page.locator("body")).not_to_contain_text("get.webgl.org")
            expect(page.locator(".no-webgl")).to_have_count(0)

    with open_page(browser_with_webgl, live_server, width=1300) as page:
        assert page.evaluate(HAS_WEBGL) is True
        page.goto(url)
        page.wait_for_function(
            "document.getElementById('chart-parcoords')?.data?.[0]?.type === 'parcoords'"
        )
        expect(page.locator("#chart-parcoords .parcoords")).to_be_attached()
        expect(page.locator("#parcoords-fallback")).to_be_hidden()
        expect(page.locator("body")).not_to_contain_text("get.webgl.org")
        screenshot(page, "sweep-parcoords-with-webgl")


# One L2 sweep, two seeds per point: (best validation data loss per seed, final training
# data loss per seed). The luckiest single run (0.35) is at l2=1e-3, whose mean is not best.
L2_RUNS: dict[float, tuple[list[float], list[float]]] = {
    0.0: ([0.46, 0.48], [0.02, 0.03]),  # over-fits: training far below the best's
    1e-4: ([0.40, 0.41], [0.20, 0.21]),  # the best mean, 0.405
    1e-3: ([0.35, 0.49], [0.30, 0.32]),  # the runner-up, 0.42: within seed noise
    0.1: ([1.70, 1.84], [1.69, 1.75]),  # under-fits: both far above the best's
}


def train_l2_seeds(url: str) -> tuple[dict[str, Any], dict[float, list[int]]]:
    sweep = create_sweep(url, [{"path": L2, "values": list(L2_RUNS)}], seeds=2, name="l2 seeds")
    trainer = Trainer(url, 8)
    ids: dict[float, list[int]] = {value: [] for value in L2_RUNS}
    for run in runs_of(url, sweep["id"]):
        value = run["point"][L2]
        seed = len(ids[value])
        ids[value].append(run["id"])
        val, train = L2_RUNS[value][0][seed], L2_RUNS[value][1][seed]
        # Down to the best epoch, then a little up: a plateau, judged by the other rules.
        vals = [val + 0.3, val + 0.1, val + 0.03, val, val + 0.004, val + 0.008, val + 0.01]
        trains = [train + 0.3, train + 0.2, train + 0.1, train + 0.05, train + 0.02, train + 0.01]
        trainer.report(run["id"], vals, [*trains, train])
        trainer.finish(run["id"])
    return sweep, ids


def test_the_best_mean_its_rival_and_the_sides_of_the_u(page: Page, live_server: str) -> None:
    sweep, ids = train_l2_seeds(live_server)
    page.goto(f"/sweeps/{sweep['id']}")
    chart = "chart-path-0"
    page.wait_for_function(
        f"document.getElementById('{chart}')?.data?.some(t => t.name === 'best')"
    )
    best = trace(page, chart, "best")
    assert best["y"] == pytest.approx([0.405])  # the mean of the point, not its luckiest run
    assert best["customdata"] == [",".join(map(str, ids[1e-4]))]
    ticks = page.evaluate(f"document.getElementById('{chart}').layout.xaxis")
    assert best["x"] == [ticks["tickvals"][1]]
    expect(page.locator(f"#{chart} .annotation-text")).to_have_text("best mean l2=0.0001")
    best_line = page.locator("#sweep-best")
    expect(best_line).to_contain_text("Best mean: l2=0.0001 0.405 ± 0.00707 over 2 seeds")
    expect(best_line).to_contain_text("runner-up l2=0.001 0.42 ± 0.099 over 2 seeds")
    for run_id in ids[1e-4]:
        expect(page.locator(f'#sweep-runs tr.best[data-id="{run_id}"]')).to_be_visible()
    expect(page.locator(f'#sweep-runs tr.best[data-id="{ids[1e-3][0]}"]')).to_have_count(0)

    # In words: within seed noise, add seeds.
    judgement = page.locator("#sweep-judgement")
    expect(judgement).to_contain_text("within seed noise")
    expect(judgement).to_contain_text("l2=0.0001 beats l2=0.001 by 0.015 ± 0.070 over 2 seeds")
    expect(page.locator("#sweep-comparisons li[data-against='runner_up']")).to_contain_text(
        "within seed noise"
    )
    expect(page.locator("#sweep-comparisons li[data-against='unregularized']")).to_contain_text(
        "vs no regularization l2=0"
    )
    expect(page.locator("#add-seeds-form")).to_be_visible()

    # The runner-up's band across the chart; each point's side of the U in the caption.
    band = trace(page, chart, "runner-up l2=0.001: 0.42 ± 0.099 over 2 seeds")
    assert min(band["y"]) == pytest.approx(0.42 - 0.098995, abs=1e-5)
    assert max(band["y"]) == pytest.approx(0.42 + 0.098995, abs=1e-5)
    expect(page.locator(f"#{chart}-caption")).to_contain_text(
        "Sides of the U: l2=0 over-fitting · l2=0.0001 best · l2=0.1 under-fitting."
    )
    expect(page.locator(f"#{chart}-caption")).to_contain_text("± 1 std over 2 seeds")
    assert "best val_data_loss: mean of 2 seeds" in names(page, chart)
    screenshot(page, "sweep-best-mean-within-noise")

    # A run of the strongest penalty, against its siblings: under-fitting vs the best point.
    weak = ids[0.1][0]
    page.goto(f"/runs/{weak}")
    relative = page.locator("#verdict-relative")
    expect(relative).to_have_text("under-fitting vs l2=0.0001")
    hint = page.locator("#verdict-relative-hint")
    expect(hint).to_contain_text("lower λ")
    expect(hint).to_contain_text("against l2=0.0001: the mean of runs")
    expect(hint.get_by_role("link", name=f"#{ids[1e-4][0]}")).to_be_visible()
    screenshot(page, "run-relative-verdict")
    page.goto("/")
    expect(page.locator(f'tr[data-id="{weak}"] td.verdict')).to_have_text(
        "under-fitting vs l2=0.0001"
    )
    expect(page.locator(f'tr[data-id="{ids[0.0][0]}"] td.verdict')).to_have_text(
        "over-fitting vs l2=0.0001"
    )
    screenshot(page, "runs-relative-verdicts")

    # The compare page: the seed groups as bands, and the same statistics in words.
    everything = [run_id for value in L2_RUNS for run_id in ids[value]]
    page.goto(f"/compare?ids={','.join(map(str, everything))}")
    expect(page.locator("#compare-summary")).to_be_visible()
    expect(page.locator("#compare-best")).to_contain_text("Best mean:")
    expect(page.locator("#compare-best")).to_contain_text("0.405 ± 0.00707 over 2 seeds")
    expect(page.locator("#compare-judgement")).to_contain_text("within seed noise")
    expect(page.locator("#compare-points tbody tr")).to_have_count(4)
    screenshot(page, "compare-seed-groups-in-words")


def test_a_run_still_improving_says_so(page: Page, live_server: str) -> None:
    script = {"task": "regression", "epochs": 12, "dataset": "my series"}
    created = httpx.post(f"{live_server}/api/runs", json={"name": "falling", "script": script})
    created.raise_for_status()
    identifier = created.json()["id"]
    # Both losses fall in a straight line to the last epoch: no plateau yet.
    falling = [(0.9 - 0.05 * epoch, 1 - 0.05 * epoch) for epoch in range(12)]
    points = [
        {"epoch": epoch, "values": {"data_loss": train, "val_data_loss": val}}
        for epoch, (train, val) in enumerate(falling)
    ]
    httpx.post(
        f"{live_server}/api/runs/{identifier}/metrics", json={"points": points}
    ).raise_for_status()
    page.goto(f"/runs/{identifier}")
    expect(page.locator("#verdict")).to_have_text("still improving")
    expect(page.locator("#verdict")).to_have_class("badge verdict verdict-still_improving")
    expect(page.locator("#verdict-hint")).to_contain_text("more epochs")
    expect(page.locator("#verdict-relative-line")).to_be_hidden()
    screenshot(page, "run-still-improving")
    page.goto("/")
    expect(page.locator(f'tr[data-id="{identifier}"] td.verdict')).to_have_text("still improving")
