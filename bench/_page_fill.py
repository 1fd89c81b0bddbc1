"""What bench/page_load.py fills its server with: 20 finished runs of 100 epochs for the
compare view, sent as a worker sends them, then thousands of experiments in every state
for the runs page, written with the app's own service functions.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlmodel import Session

from app.db import make_engine
from app.models import Status
from app.services import experiments, metrics, queue
from app.spec import ExperimentSpec
from bench._common import ScriptedWorker, seed_spec

COMPARE_RUNS = 20
EPOCHS = 100
# The worker's per-epoch names for a classification run (app.spec), plus one per-layer one.
METRIC_NAMES = (
    "loss",
    "val_loss",
    "data_loss",
    "val_data_loss",
    "reg_loss",
    "accuracy",
    "val_accuracy",
    "lr",
    "epoch_seconds",
    "kernel_norm/dense",
)
FAMILIES = ("l2-sweep", "dropout-grid", "l1-sparse", "elastic-net", "baseline")
FINISHED_SHARE = 0.3
RUNNING = 10


# --- what the runs hold -----------------------------------------------------------------


def compare_spec(index: int) -> dict[str, Any]:
    """The seed's MLP on digits for 100 epochs, its L2 and dropout varied per run."""
    spec = seed_spec(epochs=EPOCHS, name=f"compare-{index:02d}")
    l2 = (0.0001, 0.0003, 0.001, 0.003, 0.01)[index % 5]
    dropout = (0.0, 0.25, 0.5, 0.6)[index // 5 % 4]
    for layer in spec["model"]["layers"]:
        layer["regularizer"] = {"kind": "l2", "l2": l2}
        layer["dropout"] = dropout
    spec["training"]["seed"] = index
    return spec


def sweep_spec(index: int) -> dict[str, Any]:
    """One of five families of a big sweep; the name carries the family and the index."""
    family = FAMILIES[index % len(FAMILIES)]
    spec = seed_spec(epochs=EPOCHS, name=f"{family}-{index:05d}")
    strength = (0.0001, 0.001, 0.01, 0.1)[index // 5 % 4]
    for layer in spec["model"]["layers"]:
        layer["dropout"] = 0.0
        if family == "l2-sweep":
            layer["regularizer"] = {"kind": "l2", "l2": strength}
        elif family == "dropout-grid":
            layer["regularizer"] = {"kind": "l2", "l2": 0.001}
            layer["dropout"] = (0.1, 0.3, 0.5, 0.7)[index // 5 % 4]
        elif family == "l1-sparse":
            layer["regularizer"] = {"kind": "l1", "l1": strength}
        elif family == "elastic-net":
            layer["regularizer"] = {"kind": "l1l2", "l1": strength, "l2": strength}
        else:
            layer.pop("regularizer", None)
    spec["training"]["seed"] = index
    spec["training"]["learning_rate"] = (0.001, 0.003, 0.01)[index % 3]
    return spec


def epoch_values(epoch: int, run: int, rng: random.Random) -> dict[str, float]:
    """Plausible curves: the training loss falls, validation turns up late, noise on all."""
    data_loss = 0.05 + 2.2 * math.exp(-epoch / (10 + run)) + abs(rng.gauss(0, 0.01))
    overfit = 0.002 * max(0, epoch - 30) * (1 + run % 5) / 5
    val_data_loss = 0.12 + 2.1 * math.exp(-epoch / (12 + run)) + overfit + abs(rng.gauss(0, 0.02))
    reg_loss = (0.01 + 0.002 * run) * (1 + 0.5 * math.exp(-epoch / 15))
    accuracy = max(0.0, min(1.0, 1.0 - data_loss / 2.4 + rng.gauss(0, 0.005)))
    val_accuracy = max(0.0, min(1.0, 1.0 - val_data_loss / 2.2 + rng.gauss(0, 0.01)))
    return {
        "loss": data_loss + reg_loss,
        "val_loss": val_data_loss + reg_loss,
        "data_loss": data_loss,
        "val_data_loss": val_data_loss,
        "reg_loss": reg_loss,
        "accuracy": accuracy,
        "val_accuracy": val_accuracy,
        "lr": 0.001,
        "epoch_seconds": 0.04 + abs(rng.gauss(0, 0.005)),
        "kernel_norm/dense": 3.0 + 4.0 * (1 - math.exp(-epoch / 20)) + rng.gauss(0, 0.05),
    }


# --- filling the database ---------------------------------------------------------------


def fill_compare_runs(url: str) -> list[int]:
    """20 finished runs, each submitted, claimed, fed its 100 epochs in one upload and
    finished with test metrics, through the client package as a worker would."""
    ids = []
    with ScriptedWorker(url, worker_id="bench-page-load") as worker:
        for index in range(COMPARE_RUNS):
            rng = random.Random(index)
            start = time.time() - EPOCHS * 0.05
            points: list[dict[str, Any]] = [
                {
                    "epoch": epoch,
                    "values": epoch_values(epoch, index, rng),
                    "time": start + epoch * 0.05,
                }
                for epoch in range(EPOCHS)
            ]
            best = min(range(EPOCHS), key=lambda epoch: points[epoch]["values"]["val_data_loss"])
            last = points[-1]["values"]
            test_metrics = {
                "test_loss": last["val_loss"],
                "test_data_loss": last["val_data_loss"],
                "test_accuracy": last["val_accuracy"],
            }
            run_id = worker.add_finished(
                compare_spec(index), points, test_metrics=test_metrics, best_epoch=best
            )
            ids.append(run_id)
    return ids


def fate_of(index: int, count: int) -> str:
    """Where the index-th of `count` experiments ends up: the oldest 30% have ended (1 in
    20 failed, 2 in 20 cancelled), the next 10 are running, the newest are queued."""
    finished = int(count * FINISHED_SHARE)
    if index < finished:
        return {0: "failed", 1: "cancelled", 2: "cancelled"}.get(index % 20, "succeeded")
    if index < finished + RUNNING:
        return "running"
    return "queued"


def fill_experiments(db_path: Path, count: int) -> tuple[Counter[str], float]:
    """`count` more experiments with the app's service functions, one session each: how
    many ended up in each state, and the seconds it took."""
    engine = make_engine(f"sqlite:///{db_path}")
    statuses: Counter[str] = Counter()
    rng = random.Random(7)
    started = time.perf_counter()
    try:
        for index in range(count):
            fate = fate_of(index, count)
            spec = ExperimentSpec.model_validate(sweep_spec(index))
            with Session(engine, expire_on_commit=False) as session:
                add_experiment(session, spec, index, fate, rng)
            statuses[fate] += 1
    finally:
        engine.dispose()
    return statuses, time.perf_counter() - started


def add_experiment(
    session: Session, spec: ExperimentSpec, index: int, fate: str, rng: random.Random
) -> None:
    """One experiment taken to `fate`: created, then cancelled, or claimed with one
    epoch's metrics and, unless running, finished as succeeded or failed."""
    row = experiments.create(session=session, spec=spec, max_attempts=1)
    assert row.id is not None
    if fate == "cancelled":
        experiments.cancel(session=session, experiment_id=row.id)
    if fate in ("queued", "cancelled"):
        return
    claimed = queue.claim(
        session=session, worker_id="bench-fill", host="bench", devices=["CPU"], lease_seconds=3600
    )
    if claimed is None or claimed.id != row.id:
        raise RuntimeError(f"claimed {claimed and claimed.id}, expected {row.id}")
    assert claimed.lease_token is not None
    epoch = {"succeeded": EPOCHS - 1, "failed": 17, "running": 42}[fate]
    values = epoch_values(epoch, index % 20, rng)
    token = claimed.lease_token
    metrics.ingest(
        session=session, experiment_id=row.id, lease_token=token, points=[(epoch, values, None)]
    )
    if fate == "running":
        return
    succeeded = fate == "succeeded"
    queue.finish(
        session=session,
        experiment_id=row.id,
        lease_token=token,
        status=Status.succeeded if succeeded else Status.failed,
        test_metrics={"test_loss": values["val_loss"]} if succeeded else None,
        best_epoch=60 if succeeded else None,
        error=None if succeeded else f"diverged at epoch {epoch + 1}",
        error_epoch=None if succeeded else epoch + 1,
    )
