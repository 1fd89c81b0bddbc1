"""Early stopping on a run built to over-fit, in both engines: it stops before the last
epoch, restores the best epoch's weights before the test evaluation, and says where."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from app.spec import ExperimentSpec
from worker.builders import input_layout, make_loss
from worker.datasets import load_dataset
from worker.training import train

EPOCHS = 150


def overfitting_spec(loop: str, **early_stopping: Any) -> ExperimentSpec:
    """Few noisy samples and a big net at a high learning rate: over-fits within epochs."""
    return ExperimentSpec.model_validate(
        {
            "name": "overfit",
            "dataset": {"name": "noisy_regression", "n_samples": 60, "noise": 0.5},
            "model": {"layers": [{"type": "dense", "units": 256}, {"type": "dense", "units": 256}]},
            "training": {
                "epochs": EPOCHS,
                "batch_size": 16,
                "learning_rate": 0.01,
                "loop": loop,
                "histogram_every": 0,
                "early_stopping": {"patience": 5, **early_stopping},
            },
        }
    )


class WeightsPerEpoch(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.weights: list[list[np.ndarray]] = []
        self.stop_seen: list[bool] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.weights.append(self.model.get_weights())
        self.stop_seen.append(bool(self.model.stop_training))


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_stops_early_and_restores_the_best_weights(loop: str) -> None:
    spec = overfitting_spec(loop)
    recorder = WeightsPerEpoch()
    result = train(spec, [recorder])

    val = result.history["val_data_loss"]
    assert result.epochs_completed == len(val) < EPOCHS
    best = int(np.argmin(val))
    assert result.best_epoch == best
    # Stopped `patience` epochs after the best, said in the test metrics.
    assert result.stopped_epoch == best + 5 == result.epochs_completed - 1
    assert result.test_metrics["stopped_epoch"] == result.stopped_epoch
    # The callbacks saw stop_training at the last epoch only.
    assert recorder.stop_seen == [False] * best + [False] * 5 + [True]

    # The model holds the best epoch's weights, not the last epoch's ...
    for restored, kept in zip(result.model.get_weights(), recorder.weights[best], strict=True):
        np.testing.assert_array_equal(restored, kept)
    assert any(
        not np.array_equal(restored, last)
        for restored, last in zip(result.model.get_weights(), recorder.weights[-1], strict=True)
    )
    # ... so its validation data loss recomputed now is the best one, and the test
    # metrics were measured with those weights.
    splits = load_dataset(spec.dataset, spec.training.seed, input_layout(spec))
    loss = make_loss("regression")
    val_now = float(loss(splits.y_val, result.model.predict(splits.x_val, verbose=0)))
    assert val_now == pytest.approx(val[best], rel=1e-4)
    test_now = float(loss(splits.y_test, result.model.predict(splits.x_test, verbose=0)))
    assert result.test_metrics["test_data_loss"] == pytest.approx(test_now, rel=1e-4)


def test_without_restore_keeps_the_last_weights() -> None:
    spec = overfitting_spec("fit", restore_best_weights=False)
    recorder = WeightsPerEpoch()
    result = train(spec, [recorder])
    assert result.stopped_epoch is not None and result.stopped_epoch < EPOCHS - 1
    for now, last in zip(result.model.get_weights(), recorder.weights[-1], strict=True):
        np.testing.assert_array_equal(now, last)
    assert result.best_epoch == int(np.argmin(result.history["val_data_loss"]))


def test_patience_never_runs_out() -> None:
    spec = overfitting_spec("custom", patience=1000)
    spec.training.epochs = 5
    result = train(spec)
    assert result.epochs_completed == 5
    assert result.stopped_epoch is None and "stopped_epoch" not in result.test_metrics
    val = result.history["val_data_loss"]
    assert result.best_epoch == int(np.argmin(val))
