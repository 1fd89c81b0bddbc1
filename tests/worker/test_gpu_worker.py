"""A real `reglab worker --slots-per-gpu 2` on a stand-in GPU (this host has none: a
stand-in nvidia-smi shows it, the children train on the CPU): its slots wait while the
GPU is busy (another process on it, or too little memory free) and say why in
/api/workers, claim as soon as it frees up, run with the GPU and memory growth in their
environment, and an out-of-memory run is retried on the other slot and fails naming the
GPU. The worker's address space is capped like a device's memory (tests/faults)."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.factories import make_spec
from tests.faults.conftest import REGLAB, Lab, WorkerProcess, alive
from tests.worker.standin_smi import H100, StandInSmi, uuid

pytestmark = [pytest.mark.system, pytest.mark.e2e]
MEMORY_LIMIT_MB = 3072
SLOT_1, SLOT_2 = f"GPU 0: {H100} #1", f"GPU 0: {H100} #2"


@pytest.fixture(scope="module")
def smi(tmp_path_factory: pytest.TempPathFactory) -> StandInSmi:
    return StandInSmi.create(tmp_path_factory.mktemp("smi"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.open(tmp_path_factory.mktemp("gpu-worker"), max_attempts=2) as lab:
        yield lab


@pytest.fixture(scope="module")
def worker(lab: Lab, smi: StandInSmi) -> WorkerProcess:
    """The worker, started while another process holds the GPU."""
    smi.set_gpus([(0, 71000, 81559, 95)])
    smi.set_apps([(4242, 0, 70000)])
    env = {
        **lab.env,
        "PATH": smi.path,
        "REGLAB_GPU_POLL_SECONDS": "0.3",
        "REGLAB_WORKER_REPORT_SECONDS": "0.5",
        # What takes address space without using memory (tests/faults/conftest.py).
        "MALLOC_ARENA_MAX": "2",
        "TF_NUM_INTRAOP_THREADS": "2",
        "TF_NUM_INTEROP_THREADS": "2",
        "OMP_NUM_THREADS": "2",
    }
    command = ["bash", "-c", f'ulimit -v {MEMORY_LIMIT_MB * 1024} && exec "$0" "$@"']
    command += [*REGLAB, "worker", "--slots-per-gpu", "2"]
    log_path = lab.folder / "gpu-worker.log"
    log_file = lab._log("gpu-worker.log")
    process = subprocess.Popen(
        command, env=env, cwd=lab.folder, stdout=log_file, stderr=subprocess.STDOUT
    )
    worker = WorkerProcess("gpu-worker", process, log_path, log_file)
    lab.workers.append(worker)
    return worker


def slots(lab: Lab) -> list[dict[str, Any]]:
    workers = httpx.get(f"{lab.url}/api/workers", timeout=10).json()
    return workers[0]["slots"] if workers else []


def reasons(lab: Lab) -> list[str | None]:
    return [slot["reason"] for slot in slots(lab)]


def gpu_queries(smi: StandInSmi) -> int:
    return sum(call.startswith("--query-gpu") for call in smi.calls())


def stays_queued(lab: Lab, smi: StandInSmi, run_id: int, looks: int = 6) -> None:
    """The slots look at the GPU `looks` more times, and the run is still queued."""
    seen = gpu_queries(smi)
    wait_for(lambda: gpu_queries(smi) >= seen + looks, timeout=60)
    assert lab.get(run_id)["status"] == "queued", lab.tail()


def claims(worker: WorkerProcess, run_id: int) -> list[tuple[int, str]]:
    """(attempt, slot) of each claim of the run, from the worker's log."""
    pattern = rf"claimed experiment {run_id} \(.*?\), attempt (\d+), slot (.*?), child pid"
    return [(int(attempt), slot) for attempt, slot in re.findall(pattern, worker.log())]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"worker.child" in cmdline:
            found.append(int(entry.name))
    return found


