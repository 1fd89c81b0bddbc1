"""The workers page in a real Chromium with two real workers on one server: a stand-in
GPU host (a stand-in nvidia-smi shows two GPUs, the second held by another process; its
children train on the CPU) and a CPU host. Each slot's GPU (memory, utilization) or CPU,
the pack or run it trains (links), why a slot waits, the plugins and when each worker
was last seen; the page follows the GPUs live and marks a worker that went silent."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.conftest import open_page, screenshot
from tests.conftest import wait_for
from tests.factories import make_spec
from tests.faults.conftest import REGLAB, Lab, WorkerProcess
from tests.worker.standin_smi import H100, StandInSmi, uuid

LIVE = 20_000  # ms: the page polls every 3 s, workers report every half second
GPU_BUSY = "Waiting: GPU busy: another process (pid 4242, 70000 MiB) uses it"


@pytest.fixture(scope="module")
def smi(tmp_path_factory: pytest.TempPathFactory) -> StandInSmi:
    standin = StandInSmi.create(tmp_path_factory.mktemp("smi"))
    standin.set_gpus([(0, 1000, 81559, 12), (1, 71000, 81559, 95)])
    standin.set_apps([(4242, 1, 70000)])
    return standin


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    settings = {"worker_report_seconds": 0.5, "gpu_poll_seconds": 0.3, "lease_seconds": 30}
    with Lab.open(tmp_path_factory.mktemp("workers-page"), **settings) as lab:
        yield lab


def start_gpu_worker(lab: Lab, smi: StandInSmi) -> WorkerProcess:
    """`reglab worker` on the stand-in GPU host: one slot per GPU."""
    log_path = lab.folder / "gpu-host.log"
    process = subprocess.Popen(
        [*REGLAB, "worker"],
        env={**lab.env, "PATH": smi.path},
        cwd=lab.folder,
        stdout=lab._log("gpu-host.log"),
        stderr=subprocess.STDOUT,
    )
    worker = WorkerProcess("gpu-host", process, log_path, lab._logs[-1])
    lab.workers.append(worker)
    return worker


def training(lab: Lab, worker_id: str) -> list[int]:
    """The runs a worker's slots train, as the API shows them."""
    for worker in httpx.get(f"{lab.url}/api/workers", timeout=10).json():
        if worker["id"] == worker_id:
            return [run["id"] for slot in worker["slots"] for run in slot["runs"]]
    return []


@pytest.fixture(scope="module")
def scene(lab: Lab, smi: StandInSmi) -> dict[str, object]:
    """The GPU host trains a packed sweep on GPU 0 (GPU 1 is busy), the CPU host a run."""
    gpu_host = start_gpu_worker(lab, smi)
    sweep = httpx.post(
        f"{lab.url}/api/sweeps",
        json={
            "name": "l2-pack",
            "base": make_spec(training={"epochs": 400}),
            "axes": [{"path": "model.layers[*].regularizer.l2", "values": [0.001, 0.01, 0.1]}],
        },
    )
    assert sweep.status_code == 201, sweep.text
    members = sweep.json()["experiment_ids"]
    wait_for(lambda: sorted(training(lab, gpu_host.worker_id)) == sorted(members), timeout=90)
    cpu_host = lab.start_worker("cpu-host")
    run_id = lab.submit(make_spec(name="on-the-cpu", training={"epochs": 400}))
    wait_for(lambda: training(lab, cpu_host.worker_id) == [run_id], timeout=90)
    return {
        "gpu_host": gpu_host,
        "cpu_host": cpu_host,
        "sweep_id": sweep.json()["id"],
        "members": members,
        "run_id": run_id,
    }


@pytest.fixture
def page(browser: Browser, lab: Lab) -> Iterator[Page]:
    with open_page(browser, lab.url, width=1400) as page:
        yield page


def card(page: Page, worker: WorkerProcess) -> Locator:
    return page.locator(f'section.worker[data-worker="{worker.worker_id}"]')


