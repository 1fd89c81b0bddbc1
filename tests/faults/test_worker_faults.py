"""Worker supervisors killed, paused past their lease, stopped with SIGTERM: their runs
go back to the queue (or stay cancelled) and another worker finishes them; a worker
that comes back after its lease was taken over is fenced off."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.factories import make_spec
from tests.faults.conftest import Lab, WorkerProcess, alive, stopped

pytestmark = pytest.mark.e2e
LEASE, SWEEP = 3.0, 0.5
Workers = dict[str, WorkerProcess]  # the workers started so far, by name


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab.open(tmp_path, lease_seconds=LEASE, sweep_seconds=SWEEP, max_attempts=2) as lab:
        yield lab


def each_epoch_once(lab: Lab, run_id: int, epochs: int) -> list[dict[str, Any]]:
    """Replay the finished run's events; every epoch is there exactly once."""
    metrics = [event.data for event in lab.events(run_id) if event.kind == "metrics"]
    assert Counter(point["epoch"] for point in metrics) == dict.fromkeys(range(epochs), 1)
    with lab.client() as client:
        assert client.metrics(run_id)["epochs"] == list(range(epochs))
    return metrics


def a_killed_supervisor_s_run_is_requeued_and_another_worker_takes_it(
    lab: Lab, workers: Workers
) -> None:
    first = workers["first"] = lab.start_worker("first")
    run_id = lab.submit(make_spec(name="orphaned", training={"epochs": 20}))
    child = first.wait_child_pid(run_id, 1)
    lab.wait_epochs(run_id, 1)
    workers["second"] = lab.start_worker("second")  # warms up while the lease runs out

    killed_at = time.time()
    first.signal(signal.SIGKILL)
    first.process.wait(10)
    # The orphaned child notices at once, well before its lease (still valid) runs out.
    wait_for(lambda: not alive(child), timeout=LEASE - 0.5)
    assert "the worker supervisor" in first.log() and "is gone: stopping" in first.log()

    # The sweeper requeues it within a lease and a sweep of the last heartbeat.
    def requeued() -> list[dict[str, Any]]:
        return [s for s in lab.statuses(run_id)[1:] if s["status"] == "queued"]

    wait_for(requeued, timeout=LEASE + SWEEP + 5)
    (requeue,) = requeued()
    assert requeue["at"] - killed_at <= LEASE + SWEEP + 2.0  # 2 s for a loaded machine
    assert requeue["error"] == "worker lost: its lease expired without a heartbeat"

    run = lab.wait_status(run_id, "succeeded", timeout=90)
    assert run["attempt"] == 2
    assert run["worker_id"] == workers["second"].worker_id
    each_epoch_once(lab, run_id, 20)


def a_worker_paused_past_its_lease_is_fenced_off(lab: Lab, workers: Workers) -> None:
    paused = workers["second"]
    run_id = lab.submit(make_spec(name="paused", training={"epochs": 30}))
    child = paused.wait_child_pid(run_id, 1)
    lab.wait_epochs(run_id, 1)
    # The whole worker freezes (supervisor and child), as a host that stalls would.
    paused.signal(signal.SIGSTOP, with_children=True)
    wait_for(lambda: stopped(paused.pid) and stopped(child), timeout=5)
    third = workers["third"] = lab.start_worker("third")
    lab.expire_lease(run_id)  # paused past its lease, without waiting the lease out

    wait_for(lambda: lab.get(run_id)["attempt"] == 2, timeout=30)
    run = lab.wait_status(run_id, "running")
    assert run["worker_id"] == third.worker_id
    new_token, _ = lab.lease(run_id)
    stored_by_the_paused_worker = run["epochs_done"]

    paused.signal(signal.SIGCONT, with_children=True)
    # Its next heartbeat gets 409: the supervisor stops the child and goes on.
    fenced = re.compile(rf"stopped experiment {run_id} \(.*?\): lease lost")
    wait_for(lambda: fenced.search(paused.log()) is not None, timeout=10)
    wait_for(lambda: not alive(child), timeout=10)
    next_id = lab.submit(make_spec(name="after-the-pause"))  # `third` is busy: `paused` takes it
    assert lab.wait_status(next_id, "succeeded", timeout=60)["worker_id"] == paused.worker_id

    run = lab.wait_status(run_id, "succeeded", timeout=90)
    assert (run["attempt"], run["worker_id"]) == (2, third.worker_id)
    assert lab.lease(run_id)[0] == new_token  # the new holder's finish, nobody else's
    points = each_epoch_once(lab, run_id, 30)
    # Every epoch that the paused worker had not stored before its pause is the new
    # holder's: it ended after the new holder's child started (the resumed child's
    # epochs, had they been let in, ended before that: the new child was still warming).
    new_child_started = next(
        s["at"] for s in lab.statuses(run_id) if s["attempt"] == 2 and s["device"] is not None
    )
    late = [point for point in points if point["epoch"] >= stored_by_the_paused_worker]
    assert late and all(point["time"] >= new_child_started for point in late)
    server_log = (lab.folder / "server.log").read_text()
    assert f'POST /api/worker/experiments/{run_id}/heartbeat HTTP/1.1" 409' in server_log


