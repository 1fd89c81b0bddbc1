"""The Keras callback that streams each epoch to the server, and its background sender.

The callback only copies what it must on the training thread (the epoch's logs and a
snapshot of each kernel); a sender thread computes the per-layer statistics, batches
the points and uploads them. Uploads are keyed by (run, epoch), so a retry after a
network error never duplicates a point, and points wait in memory while the server is
unreachable.

Every few epochs (`histogram_every`, and at the last epoch) the sender also bins each
layer's kernel into a histogram (`HISTOGRAM_BINS` bins with their edges) and uploads it
through `upload_histograms`, keyed by (run, epoch) like the metrics.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from app.client import LeaseLostError, ReglabError

log = logging.getLogger("reglab.worker")

SPARSITY_THRESHOLD = 1e-3
HISTOGRAM_BINS = 30

Upload = Callable[[list[dict[str, Any]]], object]
# (epoch, {layer: {"edges": [...], "counts": [...]}}) → sent, or raises
UploadHistograms = Callable[[int, dict[str, dict[str, list[float]]]], object]


@dataclass
class EpochSnapshot:
    """What the training thread hands over at the end of an epoch."""

    epoch: int
    logs: dict[str, float]
    kernels: list[tuple[str, Any]]  # tensors; turned into numpy off the training thread
    time: float
    histogram: bool = False  # also bin the kernels into histograms for this epoch


def layer_statistics(kernels: list[tuple[str, Any]]) -> dict[str, float]:
    """Per layer: the kernel's L2 norm and the fraction of weights with |w| < 1e-3."""
    values: dict[str, float] = {}
    for name, kernel in kernels:
        flat = np.asarray(kernel, dtype=np.float64).ravel()
        values[f"kernel_norm/{name}"] = float(np.sqrt(np.dot(flat, flat)))
        values[f"sparsity/{name}"] = float(np.mean(np.abs(flat) < SPARSITY_THRESHOLD))
    return values


def kernel_histograms(
    kernels: list[tuple[str, Any]], bins: int = HISTOGRAM_BINS
) -> dict[str, dict[str, list[float]]]:
    """Per layer: `bins` equal-width bins over the kernel's finite values, as `edges`
    (bins + 1 of them) and `counts`. A layer with no finite value is left out."""
    histograms: dict[str, dict[str, list[float]]] = {}
    for name, kernel in kernels:
        flat = np.asarray(kernel, dtype=np.float64).ravel()
        flat = flat[np.isfinite(flat)]
        if flat.size == 0:
            continue
        counts, edges = np.histogram(flat, bins=bins)
        histograms[name] = {
            "edges": [float(edge) for edge in edges],
            "counts": [float(count) for count in counts],
        }
    return histograms


def histogram_due(epoch: int, epochs: int | None, every: int, last: bool = False) -> bool:
    """Whether an epoch (0-based) gets histograms: every `every`-th from the first, the
    last of `epochs`, and one that ends training early (`last`); never when `every` is 0."""
    if every <= 0:
        return False
    return epoch % every == 0 or last or (epochs is not None and epoch == epochs - 1)


def to_point(snapshot: EpochSnapshot) -> dict[str, Any]:
    values = {name: float(value) for name, value in snapshot.logs.items()}
    values.update(layer_statistics(snapshot.kernels))
    # JSON has no NaN: a diverged value is left out (the run's error says what happened).
    finite = {name: value for name, value in values.items() if math.isfinite(value)}
    return {"epoch": snapshot.epoch, "values": finite, "time": snapshot.time}


