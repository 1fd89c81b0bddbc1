"""reglab.Run: stream any training loop into reglab's dashboard, like a queued run.

A custom loop (a `tf.GradientTape` loop, a JAX or PyTorch loop, anything) logs its epochs
with `run.log(epoch, loss=..., val_loss=..., data_loss=..., reg_loss=...)`; they go through
the same background sender and `ScriptRunChannel` as `ReglabCallback` (the training
thread never waits on the network; idempotent per epoch; buffered while the server is
down; heartbeats while the loop is quiet). The run is created when the `with` block opens
and finished when it closes: succeeded, failed with the exception's message, or cancelled
on Ctrl-C. `ReglabCallback` streams each `fit` through a `Run` of its own.

Nothing here imports Keras or a framework: the script may train with anything, and the
device is asked of the framework once the script has loaded it.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal

import httpx

from reglab.channels import ScriptRunChannel, StepPoint
from reglab.client import ReglabClient, ReglabError, server_url
from reglab.sender import EpochRecord, Sender
from reglab.stats import Kernels, finite_values, metric_name, model_kernels, snapshot_kernels
from reglab.summary import (
    config_regularization,
    describe_device,
    describe_framework,
    describe_host,
    describe_model,
    flatten_config,
    guess_task,
    short_text,
)

log = logging.getLogger("reglab.run")

FinalStatus = Literal["succeeded", "failed", "cancelled"]
Task = Literal["classification", "regression"]


def complete_losses(values: dict[str, float]) -> None:
    """Fill in, in place, the one of `loss`, `data_loss` and `reg_loss` (and their `val_`
    twins) that the other two imply: loss = data_loss + reg_loss. Nothing is overwritten."""
    for prefix in ("", "val_"):
        loss, data, penalty = f"{prefix}loss", f"{prefix}data_loss", f"{prefix}reg_loss"
        present = [name for name in (loss, data, penalty) if name in values]
        if len(present) != 2:
            continue
        if loss not in values:
            values[loss] = values[data] + values[penalty]
        elif data not in values:
            values[data] = values[loss] - values[penalty]
        else:
            values[penalty] = values[loss] - values[data]


def as_test_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Test metrics as a run stores them: finite numbers named `test_<name>` (the names of
    `model.evaluate(..., return_dict=True)` get the prefix), with `test_data_loss` (or
    `test_reg_loss`) filled in from the other two where it can be."""
    values = finite_values(metrics)
    named = {
        name if name.startswith("test_") else metric_name(f"test_{name}"): value
        for name, value in values.items()
    }
    losses = {name[len("test_") :]: value for name, value in named.items()}
    complete_losses(losses)
    return {**{f"test_{name}": value for name, value in losses.items()}, **named}


def _count(value: Any, most: int) -> int | None:
    """A config's count (epochs, batch size) where the server takes it: 1 to `most`."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= most:
        return value
    return None


def error_text(kind: type[BaseException], value: BaseException) -> str:
    """A run's error for an exception: its last line, e.g. 'RuntimeError: boom at epoch 2'."""
    return "".join(traceback.format_exception_only(kind, value)).strip() or kind.__name__


