"""A training child killed mid-run (SIGKILL): its run, or its pack as a pack, is retried,
and every run's event replay and /metrics agree point for point, each epoch once; a warm
child trains one run after another without importing TensorFlow again."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.factories import make_spec
from tests.faults.conftest import Lab, WorkerProcess, alive

pytestmark = pytest.mark.e2e
L2 = "model.layers[*].regularizer.l2"
EPOCHS = 40


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.open(tmp_path_factory.mktemp("pack-faults"), max_attempts=2) as lab:
        yield lab


@pytest.fixture(scope="module")
def worker(lab: Lab) -> WorkerProcess:
    return lab.start_worker("worker")


def pack_child(worker: WorkerProcess, pack_id: int, attempt: int) -> int | None:
    found = re.search(
        rf"claimed pack {pack_id} \(.*?\), attempt {attempt}, slot \S+, child pid (\d+)",
        worker.log(),
    )
    return int(found.group(1)) if found else None


def assert_replay_matches_metrics(lab: Lab, run_id: int, epochs: int) -> None:
    """The stream replays the final attempt's epochs once each, as /metrics has them."""
    replayed = [event.data for event in lab.events(run_id) if event.kind == "metrics"]
    assert [point["epoch"] for point in replayed] == list(range(epochs))
    series = httpx.get(f"{lab.url}/api/experiments/{run_id}/metrics", timeout=30).json()
    assert series["epochs"] == list(range(epochs))
    for point in replayed:
        for name, value in point["values"].items():
            assert series["series"][name][point["epoch"]] == value, (name, point["epoch"])


def tiny(name: str, **training: Any) -> dict[str, Any]:
    return make_spec(name=name, training={"epochs": EPOCHS, "histogram_every": 0, **training})


def test_a_killed_run_is_retried_and_its_replay_equals_its_metrics(
    lab: Lab, worker: WorkerProcess
) -> None:
    run_id = lab.submit(tiny("killed once"))
    first = worker.wait_child_pid(run_id, 1)
    lab.wait_epochs(run_id, 3)
    os.kill(first, signal.SIGKILL)  # mid-training
    second = worker.wait_child_pid(run_id, 2)
    assert second != first and not alive(first)
    run = lab.wait_status(run_id, "succeeded", "failed", timeout=120)
    assert run["status"] == "succeeded" and run["attempt"] == 2, lab.tail()
    assert_replay_matches_metrics(lab, run_id, EPOCHS)


def test_a_killed_pack_is_retried_as_a_pack_with_every_member_s_points_once(
    lab: Lab, worker: WorkerProcess
) -> None:
    body = {
        "name": "killed pack",
        "base": tiny("pack"),
        "axes": [{"path": L2, "values": [0, 1e-3, 1e-1]}],
    }
    created = httpx.post(f"{lab.url}/api/sweeps", json=body, timeout=30)
    assert created.status_code == 201, created.text
    runs = created.json()["runs"]
    ids, pack_id = [run["id"] for run in runs], runs[0]["pack_id"]
    assert pack_id is not None and {run["pack_id"] for run in runs} == {pack_id}

    wait_for(lambda: pack_child(worker, pack_id, 1) is not None, timeout=60)
    first = pack_child(worker, pack_id, 1)
    assert first is not None
    lab.wait_epochs(ids[0], 3)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: pack_child(worker, pack_id, 2) is not None, timeout=60)
    for run_id in ids:
        run = lab.wait_status(run_id, "succeeded", "failed", timeout=120)
        assert run["status"] == "succeeded" and run["attempt"] == 2, lab.tail()
        assert run["pack"]["id"] == pack_id
        requeued = [s for s in lab.statuses(run_id) if s["status"] == "queued"][1:]
        assert [s["error"] for s in requeued] == ["training process died (killed by SIGKILL)"]
        assert_replay_matches_metrics(lab, run_id, EPOCHS)


def test_a_warm_child_trains_the_next_run_without_a_new_import(
    lab: Lab, worker: WorkerProcess
) -> None:
    """Two runs one after the other on one slot: the same child takes both (no second
    TensorFlow import; how much sooner it starts, bench/sweep_throughput.py measures)."""
    first = lab.submit(tiny("first", epochs=2))
    second = lab.submit(tiny("second", epochs=2))
    for run_id in (first, second):
        assert lab.wait_status(run_id, "succeeded", "failed", timeout=120)["status"] == "succeeded"
    assert worker.child_pid(first, 1) == worker.child_pid(second, 1)
    log = worker.log()
    job = re.search(rf"claimed experiment {second} \(.*?\), .*\(job (\d+)\)", log)
    assert job is not None and int(job.group(1)) >= 2
