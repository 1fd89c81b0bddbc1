"""The one background sender, used by the user's `ReglabCallback` and by the worker.

The training thread hands over epoch records (the logs and a frozen reference to each
kernel) and per-batch points, and never waits on the network. A sender thread computes
the per-layer statistics and histograms, batches the points and uploads them through a
channel (reglab/channels.py). While the server is unreachable it retries with backoff
and keeps the points, in a bounded buffer per kind (the oldest go first). Uploads are
idempotent per (run, epoch) and (run, step), and a point is resent only until one
upload of it is answered, so none is stored twice. A batch the server finds too large
(HTTP 413) is split in halves and resent.

It stops sending when the run ends on the server or the lease is lost (`ended`), and
gives up for good, reporting why once, when the server refuses the token or the run
(`error`): a failing sink never stops training. `flush` and `close` return within their
timeout, so a dead server never hangs a script.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from reglab.channels import (
    Channel,
    EpochPoint,
    HeartbeatChannel,
    HistogramChannel,
    Histograms,
    StepChannel,
    StepPoint,
)
from reglab.client import ReglabError
from reglab.stats import Kernels, kernel_histograms, layer_statistics

log = logging.getLogger("reglab.sender")
T = TypeVar("T", EpochPoint, StepPoint, Histograms)


@dataclass(frozen=True)
class EpochRecord:
    """What the training thread hands over at the end of an epoch."""

    epoch: int
    values: dict[str, float]
    kernels: Kernels = field(default_factory=list)  # frozen; read on the sender thread
    time: float = field(default_factory=time.time)
    statistics: bool = True  # add each kernel's norm and sparsity to the values
    histogram: bool = False  # also bin the kernels into histograms for this epoch
    run: int | None = None  # None: the channel's own run
    # More values computed from these on the sender thread (e.g. the penalty from frozen
    # weights), so that the training thread does not wait for them.
    derive: Callable[[Mapping[str, float]], Mapping[str, float]] | None = None


class _Retry(Exception):
    """Worth trying again later: no answer, or a 5xx / 429."""


class _Ended(Exception):
    """409: the run has ended on the server, or the lease is lost."""


class _GiveUp(Exception):
    """Never worth trying again: a refused token, a run that is gone."""


class _Refused(Exception):
    """The server refused this request (4xx) but may take the next."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        super().__init__(f"HTTP {status_code}: {str(detail)[:500]}")


