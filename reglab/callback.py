"""ReglabCallback: stream a `model.fit` into reglab's dashboard, like a queued run.

The training thread only copies what it must (the logs, a frozen reference to each
kernel) and hands it to the background sender (reglab/sender.py), which computes the
per-layer statistics, batches, uploads, retries and buffers. In a user's script each
`fit` becomes a run of its own ("script" runs, a `reglab.Run`): created with the device it
trains on, finished at the end of `fit`, failed (or cancelled on Ctrl-C) when the script
dies mid-fit; `log_test` adds the test metrics. The penalty is measured apart from the
data loss (reglab/penalties.py), so that the run has `data_loss`, `val_data_loss` and
`reg_loss` as a queued run does. In the worker the same callback streams a claimed run
into the sender the training child owns (its logs have those series already).

A failing sink never stops training (Keras' own callbacks behave so): a wrong token, a
server that refuses the run or one that is down for good is reported once on stderr (the
`reglab.sender` logger) and in `callback.error`, and `fit` goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import httpx
import keras

from reglab import penalties
from reglab.channels import StepPoint
from reglab.client import server_url
from reglab.run import FinalStatus, Run, as_test_metrics, complete_losses
from reglab.sender import EpochRecord, Sender
from reglab.stats import Kernels, finite_values, histogram_due, model_kernels, snapshot_kernels
from reglab.summary import describe_host, describe_model, guess_task, short_text

log = logging.getLogger("reglab.callback")

LogEvery = Literal["epoch", "batch"] | int


class _FitRun(Run):
    """The run of one `fit`: a script that exits mid-fit without an exception (a
    `sys.exit` in another callback) leaves it failed, not succeeded."""

    EXIT_OUTCOME: ClassVar[tuple[FinalStatus, str | None]] = (
        "failed",
        "the script exited before training ended",
    )


class ReglabCallback(keras.callbacks.Callback):
    """Streams a `model.fit` into a reglab server as a run of its own ("script" runs).

    Each `fit` becomes one run, named after the script unless `name` is given, with a
    summary of the model (layers, penalties, dropout, optimizer) in place of a spec and
    the device it trains on. Every epoch's logs (plus per-layer kernel norms and sparsity)
    are uploaded, with the penalty apart from the data loss: `reg_loss`, `data_loss` and
    `val_data_loss` (on the TensorFlow backend a `reg_loss` metric joins the model's
    steps, exact; elsewhere the penalty comes from the weights: reglab/penalties.py, and
    the run's `script.series` says which). With `log_every="batch"` (or every N batches)
    each step's logs too, which the dashboard draws as min-max bands. The training thread
    never waits on the network: a sender thread uploads, retries and buffers. At the end
    of `fit` the run is marked succeeded (or failed / cancelled when the script dies of an
    exception / Ctrl-C) and the buffer flushed within `close_timeout` seconds;
    `log_test(model.evaluate(..., return_dict=True))` then adds the test metrics.

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
        penalty_metric: measure the penalty in the model's steps (a `reg_loss` metric,
            TensorFlow backend); False: from the weights at each epoch's start and end.
        close_timeout: the longest `on_train_end` waits for the server.
        max_buffer: points kept per kind while the server is unreachable.
        stop_on_cancel: stop training when the run is cancelled or its lease lost.
        sender: stream into this started sender rather than a run of the script's own.

    Example:
        >>> from reglab import ReglabCallback
        >>> reglab = ReglabCallback("mlp l2=0.01", log_every="batch")
        >>> model.fit(x, y, epochs=20, validation_split=0.2, callbacks=[reglab])
        >>> reglab.log_test(model.evaluate(x_test, y_test, return_dict=True))
    """

    HEARTBEAT_SECONDS = Run.HEARTBEAT_SECONDS
    REQUEST_TIMEOUT = Run.REQUEST_TIMEOUT

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
        penalty_metric: bool = True,
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
        self.penalty_metric = penalty_metric
        self.close_timeout = close_timeout
        self.max_buffer = max_buffer
        self.stop_on_cancel = stop_on_cancel
        self.transport = transport
        self.sender: Sender | None = sender
        self.run: Run | None = None  # the latest fit's run (None when given a sender)
        self.hold_seconds: list[float] = []  # how long each on_epoch_end held training
        self.last_epoch = -1  # the last epoch that ended (-1: none yet)
        self._owns_sender = sender is None
        self._every = 0 if log_every == "epoch" else 1 if log_every == "batch" else int(log_every)
        self._step = 0
        self._epoch_started = time.perf_counter()
        self._kernels: Kernels = []
        self._regularized: list[tuple[Any, Any]] = []
        self._penalty_start: penalties.FrozenPenalty | None = None
        self._in_step = False  # the model's steps measure the penalty (set at train begin)

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
        if self.sender is not None:
            return self.sender
        return self.run.last_sender if self.run is not None else None

    @property
    def penalty_method(self) -> str:
        """How the penalty is measured: penalties.IN_STEP or penalties.FROM_WEIGHTS."""
        in_step = self.model is not None and penalties.measures_in_step(self.model)
        return penalties.IN_STEP if in_step else penalties.FROM_WEIGHTS

    def set_model(self, model: keras.Model) -> None:
        # Before `fit` builds its step functions: the in-step penalty metric must be there.
        super().set_model(model)
        if self._owns_sender and self.penalty_metric:
            try:
                penalties.install_penalty_metric(model)
            except Exception as error:  # the weights tell the penalty instead
                log.warning("reglab: the penalty is measured from the weights (%s)", error)

    def script_info(self) -> dict[str, Any]:
        """What the run page shows in place of a spec (the server's `ScriptInfo`)."""
        info = describe_model(self.model)
        epochs = self.params.get("epochs") if self.params else None
        info.update(
            task=self.task or guess_task(self.model),
            epochs=epochs if isinstance(epochs, int) and epochs >= 1 else None,
            batch_size=self.batch_size,
            dataset=short_text(self.dataset),
            framework=short_text(f"keras {keras.__version__} ({keras.backend.backend()})"),
            log_every=self.log_every,
            series=penalties.SERIES[self.penalty_method],
            **describe_host(),
        )
        return {key: value for key, value in info.items() if value is not None}

    def _open_run(self) -> Run:
        """A new script run for this `fit`, created by its sender's thread."""
        try:
            script = self.script_info()
        except Exception as error:  # a model we cannot describe is still streamed
            log.warning("reglab: no model summary (%s)", error)
            script = {"log_every": self.log_every}
        run = _FitRun(
            self.name,
            url=self.url,
            token=self.token,
            close_timeout=self.close_timeout,
            max_buffer=self.max_buffer,
            transport=self.transport,
            script=script,
        )
        return run.start()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._step, self.last_epoch = 0, -1
        self._kernels = model_kernels(self.model)
        if not self._owns_sender:
            return
        self._regularized = penalties.regularized_weights(self.model)
        self._in_step = penalties.measures_in_step(self.model)
        # The penalty of the starting weights: the first epoch's start, from the weights.
        self._penalty_start = None
        if not self._in_step:
            self._penalty_start = penalties.FrozenPenalty(self._regularized)
        if self.sender is not None:  # a second fit with the same callback: a new run
            self.close()
        self.run = self._open_run()
        self.sender = self.run.sender

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = self._step
        self._step += 1
        if self._every and step % self._every == 0 and self.sender is not None:
            values = finite_values(logs or {})
            if self._in_step:  # the per-batch series stay the model's own
                values.pop(penalties.PENALTY_METRIC, None)
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
        if self._owns_sender:  # (a worker's logs have every loss already)
            complete_losses(values)  # data_loss from the in-step reg_loss, or the other way
        derive = None
        if self._penalty_start is not None and "data_loss" not in values:
            end = penalties.FrozenPenalty(self._regularized)
            derive = penalties.from_weights(self._penalty_start, end)
            self._penalty_start = end
        histogram = sender.takes_histograms and self._histogram_due(epoch)
        wanted = self.layer_statistics or histogram
        kernels = snapshot_kernels(self._kernels) if wanted else []
        record = EpochRecord(
            epoch,
            values,
            kernels,
            time.time(),
            statistics=self.layer_statistics,
            histogram=histogram,
            derive=derive,
        )
        if self.run is not None and self._owns_sender:
            self.run.add_epoch(record)
        else:
            sender.add_epoch(record)
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
        self.sender = None
        if self.run is None:
            return True
        error_epoch = self.last_epoch + 1 if status != "succeeded" else None
        return self.run.finish(status, error=error, error_epoch=error_epoch)

    def log_test(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Record the latest run's test metrics, e.g. `model.evaluate(x, y,
        return_dict=True)`: stored as `test_loss`, `test_accuracy`..., with `test_data_loss`
        and `test_reg_loss` (the penalty from the in-step metric, else from the weights).
        Sent at once when `fit` has ended (waiting at most `close_timeout`), else with the
        run's finish. Returns what is stored; a callback given a sender stores nothing."""
        values = dict(metrics)
        has_penalty = "reg_loss" in values or "data_loss" in values
        if "loss" in values and not has_penalty and self.model is not None:
            try:  # the model's weights now, which `evaluate` used
                values["reg_loss"] = penalties.FrozenPenalty(
                    penalties.regularized_weights(self.model)
                ).value()
            except Exception as error:
                log.warning("reglab: no test penalty (%s)", error)
        if self.run is None:
            return as_test_metrics(values)
        return self.run.log_test(values)
