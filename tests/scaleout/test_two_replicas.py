"""Two `reglab serve` processes on one PostgreSQL database, as replicas behind a load
balancer: each sees every experiment, and a viewer of either gets the points that a
worker sent to the other (PostgreSQL LISTEN/NOTIFY, app/events.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from app.events import StreamEvent, notify_payloads
from reglab.client import ReglabClient, ServerEvent, WorkerClient
from tests.conftest import free_port, health, wait_for
from tests.factories import make_spec

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _serve(database_url: str, folder: Path, name: str) -> Replica:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REGLAB_DATABASE_URL": database_url,
        "REGLAB_DATA_DIR": str(folder / "data"),  # shared, as a volume would be
        "REGLAB_SERVER_URL": url,
        "REGLAB_LEASE_SECONDS": "600",  # no heartbeats here
        "PYTHONUNBUFFERED": "1",
    }
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reglab.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: process.poll() is not None or health(url), timeout=60)
    assert process.poll() is None, log.read_text(errors="replace")
    return Replica(url, process, log)


@pytest.fixture
def replicas(postgres_db: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    started = [_serve(postgres_db, tmp_path, "a"), _serve(postgres_db, tmp_path, "b")]
    yield started[0], started[1]
    codes = []
    for replica in started:
        replica.process.send_signal(signal.SIGINT)
    for replica in started:
        try:
            codes.append(replica.process.wait(15))
        except subprocess.TimeoutExpired:
            replica.process.kill()
            codes.append(None)
    for replica in started:
        assert "Traceback" not in replica.log_text(), replica.log_text()
    assert codes == [0, 0], [replica.log_text()[-3000:] for replica in started]


def _start_run(submit_on: str, claim_on: str) -> tuple[int, str]:
    with ReglabClient(submit_on) as client:
        submitted = client.submit(make_spec())
    claim = WorkerClient(claim_on).claim(
        worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=5
    )
    assert claim is not None and claim["experiment_id"] == submitted["id"]
    return claim["experiment_id"], claim["lease_token"]


def _follow(
    url: str, run_id: int, *, reconnect: bool = False, last_event_id: int | None = None
) -> tuple[threading.Thread, list[ServerEvent]]:
    """Follow a run's stream in a thread; returns once the stream is live (the replay of
    `queued` and `running` is in, or anything at all when resuming)."""
    received: list[ServerEvent] = []

    def follow() -> None:
        with ReglabClient(url) as client:
            received.extend(client.events(run_id, reconnect=reconnect, last_event_id=last_event_id))

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_for(lambda: len(received) >= (2 if last_event_id is None else 0))
    return reader, received


def _metric_epochs(events: list[ServerEvent]) -> list[int]:
    return [int(event.data["epoch"]) for event in events if event.kind == "metrics"]


def test_each_replica_lists_the_experiments_submitted_on_the_other(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    with ReglabClient(a.url) as on_a, ReglabClient(b.url) as on_b:
        from_a = on_a.submit(make_spec(name="from-a"))["id"]
        from_b = on_b.submit(make_spec(name="from-b"))["id"]
        for client in (on_a, on_b):
            listed = {item["id"]: item["name"] for item in client.list()["items"]}
            assert listed == {from_a: "from-a", from_b: "from-b"}
            assert client.get(from_b)["status"] == "queued"


def test_a_viewer_of_b_gets_every_epoch_uploaded_to_a_once_in_order(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    run_id, token = _start_run(submit_on=b.url, claim_on=a.url)
    reader_b, on_b = _follow(b.url, run_id)
    reader_a, on_a = _follow(a.url, run_id)  # the writer's own viewers: once each too
    worker = WorkerClient(a.url)
    worker.started(run_id, token, device="CPU")
    for epoch in range(30):
        worker.upload_metrics(
            run_id, token, [{"epoch": epoch, "values": {"loss": 1 / (epoch + 1)}}]
        )
        if epoch == 10:  # a resend after a lost answer is not a new point
            worker.upload_metrics(run_id, token, [{"epoch": epoch, "values": {"loss": 0.5}}])
    # Several epochs in one upload, as a worker that fell behind sends them; one of them
    # too large to travel in a notification (B reads it from the database by id).
    wide = {f"layer_{i}_kernel_l2_norm": i / 7 for i in range(200)}
    worker.upload_metrics(
        run_id,
        token,
        [
            {"epoch": epoch, "values": wide if epoch == 35 else {"loss": 0.01}}
            for epoch in range(30, 40)
        ],
    )
    worker.finish(run_id, token, status="succeeded")
    reader_b.join(30)
    reader_a.join(30)
    assert not reader_b.is_alive() and not reader_a.is_alive()
    for received in (on_b, on_a):
        assert _metric_epochs(received) == list(range(40))
        assert received[-1].kind == "status" and received[-1].data["status"] == "succeeded"
        ids = [event.id for event in received]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [(event.id, event.data) for event in on_b] == [(event.id, event.data) for event in on_a]
    assert [event.data["values"] for event in on_b if event.data.get("epoch") == 35] == [wide]
    with ReglabClient(b.url) as client:  # and exactly what either replica replays
        assert [event.id for event in client.events(run_id, reconnect=False)] == [
            event.id for event in on_b
        ]


def test_resuming_on_b_with_last_event_id_continues_without_gaps_or_repeats(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    run_id, token = _start_run(submit_on=a.url, claim_on=a.url)
    worker = WorkerClient(a.url)
    for epoch in range(5):
        worker.upload_metrics(run_id, token, [{"epoch": epoch, "values": {"loss": 1.0}}])
    with ReglabClient(b.url) as client:
        first = []
        for event in client.events(run_id, reconnect=False):
            first.append(event)
            if event.kind == "metrics" and event.data["epoch"] == 4:
                break  # the viewer goes away
    # While nobody watches, more epochs arrive on A; the viewer comes back to B, live.
    for epoch in range(5, 8):
        worker.upload_metrics(run_id, token, [{"epoch": epoch, "values": {"loss": 1.0}}])
    assert first[-1].id is not None
    reader, resumed = _follow(b.url, run_id, last_event_id=first[-1].id)
    wait_for(lambda: len(_metric_epochs(resumed)) >= 3)
    for epoch in range(8, 12):
        worker.upload_metrics(run_id, token, [{"epoch": epoch, "values": {"loss": 1.0}}])
    worker.finish(run_id, token, status="succeeded")
    reader.join(30)
    assert not reader.is_alive()
    assert _metric_epochs(first) + _metric_epochs(resumed) == list(range(12))
    with ReglabClient(a.url) as client:
        everything = [event.id for event in client.events(run_id, reconnect=False)]
    assert [event.id for event in first + resumed] == everything


def test_a_viewer_resumes_after_the_listen_connection_drops(
    replicas: tuple[Replica, Replica], postgres_db: str
) -> None:
    """Whatever was sent while a replica could not listen reaches its viewers: the relay
    reconnects, ends the open streams, and their clients resume with Last-Event-ID."""
    a, b = replicas
    run_id, token = _start_run(submit_on=a.url, claim_on=a.url)
    reader, received = _follow(b.url, run_id, reconnect=True)
    worker = WorkerClient(a.url)
    worker.upload_metrics(run_id, token, [{"epoch": 0, "values": {"loss": 1.0}}])
    wait_for(lambda: _metric_epochs(received) == [0])
    with psycopg.connect(postgres_db, autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'reglab-events' AND datname = current_database()"
        ).fetchall()
    assert len(dropped) == 2  # one listener per replica
    for epoch in range(1, 10):
        worker.upload_metrics(run_id, token, [{"epoch": epoch, "values": {"loss": 1.0}}])
    worker.finish(run_id, token, status="succeeded")
    reader.join(30)
    assert not reader.is_alive()
    assert _metric_epochs(received) == list(range(10))
    assert received[-1].data["status"] == "succeeded"
    wait_for(lambda: "listening again" in b.log_text(), timeout=10)


def test_a_claimer_waiting_on_b_is_woken_by_a_run_submitted_on_a(
    replicas: tuple[Replica, Replica],
) -> None:
    """The wait is shorter than the claim route's 5 s polling fallback, so only the
    wake-up that the submission's notification brings to B can hand it the run."""
    a, b = replicas
    claimed: list[dict[str, object] | None] = []
    waiter = threading.Thread(
        target=lambda: claimed.append(
            WorkerClient(b.url).claim(worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=3)
        )
    )
    waiter.start()
    with ReglabClient(a.url) as client:
        # Its first look found the queue empty (the look registers the worker): it waits.
        wait_for(lambda: any(item["id"] == "w" for item in client.workers()))
        run_id = client.submit(make_spec())["id"]
    waiter.join(30)
    assert claimed and claimed[0] is not None and claimed[0]["experiment_id"] == run_id