class Sender:
    """Uploads a run's points from a background thread through `channel`.

    Args:
        channel: where the points go (a `ScriptRunChannel`, a `ClaimedRunChannel`...).
        max_buffer: points kept per kind (epochs, steps) while the server is unreachable;
            past it the oldest are dropped and counted in `dropped`.
        epochs_per_upload, steps_per_upload: points per request at most.
        step_interval: seconds between uploads of per-batch points, unless many wait.
        retry_initial, retry_max: the backoff between retries, in seconds.

    Example:
        >>> sender = Sender(ClaimedRunChannel(client, experiment_id, lease_token)).start()
        >>> sender.add_epoch(EpochRecord(0, {"loss": 0.5}))
        >>> sender.close(timeout=30)
        True
    """

    POLL_SECONDS = 0.1  # how often the sender looks for new per-batch points

    def __init__(
        self,
        channel: Channel,
        *,
        max_buffer: int = 100_000,
        epochs_per_upload: int = 200,
        steps_per_upload: int = 2000,
        step_interval: float = 1.0,
        retry_initial: float = 0.1,
        retry_max: float = 2.0,
    ) -> None:
        self.channel = channel
        self.epochs_per_upload = epochs_per_upload
        self.steps_per_upload = steps_per_upload
        self.step_interval = step_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.takes_steps = isinstance(channel, StepChannel)
        self.takes_histograms = isinstance(channel, HistogramChannel)
        self._heartbeats = channel if isinstance(channel, HeartbeatChannel) else None
        self.ended = threading.Event()  # the run ended on the server or the lease is lost
        self.error: str | None = None  # why the sender gave up, if it did
        self.dropped = 0  # points lost from a full buffer
        self.sent_epochs: list[int] = []
        self.sent_steps = 0
        self.sent_histograms: list[int] = []
        self._epochs: deque[EpochRecord] = deque(maxlen=max_buffer)
        self._steps: deque[StepPoint] = deque(maxlen=max_buffer)
        self._epoch_batches: deque[list[EpochPoint]] = deque()  # in flight, in order
        self._step_batches: deque[list[StepPoint]] = deque()
        self._histograms: deque[Histograms] = deque()  # binned, waiting
        self._histogram_batches: deque[list[Histograms]] = deque()
        self._histograms_waiting = 0  # in both, written by the sender thread only
        self._opened = False
        self._outcome: Mapping[str, Any] | None = None
        self._closing = False
        self._stopped = False  # the thread is done: everything sent, or nothing to send
        self._finished = False  # the final status reached the server
        self._dead = False  # gave up: points are dropped, nothing is sent
        self._wake = threading.Event()
        self._abandon = threading.Event()
        self._idle = threading.Condition()
        self._last_contact = time.monotonic()
        self._steps_sent_at = 0.0
        # Points handed over and dropped from a full buffer (training thread), and
        # stored or given up (sender thread): each counter has one writer.
        self._added = 0
        self._settled = 0
        self._thread = threading.Thread(target=self._run, name="reglab-sender", daemon=True)

    @property
    def run_id(self) -> int | None:
        """The run's id on the server (None until a script's run is created)."""
        return self.channel.run_id

    @property
    def stopped(self) -> bool:
        """True once the sender thread has ended (all sent, given up or run ended)."""
        return not self._thread.is_alive() and self._thread.ident is not None

    # --- the training thread's side: cheap, never blocks on the network --------------

    def start(self) -> Sender:
        self._thread.start()
        return self

    def add_epoch(self, record: EpochRecord) -> None:
        """Hand over an epoch; returns at once."""
        if self._dead or self.ended.is_set():
            return
        if len(self._epochs) == self._epochs.maxlen:
            self.dropped += 1
        self._epochs.append(record)
        self._added += 1
        self._wake.set()  # once an epoch: the live curves show it at once

    def add_step(self, point: StepPoint) -> None:
        """Hand over a training step's values (dropped by a channel without steps). The
        sender is not woken: it collects steps every POLL_SECONDS, so that the training
        thread does not lose the interpreter to it after every batch."""
        if self._dead or self.ended.is_set() or not self.takes_steps:
            return
        if len(self._steps) == self._steps.maxlen:
            self.dropped += 1
        self._steps.append(point)
        self._added += 1

    @property
    def pending(self) -> int:
        """Uploads handed over and not yet done with (stored, refused or dropped)."""
        return max(self._added - self.dropped - self._settled, 0) + self._histograms_waiting

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every point handed over is stored, or can never be; True when all
        of them were stored."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self.pending and self._thread.is_alive():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.5) if remaining is not None else 0.5)
        return self._delivered_all()

    def close(
        self, outcome: Mapping[str, Any] | None = None, *, timeout: float | None = 10.0
    ) -> bool:
        """Deliver what is buffered, then finish the run with `outcome` (its `status`,
        `error`...; None leaves the run as it is) and stop. Gives up after `timeout`
        seconds: the points still buffered are lost, and said so. True when everything,
        the final status included, reached the server."""
        if not self._closing:
            self._outcome = outcome
            self._closing = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            # Still trying: let it go (a daemon thread; its request times out by itself).
            self._abandon.set()
            self._wake.set()
            log.error(
                "reglab: gave up after %.0f s; %d points for run %s were not delivered (%s)",
                timeout,
                self.pending,
                self.run_id,
                self.channel.url,
            )
            return False
        return self._delivered_all() and (self._outcome is None or self._finished)

    def _delivered_all(self) -> bool:
        return not self.pending and not self.ended.is_set() and self.error is None

    # --- the sender thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as error:  # never a traceback in the user's script
            self._give_up(f"internal error: {type(error).__name__}: {error}")
        finally:
            with self._idle:
                self._idle.notify_all()

    def _loop(self) -> None:
        delay = self.retry_initial
        while not self._abandon.is_set():
            try:
                progressed = self._step()
            except _Retry as retry:
                log.debug("reglab: %s; retrying in %.2f s", retry, delay)
                if self._abandon.wait(delay):
                    break
                delay = min(delay * 2, self.retry_max)
                continue
            except _Ended as ended:
                self._end(str(ended))
            except _GiveUp as reason:
                self._give_up(str(reason))
            delay = self.retry_initial
            if self._dead or self._stopped or self.ended.is_set():
                break
            if not progressed:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        if self._heartbeats is None:
            return self.POLL_SECONDS
        since = time.monotonic() - self._last_contact
        return max(min(self._heartbeats.heartbeat_seconds - since, self.POLL_SECONDS), 0.0)

    def _step(self) -> bool:
        """One unit of work; False when there was nothing to do."""
        if not self._opened:
            self._open()
            return True
        if self._epoch_batches or self._epochs:
            self._send_epochs()
            return True
        if self._step_batches or (self._steps and self._steps_due()):
            self._send_steps()
            return True
        if self._histogram_batches or self._histograms:
            self._send_histograms()
            return True
        if self._closing:
            if self._outcome is not None:
                self._send_finish(self._outcome)
            self._stopped = True
            return True
        if self._heartbeats is not None and (
            time.monotonic() - self._last_contact >= self._heartbeats.heartbeat_seconds
        ):
            try:
                status = self._call(self._heartbeats.heartbeat)
            except _Refused as refused:  # the uploads will tell more; not a reason to stop
                log.warning("reglab: the server refused a heartbeat: %s", refused)
                return True
            if status is not None:
                self._end(status)
            return True
        return False

    def _steps_due(self) -> bool:
        # Batch points go in large uploads, at most every step_interval unless many wait.
        return (
            len(self._steps) >= self.steps_per_upload
            or self._closing
            or time.monotonic() - self._steps_sent_at >= self.step_interval
        )

    def _call(self, call: Callable[..., Any], *args: Any) -> Any:
        """Make one channel call, sorting its failures into retry, end, give up, refused."""
        try:
            answer = call(*args)
        except ReglabError as error:
            self._last_contact = time.monotonic()
            code = error.status_code
            if code >= 500 or code == 429:
                raise _Retry(f"HTTP {code}") from None
            if code == 409:
                raise _Ended(str(error.detail)[:500]) from None
            if code in (401, 403):
                raise _GiveUp(
                    f"the server at {self.channel.url} refused the token (HTTP {code}): "
                    f"{self.channel.token_hint}"
                ) from None
            if code == 404 and self._opened:
                raise _GiveUp(
                    f"run {self.run_id} does not exist on {self.channel.url} (deleted?)"
                ) from None
            raise _Refused(code, error.detail) from None
        except httpx.HTTPError as error:  # unreachable, reset, timed out: keep the points
            raise _Retry(f"{type(error).__name__}: {error}") from None
        self._last_contact = time.monotonic()
        return answer

    def _open(self) -> None:
        try:
            self._call(self.channel.open)
        except _Refused as refused:
            raise _GiveUp(f"the server refused the run: {refused}") from None
        self._opened = True

    def _send_epochs(self) -> None:
        if not self._epoch_batches:
            # An epoch handed over twice (a loop that logs it again) goes once, its latest
            # values: one request never names a (run, epoch) twice.
            batch: dict[tuple[int | None, int], EpochPoint] = {}
            while self._epochs and len(batch) < self.epochs_per_upload:
                point = self._epoch_point(self._epochs.popleft())
                if batch.pop((point.run, point.epoch), None) is not None:
                    self._settle(1)
                batch[point.run, point.epoch] = point
            self._epoch_batches.append(list(batch.values()))
        done = self._upload(self.channel.upload_epochs, self._epoch_batches, "epochs")
        if done is not None:
            sent, stored = done
            if stored:
                self.sent_epochs.extend(point.epoch for point in sent)
            self._settle(len(sent))

    def _send_steps(self) -> None:
        assert isinstance(self.channel, StepChannel)
        if not self._step_batches:
            batch: list[StepPoint] = []
            while self._steps and len(batch) < self.steps_per_upload:
                batch.append(self._steps.popleft())
            self._step_batches.append(batch)
        done = self._upload(self.channel.upload_steps, self._step_batches, "steps")
        if done is not None:
            sent, stored = done
            if stored:
                self.sent_steps += len(sent)
            self._settle(len(sent))
        self._steps_sent_at = time.monotonic()

    def _send_histograms(self) -> None:
        """One epoch's histograms of every run that has them waiting, in one upload."""
        assert isinstance(self.channel, HistogramChannel)
        if not self._histogram_batches:
            epoch = self._histograms[0].epoch
            batch = [item for item in self._histograms if item.epoch == epoch]
            for item in batch:
                self._histograms.remove(item)
            self._histogram_batches.append(batch)
        done = self._upload(self.channel.upload_histograms, self._histogram_batches, "histograms")
        if done is not None:
            sent, stored = done
            if stored:
                self.sent_histograms.extend(item.epoch for item in sent)
            self._histograms_waiting -= len(sent)
            self._settle(0)

    def _upload(
        self, upload: Callable[[Sequence[T]], None], batches: deque[list[T]], what: str
    ) -> tuple[list[T], bool] | None:
        """Send the first of `batches`; then it is done with: (it, whether the server
        stored it). A 413 splits it in halves, sent next in order (None); another refusal
        drops it, said once. No answer: `_Retry`, and the batch waits in front."""
        batch = batches[0]
        try:
            self._call(upload, batch)
        except _Refused as refused:
            if refused.status_code == 413 and len(batch) > 1:
                half = len(batch) // 2
                batches[0] = batch[half:]
                batches.appendleft(batch[:half])
                log.info("reglab: %d %s too large for one request: halves", len(batch), what)
                return None
            log.error("reglab: the server refused %d %s: %s", len(batch), what, refused)
            return batches.popleft(), False
        return batches.popleft(), True

    def _epoch_point(self, record: EpochRecord) -> EpochPoint:
        """The upload of an epoch; without the layer statistics if they cannot be had
        (e.g. no memory left to copy huge kernels): a failing extra never costs the
        epoch's metrics, nor kills this thread (which `flush` would wait on)."""
        values = dict(record.values)
        if record.derive is not None:
            try:
                values.update(record.derive(values))
            except Exception as error:  # costs the derived values only
                log.warning("reglab: epoch %d: no derived values (%s)", record.epoch, error)
        if record.statistics and record.kernels:
            try:
                values.update(layer_statistics(record.kernels))
            except Exception as error:
                log.warning("reglab: epoch %d: no layer statistics (%s)", record.epoch, error)
        if record.histogram and self.takes_histograms and record.kernels:
            try:
                layers = kernel_histograms(record.kernels)
            except Exception as error:  # costs these histograms only
                log.warning("reglab: epoch %d: no histograms (%s)", record.epoch, error)
            else:
                self._histograms.append(Histograms(record.epoch, layers, record.run))
                self._histograms_waiting += 1
        # JSON has no NaN: a diverged value is left out (the run's error says what happened).
        finite = {name: value for name, value in values.items() if math.isfinite(value)}
        return EpochPoint(record.epoch, finite, record.time, record.run)

    def _send_finish(self, outcome: Mapping[str, Any]) -> None:
        try:
            self._call(self.channel.finish, outcome)
        except _Refused as refused:
            log.error("reglab: the server refused the final status: %s", refused)
            return
        self._finished = True

    def _settle(self, count: int) -> None:
        self._settled += count
        with self._idle:
            self._idle.notify_all()

    def _drop_all(self) -> int:
        dropped = sum(len(batch) for batch in self._epoch_batches) + sum(
            len(batch) for batch in self._step_batches
        )
        self._epoch_batches.clear()
        self._step_batches.clear()
        self._histogram_batches.clear()
        self._histograms.clear()
        self._histograms_waiting = 0
        for buffer in (self._epochs, self._steps):
            while True:
                try:
                    buffer.popleft()
                except IndexError:
                    break
                dropped += 1
        self._settle(dropped)
        return dropped

    def _end(self, status: str) -> None:
        self.ended.set()
        dropped = self._drop_all()
        log.warning(
            "reglab: run %s has ended on the server or its lease is lost (%s): "
            "%d uploads dropped, no more points",
            self.run_id,
            status,
            dropped,
        )

    def _give_up(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
            log.error("reglab: %s; training goes on, this run is not streamed", reason)
        self._dead = True
        self._drop_all()
