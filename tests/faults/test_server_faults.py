"""The server stopped with SIGTERM while a run trains and viewers follow it, then started
again on the same port and database ten seconds later: the streams ended cleanly, the
worker trained on, and every epoch reached the database exactly once."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from reglab.client import parse_sse
from tests.conftest import wait_for
from tests.factories import make_spec
from tests.faults.conftest import Lab, WorkerProcess, alive

pytestmark = pytest.mark.e2e
# Heartbeats far apart within the lease (which runs out during the outage), and frequent
# sweeps: a server that swept right after its restart would requeue the run before its
# worker's next heartbeat.
LEASE, HEARTBEAT, SWEEP = 8.0, 4.0, 0.25
OUTAGE = 10.0
EPOCHS = 24
SLOW = make_spec(
    name="through-an-outage",
    dataset={"name": "moons", "n_samples": 2000},  # ~0.5 s an epoch on 2 cores
    training={"epochs": EPOCHS, "batch_size": 8},
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.open(
        tmp_path_factory.mktemp("server-faults"),
        lease_seconds=LEASE,
        heartbeat_seconds=HEARTBEAT,
        sweep_seconds=SWEEP,
    ) as lab:
        yield lab


@pytest.fixture(scope="module")
def worker(lab: Lab) -> WorkerProcess:
    return lab.start_worker("worker")


class Viewer(threading.Thread):
    """Follows a run's event stream with plain httpx until the server ends it."""

    def __init__(self, url: str, run_id: int) -> None:
        super().__init__(daemon=True)
        self.url, self.run_id = url, run_id
        self.opened = threading.Event()
        self.ids: list[int] = []
        self.error: BaseException | None = None
        self.ended = False

    def run(self) -> None:
        try:
            with httpx.stream(
                "GET",
                f"{self.url}/api/experiments/{self.run_id}/events",
                timeout=httpx.Timeout(10.0, read=60.0),
            ) as response:
                assert response.status_code == 200
                for event in parse_sse(response.iter_lines()):
                    self.ids.append(event.id or 0)
                    self.opened.set()
            self.ended = True
        except BaseException as error:
            self.error = error
        finally:
            self.opened.set()


def test_a_run_trains_through_a_server_outage_and_every_epoch_arrives_once(
    lab: Lab, worker: WorkerProcess
) -> None:
    run_id = lab.submit(SLOW)
    child = worker.wait_child_pid(run_id, 1)
    lab.wait_epochs(run_id, 2, timeout=60)

    viewers = [Viewer(lab.url, run_id) for _ in range(10)]
    for viewer in viewers:
        viewer.start()
    for viewer in viewers:
        assert viewer.opened.wait(10)

    # SIGTERM with ten streams open: it stops within a few seconds, each stream ends
    # with a proper last chunk, and nothing that was stored is lost.
    assert lab.stop_server(signal.SIGTERM) < 5
    down_since, down_at = time.monotonic(), time.time()
    for viewer in viewers:
        viewer.join(5)
        assert viewer.ended and viewer.error is None, repr(viewer.error)
    stored_events = {id_ for (id_,) in lab.sql("SELECT id FROM event")}
    stored_metrics = set(lab.sql("SELECT experiment_id, epoch, name, value FROM metric"))
    assert {id_ for viewer in viewers for id_ in viewer.ids} <= stored_events
    epochs_before = lab.sql("SELECT DISTINCT epoch FROM metric WHERE experiment_id = ?", run_id)
    assert len(epochs_before) < EPOCHS, "the run ended before the outage began"

    # The worker trains on: its heartbeats fail, which must not stop the child.
    failed = re.compile(rf"heartbeat for experiment {run_id} \(.*?\) failed")
    wait_for(lambda: failed.search(worker.log()) is not None, timeout=HEARTBEAT + 5)
    time.sleep(max(OUTAGE - (time.monotonic() - down_since), 0))  # the outage itself
    assert alive(child)
    # Start again just after a failed heartbeat, so that the next one is a whole
    # interval away: the lease has run out, and the worker has not yet been heard from.
    failures = len(failed.findall(worker.log()))
    wait_for(lambda: len(failed.findall(worker.log())) > failures, timeout=HEARTBEAT + 5)
    up_at = time.time()
    lab.start_server()

    events = lab.events(run_id)  # replays from the start and follows to the end
    run = lab.get(run_id)
    assert run["status"] == "succeeded", lab.tail()
    # Its lease ran out while the server was down, yet the worker was alive: the
    # restarted server let it renew the lease instead of requeueing the run.
    assert run["attempt"] == 1
    assert [e.data["status"] for e in events if e.kind == "status"].count("queued") == 1
    points = [e.data for e in events if e.kind == "metrics"]
    assert Counter(point["epoch"] for point in points) == dict.fromkeys(range(EPOCHS), 1)
    assert sorted(point["epoch"] for point in points) == list(range(EPOCHS))
    trained_while_down = [p for p in points if down_at < p["time"] < up_at]
    assert trained_while_down, "no epoch ended while the server was down"
    assert stored_events <= {id_ for (id_,) in lab.sql("SELECT id FROM event")}
    assert stored_metrics <= set(lab.sql("SELECT experiment_id, epoch, name, value FROM metric"))
    assert run["has_model"]
    assert worker.process.poll() is None
