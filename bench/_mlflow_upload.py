"""The upload half of bench/vs_mlflow.py: the same plain Keras script trained with
reglab's `ReglabCallback` and with MLflow's `log_batch` in a Keras callback, the time each
holds the training thread, every epoch checked on its server afterwards; and a profile of
`ReglabCallback.on_epoch_end`'s steps.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench._common import (
    MlflowServer,
    Server,
    fmt_ms,
    median,
    percentile,
    process_tree_cpu,
)
from reglab.client import ReglabClient

REGLAB_UPLOAD = "reglab ReglabCallback"  # the tool's name in the tables
METRICS = ("accuracy", "mae", "mse", "binary_crossentropy")  # + loss, and val_ of each


@dataclass
class Holds:
    """What one callback cost the training thread in one fit."""

    tool: str
    epochs: list[float] = field(default_factory=list)  # on_epoch_end, seconds
    train_end: float = math.nan
    fit_seconds: float = math.nan
    server_cpu: float = math.nan  # the tool's server process tree, during the fit


def timed(callback: Any, holds: Holds) -> Any:
    """Wrap the callback's on_epoch_end and on_train_end with perf_counter."""
    on_epoch_end, on_train_end = callback.on_epoch_end, callback.on_train_end

    def epoch_end(epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None or len(logs) != 10:
            raise RuntimeError(f"expected 10 metrics per epoch, got {sorted(logs or {})}")
        began = time.perf_counter()
        on_epoch_end(epoch, logs)
        holds.epochs.append(time.perf_counter() - began)

    def train_end(logs: dict[str, Any] | None = None) -> None:
        began = time.perf_counter()
        on_train_end(logs)
        holds.train_end = time.perf_counter() - began

    callback.on_epoch_end, callback.on_train_end = epoch_end, train_end
    return callback


def plain_model() -> Any:
    """Dense 16 on 20 features, compiled with 4 metrics: 10 log entries per epoch."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=list(METRICS))
    return model


def plain_fit(callback: Any, epochs: int) -> float:
    """A user's plain Keras script: Dense 16 on random data, 10 metrics per epoch."""
    import numpy as np

    model = plain_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 20)).astype("float32")
    y = (x[:, :3].sum(axis=1, keepdims=True) + rng.normal(scale=0.5, size=(512, 1)) > 0).astype(
        "float32"
    )
    began = time.perf_counter()
    model.fit(
        x[:384],
        y[:384],
        validation_data=(x[384:], y[384:]),
        epochs=epochs,
        batch_size=64,
        verbose=0,
        callbacks=[callback],
    )
    return time.perf_counter() - began