class Run:
    """A run streamed from the caller's own training loop ("script" runs).

    Use it as a context manager: the run is created (running) when the block opens and
    finished when it closes: succeeded, failed with the exception's message when the
    block raises, cancelled on Ctrl-C. Each `log` hands an epoch to a background sender;
    `stop_requested` turns True when the run is cancelled from the dashboard. Without a
    `with` block, `start()` and `finish()` do the same (a run left open is finished when
    the script ends: failed if it died of an exception, else succeeded).

    Args:
        name: the run's name (default: the script's file name and the time).
        config: the loop's settings, shown on the run page like a script's summary
            (nested mappings flattened to `a.b` keys); `epochs`, `batch_size`, `dataset`
            and `task` in it fill those facts.
        model: a Keras model, if there is one: its layers and penalties are shown, and
            each `log` adds its kernels' norms and sparsity.
        task: "classification" or "regression" (default: from the config or the model).
        regularization: the penalty in a few words (default: from the model, else from
            the config's penalty-like entries such as `l2` or `dropout`).
        url: the server (default: `REGLAB_SERVER_URL`, else http://127.0.0.1:8000).
        token: the user token (default: `REGLAB_TOKEN`).
        close_timeout: the longest the end of the block waits for the server.
        max_buffer: points kept per kind while the server is unreachable.
        script: what the run page shows, as the server's `ScriptInfo` takes it, in place
            of what is made from the arguments above (`ReglabCallback` passes its own).

    Example:
        >>> import reglab
        >>> with reglab.Run("tape l2=1e-3", config={"l2": 1e-3, "epochs": 20}) as run:
        ...     for epoch in range(20):
        ...         ...  # train one epoch
        ...         run.log(epoch, loss=loss, data_loss=data_loss, reg_loss=penalty,
        ...                 val_loss=val_loss, val_data_loss=val_data_loss)
        ...         if run.stop_requested:
        ...             break
        ...     run.log_test({"loss": test_loss, "accuracy": test_accuracy})
    """

    HEARTBEAT_SECONDS = 5.0  # at most; shorter when the server's lease asks for it
    REQUEST_TIMEOUT = 10.0
    # How a run still open when the interpreter exits (no exception seen) is finished.
    EXIT_OUTCOME: ClassVar[tuple[FinalStatus, str | None]] = ("succeeded", None)

    def __init__(
        self,
        name: str | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        model: Any = None,
        task: Task | None = None,
        regularization: str | None = None,
        url: str | None = None,
        token: str | None = None,
        close_timeout: float = 10.0,
        max_buffer: int = 100_000,
        transport: httpx.BaseTransport | None = None,
        script: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.config = flatten_config(config)
        self.model = model
        self.task = task
        self.regularization = regularization
        self.url = server_url(url)
        self.token = token
        self.close_timeout = close_timeout
        self.max_buffer = max_buffer
        self.transport = transport
        self.script = dict(script) if script is not None else None
        self.sender: Sender | None = None  # while the run is open
        self.last_epoch = -1  # the last epoch logged (-1: none yet)
        self.test_metrics: dict[str, float] = {}
        self._closed: Sender | None = None
        self._channel: ScriptRunChannel | None = None
        self._kernels: Kernels = []

    # --- what the run is ------------------------------------------------------------

    @property
    def run_id(self) -> int | None:
        """The run's id on the server (None until the server has created it)."""
        sender = self.last_sender
        return sender.run_id if sender is not None else None

    @property
    def error(self) -> str | None:
        """Why the run is not streamed (wrong token, refused run), if it is not."""
        sender = self.last_sender
        return sender.error if sender is not None else None

    @property
    def last_sender(self) -> Sender | None:
        """The run's sender, open or closed (tests and diagnostics)."""
        return self.sender or self._closed

    @property
    def stop_requested(self) -> bool:
        """True once the run has ended on the server (cancelled from the dashboard): the
        loop should stop; later points are dropped."""
        sender = self.last_sender
        return sender is not None and sender.ended.is_set()

    def script_info(self) -> dict[str, Any]:
        """What the run page shows in place of a spec (the server's `ScriptInfo`)."""
        if self.script is not None:
            return self.script
        info: dict[str, Any] = {}
        if self.model is not None:
            try:
                info.update(describe_model(self.model))
            except Exception as error:  # a model we cannot describe is still streamed
                log.warning("reglab: no model summary (%s)", error)
        config = self.config
        task = self.task or config.get("task")
        if task not in ("classification", "regression"):
            task = guess_task(self.model) if self.model is not None else None
        # Said by the caller, else the model's penalties, else the config's: a loop that
        # adds its penalty by hand has a model without any (its dropout is in the config).
        penalized = any("regularizer" in layer for layer in info.get("layers", ()))
        from_config = config_regularization(config)
        if self.regularization:
            info["regularization"] = short_text(self.regularization)
        elif from_config and not penalized:
            info["regularization"] = from_config
        elif "regularization" not in info:
            info["regularization"] = "none"
        dataset = config.get("dataset")
        info.update(
            task=task,
            epochs=_count(config.get("epochs"), 10**6),
            batch_size=_count(config.get("batch_size"), 10**7),
            dataset=dataset if isinstance(dataset, str) else None,
            framework=describe_framework(),
            config=config,
            **describe_host(),
        )
        return {key: value for key, value in info.items() if value is not None}

    def _run_name(self) -> str:
        if self.name:
            return self.name[:200]
        script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "script"
        return f"{script or 'script'} {time.strftime('%Y-%m-%d %H:%M:%S')}"[:200]

    # --- the loop's side: cheap, never waits on the network ---------------------------

    def start(self) -> Run:
        """Open the run: its sender creates it on the server in the background. Once."""
        if self.sender is not None or self._closed is not None:
            return self
        client = ReglabClient(
            self.url, token=self.token, timeout=self.REQUEST_TIMEOUT, transport=self.transport
        )
        self._channel = ScriptRunChannel(
            client,
            name=self._run_name(),
            script=self.script_info(),
            heartbeat_seconds=self.HEARTBEAT_SECONDS,
            device=describe_device,
        )
        if self.model is not None:
            self._kernels = model_kernels(self.model)
        self.sender = Sender(self._channel, max_buffer=self.max_buffer).start()
        _watch_for_crashes(self)
        return self

    def log(self, epoch: int, values: Mapping[str, Any] | None = None, /, **metrics: Any) -> None:
        """Hand over one epoch's metrics (numbers or 0-d tensors; NaN and infinities are
        left out); the one of loss, data_loss and reg_loss that the other two imply is
        filled in. Logging an epoch again replaces it. Returns at once."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: an int >= 0, not {epoch!r}")
        figures = finite_values({**(values or {}), **metrics})
        complete_losses(figures)
        if self.sender is None and self._closed is None:
            self.start()
        kernels = snapshot_kernels(self._kernels) if self._kernels else []
        self.add_epoch(EpochRecord(epoch, figures, kernels, time.time()))

    def add_epoch(self, record: EpochRecord) -> None:
        """Hand over an epoch record as it is (ReglabCallback's way)."""
        self.last_epoch = max(self.last_epoch, record.epoch)
        if self.sender is not None:
            self.sender.add_epoch(record)

    def log_step(
        self, step: int, values: Mapping[str, Any] | None = None, /, **metrics: Any
    ) -> None:
        """Hand over one training step's (batch's) metrics; the dashboard draws them as
        min-max bands. `step` counts from the start of training."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step: an int >= 0, not {step!r}")
        figures = finite_values({**(values or {}), **metrics})
        if figures and self.sender is not None:
            self.sender.add_step(StepPoint(step, figures))

    def log_test(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Record the run's test metrics (e.g. `model.evaluate(..., return_dict=True)`),
        stored as `test_loss`, `test_accuracy`...; sent with the finish while the run is
        open, else at once (waiting at most `close_timeout`). Returns what is stored."""
        values = as_test_metrics(metrics)
        if not values:
            return values
        self.test_metrics.update(values)
        if self.sender is None and self._closed is not None:
            self._deliver_test(values)
        return values

    def _deliver_test(self, values: dict[str, float]) -> bool:
        """Send test metrics after the run has ended; retried while the server is down."""
        run_id = self.run_id
        if run_id is None:
            return False
        deadline = time.monotonic() + self.close_timeout
        with ReglabClient(
            self.url, token=self.token, timeout=self.REQUEST_TIMEOUT, transport=self.transport
        ) as client:
            while True:
                try:
                    client.log_run_test(run_id, values)
                    return True
                except ReglabError as error:
                    if error.status_code < 500 and error.status_code != 429:
                        log.error("reglab: the server refused the test metrics: %s", error)
                        return False
                    problem = f"HTTP {error.status_code}"
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                if time.monotonic() >= deadline:
                    log.error("reglab: the test metrics were not delivered (%s)", problem)
                    return False
                time.sleep(0.2)

    # --- the end --------------------------------------------------------------------

    def finish(
        self,
        status: FinalStatus = "succeeded",
        *,
        error: str | None = None,
        error_epoch: int | None = None,
    ) -> bool:
        """Deliver what is buffered and finish the run with `status` (and the test
        metrics); once. Waits at most `close_timeout`. True when all reached the server."""
        sender, self.sender = self.sender, None
        if sender is None:
            return True  # never started, or finished already
        _forget(self)
        self._closed = sender
        if status != "succeeded" and error_epoch is None:
            error_epoch = self.last_epoch + 1
        outcome = {
            "status": status,
            "error": error,
            "error_epoch": error_epoch if status != "succeeded" else None,
            "test_metrics": dict(self.test_metrics) or None,
        }
        done = sender.close(outcome, timeout=self.close_timeout)
        if sender.stopped and self._channel is not None:
            self._channel.close()
        return done

    def __enter__(self) -> Run:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if kind is None or value is None:
            self.finish("succeeded")
        elif issubclass(kind, KeyboardInterrupt):
            self.finish("cancelled", error="KeyboardInterrupt")
        elif isinstance(value, SystemExit) and value.code in (None, 0):
            self.finish("succeeded")
        else:
            self.finish("failed", error=error_text(kind, value))
        return False


# --- a script that dies with a run open: failed (or cancelled on Ctrl-C) -----------------

_open_runs: list[Run] = []
ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]
_previous_hook: ExceptHook | None = None
_lock = threading.Lock()


def _watch_for_crashes(run: Run) -> None:
    """An exception that ends the script skips the end of a run that is not a `with`
    block's (and `fit`'s `on_train_end`): finish it from the interpreter's exception hook
    (failed with the exception's last line, or cancelled on Ctrl-C), and at exit as the
    run's kind says (`EXIT_OUTCOME`)."""
    global _previous_hook
    with _lock:
        if _previous_hook is None:
            _previous_hook = sys.excepthook
            sys.excepthook = _excepthook
            atexit.register(_at_exit)
        _open_runs.append(run)


def _forget(run: Run) -> None:
    with _lock:
        if run in _open_runs:
            _open_runs.remove(run)


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if _previous_hook is not None:
        _previous_hook(kind, value, tb)
    status: FinalStatus = "cancelled" if issubclass(kind, KeyboardInterrupt) else "failed"
    for run in list(_open_runs):
        run.finish(status, error=error_text(kind, value))


def _at_exit() -> None:
    for run in list(_open_runs):
        status, error = run.EXIT_OUTCOME
        run.finish(status, error=error)
