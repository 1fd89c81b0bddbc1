"""ReglabCallback: stream your own `model.fit` into reglab's dashboard, like a queued run.

The training thread only copies what it must (the logs, a frozen reference to each kernel)
into bounded buffers; a background sender thread creates the run, computes per-layer
statistics, batches the points and uploads them, retrying with backoff and keeping the
points while the server is unreachable. Uploads are keyed by (run, epoch) and (run, step),
so a resend never stores a point twice. At the end of `fit` the run is finished and the
buffers flushed, within `close_timeout`: a dead server never hangs the script.

A failing sink never stops training (Keras' own callbacks behave so): a wrong token, a
server that refuses the run or one that is down for good is reported once on stderr (the
`reglab.callback` logger) and in `callback.error`, and `fit` goes on.

This module imports only keras, numpy, httpx and the standard library, so a machine that
runs a training script needs none of the server's packages.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import re
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
import keras
import numpy as np

log = logging.getLogger("reglab.callback")

LogEvery = Literal["epoch", "batch"] | int
SPARSITY_THRESHOLD = 1e-3
_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_.:/\-]")
_SHORT = 255


def metric_name(name: str) -> str:
    """A Keras log name as the server accepts it (letters, digits and `_.:/-`)."""
    return _NAME_CHARACTERS.sub("_", str(name))[:100] or "_"


def finite_values(logs: dict[str, Any]) -> dict[str, float]:
    """Plain floats out of Keras logs; NaN, infinities and non-numbers are left out (JSON
    has no NaN, and the server refuses them)."""
    values: dict[str, float] = {}
    for name, value in logs.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            values[metric_name(name)] = number
    return values


def _short(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "")[:_SHORT]


def describe_regularizer(regularizer: Any) -> str | None:
    """A few words, e.g. 'L2 0.01' or 'L1 0.001 + L2 0.01', as the dashboard writes them."""
    if regularizer is None:
        return None
    try:
        config = regularizer.get_config()
    except Exception:
        config = {}
    l1, l2 = float(config.get("l1", 0) or 0), float(config.get("l2", 0) or 0)
    if "l1" in config or "l2" in config:
        if l1 and l2:
            return f"L1 {l1:g} + L2 {l2:g}"
        return f"L1 {l1:g}" if l1 else f"L2 {l2:g}"
    numbers = ", ".join(
        f"{key}={value:g}" for key, value in config.items() if isinstance(value, int | float)
    )
    return f"{type(regularizer).__name__}({numbers})" if numbers else type(regularizer).__name__


def describe_model(model: keras.Model) -> dict[str, Any]:
    """The layers (units, penalties, dropout rates), the optimizer and a one-line
    summary of the regularization, e.g. 'L2 0.01 · dropout 0.5'."""
    layers: list[dict[str, Any]] = []
    penalties: list[str] = []
    rates: set[float] = set()
    for layer in model.layers[:500]:
        kind = type(layer).__name__
        entry: dict[str, Any] = {"name": _short(layer.name), "type": _short(kind)}
        units = getattr(layer, "units", None) or getattr(layer, "filters", None)
        if isinstance(units, int):
            entry["units"] = units
        described = [
            text
            for text in (
                describe_regularizer(getattr(layer, "kernel_regularizer", None)),
                describe_regularizer(getattr(layer, "bias_regularizer", None)),
                describe_regularizer(getattr(layer, "activity_regularizer", None)),
            )
            if text
        ]
        if described:
            entry["regularizer"] = _short(" / ".join(dict.fromkeys(described)))
            penalties.extend(text for text in described if text not in penalties)
        rate = getattr(layer, "rate", None)
        if "Dropout" in kind and isinstance(rate, int | float) and 0 <= rate <= 1:
            entry["dropout"] = float(rate)
            if rate > 0:
                rates.add(float(rate))
        layers.append(entry)
    parts = list(penalties)
    optimizer = getattr(model, "optimizer", None)
    decay = getattr(optimizer, "weight_decay", None)
    if isinstance(decay, int | float) and decay > 0:
        parts.append(f"weight decay {decay:g}")
    if rates:
        parts.append("dropout " + "/".join(f"{rate:g}" for rate in sorted(rates)))
    info: dict[str, Any] = {
        "layers": layers,
        "regularization": _short(" · ".join(parts) or "none"),
    }
    with contextlib.suppress(Exception):  # a model not built yet has no count
        info["params"] = int(model.count_params())
    if optimizer is not None:
        info["optimizer"] = _short(type(optimizer).__name__)
        try:
            rate = float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate)))
            if math.isfinite(rate) and rate >= 0:
                info["learning_rate"] = rate
        except Exception:  # a schedule that cannot be read as a number
            pass
    return info


def guess_task(model: keras.Model) -> str:
    """classification when the loss is a cross-entropy (or hinge), else regression."""
    loss = getattr(model, "loss", None)
    name = loss if isinstance(loss, str) else type(loss).__name__ if loss is not None else ""
    lowered = str(name).lower()
    return "classification" if ("entropy" in lowered or "hinge" in lowered) else "regression"


def layer_statistics(kernels: list[tuple[str, Any]]) -> dict[str, float]:
    """Per layer: the kernel's L2 norm and the share of weights with |w| < 1e-3."""
    values: dict[str, float] = {}
    for name, kernel in kernels:
        flat = np.asarray(kernel, dtype=np.float64).ravel()
        values[metric_name(f"kernel_norm/{name}")] = float(np.sqrt(np.dot(flat, flat)))
        values[metric_name(f"sparsity/{name}")] = float(np.mean(np.abs(flat) < SPARSITY_THRESHOLD))
    return values