def test_notify_payloads_fit_postgresql_limit_and_carry_every_event_in_order() -> None:
    """Small events travel whole, large ones by id; every payload is under 8000 bytes."""
    big = {"epoch": 0, "values": {f"layer_{i}_kernel_l2_norm": 1 / 3 for i in range(300)}}
    events = [
        StreamEvent(10**12 + i, 7, "metrics", big if i % 100 == 5 else {"epoch": i, "n": "é"})
        for i in range(1234)
    ]
    events.append(StreamEvent(5, 8, "status", {"status": "queued"}))
    payloads = list(notify_payloads("0123456789abcdef", events))
    assert all(len(payload.encode()) < 8000 for payload in payloads)
    assert len(payloads) > 2  # more than fits in one, per experiment
    decoded = [json.loads(payload) for payload in payloads]
    carried: list[tuple[int, object]] = []
    for message in decoded:
        if message["e"] == 7:
            carried.extend((event_id, data) for event_id, _, data in message["d"])
            carried.extend((event_id, None) for event_id in message["i"])
    by_id = {event.id: event for event in events}
    assert sorted(event_id for event_id, _ in carried) == [event.id for event in events[:-1]]
    for event_id, data in carried:
        assert data == (None if by_id[event_id].data is big else by_id[event_id].data)
    assert [message["q"] for message in decoded] == [0] * (len(decoded) - 1) + [1]
