"""reglab against MLflow's tracking server: per-epoch logging cost and a 20-run fetch.

Starts both servers side by side, each on its own temporary SQLite file: reglab's
(`python -m reglab.cli serve`) and MLflow's (`mlflow server --workers 1`, the `bench`
extra: `pip install -e '.[bench]'`). Then, in this one process:

1. Upload: the same plain Keras script (Dense 16 on random data, 100 epochs, 10 metrics
   per epoch: loss, accuracy, mae, mse, binary_crossentropy and their val_ twins) trains
   once per tool per round, the tools in a rotating order so they share the machine's
   noise. The tools are reglab's `ReglabCallback` and a Keras callback calling
   `MlflowClient().log_batch(run_id, metrics=[10 Metric])` in `on_epoch_end`, plainly
   (synchronous, the client's default) and with `synchronous=False` (MLflow's async
   logging). Measured: the time the training thread spends in each callback's
   `on_epoch_end` (perf_counter around it), and in `on_train_end` (the flush). Every
   epoch is checked on each server afterwards.
2. Fetch: 20 runs x 100 epochs x 10 metrics are created in each server through its API
   (not timed), then a client fetches all 20 full histories: reglab with one
   `GET /api/metrics?ids=...`, MLflow with `GET .../metrics/get-history` per run and
   metric (what `MlflowClient.get_metric_history` sends), and, for reference, MLflow's
   UI call `get-history-bulk-interval` (one request per metric for all runs) and the
   `MlflowClient` itself. p50 over `--fetch-repeats`, the clients alternating.

Goals (issue #5): reglab's per-epoch p99 <= 2 ms and >= 10x faster than MLflow's plain
`log_batch`; the 20-run fetch in one request, <= 100 ms.

    .venv/bin/python bench/vs_mlflow.py            # --rounds 3 --epochs 100 --runs 20
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import (
    MlflowServer,
    ScriptedWorker,
    Server,
    fmt_ms,
    loadavg,
    machine,
    median,
    percentile,
    print_table,
    process_tree_cpu,
    tiny_spec,
    verdict,
)
from reglab.client import ReglabClient

GOAL_P99_S = 0.002
GOAL_SPEEDUP = 10.0
GOAL_FETCH_S = 0.100
METRICS = ("accuracy", "mae", "mse", "binary_crossentropy")  # + loss, and val_ of each


def _missing_mlflow() -> str | None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return "MLflow is not installed: `.venv/bin/pip install -e '.[bench]'`"
    return None


# --- the plain Keras script ---------------------------------------------------------------


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
            "reglab ReglabCallback",
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


# --- fetching 20 runs' histories ----------------------------------------------------------


def history_points(run: int, epochs: int) -> list[dict[str, Any]]:
    """Plausible curves for the 10 metric names; the same values go to both servers."""
    rng = random.Random(run)
    start = time.time() - epochs
    points = []
    for epoch in range(epochs):
        loss = 0.2 + 0.6 * math.exp(-epoch / (10 + run)) + abs(rng.gauss(0, 0.01))
        values = {}
        for prefix, shift in (("", 0.0), ("val_", 0.05)):
            values[f"{prefix}loss"] = loss + shift
            values[f"{prefix}binary_crossentropy"] = loss + shift
            values[f"{prefix}accuracy"] = min(1.0, 1.1 - loss - shift + rng.gauss(0, 0.01))
            values[f"{prefix}mae"] = 0.6 * (loss + shift)
            values[f"{prefix}mse"] = 0.4 * (loss + shift)
        points.append({"epoch": epoch, "values": values, "time": start + epoch})
    return points


def fill_runs(reglab: Server, mlflow_server: MlflowServer, runs: int, epochs: int) -> tuple:
    """The same `runs` histories in both servers, through each one's API."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    reglab_ids: list[int] = []
    with ScriptedWorker(reglab.url) as worker:
        for run in range(runs):
            spec = tiny_spec(epochs=epochs, name=f"fetch-{run:02d}")
            reglab_ids.append(worker.add_finished(spec, history_points(run, epochs)))
    mlflow = MlflowClient(mlflow_server.url)
    experiment_id = mlflow.create_experiment("vs-reglab-fetch")
    mlflow_ids: list[str] = []
    for run in range(runs):
        run_id = mlflow.create_run(experiment_id, run_name=f"fetch-{run:02d}").info.run_id
        batch = [
            Metric(key, value, int(point["time"] * 1000), point["epoch"])
            for point in history_points(run, epochs)
            for key, value in point["values"].items()
        ]
        for first in range(0, len(batch), 1000):  # MLflow takes at most 1000 per batch
            mlflow.log_batch(run_id, metrics=batch[first : first + 1000])
        with contextlib.redirect_stdout(io.StringIO()):
            mlflow.set_terminated(run_id)
        mlflow_ids.append(run_id)
    return reglab_ids, mlflow_ids


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


