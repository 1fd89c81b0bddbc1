"""A retried run's event replay and its /metrics agree point for point.

The training child is killed (SIGKILL) mid-run; the server requeues the run and a fresh
child trains it again from epoch 0. The retry's values overwrite the metric rows, and
the stream replays the retry's epochs only (the first attempt's stay stored, keyed by
their attempt), so a page drawn from the replay shows what /metrics and the CSV say.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest

from tests.factories import make_spec
from tests.faults.conftest import Lab, WorkerProcess

pytestmark = pytest.mark.e2e
EPOCHS = 30


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.open(tmp_path_factory.mktemp("retry-replay"), max_attempts=2) as lab:
        yield lab


@pytest.fixture(scope="module")
def worker(lab: Lab) -> WorkerProcess:
    return lab.start_worker("worker")


def stored_epoch_events(lab: Lab, run_id: int, attempt: int) -> dict[int, dict[str, object]]:
    """The metrics events of one attempt as the database holds them, by event id."""
    rows = lab.sql(
        "SELECT id, data FROM event WHERE experiment_id = ? AND kind = 'metrics' "
        "AND attempt = ? ORDER BY id",
        run_id,
        attempt,
    )
    return {int(event_id): json.loads(data) for event_id, data in rows}


def test_a_killed_and_retried_run_replays_what_its_metrics_read(
    lab: Lab, worker: WorkerProcess
) -> None:
    run_id = lab.submit(make_spec(name="killed-then-retried", training={"epochs": EPOCHS}))
    first = worker.wait_child_pid(run_id, 1)
    lab.wait_epochs(run_id, 3)
    os.kill(first, signal.SIGKILL)  # mid-training: epochs stored, the run not done
    worker.wait_child_pid(run_id, 2)
    run = lab.wait_status(run_id, "succeeded", "failed", timeout=180)
    assert (run["status"], run["attempt"]) == ("succeeded", 2), lab.tail()

    first_attempt = stored_epoch_events(lab, run_id, 1)
    last_attempt = stored_epoch_events(lab, run_id, 2)
    assert 3 <= len(first_attempt) < EPOCHS  # killed mid-run, its events kept
    assert len(last_attempt) == EPOCHS

    replay = [event for event in lab.events(run_id) if event.kind == "metrics"]
    with lab.client() as client:
        stored = client.metrics(run_id)
    # The replay is the last attempt's events, in epoch order, each epoch once...
    assert [event.id for event in replay] == sorted(last_attempt)
    assert [event.data["epoch"] for event in replay] == stored["epochs"] == list(range(EPOCHS))
    # ...and every value of every epoch is the one /metrics reads.
    for name, column in stored["series"].items():
        assert [event.data["values"].get(name) for event in replay] == column, name
    assert run["epochs_done"] == EPOCHS
    # The first attempt's points differ from the retry's (their timings at least): a
    # replay of them would have disagreed with /metrics.
    first_by_epoch = {data["epoch"]: data["values"] for data in first_attempt.values()}
    retried = {event.data["epoch"]: event.data["values"] for event in replay}
    assert any(first_by_epoch[epoch] != retried[epoch] for epoch in first_by_epoch)
