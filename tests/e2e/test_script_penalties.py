"""A plain Keras script with penalties and ReglabCallback gets the whole lab, checked
against the worker's own series for the same model and data.

The worker's side: `worker.training.train` on a spec (digits, a dense layer with an L2
kernel penalty, an L1 bias penalty, an L1 activity penalty and dropout), whose compiled
`data_loss` metric is exact. The script's side: a subprocess that imports keras, numpy
and reglab only, builds the same model by hand on the same split (saved by the test from
`load_dataset`), and fits it twice into a real `reglab serve`: with the penalty measured in
the step (the default), and from the weights (`penalty_metric=False`), each followed by
`log_test(model.evaluate(...))`. In the step, `data_loss`, `val_data_loss` and the test
data loss equal the worker's to 1e-6; from the weights `val_data_loss` does, and
`data_loss` is within the documented approximation (half the change of the weight penalty
over the epoch). Each run has its device, a verdict that is not "too early", and its
test metrics.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.test_callback_script import Server, script_env, server

__all__ = ["server"]  # the fixture, from the callback tests

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EPOCHS = 8
SPEC: dict[str, Any] = {
    "name": "penalties, by the worker",
    "dataset": {"name": "digits", "train_fraction": 0.4},
    "model": {
        "layers": [
            {
                "type": "dense",
                "units": 16,
                "activation": "relu",
                "regularizer": {"kind": "l2", "l2": 0.01},
                "bias_regularizer": {"kind": "l1", "l1": 0.001},
                "activity_regularizer": {"kind": "l1", "l1": 0.0001},
                "dropout": 0.2,
            }
        ]
    },
    "training": {
        "epochs": EPOCHS,
        "batch_size": 32,
        "optimizer": "adam",
        "learning_rate": 0.002,
        "seed": 0,
    },
}
SCRIPT = """\
import json
import sys

import keras
import numpy as np

from reglab import ReglabCallback

config = json.loads(sys.argv[1])
data = np.load(config["data"])
runs = {}
for mode, penalty_metric in (("in_step", True), ("weights", False)):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((data["x_train"].shape[1],)),
        keras.layers.Dense(
            16,
            activation="relu",
            kernel_regularizer=keras.regularizers.L2(0.01),
            bias_regularizer=keras.regularizers.L1(0.001),
            activity_regularizer=keras.regularizers.L1(0.0001) if mode == "in_step" else None,
        ),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(
        optimizer=keras.optimizers.Adam(0.002),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    reglab = ReglabCallback(f"plain keras, {mode}", penalty_metric=penalty_metric,
                            dataset="digits", batch_size=32, close_timeout=60)
    model.fit(data["x_train"], data["y_train"], validation_data=(data["x_val"], data["y_val"]),
              epochs=config["epochs"], batch_size=32, verbose=0, callbacks=[reglab])
    test = reglab.log_test(
        model.evaluate(data["x_test"], data["y_test"], batch_size=32, verbose=0, return_dict=True)
    )
    runs[mode] = {"run_id": reglab.run_id, "error": reglab.error, "test": test}
print(json.dumps(runs))
"""


def worker_series(spec: dict[str, Any], folder: Path) -> tuple[dict[str, list[float]], Any]:
    """The worker's training of `spec`: its per-epoch logs and test metrics; the split it
    trained on is saved for the script."""
    from app.spec import ExperimentSpec
    from worker.builders import input_layout
    from worker.datasets import load_dataset
    from worker.training import train

    parsed = ExperimentSpec.model_validate(spec)
    splits = load_dataset(parsed.dataset, parsed.training.seed, input_layout(parsed))
    np.savez(folder / "split.npz", **vars(splits))
    result = train(parsed)
    return result.history, result.test_metrics


def equal(got: list[float | None], want: list[float]) -> bool:
    return len(got) == len(want) and all(
        value is not None and abs(value - expected) <= 1e-6 * max(1.0, abs(expected))
        for value, expected in zip(got, want, strict=True)
    )


def test_a_plain_keras_script_gets_the_lab_like_a_worker_run(
    server: Server, tmp_path: Path
) -> None:
    with_activity, worker_test = worker_series(SPEC, tmp_path)
    weights_only_spec = json.loads(json.dumps(SPEC))
    del weights_only_spec["model"]["layers"][0]["activity_regularizer"]
    weights_only, _ = worker_series(weights_only_spec, tmp_path)  # the same split
    config = {"data": str(tmp_path / "split.npz"), "epochs": EPOCHS}
    (tmp_path / "train.py").write_text(SCRIPT)
    process = subprocess.run(
        [sys.executable, str(tmp_path / "train.py"), json.dumps(config)],
        env=script_env(server),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    runs = json.loads(process.stdout.strip().splitlines()[-1])
    assert runs["in_step"]["error"] is None and runs["weights"]["error"] is None

    with server.api() as api:
        got: dict[str, dict[str, Any]] = {}
        for mode, answer in runs.items():
            run_id = answer["run_id"]
            run = api.get(f"/api/experiments/{run_id}").json()
            assert run["status"] == "succeeded" and run["epochs_done"] == EPOCHS
            assert run["device"] == "CPU (tensorflow)"
            verdict = api.get(f"/api/experiments/{run_id}/verdict").json()
            assert verdict["verdict"] != "too_early", verdict
            assert run["test_metrics"] == pytest.approx(answer["test"])
            got[mode] = {
                "run": run,
                "series": api.get(f"/api/experiments/{run_id}/metrics").json()["series"],
            }

    # In the step: exact, every kind of penalty (kernel, bias, activity).
    in_step = got["in_step"]
    assert in_step["run"]["script"]["series"]["reg_loss"].startswith("The epoch's mean penalty")
    for name in ("data_loss", "val_data_loss", "reg_loss", "loss", "val_loss"):
        assert equal(in_step["series"][name], with_activity[name]), name
    test = in_step["run"]["test_metrics"]
    assert set(test) >= {"test_loss", "test_accuracy", "test_data_loss", "test_reg_loss"}
    for name in ("test_loss", "test_data_loss", "test_accuracy"):
        assert abs(test[name] - worker_test[name]) <= 1e-6 * max(1.0, worker_test[name]), name

    # From the weights: validation exact; training within half the penalty's change.
    weights = got["weights"]
    assert "starting and final weights" in weights["run"]["script"]["series"]["reg_loss"]
    series = weights["series"]
    assert equal(series["val_data_loss"], weights_only["val_data_loss"])
    assert equal(series["loss"], weights_only["loss"])  # the same training, step for step
    for epoch in range(EPOCHS):
        end = series["val_reg_loss"][epoch]
        start = 2 * series["reg_loss"][epoch] - end  # reg_loss = (start + end) / 2
        if epoch:
            assert start == pytest.approx(series["val_reg_loss"][epoch - 1], rel=1e-6)
        error = abs(series["data_loss"][epoch] - weights_only["data_loss"][epoch])
        assert error <= abs(end - start) / 2 + 1e-6, epoch
    assert set(weights["run"]["test_metrics"]) >= {"test_loss", "test_data_loss", "test_reg_loss"}
