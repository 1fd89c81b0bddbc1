"""The real thing: `reglab serve` and `reglab worker` as processes, driven over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reglab.client import ReglabClient
from tests.conftest import wait_for
from tests.factories import make_spec

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def follow(url: str, run_id: int) -> list:
    with ReglabClient(url) as client:
        return list(client.events(run_id))


def test_submit_train_and_stream_every_epoch_once(stack: str) -> None:
    spec = json.loads((ROOT / "examples" / "l2-dropout-digits.json").read_text())
    spec["training"]["epochs"] = 5
    with ReglabClient(stack) as client:
        run = client.submit(spec)
        events = follow(stack, run["id"])
        done = client.get(run["id"])
        series = client.metrics(run["id"])
        model_bytes = client.download_model(run["id"])

    epochs = [event.data["epoch"] for event in events if event.kind == "metrics"]
    assert epochs == [0, 1, 2, 3, 4]
    statuses = [event.data["status"] for event in events if event.kind == "status"]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
    assert "running" in statuses
    ids = [event.id for event in events]
    assert len(ids) == len(set(ids))

    values = [event for event in events if event.kind == "metrics"][-1].data["values"]
    # Weight histograms (every 5 epochs and at the last) arrive on the same stream.
    assert [event.data["epoch"] for event in events if event.kind == "histogram"] == [0, 4]
    for name in (
        "loss",
        "val_loss",
        "data_loss",
        "val_data_loss",
        "reg_loss",
        "accuracy",
        "val_accuracy",
        "lr",
        "epoch_seconds",
        "kernel_norm/dense_0",
        "sparsity/dense_0",
        "kernel_norm/dense_1",
        "kernel_norm/output",
    ):
        assert name in values, name
    assert values["reg_loss"] > 0
    assert values["loss"] == pytest.approx(values["data_loss"] + values["reg_loss"], rel=1e-4)

    assert done["status"] == "succeeded"
    assert done["device"] == "CPU (tensorflow)"
    assert done["epochs_done"] == 5
    assert set(done["test_metrics"]) == {"test_loss", "test_data_loss", "test_accuracy"}
    assert done["best_epoch"] in range(5)
    assert series["epochs"] == [0, 1, 2, 3, 4]
    assert len(series["series"]["val_data_loss"]) == 5

    import keras

    import worker.regularizers  # noqa: F401  (registers the penalties for loading)

    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"reglab-e2e-{run['id']}.keras"
    path.write_bytes(model_bytes)
    try:
        model = keras.saving.load_model(path)
    finally:
        path.unlink()
    assert model.get_layer("dense_0").kernel_regularizer.get_config()["l2"] == pytest.approx(0.01)


def test_a_diverging_run_fails_with_its_epoch_and_the_worker_goes_on(stack: str) -> None:
    diverging = make_spec(
        name="diverges",
        dataset={"name": "noisy_regression"},
        model={"layers": [{"type": "dense", "units": 32}, {"type": "dense", "units": 32}]},
        training={"epochs": 5, "optimizer": "sgd", "learning_rate": 10.0, "batch_size": 4},
    )
    with ReglabClient(stack) as client:
        bad = client.submit(diverging)
        good = client.submit(make_spec(name="after"))
        follow(stack, bad["id"])
        follow(stack, good["id"])
        bad, good = client.get(bad["id"]), client.get(good["id"])
    assert bad["status"] == "failed"
    assert bad["error"] == "diverged at epoch 0"
    assert bad["error_epoch"] == 0
    assert good["status"] == "succeeded"


def test_cancel_stops_the_training_child(stack: str) -> None:
    long_run = make_spec(name="long", training={"epochs": 1000, "batch_size": 8})
    with ReglabClient(stack) as client:
        run = client.submit(long_run)
        seen = []
        for event in client.events(run["id"]):
            seen.append(event)
            if event.kind == "metrics":
                break
        cancelled_at = time.monotonic()
        assert client.cancel(run["id"])["status"] == "cancelled"
        # The worker frees its slot within a few seconds: nothing runs on it any more.
        wait_for(lambda: all(not worker["running"] for worker in client.workers()), timeout=10)
        assert time.monotonic() - cancelled_at < 10
        epochs_at_cancel = client.get(run["id"])["epochs_done"]
        time.sleep(1.5)  # were the child still training, epochs would keep arriving (409s)
        assert client.get(run["id"])["epochs_done"] <= epochs_at_cancel + 1
        after = client.submit(make_spec(name="next"))
        follow(stack, after["id"])
        assert client.get(after["id"])["status"] == "succeeded"


def test_the_command_line_submits_and_watches(stack: str, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(make_spec(name="from-cli")))
    env = {**os.environ, "REGLAB_SERVER_URL": stack, "COLUMNS": "120"}
    reglab = [sys.executable, "-m", "reglab.cli"]
    result = subprocess.run(
        [*reglab, "submit", str(spec_file), "--watch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "queued experiment" in result.stdout
    assert "succeeded" in result.stdout
    assert "val_data_loss" in result.stdout
    listing = subprocess.run([*reglab, "ls"], env=env, capture_output=True, text=True, timeout=60)
    assert "from-cli" in listing.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(make_spec(training={"epochs": 0})))
    refused = subprocess.run(
        [*reglab, "submit", str(bad)], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "training.epochs" in refused.stderr


def test_the_worker_log_has_no_tensorflow_start_up_notices(stack: str, stack_dir: Path) -> None:
    """Its children import TensorFlow on a CPU host: the cuInit failure, cudart_stub and
    absl notices are left out of the worker's log (tests/worker/test_notices.py: what
    else a child prints still shows)."""
    with ReglabClient(stack) as client:
        follow(stack, client.submit(make_spec(name="quiet"))["id"])
    log = (stack_dir / "worker.log").read_text(errors="replace")
    assert "claimed experiment" in log
    for notice in ("failed call to cuInit", "cudart_stub", "absl::InitializeLog", "oneDNN"):
        assert notice not in log


def test_workers_endpoint_shows_this_host(stack: str) -> None:
    workers = httpx.get(f"{stack}/api/workers", timeout=10).json()
    assert workers and workers[0]["devices"] == ["CPU"]
