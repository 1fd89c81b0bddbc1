"""reglab.Run in custom training loops (subprocesses that import tensorflow, keras, numpy
and `reglab.Run` only) against a real `reglab serve` that requires a token: the example
GradientTape script with its penalty added by hand streams the whole run (config, data
loss apart from the penalty, device, verdict, test metrics); a loop that keeps training
while the server restarts loses nothing; a loop that raises leaves its run failed with the
exception's message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.e2e.test_callback_script import (
    REPO,
    Server,
    epochs_done,
    finish,
    metric_events,
    script_env,
    server,
)

__all__ = ["server"]  # the fixture, from the callback tests

TAPE_SCRIPT = """\
import json
import sys
import time

import numpy as np
import tensorflow as tf

import reglab

config = json.loads(sys.argv[1])
tf.random.set_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(128, 8)).astype("float32")
y = (x @ rng.normal(size=(8, 1))).astype("float32")
kernel = tf.Variable(rng.normal(size=(8, 1)).astype("float32") * 0.1)


@tf.function
def step(x, y):
    with tf.GradientTape() as tape:
        data_loss = tf.reduce_mean(tf.square(x @ kernel - y))
        reg_loss = 0.01 * tf.reduce_sum(tf.square(kernel))  # L2 by hand, inside the tape
        loss = data_loss + reg_loss
    kernel.assign_sub(0.05 * tape.gradient(loss, kernel))  # plain gradient descent
    return data_loss, reg_loss


run = reglab.Run(
    "tape loop",
    config={"l2": 0.01, "epochs": config["epochs"]},
    close_timeout=config.get("close_timeout", 10.0),
)
with run:
    for epoch in range(config["epochs"]):
        data_loss, reg_loss = step(x[:96], y[:96])
        val_data_loss = tf.reduce_mean(tf.square(x[96:] @ kernel - y[96:]))
        run.log(epoch, data_loss=data_loss, reg_loss=reg_loss, val_data_loss=val_data_loss,
                val_reg_loss=0.01 * tf.reduce_sum(tf.square(kernel)))
        with open(config["progress"], "w") as progress:
            progress.write(str(epoch))
        if epoch == config.get("crash_at"):
            raise RuntimeError(f"boom at epoch {epoch}")
        time.sleep(config.get("sleep", 0))
print(json.dumps({"run_id": run.run_id, "error": run.error}))
"""


def start_tape(server: Server, tmp_path: Path, config: dict[str, Any]) -> subprocess.Popen[str]:
    path = tmp_path / "tape.py"
    path.write_text(TAPE_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(path), json.dumps({"progress": str(tmp_path / "progress"), **config})],
        env=script_env(server),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_gradient_tape_example_streams_the_whole_run(server: Server) -> None:
    process = subprocess.run(
        [sys.executable, str(REPO / "examples" / "gradient_tape.py"), "--epochs", "8"],
        env=script_env(server),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "trained 8 epochs, run 1" in process.stdout
    with server.api() as api:
        run = api.get("/api/experiments/1").json()
        assert (run["status"], run["source"], run["epochs_done"]) == ("succeeded", "script", 8)
        assert run["device"] == "CPU (tensorflow)"
        assert run["regularization"] == "l2 0.001 · dropout 0.5"  # from the config
        script = run["script"]
        assert script["config"]["optimizer.name"] == "adam" and script["epochs"] == 8
        assert [layer["type"] for layer in script["layers"]][:2] == ["Dense", "Dropout"]
        assert script["task"] == "classification" and "gradient_tape.py" in script["command"]
        series = api.get("/api/experiments/1/metrics").json()["series"]
        for name in ("loss", "data_loss", "reg_loss", "val_loss", "val_data_loss", "accuracy"):
            assert len(series[name]) == 8 and None not in series[name], name
        for epoch in range(8):  # loss = data loss + the penalty added by hand
            total = series["data_loss"][epoch] + series["reg_loss"][epoch]
            assert series["loss"][epoch] == pytest.approx(total, rel=1e-9)
        assert len(series["kernel_norm/hidden_0"]) == 8  # the model's kernels, per epoch
        verdict = api.get("/api/experiments/1/verdict").json()
        assert verdict["verdict"] != "too_early", verdict
        test = run["test_metrics"]
        assert set(test) == {"test_loss", "test_data_loss", "test_reg_loss", "test_accuracy"}
        assert test["test_loss"] == pytest.approx(test["test_data_loss"] + test["test_reg_loss"])


def test_a_tape_loop_keeps_training_while_the_server_restarts(
    server: Server, tmp_path: Path
) -> None:
    epochs = 30
    # The end of the block waits for the restarted server (slow to start on a loaded machine).
    config = {"epochs": epochs, "sleep": 0.1, "close_timeout": 120}
    process = start_tape(server, tmp_path, config)
    progress = tmp_path / "progress"

    def epoch_reached() -> int:
        text = progress.read_text() if progress.exists() else ""
        return int(text) if text else -1

    with server.api() as api:
        wait_for(lambda: epochs_done(api) >= 3, timeout=120)
    server.stop()
    down_at = epoch_reached()
    wait_for(lambda: epoch_reached() >= down_at + 5, timeout=120)  # trains on meanwhile
    server.start()
    code, result, err = finish(process)
    assert code == 0, err[-3000:]
    assert result["error"] is None
    with server.api() as api:
        run = api.get("/api/experiments/1").json()
        assert run["status"] == "succeeded" and run["epochs_done"] == epochs
        assert run["device"] == "CPU (tensorflow)"
        assert api.get("/api/experiments/1/metrics").json()["epochs"] == list(range(epochs))
        assert metric_events(api, 1) == list(range(epochs))  # each epoch once


def test_a_tape_loop_that_raises_leaves_its_run_failed(server: Server, tmp_path: Path) -> None:
    code, _, err = finish(start_tape(server, tmp_path, {"epochs": 10, "crash_at": 2}))
    assert code == 1 and "RuntimeError: boom at epoch 2" in err
    with server.api() as api:
        run = api.get("/api/experiments/1").json()
        assert run["status"] == "failed" and run["error"] == "RuntimeError: boom at epoch 2"
        assert run["epochs_done"] == 3 and run["error_epoch"] == 3
        series = api.get("/api/experiments/1/metrics").json()["series"]
        assert len(series["data_loss"]) == 3 and len(series["loss"]) == 3