def sigterm_hands_a_worker_s_run_back_and_another_finishes_it(lab: Lab, workers: Workers) -> None:
    idle = [workers["second"], workers["third"]]
    run_id = lab.submit(make_spec(name="handed-back", training={"epochs": 20}))
    wait_for(lambda: lab.get(run_id)["worker_id"] is not None, timeout=30)
    holder = next(w for w in idle if w.worker_id == lab.get(run_id)["worker_id"])
    other = next(w for w in idle if w is not holder)
    child = holder.wait_child_pid(run_id, 1)
    lab.wait_epochs(run_id, 1)

    holder.signal(signal.SIGTERM)
    assert holder.process.wait(15) == 0, lab.tail()
    assert not alive(child)
    statuses = lab.statuses(run_id)
    assert statuses[-1]["status"] in ("queued", "running")
    handed_back = [s for s in statuses[1:] if s["status"] == "queued"]
    assert len(handed_back) == 1 and handed_back[0]["attempt"] == 0  # not a failed attempt
    assert "failed" not in [s["status"] for s in statuses]

    run = lab.wait_status(run_id, "succeeded", timeout=90)
    assert (run["attempt"], run["worker_id"]) == (1, other.worker_id)
    each_epoch_once(lab, run_id, 20)
    workers["survivor"] = other


def a_run_whose_worker_was_killed_can_be_cancelled_and_stays_so(lab: Lab, workers: Workers) -> None:
    doomed = workers["survivor"]
    run_id = lab.submit(make_spec(name="cancelled-orphan", training={"epochs": 1000}))
    child = doomed.wait_child_pid(run_id, 1)
    lab.wait_epochs(run_id, 1)
    doomed.signal(signal.SIGKILL)
    doomed.process.wait(10)
    with lab.client() as client:
        assert client.cancel(run_id)["status"] == "cancelled"
    wait_for(lambda: not alive(child), timeout=5)

    # A new worker finds only the later run: the cancelled one is never reclaimed, by the
    # sweeper (its lease ended with the cancel) or by a claim.
    last = lab.start_worker("last")
    later = lab.submit(make_spec(name="later"))
    assert lab.wait_status(later, "succeeded", timeout=90)["worker_id"] == last.worker_id
    run = lab.get(run_id)
    assert (run["status"], run["attempt"]) == ("cancelled", 1)
    assert lab.lease(run_id)[1] is None
    assert [s["status"] for s in lab.statuses(run_id)][-1] == "cancelled"


@pytest.mark.timeout(600)  # four faults, each waiting out leases and new workers
def test_workers_killed_paused_and_stopped_hand_their_runs_on(lab: Lab) -> None:
    """One lab, four faults in turn, each handing its workers on to the next (which
    workers are alive and idle is part of each step's setting)."""
    workers: Workers = {}
    a_killed_supervisor_s_run_is_requeued_and_another_worker_takes_it(lab, workers)
    a_worker_paused_past_its_lease_is_fenced_off(lab, workers)
    sigterm_hands_a_worker_s_run_back_and_another_finishes_it(lab, workers)
    a_run_whose_worker_was_killed_can_be_cancelled_and_stays_so(lab, workers)