def environment(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


def test_a_foreign_process_keeps_the_slots_waiting_until_it_leaves(
    lab: Lab, smi: StandInSmi, worker: WorkerProcess
) -> None:
    busy = "GPU busy: another process (pid 4242, 70000 MiB) uses it"
    wait_for(lambda: reasons(lab) == [busy, busy], timeout=60)
    shown = slots(lab)
    assert [slot["name"] for slot in shown] == [SLOT_1, SLOT_2]
    assert shown[0]["gpu"] == {
        "index": 0,
        "uuid": uuid(0),
        "name": H100,
        "memory_used_mb": 71000.0,
        "memory_total_mb": 81559.0,
        "utilization_percent": 95.0,
    }
    run_id = lab.submit(make_spec(name="after-the-other-job"))
    stays_queued(lab, smi, run_id)

    smi.set_apps([])
    smi.set_gpus([(0, 1000, 81559, 0)])
    run = lab.wait_status(run_id, "succeeded", "failed", timeout=120)
    assert (run["status"], run["attempt"]) == ("succeeded", 1), run.get("error")
    assert not any("GPU busy" in str(reason) for reason in reasons(lab))


def test_two_slots_on_one_gpu_get_it_with_memory_growth(
    lab: Lab, smi: StandInSmi, worker: WorkerProcess
) -> None:
    children = children_of(worker.pid)
    assert len(children) >= 2, (children, lab.tail())
    for pid in children:
        env = environment(pid)
        assert env["CUDA_VISIBLE_DEVICES"] == "0"
        assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
        assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        assert (env["REGLAB_GPU_INDEX"], env["REGLAB_GPU_UUID"]) == ("0", uuid(0))


def test_too_little_free_memory_keeps_a_run_queued_until_it_frees_up(
    lab: Lab, smi: StandInSmi, worker: WorkerProcess
) -> None:
    smi.set_gpus([(0, 80000, 81559, 100)])
    run_id = lab.submit(make_spec(name="needs-memory"))  # a waiting claim hands it back
    short = "GPU busy: 1559 MiB free of 81559 MiB (needs 2048 MiB)"
    wait_for(lambda: reasons(lab) == [short, short], timeout=60)
    stays_queued(lab, smi, run_id)

    smi.set_gpus([(0, 3000, 81559, 10)])
    run = lab.wait_status(run_id, "succeeded", "failed", timeout=120)
    assert (run["status"], run["attempt"]) == ("succeeded", 1), run.get("error")


def test_an_out_of_memory_run_is_retried_on_the_other_slot_and_names_the_gpu(
    lab: Lab, smi: StandInSmi, worker: WorkerProcess
) -> None:
    too_big = make_spec(
        name="too-big-for-the-gpu",
        model={"layers": [{"type": "dense", "units": 4096}] * 20},
        training={"epochs": 1},
    )
    run_id = lab.submit(too_big)
    run = lab.wait_status(run_id, "failed", "succeeded", timeout=180)
    assert run["status"] == "failed", lab.tail()
    assert run["error"].startswith(
        f"out of memory on GPU 0 ({H100}, {uuid(0)}): 78559 MiB of 81559 MiB free: "
        "ResourceExhaustedError"
    ), run["error"]
    assert run["attempt"] == 2
    requeued = [s for s in lab.statuses(run_id)[1:] if s["status"] == "queued"]
    assert len(requeued) == 1 and requeued[0]["error"].startswith("out of memory on GPU 0")
    # The slot it ran out of memory on waits for the GPU to free up: the other took it.
    (first, first_slot), (second, second_slot) = claims(worker, run_id)
    assert (first, second) == (1, 2) and {first_slot, second_slot} == {SLOT_1, SLOT_2}
    waiting = {slot["name"]: slot["reason"] for slot in slots(lab)}
    assert waiting[first_slot].startswith(
        "GPU busy: waiting for it to free up after a run ran out of memory"
    )
    assert worker.process.poll() is None


def test_the_worker_stops_and_says_so(lab: Lab, worker: WorkerProcess) -> None:
    children = children_of(worker.pid)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(60) == 0, lab.tail()
    assert all(not alive(pid) for pid in children)
    (shown,) = httpx.get(f"{lab.url}/api/workers", timeout=10).json()
    assert shown["state"] == "stopped"
    assert {slot["state"] for slot in shown["slots"]} == {"stopped"}
