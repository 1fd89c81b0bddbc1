"""Both channels against a real server: a script's run created, streamed and finished
under the user's routes; a claimed run streamed under the worker's routes with its lease
token; a batch over the server's body limit split by the sender until it fits."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from app.settings import get_settings
from reglab.channels import ClaimedRunChannel, ScriptRunChannel, StepPoint
from reglab.client import ReglabClient, WorkerClient
from reglab.sender import EpochRecord, Sender
from tests.factories import make_spec


class CountingTransport(httpx.BaseTransport):
    """A real transport that notes each answer's status code."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.codes: list[tuple[str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.codes.append((request.url.path, response.status_code))
        return response


@pytest.fixture
def claimed(live_server: str) -> Iterator[tuple[int, str]]:
    """A queued run claimed by hand (the supervisor's part), with a long lease."""
    assert httpx.post(f"{live_server}/api/experiments", json=make_spec()).status_code == 201
    answer = httpx.post(
        f"{live_server}/api/worker/claim",
        json={"worker_id": "w", "host": "h", "slot": "CPU", "wait": 0},
    )
    assert answer.status_code == 200, answer.text
    yield answer.json()["experiment_id"], answer.json()["lease_token"]


def test_a_script_run_is_created_streamed_and_finished(live_server: str) -> None:
    client = ReglabClient(live_server)
    channel = ScriptRunChannel(
        client, name="from a script", script={"log_every": "batch"}, heartbeat_seconds=5.0
    )
    sender = Sender(channel).start()
    for step in range(6):
        sender.add_step(StepPoint(step, {"loss": 1.0 / (step + 1)}))
    sender.add_epoch(EpochRecord(0, {"loss": 0.5}, [("dense_0", np.ones((2, 2)))]))
    assert sender.close({"status": "succeeded", "error": None}, timeout=30)
    run_id = sender.run_id
    assert run_id is not None
    with ReglabClient(live_server) as reader:
        run = reader.get(run_id)
        assert (run["name"], run["source"], run["status"]) == (
            "from a script",
            "script",
            "succeeded",
        )
        series = reader.metrics(run_id)["series"]
        assert series["loss"] == [0.5] and series["kernel_norm/dense_0"] == [2.0]
    rows = httpx.get(f"{live_server}/api/experiments/{run_id}/batches.csv").text.splitlines()
    assert [int(row.split(",")[0]) for row in rows[1:]] == list(range(6))
    channel.close()


def test_a_claimed_run_streams_under_the_worker_routes(
    live_server: str, claimed: tuple[int, str]
) -> None:
    run_id, token = claimed
    client = WorkerClient(live_server)
    channel = ClaimedRunChannel(client, run_id, token)
    sender = Sender(channel).start()
    kernels = [("dense_0", np.arange(8.0).reshape(2, 4))]
    for epoch in range(3):
        sender.add_epoch(EpochRecord(epoch, {"loss": 1.0 - epoch / 10}, kernels, histogram=True))
    assert sender.close(timeout=30)
    assert sender.sent_epochs == [0, 1, 2] and sender.sent_histograms == [0, 1, 2]
    channel.finish({"status": "succeeded", "test_metrics": {"loss": 0.7}, "best_epoch": 2})
    with ReglabClient(live_server) as reader:
        run = reader.get(run_id)
        assert run["status"] == "succeeded" and run["epochs_done"] == 3
    stored = httpx.get(f"{live_server}/api/experiments/{run_id}/histograms").json()
    assert stored["epochs"] == [0, 1, 2]
    client.close()


def test_a_batch_over_the_body_limit_is_split_until_it_fits(
    live_server: str, claimed: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGLAB_MAX_BODY_BYTES", "6000")
    get_settings.cache_clear()  # the server reads the limit per request
    run_id, token = claimed
    transport = CountingTransport()
    client = WorkerClient(live_server, transport=transport)
    sender = Sender(ClaimedRunChannel(client, run_id, token))
    values = {f"metric_{index}": float(index) for index in range(10)}
    for epoch in range(40):  # ~300 bytes each: ~12 kB in one batch, twice the limit
        sender.add_epoch(EpochRecord(epoch, values))
    sender.start()
    assert sender.close(timeout=30)
    uploads = [code for path, code in transport.codes if path.endswith("/metrics")]
    assert uploads[0] == 413 and 200 in uploads
    assert sender.sent_epochs == list(range(40))
    metrics = httpx.get(f"{live_server}/api/experiments/{run_id}/metrics").json()
    assert metrics["epochs"] == list(range(40))
    assert metrics["series"]["metric_9"] == [9.0] * 40
    client.close()
