"""Sweeps through the queue on one slot, against the same fits one after another in one
plain script, side by side in one run.

Queue: a real server (`python -m reglab.cli serve`, temp SQLite) and ONE worker
(`python -m reglab.cli worker --gpus none`: one CPU slot) as subprocesses. Once the slot's
training child is warm (TensorFlow imported), each case's sweep is POSTed and timed until
its last run has succeeded (polled every 50 ms):

  (a) packed: a 10-point λ sweep of the seed's MLP (Dense 64/32 with L2 on each kernel, no
      dropout, 20% of digits, 30 epochs): its points differ only in λ, so the server packs
      them and the worker trains them as one model of 10 members. Target (issue #10):
      <= 0.2 x the plain script.
  (b) unpackable: 8 runs that differ in the learning rate (Dense 32 on digits, 5 epochs),
      which cannot pack: one run after another in the slot's warm child. Target <= 1.3 x.
  (c) latency: a run POSTed as the run before it succeeded (the child is warm and idle):
      seconds from its POST to its first epoch on its event stream. Target <= 1.2 s.

Plain: this script again in a fresh process (`--role plain`), which imports TensorFlow and
Keras, then fits the same models one after another with plain Keras (the same split as
the worker's `load_dataset`), timed from after the import as a user would see it. It runs
before the queue and again after it; each ratio is queue ÷ the mean of the two plain times.

    .venv/bin/python bench/sweep_throughput.py     # --points 10 --epochs 30 --runs 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    Server,
    Worker,
    loadavg,
    machine,
    median,
    print_table,
    quiet_env,
    verdict,
    wait_warm_child,
)
from reglab.client import ReglabClient

L2 = "model.layers[*].regularizer.l2"
TARGETS = {"packed": 0.2, "unpackable": 1.3, "latency": 1.2}


def seed_mlp(epochs: int) -> dict[str, Any]:
    """The seed's MLP without dropout, on 20% of digits: the base of case (a)."""
    layer = {"activation": "relu", "regularizer": {"kind": "l2", "l2": 0.01}}
    return {
        "name": "packed λ sweep",
        "dataset": {"name": "digits", "train_fraction": 0.2},
        "model": {
            "layers": [
                {"type": "dense", "units": 64, **layer},
                {"type": "dense", "units": 32, **layer},
            ]
        },
        "training": {"epochs": epochs, "batch_size": 32, "seed": 0, "histogram_every": 5},
    }


def dense32(epochs: int, name: str = "unpackable") -> dict[str, Any]:
    """Dense 32 on digits: the base of case (b)."""
    return {
        "name": name,
        "dataset": {"name": "digits"},
        "model": {"layers": [{"type": "dense", "units": 32, "activation": "relu"}]},
        "training": {"epochs": epochs, "batch_size": 32, "seed": 0, "histogram_every": 5},
    }


def lambdas(points: int) -> list[float]:
    """0 and then log-spaced from 1e-5 to 1e-1."""
    if points <= 1:
        return [0.0]
    step = 4 / max(points - 2, 1)
    return [0.0, *(10 ** (-5 + step * i) for i in range(points - 1))]


def learning_rates(runs: int) -> list[float]:
    return [round(10 ** (-3.5 + 2 * i / max(runs - 1, 1)), 6) for i in range(runs)]


# --- the plain script -------------------------------------------------------------------


