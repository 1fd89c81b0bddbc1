"""The supervisor's side of GPU availability, without training: which of its processes
are its own, the wait after an out-of-memory failure, a trained child replaced where GPU
memory is short, and the report of its slots reaching a real server. A stand-in
nvidia-smi shows the GPUs; `cat` processes stand for children (they end at EOF, as a
child does)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reglab.client import WorkerClient
from tests.worker.standin_smi import H100, StandInSmi, uuid
from worker.children import Child
from worker.devices import Availability, GpuMonitor, detect_gpus, plan_slots
from worker.supervisor import Supervisor, _out_of_memory


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandInSmi:
    standin = StandInSmi.create(tmp_path / "smi")
    monkeypatch.setenv("PATH", standin.path)
    return standin


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Processes standing for a slot's children; ended after the test."""
    made: list[Child] = []
    yield made
    for child in made:
        child.stop(grace=1)


def fake_child(children: list[Child]) -> Child:
    process = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = Child(process)
    children.append(child)
    return child


def supervisor(url: str = "http://127.0.0.1:9", **options: object) -> Supervisor:
    slots = plan_slots(detect_gpus(), "all", slots_per_gpu=2)
    return Supervisor(url, slots, worker_id="w-test", **options)  # type: ignore[arg-type]


def test_a_cpu_slot_is_always_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    cpu = Supervisor("http://127.0.0.1:9", plan_slots(detect_gpus()))
    assert not cpu.monitor.enabled
    assert cpu._availability(cpu.states["CPU"]) == Availability(True)


def test_the_worker_s_children_on_the_gpu_are_its_own(
    smi: StandInSmi, children: list[Child]
) -> None:
    smi.set_gpus([(0, 60000, 81559, 80)])
    worker = supervisor()
    first, second = worker.states.values()
    first.child, second.child = fake_child(children), fake_child(children)
    smi.set_apps([(first.child.pid, 0, 30000), (second.child.pid, 0, 29000)])
    assert worker._own_pids() == {first.child.pid, second.child.pid}
    assert worker._availability(first).available
    smi.set_apps([(first.child.pid, 0, 30000), (4242, 0, 29000)])
    worker.monitor = GpuMonitor()  # no reading kept from before
    verdict = worker._availability(first)
    assert not verdict.available
    assert verdict.reason == "GPU busy: another process (pid 4242, 29000 MiB) uses it"


def test_after_running_out_of_memory_a_slot_waits_for_the_gpu_to_free_up(
    smi: StandInSmi,
) -> None:
    smi.set_gpus([(0, 71559, 81559, 100)])  # 10000 MiB free
    worker = supervisor(min_free_mb=2048, oom_backoff=600)
    state = next(iter(worker.states.values()))
    state.oom = (10000.0, time.monotonic())  # the run had 10000 MiB when it was claimed
    verdict = worker._availability(state)
    assert (verdict.available, verdict.cause) == (False, "oom")
    assert verdict.reason == (
        "GPU busy: waiting for it to free up after a run ran out of memory; 10000 MiB free"
    )
    smi.set_gpus([(0, 68000, 81559, 100)])  # 13559 MiB: more than it had, by the margin
    worker.monitor = GpuMonitor()
    assert worker._availability(state).available
    assert state.oom is None


def test_after_running_out_of_memory_the_wait_ends_after_the_back_off(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 71559, 81559, 100)])
    worker = supervisor(oom_backoff=30)
    state = next(iter(worker.states.values()))
    state.oom = (10000.0, time.monotonic() - 31)
    assert worker._availability(state).available


def test_out_of_memory_outcomes() -> None:
    assert _out_of_memory({"status": "failed", "error": "out of memory on GPU 0 (...): x"})
    assert _out_of_memory({"status": "ended", "members": {}, "error": "out of memory: x"})
    assert not _out_of_memory({"status": "failed", "error": "ValueError: x"})
    assert not _out_of_memory({"status": "ended", "members": {}, "error": None})
    assert not _out_of_memory(None)


def test_a_trained_child_is_replaced_where_gpu_memory_is_short(
    smi: StandInSmi, children: list[Child]
) -> None:
    """In a container nvidia-smi lists no processes: a child that has trained may hold the
    memory that looks taken. It goes (its memory with it); an untrained one stays."""
    smi.set_gpus([(0, 80000, 81559, 0)])
    worker = supervisor(gpu_poll=0.01)
    state = next(iter(worker.states.values()))
    trained = fake_child(children)
    trained.jobs = 1
    state.child = trained
    verdict = worker._availability(state)
    assert verdict.cause == "memory"
    worker._wait_for_gpu(state, verdict)
    assert state.child is None and trained.process.poll() == 0
    assert (state.state, state.reason) == ("waiting", verdict.reason)
    fresh = fake_child(children)
    state.child = fresh
    worker._wait_for_gpu(state, worker._availability(state))
    assert state.child is fresh and fresh.alive


def test_the_report_reaches_the_server(smi: StandInSmi, live_server: str) -> None:
    smi.set_gpus([(0, 70213, 81559, 97)])
    worker = supervisor(live_server)
    first, second = worker.states.values()
    worker._set(first, "training", runs=[5, 6], pack_id=2)
    worker._set(second, "waiting", "GPU busy: 11346 MiB free of 81559 MiB (needs 20000 MiB)")
    assert worker._report_due.is_set()
    with contextlib.closing(WorkerClient(live_server)) as client:
        assert worker._report(client)
    (shown,) = httpx.get(f"{live_server}/api/workers").json()
    assert shown["id"] == "w-test" and shown["state"] == "live"
    assert shown["devices"] == [f"GPU 0: {H100} #1", f"GPU 0: {H100} #2"]
    training, waiting = shown["slots"]
    assert training["state"] == "training" and training["pack_id"] == 2
    assert [run["id"] for run in training["runs"]] == [5, 6]
    assert waiting["reason"] == "GPU busy: 11346 MiB free of 81559 MiB (needs 20000 MiB)"
    for slot in (training, waiting):
        assert slot["gpu"] == {
            "index": 0,
            "uuid": uuid(0),
            "name": H100,
            "memory_used_mb": 70213.0,
            "memory_total_mb": 81559.0,
            "utilization_percent": 97.0,
        }


def test_a_server_without_the_report_call_is_not_asked_again(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 500, 81559, 0)])
    worker = supervisor()
    answered = httpx.MockTransport(lambda request: httpx.Response(404, json={"detail": "no"}))
    with contextlib.closing(WorkerClient("http://old-server", transport=answered)) as client:
        assert worker._report(client) is False