@dataclass
class MetricSender:
    """Uploads points from a background thread; retries with backoff, never duplicates.

    Args:
        upload: sends a batch of points (raises on failure).
        upload_histograms: sends one epoch's kernel histograms (raises on failure); None
            drops the histograms of the snapshots that ask for them.
        max_batch: points per request at most.
        retry_max: longest wait between retries while the server is unreachable.
    """

    upload: Upload
    upload_histograms: UploadHistograms | None = None
    max_batch: int = 200
    retry_initial: float = 0.05
    retry_max: float = 2.0
    lease_lost: threading.Event = field(default_factory=threading.Event)
    sent_epochs: list[int] = field(default_factory=list)
    sent_histograms: list[int] = field(default_factory=list)
    _inbox: queue.SimpleQueue[EpochSnapshot | None] = field(default_factory=queue.SimpleQueue)
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _histograms: list[tuple[int, dict[str, dict[str, list[float]]]]] = field(default_factory=list)
    _idle: threading.Condition = field(default_factory=threading.Condition)
    _queued: int = 0
    _thread: threading.Thread | None = None

    def start(self) -> MetricSender:
        self._thread = threading.Thread(target=self._run, name="reglab-sender", daemon=True)
        self._thread.start()
        return self

    def put(self, snapshot: EpochSnapshot) -> None:
        """Hand over an epoch; returns at once."""
        with self._idle:
            self._queued += 1 + self._wants_histogram(snapshot)
        self._inbox.put(snapshot)

    def _wants_histogram(self, snapshot: EpochSnapshot) -> int:
        return int(snapshot.histogram and self.upload_histograms is not None)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every point handed over is stored (or the lease was lost)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._queued and not self.lease_lost.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining if remaining is not None else 1.0)
        return not self.lease_lost.is_set()

    def close(self, timeout: float | None = None) -> bool:
        done = self.flush(timeout)
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)
        return done

    def _drain(self, block: bool, wait: float | None = None) -> bool:
        """Move snapshots from the inbox to pending points; False once closed."""
        try:
            item = self._inbox.get(block=block, timeout=wait)
        except queue.Empty:
            return True
        while True:
            if item is None:
                return False
            self._pending.append(self._point(item))
            if self._wants_histogram(item):
                self._add_histograms(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True

    @staticmethod
    def _point(snapshot: EpochSnapshot) -> dict[str, Any]:
        """The upload of an epoch; without the layer statistics if they cannot be had
        (e.g. no memory left to copy huge kernels): a failing extra never costs the
        epoch's metrics, nor kills this thread (which `flush` would wait on)."""
        try:
            return to_point(snapshot)
        except Exception as error:
            log.warning("epoch %d: no layer statistics (%s)", snapshot.epoch, error)
            return to_point(EpochSnapshot(snapshot.epoch, snapshot.logs, [], snapshot.time))

    def _add_histograms(self, snapshot: EpochSnapshot) -> None:
        """Bin the snapshot's kernels; a failure costs these histograms only."""
        try:
            layers = kernel_histograms(snapshot.kernels)
        except Exception as error:
            log.warning("epoch %d: no histograms (%s)", snapshot.epoch, error)
            self._done(1)
            return
        self._histograms.append((snapshot.epoch, layers))

    def _run(self) -> None:
        """Points first (the live curves), then histograms, one epoch per request."""
        delay = self.retry_initial
        open_ = True
        while open_ or self._pending or self._histograms:
            if not self._pending and not self._histograms:
                open_ = self._drain(block=True)
                continue
            batch = self._pending[: self.max_batch]
            what = f"{len(batch)} points"
            try:
                if batch:
                    self.upload(batch)
                else:
                    epoch, layers = self._histograms[0]
                    what = f"the histograms of epoch {epoch}"
                    assert self.upload_histograms is not None
                    self.upload_histograms(epoch, layers)
            except LeaseLostError as error:
                count = len(self._pending) + len(self._histograms)
                log.warning("lease lost, dropping %d uploads: %s", count, error)
                self.lease_lost.set()
                self._done(count)
                self._pending.clear()
                self._histograms.clear()
                continue
            except ReglabError as error:
                if error.status_code < 500 and error.status_code != 429:
                    log.error("server refused %s: %s", what, error)
                    self._sent(batch, record=False)
                    continue
                open_ = self._drain(block=True, wait=delay) and open_
                delay = min(delay * 2, self.retry_max)
                continue
            except Exception as error:  # network down, server restarting: keep the points
                log.debug("upload failed (%s), retrying in %.2f s", error, delay)
                open_ = self._drain(block=True, wait=delay) and open_
                delay = min(delay * 2, self.retry_max)
                continue
            delay = self.retry_initial
            self._sent(batch, record=True)
            open_ = self._drain(block=False) and open_

    def _sent(self, batch: list[dict[str, Any]], *, record: bool) -> None:
        """Forget an upload that is done with: `batch`, or the first histogram if empty."""
        if batch:
            if record:
                self.sent_epochs.extend(point["epoch"] for point in batch)
            del self._pending[: len(batch)]
            self._done(len(batch))
            return
        epoch, _ = self._histograms.pop(0)
        if record:
            self.sent_histograms.append(epoch)
        self._done(1)

    def _done(self, count: int) -> None:
        with self._idle:
            self._queued = max(self._queued - count, 0)
            self._idle.notify_all()


class StreamingCallback(keras.callbacks.Callback):
    """Streams each epoch's logs and per-layer weight statistics to a `MetricSender`.

    The training thread only copies the kernels and queues them: the statistics and the
    upload happen on the sender's thread. `hold_seconds` records how long each
    `on_epoch_end` held the training thread.

    Every `histogram_every` epochs (and at the last one) the epoch's snapshot also asks
    the sender for kernel histograms; `None` takes the value `train` passes in the
    callback's params (the spec's `histogram_every`), or 0 (none) under a plain `fit`.

    Args:
        sender: a started `MetricSender`.
        histogram_every: epochs between histograms; 0 turns them off.

    Example:
        >>> sender = MetricSender(upload=lambda points: None).start()
        >>> model.fit(x, y, epochs=3, callbacks=[StreamingCallback(sender)])
        >>> sender.close()
    """

    def __init__(self, sender: MetricSender, histogram_every: int | None = None) -> None:
        super().__init__()
        self.sender = sender
        self.histogram_every = histogram_every
        self.hold_seconds: list[float] = []
        self.last_epoch = -1
        self._epoch_started = time.perf_counter()
        self._kernels: list[tuple[str, Any]] = []

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self._kernels = [
            (layer.name, layer.kernel)
            for layer in model.layers
            if getattr(layer, "kernel", None) is not None
        ]

    def _snapshot_kernels(self) -> list[tuple[str, Any]]:
        """Freeze the kernels' current values without copying them to the host here.

        On TensorFlow one `identity_n` reads every kernel in a single op (~30 µs); the
        variables are copy-on-write, so later updates leave this snapshot as it was. JAX
        arrays are immutable: their current values are the snapshot. The sender thread
        turns them into numpy arrays.
        """
        if not self._kernels:
            return []
        names = [name for name, _ in self._kernels]
        values = [variable.value for _, variable in self._kernels]
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            values = tf.identity_n(values)
        return list(zip(names, values, strict=True))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        entered = time.perf_counter()
        logs = logs or {}
        values = {name: float(value) for name, value in logs.items()}
        values["epoch_seconds"] = entered - self._epoch_started
        params = self.params or {}
        every = self.histogram_every
        if every is None:
            every = int(params.get("histogram_every") or 0)
        histogram = histogram_due(
            epoch, params.get("epochs"), every, last=bool(self.model.stop_training)
        )
        self.sender.put(
            EpochSnapshot(epoch, values, self._snapshot_kernels(), time.time(), histogram)
        )
        self.last_epoch = epoch
        if self.sender.lease_lost.is_set():
            self.model.stop_training = True
        self.hold_seconds.append(time.perf_counter() - entered)