def plain_fits(case: str, count: int, epochs: int) -> dict[str, float]:
    """What a user's own script does: import, then fit the models one after another
    (plain Keras layers, on the split the worker's `load_dataset` makes)."""
    began = time.perf_counter()
    import keras

    from app.spec import ExperimentSpec
    from worker.datasets import load_dataset

    imported = time.perf_counter()
    base = seed_mlp(epochs) if case == "packed" else dense32(epochs)
    spec = ExperimentSpec.model_validate(base)
    splits = load_dataset(spec.dataset, 0, "flat")
    values = lambdas(count) if case == "packed" else learning_rates(count)
    for value in values:
        keras.utils.set_random_seed(0)
        if case == "packed":
            penalty = keras.regularizers.L2(value)
            hidden = [
                keras.layers.Dense(64, "relu", kernel_regularizer=penalty),
                keras.layers.Dense(32, "relu", kernel_regularizer=penalty),
            ]
            rate = 0.001
        else:
            hidden, rate = [keras.layers.Dense(32, "relu")], value
        model = keras.Sequential([keras.Input((64,)), *hidden, keras.layers.Dense(10, "softmax")])
        model.compile(
            optimizer=keras.optimizers.Adam(rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(
            splits.x_train,
            splits.y_train,
            validation_data=(splits.x_val, splits.y_val),
            epochs=epochs,
            batch_size=32,
            verbose=0,
        )
        model.evaluate(splits.x_test, splits.y_test, batch_size=32, verbose=0)
    done = time.perf_counter()
    return {"import": imported - began, "fits": done - imported}


def run_plain(case: str, count: int, epochs: int) -> dict[str, float]:
    """`plain_fits` in a fresh interpreter (so that the import is a real one)."""
    command = [sys.executable, __file__, "--role", "plain", "--case", case]
    command += ["--count", str(count), "--epochs", str(epochs)]
    output = subprocess.run(
        command, cwd=ROOT, env=quiet_env(), capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


# --- the queue --------------------------------------------------------------------------


def wait_succeeded(client: ReglabClient, ids: list[int], began: float) -> float:
    """Seconds from `began` until every run has succeeded; raises if one ends otherwise."""
    while True:
        rows = client.list(ids=ids, limit=len(ids))["items"]
        states = [row["status"] for row in rows]
        if any(state in ("failed", "cancelled", "pruned") for state in states):
            raise RuntimeError(f"a run did not succeed: {states}")
        if len(states) == len(ids) and all(state == "succeeded" for state in states):
            return time.perf_counter() - began
        if time.perf_counter() - began > 900:
            raise RuntimeError(f"not done after 900 s: {states}")
        time.sleep(0.05)


def sweep(client: ReglabClient, body: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    began = time.perf_counter()
    created = client.submit_sweep(body)
    ids = [run["id"] for run in created["runs"]]
    seconds = wait_succeeded(client, ids, began)
    return seconds, [client.get(run_id) for run_id in ids]


def first_epoch_after_post(client: ReglabClient, epochs: int) -> float:
    """Seconds from a run's POST to its first epoch on its event stream, the run before
    it having just succeeded (the slot's child warm and idle)."""
    before = client.submit(dense32(epochs, name="before"))
    wait_succeeded(client, [before["id"]], time.perf_counter())
    began = time.perf_counter()
    run = client.submit(dense32(epochs, name="right after"))
    for event in client.events(run["id"]):
        if event.kind == "metrics":
            return time.perf_counter() - began
    raise RuntimeError("the run ended without an epoch")


def run_queue(points: int, epochs: int, runs: int) -> dict[str, Any]:
    with Server() as server, Worker(server) as worker:
        wait_warm_child(worker.pid, quiet_for=1.5)
        with ReglabClient(server.url) as client:
            packed_seconds, packed = sweep(
                client,
                {
                    "name": "packed λ sweep",
                    "base": seed_mlp(epochs),
                    "axes": [{"path": L2, "values": lambdas(points)}],
                },
            )
            rates = learning_rates(runs)
            unpackable_seconds, unpackable = sweep(
                client,
                {
                    "name": "learning rates",
                    "base": dense32(5),
                    "axes": [{"path": "training.learning_rate", "values": rates}],
                },
            )
            latencies = [first_epoch_after_post(client, 5) for _ in range(3)]
        errors = server.error_summary()
    return {
        "packed": packed_seconds,
        "packed_runs": packed,
        "unpackable": unpackable_seconds,
        "unpackable_runs": unpackable,
        "latencies": latencies,
        "errors": errors,
    }


def _seconds(later: str | None, earlier: str | None) -> float:
    if later is None or earlier is None:
        return float("nan")
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10, help="λ values of case (a)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of case (a)")
    parser.add_argument("--runs", type=int, default=8, help="learning rates of case (b)")
    parser.add_argument("--role", choices=("main", "plain"), default="main", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="packed", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "plain":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        print(json.dumps(plain_fits(args.case, args.count, args.epochs)))
        return

    print(f"machine: {machine()}; {loadavg()}", flush=True)
    plain: dict[str, list[float]] = {"packed": [], "unpackable": []}

    def plain_round() -> None:
        plain["packed"].append(run_plain("packed", args.points, args.epochs)["fits"])
        plain["unpackable"].append(run_plain("unpackable", args.runs, 5)["fits"])
        print(f"plain script: {plain}; {loadavg()}", flush=True)

    plain_round()
    queue = run_queue(args.points, args.epochs, args.runs)
    print(f"queue done; {loadavg()}", flush=True)
    plain_round()
    if queue["errors"]:
        print("server log, errors:\n" + queue["errors"])

    packed_plain = sum(plain["packed"]) / 2
    unpackable_plain = sum(plain["unpackable"]) / 2
    latency = median(queue["latencies"])
    packs = {run["pack"]["id"] for run in queue["packed_runs"] if run["pack"]}
    durations = [_seconds(r["finished_at"], r["started_at"]) for r in queue["unpackable_runs"]]
    ratios = {
        "packed": queue["packed"] / packed_plain,
        "unpackable": queue["unpackable"] / unpackable_plain,
        "latency": latency,
    }
    print_table(
        "Sweeps through the queue (one CPU slot) against one plain script, seconds",
        ["case", "plain fits (mean of 2)", "queue", "queue ÷ plain", "target", ""],
        [
            [
                f"(a) {args.points}-point λ sweep, seed's MLP, {args.epochs} epochs "
                f"({len(packs)} pack)",
                f"{packed_plain:.2f}",
                f"{queue['packed']:.2f}",
                f"{ratios['packed']:.2f}",
                f"<= {TARGETS['packed']}",
                verdict(ratios["packed"] <= TARGETS["packed"]),
            ],
            [
                f"(b) {args.runs} learning rates, Dense 32, 5 epochs (unpackable)",
                f"{unpackable_plain:.2f}",
                f"{queue['unpackable']:.2f}",
                f"{ratios['unpackable']:.2f}",
                f"<= {TARGETS['unpackable']}",
                verdict(ratios["unpackable"] <= TARGETS["unpackable"]),
            ],
            [
                "(c) POST → first epoch streamed, warm idle slot (median of 3)",
                "",
                f"{latency:.2f}",
                "",
                f"<= {TARGETS['latency']} s",
                verdict(latency <= TARGETS["latency"]),
            ],
        ],
    )
    print(
        f"\n(b) a run claimed → finished, median {median(durations):.2f} s; a plain fit, "
        f"mean {unpackable_plain / args.runs:.2f} s; (c) each: "
        + ", ".join(f"{value:.2f}" for value in queue["latencies"])
    )


if __name__ == "__main__":
    main()
