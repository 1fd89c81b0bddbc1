"""ReglabCallback: stream a `model.fit` into reglab's dashboard, like a queued run.

The training thread only copies what it must (the logs, a frozen reference to each
kernel) and hands it to the background sender (reglab/sender.py), which computes the
per-layer statistics, batches, uploads, retries and buffers. In a user's script each
`fit` becomes a run of its own ("script" runs): created, finished at the end of `fit`,
failed (or cancelled on Ctrl-C) when the script dies mid-fit. In the worker the same
callback streams a claimed run into the sender the training child owns.

A failing sink never stops training (Keras' own callbacks behave so): a wrong token, a
server that refuses the run or one that is down for good is reported once on stderr (the
`reglab.sender` logger) and in `callback.error`, and `fit` goes on.
"""

from __future__ import annotations

import atexit
import logging
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
import keras

from reglab.channels import ScriptRunChannel, StepPoint
from reglab.client import ReglabClient, server_url
from reglab.sender import EpochRecord, Sender
from reglab.stats import Kernels, finite_values, histogram_due, model_kernels, snapshot_kernels
from reglab.summary import describe_model, guess_task, short_text

log = logging.getLogger("reglab.callback")

LogEvery = Literal["epoch", "batch"] | int
FinalStatus = Literal["succeeded", "failed", "cancelled"]


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

    Given a `sender`, the callback streams into it instead, and its owner opens and
    closes it and finishes the run: the worker's training child does so for the run it
    claimed (`ReglabCallback(sender=Sender(ClaimedRunChannel(...)))`). Training stops
    when that run's lease is lost.

    Args:
        name: the run's name (default: the script's file name).
        url: the server (default: `REGLAB_SERVER_URL`, else http://127.0.0.1:8000).
        token: the user token (default: `REGLAB_TOKEN`).
        log_every: "epoch", "batch", or an int N: also log every N-th batch.
        dataset: a few words about the data, shown on the run page.
        task: "classification" or "regression" (default: guessed from the loss).
        batch_size: shown on the run page (Keras does not tell callbacks).
        layer_statistics: also log each kernel's L2 norm and sparsity per epoch.
        histogram_every: epochs between kernel histograms where the channel takes them;
            0 turns them off; None takes `histogram_every` from the params the training
            engine passes (the worker's `train` does), else 0.
        close_timeout: the longest `on_train_end` waits for the server.
        max_buffer: points kept per kind while the server is unreachable.
        stop_on_cancel: stop training when the run is cancelled or its lease lost.
        sender: stream into this started sender rather than a run of the script's own.

    Example:
        >>> from reglab import ReglabCallback
        >>> model.fit(x, y, epochs=20, validation_split=0.2,
        ...           callbacks=[ReglabCallback("mlp l2=0.01", log_every="batch")])
    """

    HEARTBEAT_SECONDS = 5.0  # at most; shorter when the server's lease asks for it
    REQUEST_TIMEOUT = 10.0

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
        histogram_every: int | None = None,
        close_timeout: float = 10.0,
        max_buffer: int = 100_000,
        stop_on_cancel: bool = True,
        transport: httpx.BaseTransport | None = None,
        sender: Sender | None = None,
    ) -> None:
        super().__init__()
        if not (log_every in ("epoch", "batch") or (isinstance(log_every, int) and log_every >= 1)):
            raise ValueError(f"log_every: 'epoch', 'batch' or an int >= 1, not {log_every!r}")
        self.name = name
        self.url = server_url(url)
        self.token = token
        self.log_every: LogEvery = log_every
        self.dataset = dataset
        self.task = task
        self.batch_size = batch_size
        self.layer_statistics = layer_statistics
        self.histogram_every = histogram_every
        self.close_timeout = close_timeout
        self.max_buffer = max_buffer
        self.stop_on_cancel = stop_on_cancel
        self.transport = transport
        self.sender: Sender | None = sender
        self.hold_seconds: list[float] = []  # how long each on_epoch_end held training
        self.last_epoch = -1  # the last epoch that ended (-1: none yet)
        self._owns_sender = sender is None
        self._every = 0 if log_every == "epoch" else 1 if log_every == "batch" else int(log_every)
        self._step = 0
        self._epoch_started = time.perf_counter()
        self._kernels: Kernels = []
        self._channel: ScriptRunChannel | None = None
        self._closed: Sender | None = None

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

    @property
    def last_sender(self) -> Sender | None:
        """The sender of the latest run, open or closed (tests and diagnostics)."""
        return self.sender or self._closed

    def script_info(self) -> dict[str, Any]:
        """What the run page shows in place of a spec (the server's `ScriptInfo`)."""
        info = describe_model(self.model)
        epochs = self.params.get("epochs") if self.params else None
        info.update(
            task=self.task or guess_task(self.model),
            epochs=epochs if isinstance(epochs, int) and epochs >= 1 else None,
            batch_size=self.batch_size,
            dataset=short_text(self.dataset),
            host=short_text(socket.gethostname()),
            command=short_text(" ".join([Path(sys.executable).name, *sys.argv])),
            framework=short_text(f"keras {keras.__version__} ({keras.backend.backend()})"),
            log_every=self.log_every,
        )
        return {key: value for key, value in info.items() if value is not None}

    def _run_name(self) -> str:
        if self.name:
            return self.name[:200]
        script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "script"
        return f"{script or 'script'} {time.strftime('%Y-%m-%d %H:%M:%S')}"[:200]

    def _open_run(self) -> Sender:
        """A new script run for this `fit`, created by its sender's thread."""
        try:
            script = self.script_info()
        except Exception as error:  # a model we cannot describe is still streamed
            log.warning("reglab: no model summary (%s)", error)
            script = {"log_every": self.log_every}
        client = ReglabClient(
            self.url, token=self.token, timeout=self.REQUEST_TIMEOUT, transport=self.transport
        )
        self._channel = ScriptRunChannel(
            client, name=self._run_name(), script=script, heartbeat_seconds=self.HEARTBEAT_SECONDS
        )
        return Sender(self._channel, max_buffer=self.max_buffer).start()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._step, self.last_epoch = 0, -1
        self._kernels = model_kernels(self.model)
        if not self._owns_sender:
            return
        if self.sender is not None:  # a second fit with the same callback: a new run
            self.close()
        self.sender = self._open_run()
        _watch_for_crashes(self)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = self._step
        self._step += 1
        if self._every and step % self._every == 0 and self.sender is not None:
            values = finite_values(logs or {})
            if values:
                self.sender.add_step(StepPoint(step, values))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        entered = time.perf_counter()
        self.last_epoch = epoch
        sender = self.sender
        if sender is None:
            return
        values = finite_values(logs or {})
        values["epoch_seconds"] = entered - self._epoch_started
        histogram = sender.takes_histograms and self._histogram_due(epoch)
        wanted = self.layer_statistics or histogram
        kernels = snapshot_kernels(self._kernels) if wanted else []
        sender.add_epoch(
            EpochRecord(
                epoch,
                values,
                kernels,
                time.time(),
                statistics=self.layer_statistics,
                histogram=histogram,
            )
        )
        if self.stop_on_cancel and sender.ended.is_set():
            self.model.stop_training = True
        self.hold_seconds.append(time.perf_counter() - entered)

    def _histogram_due(self, epoch: int) -> bool:
        params = self.params or {}
        every = self.histogram_every
        if every is None:
            every = int(params.get("histogram_every") or 0)
        return histogram_due(
            epoch, params.get("epochs"), every, last=bool(self.model.stop_training)
        )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._owns_sender:
            self.close("succeeded")

    def close(self, status: FinalStatus = "succeeded", *, error: str | None = None) -> bool:
        """Flush and finish the script's run (called by `on_train_end`; once per run).
        A callback given a sender leaves this to the sender's owner (and returns False)."""
        if not self._owns_sender:
            return False
        sender, self.sender = self.sender, None
        if sender is None:
            return True
        _forget(self)
        error_epoch = self.last_epoch + 1 if status != "succeeded" else None
        self._closed = sender
        outcome = {"status": status, "error": error, "error_epoch": error_epoch}
        done = sender.close(outcome, timeout=self.close_timeout)
        if sender.stopped and self._channel is not None:
            self._channel.close()
        return done


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
