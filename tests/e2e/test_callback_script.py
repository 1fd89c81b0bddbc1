"""ReglabCallback in plain Keras scripts (subprocesses that import keras, numpy and
`reglab.ReglabCallback` only) against a real `reglab serve` that requires a token:
the run and its summary, device, data loss apart from the penalty and test metrics, every
epoch once, per-batch logging bucketed with its spike kept, a wrong token that never stops
training, a crash recorded as failed, a cancel from the dashboard that stops the script, a
server restarted mid-run with nothing lost, and resends after lost answers stored once."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.conftest import free_port, health, wait_for

REPO = Path(__file__).resolve().parents[2]
TOKEN = "script-user-token"
SCRIPT = """\
import json
import sys
import time

import keras
import numpy as np

from reglab import ReglabCallback

config = json.loads(sys.argv[1])
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
samples = config.get("samples", 256)
x = rng.normal(size=(samples, 8)).astype("float32")
y = (x @ rng.normal(size=(8, 1))).astype("float32")
if "spike_sample" in config:
    y[config["spike_sample"]] = 1e4
model = keras.Sequential([
    keras.Input((8,)),
    keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(0.001)),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.SGD(0.001, clipnorm=1.0), loss="mse")


def on_epoch_end(epoch, logs):
    if config.get("progress"):
        with open(config["progress"], "w") as progress:
            progress.write(str(epoch))
    if epoch == config.get("crash_at"):
        raise RuntimeError(f"boom at epoch {epoch}")
    time.sleep(config.get("sleep", 0))


reglab = ReglabCallback(
    config.get("name", "plain script"),
    log_every=config.get("log_every", "epoch"),
    dataset="random regression",
    batch_size=config.get("batch_size", 32),
    close_timeout=config.get("close_timeout", 60),
)
history = model.fit(
    x,
    y,
    epochs=config.get("epochs", 3),
    batch_size=config.get("batch_size", 32),
    validation_split=config.get("validation_split", 0.25),
    shuffle=False,
    verbose=0,
    callbacks=[reglab, keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)],
)
server_side = ("fastapi", "sqlmodel", "sqlalchemy", "pydantic", "pydantic_settings")
print(json.dumps({"epochs": len(history.history["loss"]), "run_id": reglab.run_id,
                  "error": reglab.error,
                  "server_modules": [name for name in server_side if name in sys.modules]}))
"""


@dataclass
class Server:
    """`reglab serve` with a user token, stopped and started again on the same port."""

    folder: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = (self.folder / "server.log").open("ab")
        env = {
            **os.environ,
            "REGLAB_DATABASE_URL": f"sqlite:///{self.folder / 'reglab.db'}",
            "REGLAB_DATA_DIR": str(self.folder / "data"),
            "REGLAB_TOKEN": TOKEN,
            "REGLAB_SWEEP_SECONDS": "0.5",
            **self.env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reglab.cli", "serve", "--port", str(self.port)],
            env=env,
            cwd=self.folder,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: health(self.url), timeout=60)

    def stop(self) -> None:
        assert self.process is not None and self.log is not None
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(30) == 0
        self.log.close()

    def api(self, token: str = TOKEN) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


def script_env(server: Server, token: str = TOKEN) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("REGLAB_")  # the script knows the server from these only:
    }
    env.update(
        REGLAB_SERVER_URL=server.url,
        REGLAB_TOKEN=token,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=str(REPO),
    )
    return env


def start_script(
    server: Server, tmp_path: Path, config: dict[str, Any], *, token: str = TOKEN
) -> subprocess.Popen[str]:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(path), json.dumps(config)],
        env=script_env(server, token),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    out, err = process.communicate(timeout=300)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return process.returncode, (json.loads(lines[-1]) if lines else {}), err


def run_script(
    server: Server, tmp_path: Path, config: dict[str, Any], *, token: str = TOKEN
) -> tuple[int, dict[str, Any], str]:
    return finish(start_script(server, tmp_path, config, token=token))


def metric_events(api: httpx.Client, run_id: int) -> list[int]:
    """The epochs of every `metrics` event the run's stream replays (its whole history)."""
    epochs = []
    with api.stream("GET", f"/api/experiments/{run_id}/events") as response:
        assert response.status_code == 200
        kind = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind == "metrics":
                epochs.append(json.loads(line.split(":", 1)[1])["epoch"])
            elif line.startswith("data:") and kind == "status":
                status = json.loads(line.split(":", 1)[1])["status"]
                if status in ("succeeded", "failed", "cancelled"):
                    break
    return epochs


def epochs_done(api: httpx.Client, run_id: int = 1) -> int:
    """Epochs stored so far (0 before the script's run exists)."""
    return int(api.get(f"/api/experiments/{run_id}").json().get("epochs_done", 0))


