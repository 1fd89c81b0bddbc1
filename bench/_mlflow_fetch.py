"""The fetch half of bench/vs_mlflow.py: the same runs' histories put in both servers
through their APIs, then fetched whole: reglab's one request against MLflow's per-run,
per-metric calls, its UI's bulk call and its Python client.
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench._common import (
    MlflowServer,
    ScriptedWorker,
    Server,
    process_tree_cpu,
    tiny_spec,
)
from bench._mlflow_upload import expected_names, mlflow_history

REGLAB_FETCH = "reglab GET /api/metrics?ids=<20>"  # the way's name in the tables


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


@dataclass
class Fetch:
    """One way of fetching the histories: its requests, and per repeat its wall time and
    the CPU time of this client and of the server (its whole process tree)."""

    requests: int = 0
    seconds: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)


def fetch_ways(
    reglab_http: httpx.Client,
    mlflow_http: httpx.Client,
    reglab_ids: list[int],
    mlflow_ids: list[str],
) -> dict[str, Callable[[], tuple[int, int]]]:
    """Each way of fetching every history, by name: a call that returns the points it
    got and the requests it made."""
    from mlflow import MlflowClient

    names = expected_names()
    mlflow_client = MlflowClient(str(mlflow_http.base_url).rstrip("/"))

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

    return {
        REGLAB_FETCH: reglab_one,
        "MLflow get-history per run and metric (REST)": mlflow_per_metric,
        "MLflow get-history-bulk-interval per metric (its UI's call)": mlflow_bulk,
        "MLflow MlflowClient.get_metric_history per run and metric": mlflow_python_client,
    }


def fetch_rounds(
    reglab: Server,
    mlflow_server: MlflowServer,
    reglab_ids: list[int],
    mlflow_ids: list[str],
    epochs: int,
    repeats: int,
) -> dict[str, Fetch]:
    """Every way, `repeats` times in a rotating order after one untimed warm-up each: wall
    time and the CPU of this client and of the server that answered."""
    expected = len(reglab_ids) * len(expected_names()) * epochs
    # Raw httpx for reglab on purpose, like MLflow's REST calls beside it: this times the
    # HTTP fetch itself (the client package has no call for /api/metrics?ids=).
    reglab_http = httpx.Client(base_url=reglab.url, timeout=60)
    mlflow_http = httpx.Client(base_url=mlflow_server.url, timeout=60)
    try:
        ways = fetch_ways(reglab_http, mlflow_http, reglab_ids, mlflow_ids)
        servers = {name: reglab if name == REGLAB_FETCH else mlflow_server for name in ways}
        fetches = {name: Fetch() for name in ways}
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