@dataclass
class Fetch:
    """One way of fetching the histories: its requests, and per repeat its wall time and
    the CPU time of this client and of the server (its whole process tree)."""

    requests: int = 0
    seconds: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)


def fetch_rounds(
    reglab: Server,
    mlflow_server: MlflowServer,
    reglab_ids: list[int],
    mlflow_ids: list[str],
    epochs: int,
    repeats: int,
) -> dict[str, Fetch]:
    from mlflow import MlflowClient

    names = expected_names()
    expected = len(reglab_ids) * len(names) * epochs
    # Raw httpx for reglab on purpose, like MLflow's REST calls beside it: this times the
    # HTTP fetch itself (the client package has no call for /api/metrics?ids=).
    reglab_http = httpx.Client(base_url=reglab.url, timeout=60)
    mlflow_http = httpx.Client(base_url=mlflow_server.url, timeout=60)
    mlflow_client = MlflowClient(mlflow_server.url)

    def reglab_one() -> tuple[int, int]:
        response = reglab_http.get("/api/metrics", params={"ids": ",".join(map(str, reglab_ids))})
        response.raise_for_status()
        runs = response.json()["runs"]
        points = sum(
            sum(value is not None for value in values)
            for run in runs.values()
            for values in run["series"].values()
        )
        return points, 1

    def mlflow_per_metric() -> tuple[int, int]:
        histories = [mlflow_history(mlflow_http, run, key) for run in mlflow_ids for key in names]
        return sum(map(len, histories)), len(histories)

    def mlflow_bulk() -> tuple[int, int]:
        points = 0
        for key in names:
            response = mlflow_http.get(
                "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                params={"run_ids": mlflow_ids, "metric_key": key, "max_results": 2500},
            )
            response.raise_for_status()
            points += len(response.json().get("metrics", []))
        return points, len(names)

    def mlflow_python_client() -> tuple[int, int]:
        histories = [
            mlflow_client.get_metric_history(run, key) for run in mlflow_ids for key in names
        ]
        return sum(map(len, histories)), len(histories)

    ways: dict[str, Callable[[], tuple[int, int]]] = {
        "reglab GET /api/metrics?ids=<20>": reglab_one,
        "MLflow get-history per run and metric (REST)": mlflow_per_metric,
        "MLflow get-history-bulk-interval per metric (its UI's call)": mlflow_bulk,
        "MLflow MlflowClient.get_metric_history per run and metric": mlflow_python_client,
    }
    servers = {name: reglab if name.startswith("reglab") else mlflow_server for name in ways}
    fetches = {name: Fetch() for name in ways}
    try:
        for way in ways.values():
            way()  # warm both servers' caches and connections
        order = list(ways)
        for repeat in range(repeats):
            shift = repeat % len(order)
            for name in order[shift:] + order[:shift]:
                fetch, server = fetches[name], servers[name]
                assert server.process is not None
                server_cpu = process_tree_cpu(server.process.pid)
                client_cpu = time.process_time()
                began = time.perf_counter()
                points, fetch.requests = ways[name]()
                fetch.seconds.append(time.perf_counter() - began)
                fetch.client_cpu.append(time.process_time() - client_cpu)
                fetch.server_cpu.append(process_tree_cpu(server.process.pid) - server_cpu)
                if points != expected:
                    raise RuntimeError(f"{name}: {points} of {expected} points")
    finally:
        reglab_http.close()
        mlflow_http.close()
    return fetches


# --- report -------------------------------------------------------------------------------