def test_the_example_script_streams_a_run_with_its_summary(server: Server) -> None:
    process = subprocess.run(
        [sys.executable, str(REPO / "examples" / "own_script.py"), "--epochs", "4"],
        env=script_env(server),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "trained 4 epochs, run 1" in process.stdout
    with server.api() as api:
        run = api.get("/api/experiments/1").json()
        assert run["status"] == "succeeded" and run["source"] == "script"
        assert run["spec"] is None and run["epochs_done"] == run["epochs_total"] == 4
        script = run["script"]
        assert run["regularization"] == script["regularization"] == "L2 0.01 · dropout 0.5"
        assert [layer["type"] for layer in script["layers"]] == [
            "Dense",
            "Dropout",
            "Dense",
            "Dense",
        ]
        assert script["layers"][0] == {**script["layers"][0], "units": 64, "regularizer": "L2 0.01"}
        assert script["layers"][1]["dropout"] == 0.5
        assert (script["optimizer"], script["task"], script["batch_size"]) == (
            "Adam",
            "classification",
            32,
        )
        assert script["params"] > 0 and script["framework"].startswith("keras 3")
        assert "own_script.py --epochs 4" in script["command"]
        history = api.get("/api/experiments/1/metrics").json()
        assert history["epochs"] == [0, 1, 2, 3]
        for name in ("loss", "val_loss", "accuracy", "kernel_norm/dense", "sparsity/dense"):
            assert len(history["series"][name]) == 4 and None not in history["series"][name]
        # The penalty apart from the data loss, measured in the model's steps.
        series = history["series"]
        for name in ("data_loss", "val_data_loss", "reg_loss", "val_reg_loss"):
            assert len(series[name]) == 4 and None not in series[name], name
        for epoch in range(4):
            assert series["reg_loss"][epoch] > 0
            total = series["data_loss"][epoch] + series["reg_loss"][epoch]
            assert series["loss"][epoch] == pytest.approx(total, rel=1e-9)
        assert "measured in each training step" in script["series"]["reg_loss"]
        assert run["device"] == "CPU (tensorflow)"
        test = run["test_metrics"]
        assert set(test) == {"test_loss", "test_accuracy", "test_data_loss", "test_reg_loss"}
        assert f"test accuracy {test['test_accuracy']:.3f}" in process.stdout
        assert metric_events(api, 1) == [0, 1, 2, 3]  # every epoch once


def test_a_wrong_token_is_reported_and_training_goes_on(server: Server, tmp_path: Path) -> None:
    code, result, err = run_script(server, tmp_path, {"epochs": 3}, token="not-the-token")
    assert code == 0, err[-3000:]
    assert result["epochs"] == 3 and result["run_id"] is None
    assert result["server_modules"] == []  # the script needs keras, numpy and httpx only
    assert "refused the token (HTTP 401)" in result["error"]
    assert "refused the token (HTTP 401)" in err and "training goes on" in err
    with server.api() as api:
        assert api.get("/api/experiments").json()["total"] == 0


def test_per_batch_logging_is_bucketed_and_keeps_its_spike(server: Server, tmp_path: Path) -> None:
    steps_per_epoch, epochs = 1050, 2  # 2,100 steps: more than the 1,000 buckets
    config = {
        "epochs": epochs,
        "samples": steps_per_epoch,
        "batch_size": 1,
        "validation_split": 0,
        "log_every": "batch",
        "spike_sample": 700,
    }
    code, result, err = run_script(server, tmp_path, config)
    assert code == 0, err[-3000:]
    run_id = result["run_id"]
    total = steps_per_epoch * epochs
    with server.api() as api:
        assert api.get(f"/api/experiments/{run_id}").json()["status"] == "succeeded"
        body = api.get(f"/api/experiments/{run_id}/batches").json()
        loss = body["series"]["loss"]
        assert loss["points"] == total and len(loss["step"]) <= 1000
        rows = list(csv.reader(io.StringIO(api.get(f"/api/experiments/{run_id}/batches.csv").text)))
    assert rows[0] == ["step", "loss"]
    assert [int(row[0]) for row in rows[1:]] == list(range(total))
    values = [float(row[1]) for row in rows[1:]]
    peak = max(values)
    # The spike (Keras logs the epoch's running mean, so it jumps at the planted sample
    # and decays after): the largest value of all, kept exactly as a bucket's maximum.
    assert values.index(peak) % steps_per_epoch == 700
    assert peak > 10 * sorted(values)[len(values) // 2]
    assert max(loss["max"]) == peak
    assert max(loss["mean"]) < peak


def test_a_crash_marks_the_run_failed_with_its_error(server: Server, tmp_path: Path) -> None:
    code, _, err = run_script(server, tmp_path, {"epochs": 10, "crash_at": 2})
    assert code == 1 and "RuntimeError: boom at epoch 2" in err
    with server.api() as api:
        run = api.get("/api/experiments/1").json()
        assert run["status"] == "failed" and run["error"] == "RuntimeError: boom at epoch 2"
        assert run["epochs_done"] == 3 and run["error_epoch"] == 3


def test_a_cancel_from_the_dashboard_stops_the_script(server: Server, tmp_path: Path) -> None:
    process = start_script(server, tmp_path, {"epochs": 500, "sleep": 0.05})
    with server.api() as api:
        wait_for(lambda: epochs_done(api) >= 2, timeout=120)
        api.post("/api/experiments/1/cancel").raise_for_status()
        code, result, err = finish(process)
        assert code == 0, err[-3000:]
        assert 2 <= result["epochs"] < 500
        run = api.get("/api/experiments/1").json()
        assert run["status"] == "cancelled"


def test_a_server_restart_mid_run_loses_nothing(server: Server, tmp_path: Path) -> None:
    progress = tmp_path / "progress"
    epochs, steps_per_epoch = 40, 6  # 192 samples, 0.25 for validation, batches of 24
    config = {
        "epochs": epochs,
        "samples": 192,
        "batch_size": 24,
        "log_every": "batch",
        "sleep": 0.1,
        "progress": str(progress),
    }
    process = start_script(server, tmp_path, config)

    def epoch_reached() -> int:
        return int(progress.read_text() or -1) if progress.exists() else -1

    with server.api() as api:
        wait_for(lambda: epochs_done(api) >= 3, timeout=120)
    server.stop()
    down_at = epoch_reached()
    wait_for(lambda: epoch_reached() >= down_at + 5, timeout=120)  # trains on meanwhile
    server.start()
    code, result, err = finish(process)
    assert code == 0, err[-3000:]
    assert result["epochs"] == epochs and result["error"] is None
    with server.api() as api:
        run = api.get("/api/experiments/1").json()
        assert run["status"] == "succeeded" and run["epochs_done"] == epochs
        assert api.get("/api/experiments/1/metrics").json()["epochs"] == list(range(epochs))
        assert metric_events(api, 1) == list(range(epochs))
        rows = api.get("/api/experiments/1/batches.csv").text.splitlines()
    assert [int(row.split(",")[0]) for row in rows[1:]] == list(range(epochs * steps_per_epoch))


class LosingAnswers(httpx.BaseTransport):
    """Delivers every request, but loses every second upload's answer (a connection reset
    after the server stored the points), so the sender must resend what was stored."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.uploads = 0
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith(("/metrics", "/batches")):
            self.uploads += 1
            if self.uploads % 2:
                response.read()
                response.close()
                self.lost += 1
                raise httpx.ReadError("connection reset after the server answered")
        return response


def test_resends_after_lost_answers_store_nothing_twice(server: Server) -> None:
    keras = pytest.importorskip("keras")
    import numpy as np

    from reglab import ReglabCallback

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    transport = LosingAnswers()
    callback = ReglabCallback(
        "lossy", url=server.url, token=TOKEN, log_every=2, transport=transport
    )
    model.fit(x, y, epochs=6, batch_size=8, verbose=0, callbacks=[callback])
    assert transport.lost >= 3 and callback.error is None
    run_id = callback.run_id
    assert run_id is not None
    with server.api() as api:
        run = api.get(f"/api/experiments/{run_id}").json()
        assert run["status"] == "succeeded"
        assert metric_events(api, run_id) == list(range(6))
        rows = api.get(f"/api/experiments/{run_id}/batches.csv").text.splitlines()
    assert [int(row.split(",")[0]) for row in rows[1:]] == list(range(0, 48, 2))


def test_a_dead_server_never_hangs_the_script_and_the_buffer_is_bounded() -> None:
    from reglab.channels import ScriptRunChannel, StepPoint
    from reglab.client import ReglabClient
    from reglab.sender import EpochRecord, Sender

    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    channel = ScriptRunChannel(
        ReglabClient(nobody, token=TOKEN), name="dead", script={}, heartbeat_seconds=5.0
    )
    sender = Sender(channel, max_buffer=10).start()
    for step in range(25):
        sender.add_step(StepPoint(step, {"loss": float(step)}))
    sender.add_epoch(EpochRecord(0, {"loss": 1.0}))
    assert sender.dropped == 15 and sender.pending == 11  # the oldest steps went first
    assert sender.close(timeout=1.0) is False  # returns once the timeout is spent
    assert sender.run_id is None and sender.error is None  # never refused: unreachable
    steps = [(point.step, point.values) for point in sender._steps]
    assert steps == [(step, {"loss": float(step)}) for step in range(15, 25)]
