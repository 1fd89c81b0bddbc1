"""The streaming callback and its sender: off the training thread, buffered, exactly once."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import keras
import numpy as np
import pytest

from app.client import LeaseLostError, ReglabError
from worker.streaming import EpochSnapshot, MetricSender, StreamingCallback, layer_statistics


class FlakyServer:
    """Stores uploads keyed by epoch; refuses the first `failures` calls like a dead server."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or httpx.ConnectError("connection refused")
        self.calls = 0
        self.stored: dict[int, dict[str, float]] = {}
        self.lock = threading.Lock()

    def upload(self, points: list[dict[str, Any]]) -> None:
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise self.error
            for point in points:
                self.stored[point["epoch"]] = point["values"]


def snapshot(epoch: int, **values: float) -> EpochSnapshot:
    return EpochSnapshot(epoch, values, [("dense_0", np.ones((2, 2)) * epoch)], 0.0)


def test_every_point_arrives_once_after_the_server_comes_back() -> None:
    server = FlakyServer(failures=6)
    sender = MetricSender(upload=server.upload, retry_initial=0.01, retry_max=0.05).start()
    for epoch in range(10):
        sender.put(snapshot(epoch, loss=float(epoch)))
    assert sender.close(timeout=10)
    assert sorted(server.stored) == list(range(10))
    assert sorted(sender.sent_epochs) == list(range(10))
    assert server.stored[3]["loss"] == 3.0
    assert server.stored[3]["kernel_norm/dense_0"] == pytest.approx(6.0)


def test_a_lost_lease_stops_sending_and_is_reported() -> None:
    server = FlakyServer(failures=100, error=LeaseLostError(409, "lease lost"))
    sender = MetricSender(upload=server.upload).start()
    sender.put(snapshot(0, loss=1.0))
    assert sender.close(timeout=5) is False
    assert sender.lease_lost.is_set()
    assert server.calls == 1


def test_a_refused_batch_is_dropped_not_retried_forever() -> None:
    server = FlakyServer(failures=1, error=ReglabError(422, "bad"))
    sender = MetricSender(upload=server.upload).start()
    sender.put(snapshot(0, loss=1.0))
    sender.put(snapshot(1, loss=1.0))
    assert sender.close(timeout=5)
    assert server.calls >= 1
    assert not sender.lease_lost.is_set()


def test_non_finite_values_are_left_out_of_the_point() -> None:
    server = FlakyServer()
    sender = MetricSender(upload=server.upload).start()
    sender.put(snapshot(0, loss=float("nan"), val_loss=1.0))
    sender.close(timeout=5)
    assert "loss" not in server.stored[0]
    assert server.stored[0]["val_loss"] == 1.0


def test_layer_statistics_by_hand() -> None:
    kernel = np.array([[3.0, 0.0], [4.0, 0.0005]])
    stats = layer_statistics([("dense_0", kernel)])
    assert stats["kernel_norm/dense_0"] == pytest.approx(np.sqrt(9 + 16 + 0.0005**2))
    assert stats["sparsity/dense_0"] == 0.5


def test_the_callback_streams_a_real_fit_with_weight_statistics() -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, name="dense_0"),
            keras.layers.Dense(1, name="output"),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    server = FlakyServer(failures=2)
    sender = MetricSender(upload=server.upload, retry_initial=0.01).start()
    callback = StreamingCallback(sender)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[callback])
    assert sender.close(timeout=10)
    assert sorted(server.stored) == [0, 1, 2, 3]
    last = server.stored[3]
    assert set(last) == {
        "loss",
        "epoch_seconds",
        "kernel_norm/dense_0",
        "sparsity/dense_0",
        "kernel_norm/output",
        "sparsity/output",
    }
    kernel = model.get_layer("dense_0").kernel.numpy()
    assert last["kernel_norm/dense_0"] == pytest.approx(float(np.linalg.norm(kernel)), rel=1e-6)
    assert last["epoch_seconds"] > 0
    assert len(callback.hold_seconds) == 4


def test_the_callback_stops_training_when_the_lease_is_lost() -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    server = FlakyServer(failures=100, error=LeaseLostError(409, "taken over"))
    sender = MetricSender(upload=server.upload).start()
    callback = StreamingCallback(sender)
    x = np.zeros((8, 2), "float32")

    class WaitForSender(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            sender.lease_lost.wait(5)

    model.fit(x, x[:, :1], epochs=50, verbose=0, callbacks=[WaitForSender(), callback])
    assert len(callback.hold_seconds) < 50
