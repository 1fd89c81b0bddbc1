"""ReglabCallback streaming into a sender it is given (the worker's way), on real fits:
the epoch's logs and weight statistics off the training thread, histograms when due,
training stopped when the lease is lost. Script runs: tests/e2e/test_callback_script.py."""

from __future__ import annotations

from typing import Any

import httpx
import keras
import numpy as np
import pytest

from reglab import ReglabCallback
from reglab.client import LeaseLostError
from reglab.sender import Sender
from reglab.testing import MemoryClaimedChannel, MemoryScriptChannel


def small_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, name="dense_0"),
            keras.layers.Dense(1, name="output"),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def data() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def test_the_callback_streams_a_real_fit_with_weight_statistics() -> None:
    model = small_model()
    channel = MemoryClaimedChannel()
    channel.fail_next(2, httpx.ConnectError("connection refused"), what="epochs")
    sender = Sender(channel, retry_initial=0.01).start()
    callback = ReglabCallback(sender=sender)
    model.fit(*data(), epochs=4, batch_size=16, verbose=0, callbacks=[callback])
    assert sender.close(timeout=10)
    assert sorted(epoch for _, epoch in channel.epochs) == [0, 1, 2, 3]
    last = channel.epochs[1, 3]
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
    assert len(callback.hold_seconds) == 4 and callback.last_epoch == 3
    assert channel.finished == []  # the sender's owner finishes the run, not the callback
    assert channel.histograms == {}  # a plain fit passes no histogram_every: none


def test_the_callback_stops_training_when_the_lease_is_lost() -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    channel = MemoryClaimedChannel()
    channel.fail_next(100, LeaseLostError(409, "taken over"), what="epochs")
    sender = Sender(channel).start()
    callback = ReglabCallback(sender=sender)
    x = np.zeros((8, 2), "float32")

    class WaitForSender(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            sender.ended.wait(5)

    model.fit(x, x[:, :1], epochs=50, verbose=0, callbacks=[WaitForSender(), callback])
    assert len(callback.hold_seconds) < 50
    assert sender.close(timeout=5) is False


def test_histograms_every_n_epochs_and_at_the_last() -> None:
    model = small_model()
    channel = MemoryClaimedChannel()
    sender = Sender(channel).start()
    callback = ReglabCallback(sender=sender, histogram_every=3)
    model.fit(*data(), epochs=7, batch_size=16, verbose=0, callbacks=[callback])
    assert sender.close(timeout=10)
    assert sender.sent_histograms == [0, 3, 6]
    kernel = model.get_layer("dense_0").kernel.numpy()
    final = channel.histograms[1, 6]["dense_0"]
    assert final["edges"][0] == pytest.approx(kernel.min())
    assert sum(final["counts"]) == kernel.size


def test_a_channel_without_histograms_gets_none_and_steps_are_logged_every_n() -> None:
    model = small_model()
    channel = MemoryScriptChannel()
    sender = Sender(channel).start()
    callback = ReglabCallback(sender=sender, histogram_every=1, log_every=3)
    model.fit(*data(), epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    assert sender.close(timeout=10)
    assert sender.sent_histograms == [] and len(channel.epochs) == 2
    assert sorted(step for _, step in channel.steps) == [0, 3, 6]  # 4 batches an epoch


def test_layer_statistics_off_takes_no_snapshot() -> None:
    model = small_model()
    channel = MemoryClaimedChannel()
    sender = Sender(channel).start()
    callback = ReglabCallback(sender=sender, layer_statistics=False)
    model.fit(*data(), epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    assert sender.close(timeout=10)
    assert set(channel.epochs[1, 1]) == {"loss", "epoch_seconds"}


def test_log_every_is_checked() -> None:
    with pytest.raises(ValueError, match="log_every"):
        ReglabCallback(log_every=0)
