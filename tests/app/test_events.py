"""The event stream against a real uvicorn server: live delivery, replay, resume."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from app.client import ReglabClient, ServerEvent, WorkerClient
from app.db import session_scope
from app.models import FINAL_STATUSES, Status
from app.services import experiments
from tests.conftest import run_async, wait_for
from tests.factories import make_spec


def start_run(url: str) -> tuple[int, str]:
    with ReglabClient(url) as client:
        client.submit(make_spec())
    claim = WorkerClient(url).claim(worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=0)
    assert claim is not None
    return claim["experiment_id"], claim["lease_token"]


def finish_run(url: str, run_id: int, token: str, epochs: int) -> None:
    worker = WorkerClient(url)
    for epoch in range(epochs):
        worker.upload_metrics(
            run_id, token, [{"epoch": epoch, "values": {"loss": 1.0 / (epoch + 1)}}]
        )
    worker.finish(run_id, token, status="succeeded")


def follow_live(url: str, run_id: int) -> tuple[threading.Thread, list[ServerEvent]]:
    """Follow a run's stream in a thread; returns once the replay (queued, running) is in
    and the stream is live."""
    received: list[ServerEvent] = []

    def follow() -> None:
        with ReglabClient(url) as client:
            received.extend(client.events(run_id, reconnect=False))

    reader = threading.Thread(target=follow)
    reader.start()
    wait_for(lambda: len(received) >= 2)
    return reader, received


def test_a_finished_run_replays_in_order_and_the_stream_ends(live_server: str) -> None:
    run_id, token = start_run(live_server)
    finish_run(live_server, run_id, token, epochs=5)
    with ReglabClient(live_server) as client:
        events = list(client.events(run_id, reconnect=False))
    kinds = [(event.kind, event.data.get("epoch", event.data.get("status"))) for event in events]
    assert kinds == [
        ("status", "queued"),
        ("status", "running"),
        *[("metrics", epoch) for epoch in range(5)],
        ("status", "succeeded"),
    ]
    ids = [event.id for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_live_points_arrive_once_each_in_order(live_server: str) -> None:
    run_id, token = start_run(live_server)
    reader, received = follow_live(live_server, run_id)
    worker = WorkerClient(live_server)
    for epoch in range(20):
        worker.upload_metrics(run_id, token, [{"epoch": epoch, "values": {"loss": float(epoch)}}])
        if epoch == 10:  # a resend after a lost answer is not a new point
            worker.upload_metrics(run_id, token, [{"epoch": epoch, "values": {"loss": 10.0}}])
    worker.finish(run_id, token, status="succeeded")
    reader.join(30)
    epochs = [event.data["epoch"] for event in received if event.kind == "metrics"]
    assert epochs == list(range(20))
    assert received[-1].data["status"] == "succeeded"


def test_reconnect_with_last_event_id_resumes_without_gaps_or_repeats(live_server: str) -> None:
    run_id, token = start_run(live_server)
    finish_run(live_server, run_id, token, epochs=6)
    with ReglabClient(live_server) as client:
        everything = list(client.events(run_id, reconnect=False))
        cut = everything[4].id
        resumed = list(client.events(run_id, last_event_id=cut, reconnect=False))
    assert [event.id for event in everything[:5] + resumed] == [event.id for event in everything]


@pytest.mark.parametrize("garbage", ["banana", "-5", "1e9", str(2**70)])
def test_garbage_last_event_id_replays_everything(live_server: str, garbage: str) -> None:
    run_id, token = start_run(live_server)
    finish_run(live_server, run_id, token, epochs=2)
    response = httpx.get(
        f"{live_server}/api/experiments/{run_id}/events",
        headers={"Last-Event-ID": garbage},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.text.count("event: metrics") == 2
    assert response.text.count("event: status") == 3


def test_stream_headers(live_server: str) -> None:
    run_id, token = start_run(live_server)
    finish_run(live_server, run_id, token, epochs=1)
    response = httpx.get(f"{live_server}/api/experiments/{run_id}/events", timeout=10)
    headers: Any = response.headers
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-accel-buffering"] == "no"
    assert "no-store" in headers["cache-control"] or "no-cache" in headers["cache-control"]
    assert "content-encoding" not in headers


def test_cancel_ends_an_open_stream(live_server: str) -> None:
    run_id, _ = start_run(live_server)
    reader, received = follow_live(live_server, run_id)
    with ReglabClient(live_server) as client:
        client.cancel(run_id)
    reader.join(10)
    assert not reader.is_alive()
    assert received[-1].data["status"] == "cancelled"


def test_resuming_after_the_final_status_is_204_so_browsers_stop_reconnecting(
    live_server: str,
) -> None:
    run_id, token = start_run(live_server)
    finish_run(live_server, run_id, token, epochs=1)
    with ReglabClient(live_server) as client:
        last = list(client.events(run_id, reconnect=False))[-1]
        assert list(client.events(run_id, last_event_id=last.id)) == []
    response = httpx.get(
        f"{live_server}/api/experiments/{run_id}/events",
        headers={"Last-Event-ID": str(last.id)},
        timeout=10,
    )
    assert response.status_code == 204


def test_many_open_streams_hold_no_database_connections(live_server: str) -> None:
    """More viewers than the connection pool has connections, each getting every epoch."""
    import asyncio

    run_id, token = start_run(live_server)
    viewers = 40  # the SQLite pool holds 5 + 10 overflow connections

    async def watch(
        client: httpx.AsyncClient, opened: asyncio.Event, count: list[int]
    ) -> list[int]:
        epochs: list[int] = []
        async with client.stream("GET", f"/api/experiments/{run_id}/events") as response:
            assert response.status_code == 200
            count[0] += 1
            if count[0] == viewers:
                opened.set()
            kind = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "metrics":
                    epochs.append(int(line.split('"epoch":')[1].split(",")[0]))
                elif line.startswith("data: ") and '"succeeded"' in line:
                    return epochs
        return epochs

    async def main() -> list[list[int]]:
        opened, count = asyncio.Event(), [0]
        limits = httpx.Limits(max_connections=viewers + 5)
        async with httpx.AsyncClient(base_url=live_server, timeout=30, limits=limits) as client:
            tasks = [asyncio.create_task(watch(client, opened, count)) for _ in range(viewers)]
            await asyncio.wait_for(opened.wait(), 20)
            # The API still answers at once while every stream is open.
            response = await client.get(f"/api/experiments/{run_id}")
            assert response.status_code == 200
            await asyncio.to_thread(finish_run, live_server, run_id, token, 5)
            return await asyncio.wait_for(asyncio.gather(*tasks), 30)

    assert run_async(main()) == [[0, 1, 2, 3, 4]] * viewers


def raw_stream(url: str, run_id: int, received: list[tuple[str, str]]) -> None:
    """Read a run's event stream as the server sends it, until the server ends it (a
    client's own idea of the final statuses plays no part): (kind, data) pairs."""
    kind = ""
    with httpx.stream("GET", f"{url}/api/experiments/{run_id}/events", timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                received.append((kind, line[6:]))


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_the_server_ends_the_stream_after_every_final_status(
    live_server: str, final: Status
) -> None:
    """Live and replayed: whichever final status a run gets (pruned by its sweep too), its
    stream sends it last and the server closes it."""
    run_id, _ = start_run(live_server)
    live: list[tuple[str, str]] = []
    reader = threading.Thread(target=raw_stream, args=(live_server, run_id, live))
    reader.start()
    wait_for(lambda: len(live) >= 2)  # queued, running: the stream is live
    with session_scope() as session:
        row = experiments.require(session=session, experiment_id=run_id, lock=True)
        experiments.change_status(row, final, session=session, lease_expires_at=None)
        session.commit()
    reader.join(10)
    assert not reader.is_alive(), f"the stream of a {final} run did not end"
    assert live[-1][0] == "status" and json.loads(live[-1][1])["status"] == final
    replayed: list[tuple[str, str]] = []
    raw_stream(live_server, run_id, replayed)  # returns: the server ended it
    assert replayed == live


def test_a_retried_run_replays_its_last_attempt_as_its_metrics_read(live_server: str) -> None:
    """The first attempt's epochs are replaced by the retry's in the replay, as its metric
    rows are: the replay and /metrics agree point for point."""
    worker = WorkerClient(live_server)
    with ReglabClient(live_server) as client:
        run_id = client.submit(make_spec())["id"]
    with session_scope() as session:
        experiments.require(session=session, experiment_id=run_id).max_attempts = 2
        session.commit()
    first = worker.claim(worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=0)
    assert first is not None and first["attempt"] == 1
    for epoch in range(4):
        worker.upload_metrics(
            run_id, first["lease_token"], [{"epoch": epoch, "values": {"loss": 10.0 + epoch}}]
        )
    worker.finish(run_id, first["lease_token"], status="failed", error="died", retryable=True)
    second = worker.claim(worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=0)
    assert second is not None and (second["experiment_id"], second["attempt"]) == (run_id, 2)
    for epoch in range(3):
        worker.upload_metrics(
            run_id, second["lease_token"], [{"epoch": epoch, "values": {"loss": 20.0 + epoch}}]
        )
    worker.finish(run_id, second["lease_token"], status="succeeded")

    with ReglabClient(live_server) as client:
        events = list(client.events(run_id, reconnect=False))
        stored = client.metrics(run_id)
        run = client.get(run_id)
    replayed = {e.data["epoch"]: e.data["values"]["loss"] for e in events if e.kind == "metrics"}
    assert replayed == {0: 20.0, 1: 21.0, 2: 22.0}
    assert stored["epochs"] == sorted(replayed)
    assert stored["series"]["loss"] == [replayed[epoch] for epoch in stored["epochs"]]
    assert (run["epochs_done"], run["last_metrics"]["loss"]) == (3, 22.0)
    statuses = [(e.data["status"], e.data["attempt"]) for e in events if e.kind == "status"]
    assert statuses == [
        ("queued", 0),
        ("running", 1),
        ("queued", 1),
        ("running", 2),
        ("succeeded", 2),
    ]
