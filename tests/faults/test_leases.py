"""Leases on a real server with 2-second leases: a token that was taken over is fenced
off, a run that keeps heartbeating is never reclaimed, and cancelled runs stay so."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator

import pytest

from reglab.client import LeaseLostError, ReglabError, WorkerClient
from tests.conftest import wait_for
from tests.factories import make_spec
from tests.faults.conftest import Lab, WorkerProcess, alive

pytestmark = pytest.mark.e2e
LEASE = 2.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.open(tmp_path_factory.mktemp("leases"), lease_seconds=LEASE, max_attempts=2) as lab:
        yield lab


@pytest.fixture(scope="module")
def worker(lab: Lab) -> WorkerProcess:
    return lab.start_worker("worker")


def test_a_taken_over_token_gets_409_and_changes_nothing(lab: Lab) -> None:
    run_id = lab.submit(make_spec(name="taken-over"))
    old, new = WorkerClient(lab.url), WorkerClient(lab.url)
    claim = {"host": "test", "devices": ["CPU"], "slot": "CPU", "wait": 5}
    first = old.claim(worker_id="old", **claim)
    assert first is not None and first["experiment_id"] == run_id
    old_token = first["lease_token"]
    old.started(run_id, old_token, "CPU (old)")
    old.upload_metrics(run_id, old_token, [{"epoch": 0, "values": {"loss": 1.0}}])

    # The old holder goes quiet past its lease; the sweeper requeues, another claims.
    lab.expire_lease(run_id)
    lab.wait_status(run_id, "queued", timeout=LEASE + 5)
    second = new.claim(worker_id="new", **claim)
    assert second is not None and second["experiment_id"] == run_id
    assert second["attempt"] == 2
    new_token = second["lease_token"]

    def snapshot() -> tuple[object, ...]:
        return (
            lab.get(run_id),
            lab.lease(run_id),
            lab.sql("SELECT epoch, name, value FROM metric WHERE experiment_id = ?", run_id),
            lab.sql("SELECT id, kind, data FROM event WHERE experiment_id = ?", run_id),
        )

    before = snapshot()
    calls = {
        "heartbeat": lambda: old.heartbeat(run_id, old_token),
        "started": lambda: old.started(run_id, old_token, "CPU (old)"),
        "metrics": lambda: old.upload_metrics(
            run_id,
            old_token,
            [{"epoch": 0, "values": {"loss": 99.0}}, {"epoch": 1, "values": {"loss": 98.0}}],
        ),
        "model": lambda: old.upload_model(run_id, old_token, b"not the new holder's model"),
        "finish": lambda: old.finish(run_id, old_token, status="succeeded"),
        "fail": lambda: old.finish(run_id, old_token, status="failed", error="x", retryable=True),
        "release": lambda: old.release(run_id, old_token),
    }
    for name, call in calls.items():
        with pytest.raises(LeaseLostError) as lost:
            call()
        assert lost.value.status_code == 409, name
    assert snapshot() == before
    assert lab.get(run_id)["worker_id"] == "new"
    artifacts = lab.folder / "data" / "artifacts"
    assert not any(path.is_file() for path in artifacts.rglob("*"))

    # The new holder is untouched by all that. Only a failure can be retryable.
    assert new.heartbeat(run_id, new_token)["cancel"] is False
    with pytest.raises(ReglabError) as refused:
        new.finish(run_id, new_token, status="succeeded", retryable=True)
    assert refused.value.status_code == 422
    new.finish(run_id, new_token, status="succeeded")
    assert lab.get(run_id)["status"] == "succeeded"
    old.close()
    new.close()


def test_a_cancelled_queued_run_is_never_claimed(lab: Lab, worker: WorkerProcess) -> None:
    with lab.client() as client:
        queued = lab.submit(make_spec(name="cancelled-while-queued"))
        assert client.cancel(queued)["status"] == "cancelled"
        # Claims go oldest first: once a later run has trained, the cancelled one was
        # passed over, not merely not reached yet.
        later = lab.submit(make_spec(name="after-the-cancelled-one"))
        lab.wait_status(later, "succeeded", timeout=90)
        run = client.get(queued)
    assert run["status"] == "cancelled"
    assert run["attempt"] == 0 and run["worker_id"] is None
    assert f"claimed experiment {queued} " not in worker.log()


def test_a_heartbeating_run_is_never_reclaimed_and_cancel_stops_it(
    lab: Lab, worker: WorkerProcess
) -> None:
    run_id = lab.submit(make_spec(name="long", training={"epochs": 1000}))
    child = worker.wait_child_pid(run_id, 1)
    lab.wait_epochs(run_id, 1, timeout=60)
    token, _ = lab.lease(run_id)
    epochs_before = lab.get(run_id)["epochs_done"]

    # Watch it for more than three leases: every look finds the same attempt and token,
    # and a lease end that keeps moving (heartbeats renew it).
    lease_ends = set()
    watched_from = time.monotonic()
    while time.monotonic() - watched_from < 3.5 * LEASE:
        run = lab.get(run_id)
        held_by, lease_end = lab.lease(run_id)
        assert (run["status"], run["attempt"], held_by) == ("running", 1, token), lab.tail()
        lease_ends.add(lease_end)
        time.sleep(0.25)
    assert len(lease_ends) >= 6
    assert lab.get(run_id)["epochs_done"] > epochs_before
    assert [s["status"] for s in lab.statuses(run_id)].count("queued") == 1

    # Cancel: the worker hears it at its next heartbeat and stops the child.
    cancelled_at = time.monotonic()
    with lab.client() as client:
        assert client.cancel(run_id)["status"] == "cancelled"
    wait_for(lambda: not alive(child), timeout=10)
    assert time.monotonic() - cancelled_at < 5
    stopped = re.compile(rf"stopped experiment {run_id} \(.*?\): cancelled")
    wait_for(lambda: stopped.search(worker.log()) is not None, timeout=5)

    # Nothing reclaims it, and the slot goes on with the next run.
    after = lab.submit(make_spec(name="after-cancel"))
    lab.wait_status(after, "succeeded", timeout=90)
    run = lab.get(run_id)
    assert run["status"] == "cancelled" and run["attempt"] == 1
    assert worker.process.poll() is None
    worker.signal(signal.SIGINT)
    assert worker.process.wait(30) == 0