def report_uploads(results: dict[str, list[Holds]]) -> dict[str, tuple[float, float]]:
    rows = []
    figures: dict[str, tuple[float, float]] = {}
    for name, fits in results.items():
        holds = [hold for fit in fits for hold in fit.epochs]
        p50, p99 = median(holds), percentile(holds, 99)
        figures[name] = (p50, p99)
        epochs = sum(len(fit.epochs) for fit in fits)
        rows.append(
            [
                name,
                fmt_ms(p50, 3),
                fmt_ms(p99, 3),
                fmt_ms(max(holds), 2),
                fmt_ms(median([fit.train_end for fit in fits]), 1),
                fmt_ms(median([fit.fit_seconds / len(fit.epochs) for fit in fits]), 1),
                fmt_ms(sum(fit.server_cpu for fit in fits) / epochs, 2),
            ]
        )
    print_table(
        f"Per-epoch upload: time in on_epoch_end, {sum(len(f.epochs) for f in fits)} epochs "
        f"per tool ({len(fits)} rounds)",
        [
            "tool",
            "p50",
            "p99",
            "max",
            "on_train_end p50",
            "epoch p50 (whole fit)",
            "server CPU per epoch",
        ],
        rows,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fits per tool (default 3)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs per fit and per run")
    parser.add_argument("--runs", type=int, default=20, help="runs fetched (default 20)")
    parser.add_argument("--fetch-repeats", type=int, default=7, help="timed fetches per way")
    args = parser.parse_args()
    missing = _missing_mlflow()
    if missing:
        sys.exit(missing)
    import mlflow

    print(f"machine: {machine()}; {loadavg()}; MLflow {mlflow.__version__}", flush=True)
    with Server() as reglab, MlflowServer() as mlflow_server:
        print(f"reglab {reglab.url}, MLflow {mlflow_server.url}", flush=True)
        uploads = upload_rounds(reglab, mlflow_server, args.rounds, args.epochs)
        profile = profile_reglab_hold(reglab.url, args.epochs)
        print("filling the fetch runs (not timed) ...", flush=True)
        reglab_ids, mlflow_ids = fill_runs(reglab, mlflow_server, args.runs, args.epochs)
        fetches = fetch_rounds(
            reglab, mlflow_server, reglab_ids, mlflow_ids, args.epochs, args.fetch_repeats
        )
        errors = reglab.error_summary() + mlflow_server.error_summary()
    print(f"at the end: {loadavg()}")
    if errors:
        print("server logs, errors:\n" + errors)

    upload = report_uploads(uploads)
    print_table(
        "Diagnostic: ReglabCallback.on_epoch_end's steps, timed apart in a loop (not in fit)",
        ["GIL switch interval", "step", "p50", "p99", "max"],
        profile,
    )
    reglab_p50, reglab_p99 = upload["reglab ReglabCallback"]
    rows = []
    for name, (p50, p99) in upload.items():
        if name.startswith("MLflow"):
            rows.append([name, f"{p50 / reglab_p50:.1f}x", f"{p99 / reglab_p99:.1f}x"])
    print_table("MLflow's time ÷ reglab's, per epoch", ["against", "p50", "p99"], rows)
    sync_p50, sync_p99 = upload["MLflow log_batch (synchronous)"]

    rows = []
    fetch_p50: dict[str, float] = {}
    for name, fetch in fetches.items():
        fetch_p50[name] = median(fetch.seconds)
        rows.append(
            [
                name,
                str(fetch.requests),
                fmt_ms(median(fetch.seconds), 1),
                fmt_ms(percentile(fetch.seconds, 90), 1),
                fmt_ms(median(fetch.server_cpu), 1),
                fmt_ms(median(fetch.client_cpu), 1),
            ]
        )
    reglab_fetch = fetch_p50["reglab GET /api/metrics?ids=<20>"]
    for row, name in zip(rows, fetch_p50, strict=True):
        row.append(f"{fetch_p50[name] / reglab_fetch:.1f}x")
    print_table(
        f"Fetch {args.runs} runs x {args.epochs} epochs x 10 metrics, full histories "
        f"({args.fetch_repeats} repeats each)",
        ["way", "requests", "p50", "p90", "server CPU p50", "client CPU p50", "÷ reglab"],
        rows,
    )
    speedup = sync_p50 / reglab_p50
    print()
    print("Goals:")
    print(
        f"  reglab per-epoch p99 {fmt_ms(reglab_p99, 3)} <= 2 ms: "
        f"{verdict(reglab_p99 <= GOAL_P99_S)}"
    )
    print(
        f"  reglab >= {GOAL_SPEEDUP:.0f}x faster than MLflow's plain log_batch: p50 "
        f"{speedup:.1f}x, p99 {sync_p99 / reglab_p99:.1f}x: "
        f"{verdict(min(speedup, sync_p99 / reglab_p99) >= GOAL_SPEEDUP)}"
    )
    print(
        f"  20-run fetch in one request, p50 {fmt_ms(reglab_fetch, 1)} <= 100 ms: "
        f"{verdict(reglab_fetch <= GOAL_FETCH_S)}"
    )


if __name__ == "__main__":
    main()
