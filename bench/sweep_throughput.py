"""Eight tiny runs through the queue on one slot, against the same eight fits in one script.

Queue: a real server (`python -m reglab.cli serve`, temp SQLite) and ONE worker
(`python -m reglab.cli worker --gpus none`: one CPU slot) as subprocesses. Once the slot's
first training child is warm (TensorFlow imported), the clock starts; the 8 experiments
(Dense 32 on digits, 5 epochs, batch 32, Adam) are POSTed one after another, and the
clock stops when the last of them has succeeded (polled every 50 ms). Per run the server
records claimed (`started_at`), and finished (`finished_at`), and the worker's log, so
the script prints where the time went.

Plain: this script again in a fresh process (`--role plain`): it imports TensorFlow and
Keras, then fits the same 8 models one after another (same data split as the worker:
digits, 20% test, 20% validation, stratified; same layers, optimizer, batch size, epochs;
fit with validation data, then one evaluate on the test split). Timed from after the
import, as a user would see it; the time with the import is printed too.

The plain script runs first, then the queue, then the plain script again; the ratio is
queue ÷ the mean of the two plain times. Target (issue #5): <= 1.5.

    .venv/bin/python bench/sweep_throughput.py            # --runs 8 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import (
    ROOT,
    Server,
    Worker,
    loadavg,
    machine,
    median,
    print_table,
    quiet_env,
)
from bench.queue_latency import wait_warm_child

TARGET = 1.5


def sweep_spec(index: int, epochs: int) -> dict[str, Any]:
    """Dense 32 on digits: the queue's version of `plain_fits`' model."""
    return {
        "name": f"sweep-throughput-{index}",
        "dataset": {"name": "digits", "validation_split": 0.2, "test_split": 0.2},
        "model": {"layers": [{"type": "dense", "units": 32, "activation": "relu"}]},
        "training": {
            "epochs": epochs,
            "batch_size": 32,
            "optimizer": "adam",
            "learning_rate": 0.001,
            "seed": index,
            "loop": "fit",
        },
    }


# --- the plain script -------------------------------------------------------------------


def plain_fits(runs: int, epochs: int) -> dict[str, float]:
    """What a user's own script does: import, then fit the models one after another."""
    began = time.perf_counter()
    import keras
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    imported = time.perf_counter()
    for index in range(runs):
        keras.utils.set_random_seed(index)
        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype(np.float32)
        x_rest, x_test, y_rest, y_test = train_test_split(
            x, y, test_size=0.2, stratify=y, random_state=index
        )
        x_train, x_val, y_train, y_val = train_test_split(
            x_rest, y_rest, test_size=0.25, stratify=y_rest, random_state=index + 1
        )
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(0.001),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            epochs=epochs,
            batch_size=32,
            verbose=0,
        )
        model.evaluate(x_test, y_test, batch_size=32, verbose=0)
    done = time.perf_counter()
    return {"import": imported - began, "fits": done - imported, "total": done - began}


def run_plain(runs: int, epochs: int) -> dict[str, float]:
    """`plain_fits` in a fresh interpreter (so that the import is a real one)."""
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            *("--role", "plain"),
            *("--runs", str(runs)),
            *("--epochs", str(epochs)),
        ],
        cwd=ROOT,
        env=quiet_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


# --- the queue --------------------------------------------------------------------------


def _seconds(later: str | None, earlier: str | None) -> float:
    if later is None or earlier is None:
        return float("nan")
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def run_queue(runs: int, epochs: int) -> dict[str, Any]:
    with Server() as server, Worker(server) as worker:
        cpu = wait_warm_child(worker.pid, quiet_for=1.5)
        print(f"worker pid {worker.pid}: first child warm ({cpu:.1f} s CPU)", flush=True)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            began = time.perf_counter()
            submitted_at = time.time()
            ids = []
            for index in range(runs):
                response = client.post("/api/experiments", json=sweep_spec(index, epochs))
                response.raise_for_status()
                ids.append(int(response.json()["id"]))
            submitted = time.perf_counter() - began
            while True:
                rows = client.get(
                    "/api/experiments", params={"ids": ",".join(map(str, ids)), "limit": runs}
                ).json()["items"]
                states = [row["status"] for row in rows]
                if any(state in ("failed", "cancelled") for state in states):
                    raise RuntimeError(f"a run did not succeed: {states}\n{worker.log_text()}")
                if len(states) == runs and all(state == "succeeded" for state in states):
                    break
                if time.perf_counter() - began > 600:
                    raise RuntimeError(f"not done after 600 s: {states}")
                time.sleep(0.05)
            seconds = time.perf_counter() - began
            details = [client.get(f"/api/experiments/{i}").json() for i in ids]
        for run in details:
            run["epoch_times"] = epoch_times(server.url, run["id"])
        errors = server.error_summary()
    return {
        "seconds": seconds,
        "submitted": submitted,
        "submitted_at": submitted_at,
        "runs": details,
        "errors": errors,
    }