def test_the_workers_page_shows_each_slot(page: Page, lab: Lab, scene: dict[str, object]) -> None:
    gpu_host, cpu_host = scene["gpu_host"], scene["cpu_host"]
    assert isinstance(gpu_host, WorkerProcess) and isinstance(cpu_host, WorkerProcess)
    page.goto("/workers")
    expect(page.locator("header.top nav a.current")).to_have_text("Workers")
    expect(page.locator("section.worker")).to_have_count(2)

    gpu = card(page, gpu_host)
    expect(gpu.locator(".worker-head .badge")).to_have_text("live")
    rows = gpu.locator("tbody tr")
    expect(rows).to_have_count(2)
    first, second = rows.nth(0), rows.nth(1)
    expect(first.locator("td.slot")).to_have_text("GPU 0")
    expect(first.locator("td.slot")).to_have_attribute("title", f"GPU 0: {H100}")
    expect(first.locator("td.device")).to_have_text(f"GPU 0 · {H100}{uuid(0)}")
    expect(first.locator("td.memory")).to_have_text("1,000 / 81,559 MiB")
    expect(first.locator("td.utilization")).to_have_text("12 %")
    members = scene["members"]
    assert isinstance(members, list)
    expect(first.locator("td.doing")).to_contain_text("(3 runs as one model)")
    links = first.locator("td.doing a")
    expect(links).to_have_count(3)
    hrefs = links.evaluate_all("nodes => nodes.map(node => node.getAttribute('href'))")
    assert hrefs == [f"/runs/{member}" for member in members]
    expect(second.locator("td.memory")).to_have_text("71,000 / 81,559 MiB")
    expect(second.locator("td.doing")).to_have_text(GPU_BUSY)

    cpu = card(page, cpu_host)
    expect(cpu.locator("tbody tr")).to_have_count(1)
    expect(cpu.locator("td.device")).to_have_text("CPU")
    expect(cpu.locator("td.memory")).to_have_text("\u2013")  # a dash: no GPU memory
    expect(cpu.locator("td.doing a")).to_have_attribute("href", f"/runs/{scene['run_id']}")
    expect(cpu.locator("td.doing")).to_contain_text("on-the-cpu")
    for host in (gpu, cpu):
        expect(host.locator(".seen")).to_contain_text("last seen")
        expect(host.locator(".plugins")).to_have_text("No plugins")
    page.wait_for_load_state("load")
    screenshot(page, "workers-page")


def test_the_page_follows_the_gpus_and_marks_a_silent_worker(
    page: Page, lab: Lab, smi: StandInSmi, scene: dict[str, object]
) -> None:
    gpu_host, cpu_host = scene["gpu_host"], scene["cpu_host"]
    assert isinstance(gpu_host, WorkerProcess) and isinstance(cpu_host, WorkerProcess)
    page.goto("/workers")
    gpu = card(page, gpu_host)
    expect(gpu.locator("tbody tr")).to_have_count(2)

    # The other process leaves GPU 1, and GPU 0 fills up as the pack trains.
    smi.set_apps([])
    smi.set_gpus([(0, 40000, 81559, 77), (1, 500, 81559, 0)])
    first, second = gpu.locator("tbody tr").nth(0), gpu.locator("tbody tr").nth(1)
    expect(first.locator("td.memory")).to_have_text("40,000 / 81,559 MiB", timeout=LIVE)
    expect(first.locator("td.utilization")).to_have_text("77 %", timeout=LIVE)
    expect(second.locator("td.doing")).to_have_text("Waiting: no work queued", timeout=LIVE)

    # The CPU host dies without a word: once a minute has passed, it is marked silent.
    cpu_host.signal(signal.SIGKILL)
    cpu_host.process.wait(10)
    lab.sql(
        "UPDATE worker SET last_seen = ? WHERE id = ?",
        (datetime.now(UTC) - timedelta(seconds=90)).strftime("%Y-%m-%d %H:%M:%S.%f"),
        cpu_host.worker_id,
    )
    cpu = card(page, cpu_host)
    expect(cpu).to_have_class("worker silent", timeout=LIVE)
    expect(cpu.locator(".worker-head .badge")).to_have_text("silent")
    expect(cpu.locator(".seen")).to_contain_text("last seen 1 min ago")
    expect(cpu.locator(".note")).to_have_text(
        "Not heard from for over a minute: its slots as it last reported them."
    )
    expect(card(page, gpu_host).locator(".worker-head .badge")).to_have_text("live")
    page.wait_for_load_state("load")
    screenshot(page, "workers-page-live-and-silent")
    httpx.post(f"{lab.url}/api/sweeps/{scene['sweep_id']}/cancel", timeout=10)


def test_the_workers_page_keeps_the_content_security_policy(
    browser: Browser, lab: Lab, scene: dict[str, object]
) -> None:
    """Enforced (no inline script; the page's inline style and bar widths are allowed)."""
    context = browser.new_context(base_url=lab.url)
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto("/workers")
    expect(page.locator("section.worker .meter").first).to_be_visible()
    width = page.locator("section.worker .meter .bar span").first.evaluate(
        "node => getComputedStyle(node).width"
    )
    assert width.endswith("px") and float(width[:-2]) > 0
    context.close()
    assert problems == []