@dataclass
class _Epoch:
    epoch: int
    values: dict[str, float]
    kernels: list[tuple[str, Any]]
    time: float


class RunSender:
    """Creates a script run and uploads its points from a background thread.

    Args:
        url: the server, e.g. `http://127.0.0.1:8000`.
        token: the user token (sent as a bearer token), or None for a server without one.
        name: the run's name.
        script: what the script tells about itself (the server's `ScriptInfo`).
        max_buffer: points kept per kind (epochs, steps) while the server is unreachable;
            past it the oldest are dropped (and counted in `dropped`).
    """

    EPOCHS_PER_UPLOAD = 200
    STEPS_PER_UPLOAD = 2000
    STEP_INTERVAL = 1.0  # seconds between uploads of batch points, unless many wait
    POLL_SECONDS = 0.1  # how often the sender looks for new points

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        name: str,
        script: dict[str, Any],
        max_buffer: int = 100_000,
        heartbeat_seconds: float = 5.0,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        request_timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = name
        self.script = script
        self.heartbeat_seconds = heartbeat_seconds
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.request_timeout = request_timeout
        self.run_id: int | None = None
        self.error: str | None = None
        self.cancelled = threading.Event()  # the run ended on the server (cancelled)
        self.dropped = 0
        self.sent_epochs: list[int] = []
        self.sent_steps = 0
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=request_timeout, transport=transport
        )
        self._epochs: deque[_Epoch] = deque(maxlen=max_buffer)
        self._steps: deque[tuple[int, dict[str, float]]] = deque(maxlen=max_buffer)
        self._epochs_in_flight: list[dict[str, Any]] = []
        self._steps_in_flight: list[dict[str, Any]] = []
        self._finish: dict[str, Any] | None = None
        self._finished = False
        self._dead = False  # refused for good: points are dropped, nothing is sent
        self._wake = threading.Event()
        self._abandon = threading.Event()
        self._idle = threading.Condition()
        self._last_contact = 0.0
        self._steps_sent_at = 0.0
        # Points handed over, dropped from a full buffer (training thread), and stored or
        # given up (sender thread): each counter has one writer.
        self._added = 0
        self._settled = 0
        self._thread = threading.Thread(target=self._run, name="reglab-callback", daemon=True)

    # --- the training thread's side: cheap, never blocks on the network --------------

    def start(self) -> RunSender:
        self._thread.start()
        return self

    def add_epoch(
        self, epoch: int, values: dict[str, float], kernels: list[tuple[str, Any]]
    ) -> None:
        if self._dead or self.cancelled.is_set():
            return
        if len(self._epochs) == self._epochs.maxlen:
            self.dropped += 1
        self._epochs.append(_Epoch(epoch, values, kernels, time.time()))
        self._added += 1
        # No wake-up from here: a woken sender asks for the GIL at once and may take it
        # from the training thread for a switch interval (5 ms). It looks by itself every
        # POLL_SECONDS instead.

    def add_step(self, step: int, values: dict[str, float]) -> None:
        if self._dead or self.cancelled.is_set():
            return
        if len(self._steps) == self._steps.maxlen:
            self.dropped += 1
        self._steps.append((step, values))
        self._added += 1

    @property
    def pending(self) -> int:
        """Points handed over and not yet stored by the server."""
        return max(self._added - self.dropped - self._settled, 0)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every point handed over is stored (or can never be)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self.pending and not self._dead and self._thread.is_alive():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.5) if remaining is not None else 0.5)
        return not self.pending

    def close(
        self,
        status: Literal["succeeded", "failed", "cancelled"] = "succeeded",
        *,
        error: str | None = None,
        error_epoch: int | None = None,
        timeout: float = 10.0,
    ) -> bool:
        """Deliver what is buffered, then finish the run with `status`; gives up after
        `timeout` seconds (the points still buffered are lost, and said so). True when
        everything, the final status included, reached the server."""
        if self._finish is None:
            self._finish = {"status": status, "error": error, "error_epoch": error_epoch}
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
                self.url,
            )
            return False
        self._http.close()
        return self._finished and not self.pending

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
            except _Refused as refused:
                self._give_up(str(refused))
            delay = self.retry_initial
            if self._dead or self._finished:
                break
            if not progressed:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        now = time.monotonic()
        wait = max(self.heartbeat_seconds - (now - self._last_contact), 0.0)
        return min(wait, self.POLL_SECONDS)

    def _step(self) -> bool:
        """One unit of work; False when there was nothing to do."""
        if self.run_id is None:
            self._create()
            return True
        if self.cancelled.is_set():
            self._drop_all()
        if self._epochs_in_flight or self._epochs:
            self._send_epochs()
            return True
        if self._steps_in_flight or (self._steps and self._steps_due()):
            self._send_steps()
            return True
        if self._finish is not None:
            self._send_finish()
            return True
        if time.monotonic() - self._last_contact >= self.heartbeat_seconds:
            self._heartbeat()
            return True
        return False

    def _steps_due(self) -> bool:
        # Batch points go in large uploads, at most every STEP_INTERVAL unless many wait.
        return (
            len(self._steps) >= self.STEPS_PER_UPLOAD
            or self._finish is not None
            or time.monotonic() - self._steps_sent_at >= self.STEP_INTERVAL
        )

    def _call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as error:  # unreachable, reset, timed out: keep the points
            raise _Retry(f"{type(error).__name__}: {error}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retry(f"HTTP {response.status_code}")
        self._last_contact = time.monotonic()
        if response.status_code in (401, 403):
            raise _Refused(
                f"the server at {self.url} refused the token (HTTP {response.status_code}): "
                "set REGLAB_TOKEN or pass token=... to ReglabCallback"
            )
        if response.status_code == 404:
            raise _Refused(f"run {self.run_id} does not exist on {self.url} (deleted?)")
        return response

    def _create(self) -> None:
        response = self._call("POST", "/api/runs", {"name": self.name, "script": self.script})
        if response.status_code != 201:
            raise _Refused(
                f"the server refused the run: HTTP {response.status_code} {_detail(response)}"
            )
        self.run_id = int(response.json()["id"])
        log.info("reglab: streaming to %s/runs/%d", self.url, self.run_id)
        self._heartbeat()  # learns the lease, so that heartbeats come often enough

    def _heartbeat(self) -> None:
        response = self._call("POST", f"/api/runs/{self.run_id}/heartbeat")
        if response.status_code == 200:
            answer = response.json()
            lease = float(answer.get("lease_seconds") or 0)
            if lease > 0:
                self.heartbeat_seconds = min(self.heartbeat_seconds, lease / 3)
            if answer.get("cancel"):
                self._ended(str(answer.get("status")))

    def _ended(self, status: str) -> None:
        if not self.cancelled.is_set():
            log.warning("reglab: run %s is %s on the server: no more points", self.run_id, status)
        self.cancelled.set()
        self._finished = True  # its status is final already
        self._drop_all()

    def _send_epochs(self) -> None:
        if not self._epochs_in_flight:
            while self._epochs and len(self._epochs_in_flight) < self.EPOCHS_PER_UPLOAD:
                self._epochs_in_flight.append(_epoch_point(self._epochs.popleft()))
        response = self._call(
            "POST", f"/api/runs/{self.run_id}/metrics", {"points": self._epochs_in_flight}
        )
        if response.status_code == 409:
            self._ended("ended")
            return
        if response.status_code != 200:
            count = len(self._epochs_in_flight)
            log.error("reglab: the server refused %d epochs: %s", count, _detail(response))
        else:
            self.sent_epochs.extend(point["epoch"] for point in self._epochs_in_flight)
        self._delivered(self._epochs_in_flight)

    def _send_steps(self) -> None:
        if not self._steps_in_flight:
            while self._steps and len(self._steps_in_flight) < self.STEPS_PER_UPLOAD:
                step, values = self._steps.popleft()
                self._steps_in_flight.append({"step": step, "values": values})
        response = self._call(
            "POST", f"/api/runs/{self.run_id}/batches", {"points": self._steps_in_flight}
        )
        if response.status_code == 409:
            self._ended("ended")
            return
        if response.status_code != 200:
            count = len(self._steps_in_flight)
            log.error("reglab: the server refused %d steps: %s", count, _detail(response))
        else:
            self.sent_steps += len(self._steps_in_flight)
        self._steps_sent_at = time.monotonic()
        self._delivered(self._steps_in_flight)

    def _send_finish(self) -> None:
        assert self._finish is not None
        body = {key: value for key, value in self._finish.items() if value is not None}
        if "error" in body:
            body["error"] = str(body["error"])[:10_000]
        response = self._call("POST", f"/api/runs/{self.run_id}/finish", body)
        if response.status_code != 200:
            log.error("reglab: the server refused the final status: %s", _detail(response))
        self._finished = True

    def _delivered(self, batch: list[dict[str, Any]]) -> None:
        self._settled += len(batch)
        batch.clear()
        with self._idle:
            self._idle.notify_all()

    def _drop_all(self) -> None:
        dropped = len(self._epochs_in_flight) + len(self._steps_in_flight)
        self._epochs_in_flight.clear()
        self._steps_in_flight.clear()
        for buffer in (self._epochs, self._steps):
            while True:
                try:
                    buffer.popleft()
                except IndexError:
                    break
                dropped += 1
        self._settled += dropped
        with self._idle:
            self._idle.notify_all()

    def _give_up(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
            log.error("reglab: %s; training goes on, this run is not streamed", reason)
        self._dead = True
        self._drop_all()


class _Retry(Exception):
    """Worth trying again later: no answer, or a 5xx / 429."""


class _Refused(Exception):
    """Never worth trying again (wrong token, run gone, run refused)."""


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))[:500]
    except (ValueError, AttributeError):
        return response.text[:500]


