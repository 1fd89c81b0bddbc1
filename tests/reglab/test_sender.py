"""The one background sender: off the training thread, buffered, retried, exactly once,
split on 413, stopped by a lost lease or an ended run, never hanging its caller."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import pytest

from reglab.channels import StepPoint
from reglab.client import LeaseLostError, ReglabError
from reglab.sender import EpochRecord, Sender
from reglab.testing import MemoryClaimedChannel, MemoryScriptChannel
from tests.conftest import wait_for


def record(epoch: int, **values: float) -> EpochRecord:
    return EpochRecord(epoch, values, [("dense_0", np.ones((2, 2)) * epoch)], 0.0)


def test_every_point_arrives_once_after_the_server_comes_back() -> None:
    channel = MemoryClaimedChannel()
    channel.fail_next(6, httpx.ConnectError("connection refused"))
    sender = Sender(channel, retry_initial=0.01, retry_max=0.05).start()
    for epoch in range(10):
        sender.add_epoch(record(epoch, loss=float(epoch)))
    assert sender.close(timeout=10)
    assert sorted(epoch for _, epoch in channel.epochs) == list(range(10))
    assert sorted(sender.sent_epochs) == list(range(10))
    assert channel.epochs[1, 3]["loss"] == 3.0
    assert channel.epochs[1, 3]["kernel_norm/dense_0"] == pytest.approx(6.0)


def test_a_lost_lease_stops_sending_and_is_reported() -> None:
    channel = MemoryClaimedChannel()
    channel.fail_next(100, LeaseLostError(409, "lease lost"), what="epochs")
    sender = Sender(channel).start()
    sender.add_epoch(record(0, loss=1.0))
    assert sender.close(timeout=5) is False
    assert sender.ended.is_set()
    assert len(channel.uploads("epochs")) == 1
    sender.add_epoch(record(1, loss=1.0))  # after the end: ignored, nothing waits
    assert sender.pending == 0


def test_a_refused_batch_is_dropped_not_retried_forever() -> None:
    channel = MemoryClaimedChannel()
    channel.fail_next(1, ReglabError(422, "bad"), what="epochs")
    sender = Sender(channel).start()
    sender.add_epoch(record(0, loss=1.0))
    sender.add_epoch(record(1, loss=1.0))
    assert sender.close(timeout=5)
    assert len(channel.uploads("epochs")) >= 1
    assert not sender.ended.is_set() and sender.error is None


def test_non_finite_values_are_left_out_of_the_point() -> None:
    channel = MemoryClaimedChannel()
    sender = Sender(channel).start()
    sender.add_epoch(record(0, loss=float("nan"), val_loss=1.0))
    assert sender.close(timeout=5)
    assert "loss" not in channel.epochs[1, 0]
    assert channel.epochs[1, 0]["val_loss"] == 1.0


class KernelTooLargeToCopy:
    """A kernel whose copy to the host runs out of memory."""

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise MemoryError("no memory to copy a 4096x4096 kernel")


def test_an_epoch_without_statistics_still_goes_out_and_the_sender_lives_on() -> None:
    channel = MemoryClaimedChannel()
    sender = Sender(channel).start()
    sender.add_epoch(EpochRecord(0, {"loss": 1.0}, [("dense_0", KernelTooLargeToCopy())], 0.0))
    sender.add_epoch(EpochRecord(1, {"loss": 0.5}, [("dense_0", np.ones((2, 2)))], 0.0))
    # Before, the sender thread died of the MemoryError and `close` waited out its timeout.
    assert sender.close(timeout=5)
    assert sorted(epoch for _, epoch in channel.epochs) == [0, 1]
    assert channel.epochs[1, 0] == {"loss": 1.0}
    assert channel.epochs[1, 1]["kernel_norm/dense_0"] == 2.0


def test_a_413_splits_the_batch_in_halves_and_stores_every_point_once() -> None:
    channel = MemoryClaimedChannel(max_points=3)
    sender = Sender(channel, retry_initial=0.01)
    for epoch in range(10):  # all waiting before the sender starts: one batch of ten
        sender.add_epoch(record(epoch, loss=float(epoch)))
    sender.start()
    assert sender.close(timeout=10)
    stored = [keys for keys in channel.uploads("epochs") if len(keys) <= 3]
    refused = [keys for keys in channel.uploads("epochs") if len(keys) > 3]
    assert refused[0] == list(range(10))  # the whole batch first, refused
    assert [epoch for keys in stored for epoch in keys] == list(range(10))  # in order, once
    assert sender.sent_epochs == list(range(10))
    assert sorted(epoch for _, epoch in channel.epochs) == list(range(10))


def test_a_413_for_a_single_point_drops_it_and_goes_on() -> None:
    channel = MemoryScriptChannel(max_points=0)  # nothing fits
    sender = Sender(channel).start()
    sender.add_epoch(record(0, loss=1.0))
    assert sender.close({"status": "succeeded"}, timeout=5) is True  # refused, not pending
    assert channel.epochs == {} and sender.sent_epochs == []
    assert channel.finished == [{"status": "succeeded"}]


def test_steps_go_in_few_large_uploads_and_a_413_splits_them() -> None:
    channel = MemoryScriptChannel(max_points=400)
    sender = Sender(channel, steps_per_upload=1000).start()
    for step in range(1000):
        sender.add_step(StepPoint(step, {"loss": float(step)}))
    assert sender.close({"status": "succeeded"}, timeout=10)
    assert sorted(step for _, step in channel.steps) == list(range(1000))
    assert sender.sent_steps == 1000
    stored = [keys for keys in channel.uploads("steps") if len(keys) <= 400]
    assert [step for keys in stored for step in keys] == list(range(1000))
    assert len(stored) <= 8


def test_a_refused_token_gives_up_once_and_drops_what_comes_next() -> None:
    channel = MemoryScriptChannel()
    channel.fail_next(1, ReglabError(401, "bad token"), what="open")
    sender = Sender(channel).start()
    wait_for(lambda: sender.error is not None, timeout=5)
    assert "refused the token (HTTP 401)" in sender.error  # type: ignore[operator]
    sender.add_epoch(record(0, loss=1.0))
    assert sender.pending == 0
    assert sender.close({"status": "succeeded"}, timeout=5) is False
    assert channel.uploads("epochs") == [] and channel.finished == []


def test_an_ended_run_found_by_a_heartbeat_stops_the_sender() -> None:
    channel = MemoryScriptChannel(heartbeat_seconds=0.05)
    sender = Sender(channel).start()
    sender.add_epoch(record(0, loss=1.0))
    wait_for(lambda: channel.epochs, timeout=5)
    channel.status = "cancelled"  # cancelled from the dashboard
    wait_for(sender.ended.is_set, timeout=5)
    sender.add_epoch(record(1, loss=1.0))
    assert sender.close({"status": "succeeded"}, timeout=5) is False
    assert channel.finished == []  # its status is final already: no finish sent
    assert sorted(channel.epochs) == [(1, 0)]


def test_a_quiet_script_run_heartbeats() -> None:
    channel = MemoryScriptChannel(heartbeat_seconds=0.05)
    sender = Sender(channel).start()
    wait_for(lambda: len(channel.uploads("heartbeat")) >= 3, timeout=5)
    assert sender.close({"status": "succeeded"}, timeout=5)


def test_histograms_follow_the_points_and_a_failed_upload_is_retried_once() -> None:
    channel = MemoryClaimedChannel()
    channel.fail_next(1, httpx.ConnectError("server restarting"), what="histograms")
    sender = Sender(channel, retry_initial=0.01).start()
    kernel = [("dense_0", np.arange(6.0).reshape(2, 3))]
    sender.add_epoch(EpochRecord(0, {"loss": 1.0}, kernel, 0.0, histogram=True))
    sender.add_epoch(EpochRecord(1, {"loss": 0.5}, kernel, 0.0, histogram=False))
    sender.add_epoch(EpochRecord(2, {"loss": 0.2}, kernel, 0.0, histogram=True))
    assert sender.flush(timeout=10)  # flush waits for the histograms too
    assert sender.sent_histograms == [0, 2]
    assert channel.uploads("histograms") == [[0], [0], [2]]
    assert sum(channel.histograms[1, 2]["dense_0"]["counts"]) == 6
    assert sender.close(timeout=5)


def test_a_dead_channel_never_hangs_close() -> None:
    channel = MemoryClaimedChannel()
    channel.fail_next(1000, httpx.ConnectError("nobody listens"))
    sender = Sender(channel, retry_initial=0.05, retry_max=0.1).start()
    sender.add_epoch(record(0, loss=1.0))
    started = time.monotonic()
    assert sender.close(timeout=0.5) is False
    assert time.monotonic() - started < 2
    assert sender.pending == 1
