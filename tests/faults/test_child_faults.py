"""A training child that dies (SIGKILL) or runs out of memory ends its run only: the
server requeues a run whose child died while it has attempts left, fails it after the
last, and the worker's slot goes on."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import pytest

from tests.conftest import wait_for
from tests.factories import make_spec
from tests.faults.conftest import Lab, WorkerProcess, alive

pytestmark = pytest.mark.e2e
# The worker's address space is capped like a device's memory: a tiny run's child peaks
# near 2 GiB of it, a within-bounds model of 20 Dense layers of 4096 units does not fit.
MEMORY_LIMIT_MB = 3072


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.open(tmp_path_factory.mktemp("child-faults"), max_attempts=2) as lab:
        yield lab


@pytest.fixture(scope="module")
def worker(lab: Lab) -> WorkerProcess:
    return lab.start_worker("worker", memory_limit_mb=MEMORY_LIMIT_MB)


def started(worker: WorkerProcess, run_id: int, pid: int) -> bool:
    """The supervisor has seen this child start training the run."""
    found = re.search(rf"started experiment {run_id} \(.*?\) on .* \(pid {pid}\)", worker.log())
    return found is not None


def test_a_run_whose_child_is_killed_every_time_is_retried_then_failed(
    lab: Lab, worker: WorkerProcess
) -> None:
    run_id = lab.submit(make_spec(name="killed-twice", training={"epochs": 1000}))
    next_id = lab.submit(make_spec(name="next-in-the-slot"))

    first = worker.wait_child_pid(run_id, 1)
    lab.wait_epochs(run_id, 1)
    os.kill(first, signal.SIGKILL)  # mid-training, between two epoch uploads
    # The server requeues it (attempt 1 of 2) and the slot claims it with a fresh child.
    second = worker.wait_child_pid(run_id, 2)
    assert second != first and not alive(first)
    wait_for(lambda: started(worker, run_id, second), timeout=60)
    os.kill(second, signal.SIGKILL)

    run = lab.wait_status(run_id, "failed", timeout=30)
    assert run["attempt"] == 2
    assert run["error"] == "training process died (killed by SIGKILL)"
    statuses = lab.statuses(run_id)
    requeues = [s for s in statuses[1:] if s["status"] == "queued"]
    assert len(requeues) == 1
    assert requeues[0]["error"] == "training process died (killed by SIGKILL)"
    assert requeues[0]["attempt"] == 1
    assert max(s["attempt"] for s in statuses) == 2  # never a third try

    # The slot goes on with the next run, and the failed one is not picked up again.
    assert lab.wait_status(next_id, "succeeded", timeout=90)["attempt"] == 1
    assert worker.child_pid(run_id, 3) is None
    assert lab.get(run_id)["status"] == "failed"
    assert worker.process.poll() is None


def test_an_out_of_memory_run_fails_with_its_message_and_the_worker_goes_on(
    lab: Lab, worker: WorkerProcess
) -> None:
    too_big = make_spec(
        name="too-big",
        model={"layers": [{"type": "dense", "units": 4096}] * 20},
        training={"epochs": 1},
    )
    big_id = lab.submit(too_big)
    next_id = lab.submit(make_spec(name="fits"))

    run = lab.wait_status(big_id, "failed", "succeeded", timeout=120)
    assert run["status"] == "failed", lab.tail()
    assert run["error"].startswith("out of memory: ResourceExhaustedError"), run["error"]
    assert "OOM when allocating tensor" in run["error"]
    assert run["attempt"] == 1  # the run's own failure: not retried
    assert lab.wait_status(next_id, "succeeded", timeout=90)["status"] == "succeeded"
    assert worker.process.poll() is None
