"""Kernel histograms in the worker's training: binned off the training thread every N
epochs and at the last, uploaded through the worker route of a real server, stored once
per epoch. (Binning and the cadence by hand: tests/reglab/test_stats.py.)"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from app.spec import ExperimentSpec
from reglab import ReglabCallback
from reglab.channels import ClaimedRunChannel
from reglab.client import WorkerClient
from reglab.sender import Sender
from reglab.stats import HISTOGRAM_BINS
from reglab.testing import MemoryClaimedChannel, MemoryScriptChannel
from tests.factories import make_spec
from worker.training import train


def tiny_spec(**training: Any) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        make_spec(
            model={"layers": [{"type": "dense", "units": 8}, {"type": "dense", "units": 4}]},
            training={"epochs": 8, **training},
        )
    )


def claimed_run(url: str, spec: ExperimentSpec) -> dict[str, Any]:
    assert httpx.post(f"{url}/api/experiments", json=spec.model_dump()).status_code == 201
    response = httpx.post(
        f"{url}/api/worker/claim", json={"worker_id": "w", "host": "h", "slot": "CPU", "wait": 0}
    )
    assert response.status_code == 200, response.text
    return response.json()


def histogram_upload(url: str, run: dict[str, Any]) -> Any:
    """What the training child sends: one epoch's layers to the worker route."""

    def upload(epoch: int, layers: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(
            f"{url}/api/worker/experiments/{run['experiment_id']}/histograms",
            json={"lease_token": run["lease_token"], "epoch": epoch, "layers": layers},
        )
        response.raise_for_status()
        return response.json()

    return upload


@pytest.fixture
def long_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """No heartbeats here: a lease that outlasts a slow run on a busy machine."""
    monkeypatch.setenv("REGLAB_LEASE_SECONDS", "600")


def test_a_real_run_sends_histograms_every_n_epochs(long_lease: None, live_server: str) -> None:
    spec = tiny_spec(histogram_every=3)
    run = claimed_run(live_server, spec)
    upload = histogram_upload(live_server, run)
    client = WorkerClient(live_server)
    sender = Sender(ClaimedRunChannel(client, run["experiment_id"], run["lease_token"])).start()
    result = train(spec, [ReglabCallback(sender=sender)])
    assert sender.close(timeout=30)
    client.close()
    assert sender.sent_histograms == [0, 3, 6, 7]

    stored = httpx.get(f"{live_server}/api/experiments/{run['experiment_id']}/histograms").json()
    assert stored["epochs"] == [0, 3, 6, 7]
    assert set(stored["layers"]) == {"dense_0", "dense_1", "output"}
    for name, per_epoch in stored["layers"].items():
        size = result.model.get_layer(name).kernel.shape.num_elements()
        for histogram in per_epoch:
            assert len(histogram["edges"]) == HISTOGRAM_BINS + 1
            assert sum(histogram["counts"]) == size
    # The last histogram is of the final weights.
    kernel = np.asarray(result.model.get_layer("dense_0").kernel)
    last = stored["layers"]["dense_0"][-1]
    assert last["edges"][0] == pytest.approx(kernel.min()) and last["edges"][-1] == pytest.approx(
        kernel.max()
    )
    # A resend stores nothing new and keeps what was there.
    assert upload(0, {"dense_0": {"edges": [0.0, 1.0], "counts": [5.0]}}) == {"stored": False}
    again = httpx.get(f"{live_server}/api/experiments/{run['experiment_id']}/histograms").json()
    assert again == stored


def test_early_stopping_sends_the_last_epochs_histograms() -> None:
    spec = tiny_spec(
        histogram_every=100, epochs=200, learning_rate=0.05, early_stopping={"patience": 2}
    )
    channel = MemoryClaimedChannel()
    sender = Sender(channel).start()
    result = train(spec, [ReglabCallback(sender=sender)])
    assert sender.close(timeout=30)
    assert result.stopped_epoch is not None and result.stopped_epoch < 100
    sent = [epoch for (epoch,) in channel.uploads("histograms")]
    assert sent == [0, result.stopped_epoch]


def test_a_failing_histogram_upload_is_retried_and_sent_once() -> None:
    channel = MemoryClaimedChannel()
    channel.fail_next(1, httpx.ConnectError("server restarting"), what="histograms")
    sender = Sender(channel).start()
    train(tiny_spec(epochs=2, histogram_every=5), [ReglabCallback(sender=sender)])
    assert sender.close(timeout=30)
    calls = [epoch for (epoch,) in channel.uploads("histograms")]
    assert calls == [0, 0, 1] and sender.sent_histograms == [0, 1]


def test_no_histograms_without_an_uploader_or_when_off() -> None:
    script = MemoryScriptChannel()  # a channel with no histogram route (a script's run)
    sender = Sender(script).start()
    train(tiny_spec(epochs=2), [ReglabCallback(sender=sender)])
    assert sender.close(timeout=30) and len(script.epochs) == 2 and sender.sent_histograms == []

    channel = MemoryClaimedChannel()
    sender = Sender(channel).start()
    train(tiny_spec(epochs=2, histogram_every=0), [ReglabCallback(sender=sender)])
    assert sender.close(timeout=30) and channel.uploads("histograms") == []