def _epoch_point(epoch: _Epoch) -> dict[str, Any]:
    values = dict(epoch.values)
    try:
        values.update(layer_statistics(epoch.kernels))
    except Exception as error:  # a failing extra never costs the epoch's metrics
        log.warning("reglab: epoch %d: no layer statistics (%s)", epoch.epoch, error)
    finite = {name: value for name, value in values.items() if math.isfinite(value)}
    return {"epoch": epoch.epoch, "values": finite, "time": epoch.time}


class ReglabCallback(keras.callbacks.Callback):
    """Streams a `model.fit` into a reglab server as a run of its own ("script" runs).

    Each `fit` becomes one run, named after the script unless `name` is given, with a
    summary of the model (layers, penalties, dropout, optimizer) in place of a spec.
    Every epoch's logs (plus per-layer kernel norms and sparsity) are uploaded; with
    `log_every="batch"` (or every N batches) each step's logs too, which the dashboard
    draws as min-max bands. The training thread never waits on the network: a sender
    thread uploads, retries and buffers. At the end of `fit` the run is marked succeeded
    (or failed / cancelled when the script dies of an exception / Ctrl-C) and the buffer
    flushed within `close_timeout` seconds.

    When the run is cancelled from the dashboard, training stops after the current epoch
    (`stop_on_cancel`). A wrong token or an unreachable server never stops training: the
    problem is logged once on stderr and kept in `error`.

    Args:
        name: the run's name (default: the script's file name).
        url: the server (default: `REGLAB_SERVER_URL`, else http://127.0.0.1:8000).
        token: the user token (default: `REGLAB_TOKEN`).
        log_every: "epoch", "batch", or an int N: also log every N-th batch.
        dataset: a few words about the data, shown on the run page.
        task: "classification" or "regression" (default: guessed from the loss).
        batch_size: shown on the run page (Keras does not tell callbacks).
        layer_statistics: also log each kernel's L2 norm and sparsity per epoch.
        close_timeout: the longest `on_train_end` waits for the server.
        max_buffer: points kept per kind while the server is unreachable.
        stop_on_cancel: stop training when the run is cancelled from the dashboard.

    Example:
        >>> from app.client import ReglabCallback
        >>> model.fit(x, y, epochs=20, validation_split=0.2,
        ...           callbacks=[ReglabCallback("mlp l2=0.01", log_every="batch")])
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        log_every: LogEvery = "epoch",
        dataset: str | None = None,
        task: Literal["classification", "regression"] | None = None,
        batch_size: int | None = None,
        layer_statistics: bool = True,
        close_timeout: float = 10.0,
        max_buffer: int = 100_000,
        stop_on_cancel: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__()
        if not (log_every in ("epoch", "batch") or (isinstance(log_every, int) and log_every >= 1)):
            raise ValueError(f"log_every: 'epoch', 'batch' or an int >= 1, not {log_every!r}")
        self.name = name
        self.url = url or os.environ.get("REGLAB_SERVER_URL") or "http://127.0.0.1:8000"
        self.token = token if token is not None else (os.environ.get("REGLAB_TOKEN") or None)
        self.log_every: LogEvery = log_every
        self.dataset = dataset
        self.task = task
        self.batch_size = batch_size
        self.layer_statistics = layer_statistics
        self.close_timeout = close_timeout
        self.max_buffer = max_buffer
        self.stop_on_cancel = stop_on_cancel
        self.transport = transport
        self.sender: RunSender | None = None
        self.hold_seconds: list[float] = []  # how long each on_epoch_end held training
        self._every = 0 if log_every == "epoch" else 1 if log_every == "batch" else int(log_every)
        self._step = 0
        self._epoch = -1
        self._epoch_started = time.perf_counter()
        self._kernels: list[tuple[str, Any]] = []
        self._closed: RunSender | None = None

    @property
    def run_id(self) -> int | None:
        """The latest run's id on the server (None until the server has created it)."""
        sender = self.last_sender
        return sender.run_id if sender is not None else None

    @property
    def error(self) -> str | None:
        """Why the latest run is not streamed (wrong token, refused run), if it is not."""
        sender = self.last_sender
        return sender.error if sender is not None else None

    def script_info(self) -> dict[str, Any]:
        """What the run page shows in place of a spec (the server's `ScriptInfo`)."""
        info = describe_model(self.model)
        epochs = self.params.get("epochs") if self.params else None
        info.update(
            task=self.task or guess_task(self.model),
            epochs=epochs if isinstance(epochs, int) and epochs >= 1 else None,
            batch_size=self.batch_size,
            dataset=_short(self.dataset),
            host=_short(socket.gethostname()),
            command=_short(" ".join([Path(sys.executable).name, *sys.argv])),
            framework=_short(f"keras {keras.__version__} ({keras.backend.backend()})"),
            log_every=self.log_every,
        )
        return {key: value for key, value in info.items() if value is not None}

    def _run_name(self) -> str:
        if self.name:
            return self.name[:200]
        script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "script"
        return f"{script or 'script'} {time.strftime('%Y-%m-%d %H:%M:%S')}"[:200]

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.sender is not None:  # a second fit with the same callback: a new run
            self.sender.close(timeout=self.close_timeout)
        self._step, self._epoch = 0, -1
        self._kernels = [
            (layer.name, layer.kernel)
            for layer in self.model.layers
            if getattr(layer, "kernel", None) is not None
        ]
        try:
            script = self.script_info()
        except Exception as error:  # a model we cannot describe is still streamed
            log.warning("reglab: no model summary (%s)", error)
            script = {"log_every": self.log_every}
        self.sender = RunSender(
            self.url,
            token=self.token,
            name=self._run_name(),
            script=script,
            max_buffer=self.max_buffer,
            transport=self.transport,
        ).start()
        _watch_for_crashes(self)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = self._step
        self._step += 1
        if self._every and step % self._every == 0 and self.sender is not None:
            values = finite_values(logs or {})
            if values:
                self.sender.add_step(step, values)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        entered = time.perf_counter()
        self._epoch = epoch
        if self.sender is None:
            return
        values = finite_values(logs or {})
        values["epoch_seconds"] = entered - self._epoch_started
        kernels = self._snapshot_kernels() if self.layer_statistics else []
        self.sender.add_epoch(epoch, values, kernels)
        if self.stop_on_cancel and self.sender.cancelled.is_set():
            self.model.stop_training = True
        self.hold_seconds.append(time.perf_counter() - entered)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.close("succeeded")

    def close(
        self,
        status: Literal["succeeded", "failed", "cancelled"] = "succeeded",
        *,
        error: str | None = None,
    ) -> bool:
        """Flush and finish the run (called by `on_train_end`; once per run)."""
        sender, self.sender = self.sender, None
        if sender is None:
            return True
        _forget(self)
        error_epoch = self._epoch + 1 if status != "succeeded" else None
        self._closed = sender
        done = sender.close(
            status, error=error, error_epoch=error_epoch, timeout=self.close_timeout
        )
        return done

    @property
    def last_sender(self) -> RunSender | None:
        """The sender of the latest run, open or closed (tests and diagnostics)."""
        return self.sender or self._closed

    def _snapshot_kernels(self) -> list[tuple[str, Any]]:
        """Freeze the kernels' current values without copying them to the host here: on
        TensorFlow one `identity_n` reads them all (~30 µs) and later updates leave the
        snapshot as it was; JAX and NumPy arrays are immutable already. The sender thread
        turns them into numpy arrays."""
        if not self._kernels:
            return []
        names = [name for name, _ in self._kernels]
        values = [variable.value for _, variable in self._kernels]
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            values = tf.identity_n(values)
        elif keras.backend.backend() == "torch":
            values = [value.detach().clone() for value in values]
        return list(zip(names, values, strict=True))


