"""The event stream against a real uvicorn server: live delivery, replay, resume."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from app.client import ReglabClient, ServerEvent, WorkerClient
from tests.conftest import wait_for
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

    assert asyncio.run(main()) == [[0, 1, 2, 3, 4]] * viewers