def epoch_times(url: str, run_id: int) -> tuple[float, float]:
    """(first epoch began, last epoch ended), Unix times, from the run's replayed events
    (each `metrics` event carries its epoch's end time and `epoch_seconds`)."""
    from reglab.client import ReglabClient

    first = last = float("nan")
    with ReglabClient(url) as client:
        for event in client.events(run_id, reconnect=False):
            if event.kind != "metrics":
                continue
            end = float(event.data["time"])
            if math.isnan(first):
                first = end - float(event.data["values"].get("epoch_seconds", 0.0))
            last = end
    return first, last


def queue_rows(queue: dict[str, Any]) -> list[list[str]]:
    """Per run: claimed (its `started_at`), first epoch began, last epoch ended, finished;
    each as the time since the previous mark."""
    rows = []
    previous_end = queue["submitted_at"]
    for run in sorted(queue["runs"], key=lambda run: run["started_at"] or ""):
        claimed = datetime.fromisoformat(run["started_at"]).timestamp()
        finished = datetime.fromisoformat(run["finished_at"]).timestamp()
        first, last = run["epoch_times"]
        rows.append(
            [
                run["name"],
                f"{claimed - previous_end:.2f}",
                f"{first - claimed:.2f}",
                f"{last - first:.2f}",
                f"{finished - last:.2f}",
                f"{finished - queue['submitted_at']:.2f}",
            ]
        )
        previous_end = finished
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="runs (default 8)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5)")
    parser.add_argument("--role", choices=("main", "plain"), default="main", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "plain":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        print(json.dumps(plain_fits(args.runs, args.epochs)))
        return

    print(f"machine: {machine()}; {loadavg()}", flush=True)
    before = run_plain(args.runs, args.epochs)
    print(
        f"plain script: {before['fits']:.2f} s of fits ({before['total']:.2f} s with the "
        f"import); {loadavg()}",
        flush=True,
    )
    queue = run_queue(args.runs, args.epochs)
    print(
        f"queue: {queue['seconds']:.2f} s from the first POST to the last success; {loadavg()}",
        flush=True,
    )
    after = run_plain(args.runs, args.epochs)
    print(
        f"plain script again: {after['fits']:.2f} s ({after['total']:.2f} s with the "
        f"import); {loadavg()}",
        flush=True,
    )
    if queue["errors"]:
        print("server log, errors:\n" + queue["errors"])

    plain = (before["fits"] + after["fits"]) / 2
    plain_total = (before["total"] + after["total"]) / 2
    print_table(
        f"Where the queue's time went, s ({args.runs} runs, one CPU slot)",
        [
            "run",
            "previous finished → claimed",
            "claimed → 1st epoch began (child start)",
            "epochs",
            "last epoch → finished (test, save, upload)",
            "finished, since 1st POST",
        ],
        queue_rows(queue),
    )
    durations = [_seconds(run["finished_at"], run["started_at"]) for run in queue["runs"]]
    print_table(
        f"{args.runs} runs x {args.epochs} epochs, Dense 32 on digits",
        ["", "seconds", "÷ plain fits"],
        [
            ["plain script, fits only (mean of 2)", f"{plain:.2f}", "1.00"],
            [
                "plain script, with the import (mean of 2)",
                f"{plain_total:.2f}",
                f"{plain_total / plain:.2f}",
            ],
            [
                "queue, first POST → last succeeded",
                f"{queue['seconds']:.2f}",
                f"{queue['seconds'] / plain:.2f}",
            ],
            ["queue, ÷ plain with the import", "", f"{queue['seconds'] / plain_total:.2f}"],
            ["a run in the queue, claimed → finished, median", f"{median(durations):.2f}", ""],
            ["a plain fit, mean", f"{plain / args.runs:.2f}", ""],
        ],
    )
    ratio = queue["seconds"] / plain
    print(
        f"\nqueue ÷ plain = {ratio:.2f}; target <= {TARGET}: "
        f"{'met' if ratio <= TARGET else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