def mlflow_callback(url: str, experiment_id: str, name: str, *, synchronous: bool) -> Any:
    """A Keras callback that logs each epoch's metrics with one `MlflowClient.log_batch`."""
    import keras
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    class MlflowEpochLogger(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.client = MlflowClient(url)
            self.run_id = ""
            self.pending: list[Any] = []

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = logs or {}
            stamp = int(time.time() * 1000)
            batch = [Metric(key, float(value), stamp, epoch) for key, value in logs.items()]
            operation = self.client.log_batch(self.run_id, metrics=batch, synchronous=synchronous)
            if operation is not None:
                self.pending.append(operation)

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            for operation in self.pending:
                operation.wait()
            with contextlib.redirect_stdout(io.StringIO()):  # its "View run at" lines
                self.client.set_terminated(self.run_id)

    return MlflowEpochLogger()


@dataclass
class Tool:
    name: str
    key: str  # in run names
    make: Callable[[str], Any]  # run name -> callback
    check: Callable[[Any, str, int], None]  # callback, run name, epochs -> raise if short
    server: Server


def check_reglab(url: str) -> Callable[[Any, str, int], None]:
    def check(_: Any, name: str, epochs: int) -> None:
        with ReglabClient(url) as client:
            runs = client.list(name=name)["items"]
            matches = [run for run in runs if run["name"] == name]
            if len(matches) != 1:
                raise RuntimeError(f"reglab has {len(matches)} runs named {name}")
            series = client.metrics(matches[0]["id"])
        stored = sum(
            sum(value is not None for value in values)
            for key, values in series["series"].items()
            if key in expected_names()
        )
        if stored != epochs * 10:
            raise RuntimeError(f"reglab stored {stored} of {epochs * 10} points of {name}")

    return check


def check_mlflow(url: str) -> Callable[[Any, str, int], None]:
    def check(callback: Any, name: str, epochs: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            stored = sum(
                len(mlflow_history(client, callback.run_id, key)) for key in expected_names()
            )
        if stored != epochs * 10:
            raise RuntimeError(f"MLflow stored {stored} of {epochs * 10} points of {name}")

    return check


def expected_names() -> list[str]:
    names = ["loss", *METRICS]
    return names + [f"val_{name}" for name in names]


def upload_rounds(
    reglab: Server, mlflow_server: MlflowServer, rounds: int, epochs: int
) -> dict[str, list[Holds]]:
    from mlflow import MlflowClient

    from reglab import ReglabCallback

    experiment_id = MlflowClient(mlflow_server.url).create_experiment("vs-reglab-upload")
    tools = [
        Tool(
            REGLAB_UPLOAD,
            "reglab",
            lambda name: ReglabCallback(name, url=reglab.url, token=None, log_every="epoch"),
            check_reglab(reglab.url),
            reglab,
        ),
        Tool(
            "MLflow log_batch (synchronous)",
            "mlflow-sync",
            lambda name: mlflow_callback(mlflow_server.url, experiment_id, name, synchronous=True),
            check_mlflow(mlflow_server.url),
            mlflow_server,
        ),
        Tool(
            "MLflow log_batch (synchronous=False)",
            "mlflow-async",
            lambda name: mlflow_callback(mlflow_server.url, experiment_id, name, synchronous=False),
            check_mlflow(mlflow_server.url),
            mlflow_server,
        ),
    ]
    results: dict[str, list[Holds]] = {tool.name: [] for tool in tools}
    plain_fit(_nothing(), 2)  # trace Keras once before anything is timed
    for round_index in range(rounds):
        shift = round_index % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            name = f"vs-mlflow-{round_index}-{tool.key}"
            holds = Holds(tool.name)
            callback = timed(tool.make(name), holds)
            assert tool.server.process is not None
            cpu = process_tree_cpu(tool.server.process.pid)
            holds.fit_seconds = plain_fit(callback, epochs)
            holds.server_cpu = process_tree_cpu(tool.server.process.pid) - cpu
            tool.check(callback, name, epochs)
            results[tool.name].append(holds)
            print(
                f"round {round_index + 1}/{rounds} {tool.name}: on_epoch_end "
                f"p50 {fmt_ms(median(holds.epochs), 3)}, "
                f"p99 {fmt_ms(percentile(holds.epochs, 99), 3)}, "
                f"on_train_end {fmt_ms(holds.train_end, 1)}, fit {holds.fit_seconds:.2f} s",
                flush=True,
            )
    return results


def profile_reglab_hold(url: str, epochs: int) -> list[list[str]]:
    """Where ReglabCallback's on_epoch_end time goes: its steps timed apart, called as fit
    calls them (an epoch every 20 ms) while its sender thread uploads, first with Python's
    default GIL switch interval (5 ms), then with 0.5 ms. A diagnostic: it reads the
    callback's internals (its kernels, `sender.add_epoch`)."""
    from reglab import ReglabCallback
    from reglab.sender import EpochRecord
    from reglab.stats import finite_values, snapshot_kernels

    logs = {name: 0.5 for name in expected_names()}
    rows = []
    default_interval = sys.getswitchinterval()
    for interval in (default_interval, 0.0005):
        model = plain_model()
        callback = ReglabCallback(f"vs-mlflow-profile-{interval}", url=url, token=None)
        callback.set_model(model)
        callback.set_params({"epochs": epochs, "steps": 6, "verbose": 0})
        callback.on_train_begin()
        parts: dict[str, list[float]] = {
            "finite_values(logs)": [],
            "snapshot_kernels()": [],
            "sender.add_epoch": [],
            "all three": [],
        }
        sys.setswitchinterval(interval)
        try:
            for epoch in range(epochs):
                time.sleep(0.02)
                began = time.perf_counter()
                epoch_values = finite_values(logs)
                valued = time.perf_counter()
                kernels = snapshot_kernels(callback._kernels)
                snapped = time.perf_counter()
                assert callback.sender is not None
                callback.sender.add_epoch(EpochRecord(epoch, epoch_values, kernels))
                added = time.perf_counter()
                parts["finite_values(logs)"].append(valued - began)
                parts["snapshot_kernels()"].append(snapped - valued)
                parts["sender.add_epoch"].append(added - snapped)
                parts["all three"].append(added - began)
        finally:
            sys.setswitchinterval(default_interval)
        callback.on_train_end()
        for part, values in parts.items():
            rows.append(
                [
                    f"{interval * 1000:g} ms",
                    part,
                    fmt_ms(median(values), 3),
                    fmt_ms(percentile(values, 99), 3),
                    fmt_ms(max(values), 3),
                ]
            )
    return rows


def _nothing() -> Any:
    import keras

    return keras.callbacks.Callback()


def mlflow_history(client: httpx.Client, run_id: str, key: str) -> list[dict[str, Any]]:
    """One metric's full history, page by page, as `MlflowClient.get_metric_history` asks."""
    metrics: list[dict[str, Any]] = []
    token = None
    while True:
        params: dict[str, Any] = {"run_id": run_id, "metric_key": key, "max_results": 25000}
        if token:
            params["page_token"] = token
        response = client.get("/api/2.0/mlflow/metrics/get-history", params=params)
        response.raise_for_status()
        body = response.json()
        metrics.extend(body.get("metrics", []))
        token = body.get("next_page_token")
        if not token:
            return metrics