# --- a script that dies mid-fit: its run is failed (or cancelled on Ctrl-C) ----------------

_open_callbacks: list[ReglabCallback] = []
ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]
_previous_hook: ExceptHook | None = None
_lock = threading.Lock()


def _watch_for_crashes(callback: ReglabCallback) -> None:
    """An exception out of `fit` skips `on_train_end`: finish the run from the interpreter's
    exception hook (failed with the traceback's last line, or cancelled on Ctrl-C), and
    at exit for a script that ends any other way mid-fit."""
    global _previous_hook
    with _lock:
        if _previous_hook is None:
            _previous_hook = sys.excepthook
            sys.excepthook = _excepthook
            atexit.register(_at_exit)
        _open_callbacks.append(callback)


def _forget(callback: ReglabCallback) -> None:
    with _lock:
        if callback in _open_callbacks:
            _open_callbacks.remove(callback)


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if _previous_hook is not None:
        _previous_hook(kind, value, tb)
    status: Literal["failed", "cancelled"] = (
        "cancelled" if issubclass(kind, KeyboardInterrupt) else "failed"
    )
    text = "".join(traceback.format_exception_only(kind, value)).strip()
    for callback in list(_open_callbacks):
        callback.close(status, error=text or kind.__name__)


def _at_exit() -> None:
    for callback in list(_open_callbacks):
        callback.close("failed", error="the script exited before training ended")
