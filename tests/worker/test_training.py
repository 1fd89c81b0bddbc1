"""Both training loops on tiny real models: same logs, same numbers, same rules."""

import functools
import math
import pickle
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from keras import ops

from app.spec import ExperimentSpec, Task
from worker import regularizers
from worker.builders import build_model, input_layout
from worker.training import Diverged, TrainingResult, epoch_metric_names, train

DIGITS_MLP = [
    {
        "type": "dense",
        "units": 16,
        "regularizer": {"kind": "l2", "l2": 0.01},
        "bias_regularizer": {"kind": "l1", "l1": 0.01},
        "activity_regularizer": {"kind": "smoothness", "smoothness": 0.01},
    },
    {"type": "dense", "units": 8, "regularizer": {"kind": "l1l2"}},
]


def make_spec(
    dataset: str | dict[str, Any] = "digits",
    layers: list[dict[str, Any]] | None = None,
    **training: Any,
) -> ExperimentSpec:
    """A one-epoch spec; `dataset` is a name or a DatasetSpec's fields."""
    return ExperimentSpec.model_validate(
        {
            "name": "test",
            "dataset": {"name": dataset} if isinstance(dataset, str) else dataset,
            "model": {"layers": layers or [{"type": "dense", "units": 16}]},
            "training": {"epochs": 1, "batch_size": 64, **training},
        }
    )


class Recorder(keras.callbacks.Callback):
    """Keeps every event and a copy of every epoch's logs; may stop training after an epoch."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.events: list[str] = []
        self.logs: list[dict[str, Any]] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.events.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.events.append(f"epoch_end {epoch}")
        self.logs.append(dict(logs or {}))
        if epoch == self.stop_after:
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.events.append("train_end")


@functools.cache
def trained(task: Task, loop: str) -> tuple[TrainingResult, Recorder]:
    """Three epochs of a penalized MLP, no dropout, no shuffling (so the loops can agree)."""
    if task == "classification":
        spec = make_spec("digits", DIGITS_MLP, epochs=3, loop=loop, shuffle=False)
    else:
        spec = make_spec(
            "noisy_regression", DIGITS_MLP, epochs=3, batch_size=8, loop=loop, shuffle=False
        )
    recorder = Recorder()
    return train(spec, [recorder]), recorder


TASKS = ["classification", "regression"]
needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the custom loop is TensorFlow's"
)
LOOPS = ["fit", pytest.param("custom", marks=needs_tensorflow)]


@needs_tensorflow
@pytest.mark.parametrize("task", TASKS)
def test_loops_agree_epoch_by_epoch(task: Task) -> None:
    fit, _ = trained(task, "fit")
    custom, _ = trained(task, "custom")
    assert fit.epochs_completed == custom.epochs_completed == 3
    for name in epoch_metric_names(task):
        np.testing.assert_allclose(
            custom.history[name], fit.history[name], rtol=1e-4, atol=1e-6, err_msg=name
        )
    for name, value in fit.test_metrics.items():
        assert custom.test_metrics[name] == pytest.approx(value, rel=1e-4), name


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("task", TASKS)
def test_callback_gets_exactly_the_epoch_metrics_as_floats(task: Task, loop: str) -> None:
    result, recorder = trained(task, loop)
    expected = epoch_metric_names(task)
    score = "accuracy" if task == "classification" else "mae"
    assert set(expected) == {
        "loss",
        "val_loss",
        "data_loss",
        "val_data_loss",
        "reg_loss",
        score,
        f"val_{score}",
        "lr",
    }
    assert recorder.model is result.model
    assert recorder.events == [
        "train_begin",
        *(f"epoch_{event} {epoch}" for epoch in range(3) for event in ("begin", "end")),
        "train_end",
    ]
    for epoch, logs in enumerate(recorder.logs):
        assert list(logs) == list(expected)
        assert all(type(value) is float and math.isfinite(value) for value in logs.values())
        assert logs == {name: values[epoch] for name, values in result.history.items()}
        assert logs["reg_loss"] == pytest.approx(logs["loss"] - logs["data_loss"])
        assert logs["reg_loss"] > 0  # every layer carries a penalty
        assert logs["lr"] == pytest.approx(0.001)


@pytest.mark.parametrize("loop", LOOPS)
def test_test_metrics_and_best_epoch(loop: str) -> None:
    classification, _ = trained("classification", loop)
    regression, _ = trained("regression", loop)
    assert set(classification.test_metrics) == {"test_loss", "test_data_loss", "test_accuracy"}
    assert set(regression.test_metrics) == {"test_loss", "test_data_loss", "test_mae"}
    for result in (classification, regression):
        assert result.test_metrics["test_loss"] > result.test_metrics["test_data_loss"]
        val_data_loss = result.history["val_data_loss"]
        assert result.best_epoch == int(np.argmin(val_data_loss))


@pytest.mark.parametrize("loop", LOOPS)
def test_reg_loss_is_zero_without_a_penalty(loop: str) -> None:
    result = train(make_spec("wine", loop=loop))
    assert result.history["reg_loss"][0] == pytest.approx(0.0, abs=1e-6)
    assert result.history["val_loss"][0] == pytest.approx(
        result.history["val_data_loss"][0], rel=1e-6
    )


@needs_tensorflow
def test_global_regularizer_penalizes_every_weight_in_the_custom_loop() -> None:
    # A learning rate so small that the weights, and so the penalty, stay as initialized.
    spec = make_spec(
        "wine",
        loop="custom",
        optimizer="sgd",
        learning_rate=1e-9,
        global_regularizer={"kind": "l2", "l2": 0.1},
    )
    result = train(spec)
    weights = result.model.trainable_variables
    assert len(weights) == 4  # both biases included
    expected = float(
        ops.convert_to_numpy(regularizers.penalty_of(weights, spec.training.global_regularizer))
    )
    assert result.history["reg_loss"][0] == pytest.approx(expected, rel=1e-4)


@needs_tensorflow
def test_global_regularizer_is_in_the_gradient() -> None:
    def kernel_norm(**training: Any) -> float:
        spec = make_spec("wine", loop="custom", optimizer="sgd", learning_rate=0.1, **training)
        return float(np.linalg.norm(train(spec).model.get_layer("dense_0").kernel.numpy()))

    # Two SGD steps on wine, each shrinking the weights by 1 - 2·0.1·1.0 = 0.8.
    assert kernel_norm(global_regularizer={"kind": "l2", "l2": 1.0}) < 0.75 * kernel_norm()


@pytest.mark.parametrize("loop", LOOPS)
def test_stop_training_ends_after_that_epoch(loop: str) -> None:
    recorder = Recorder(stop_after=1)
    result = train(make_spec("wine", epochs=5, loop=loop), [recorder])
    assert result.epochs_completed == 2
    assert len(result.history["loss"]) == 2
    assert recorder.events[-2:] == ["epoch_end 1", "train_end"]


@pytest.mark.parametrize("loop", LOOPS)
def test_huge_learning_rate_diverges(loop: str) -> None:
    spec = make_spec(
        "noisy_regression",
        [{"type": "dense", "units": 32}, {"type": "dense", "units": 32}],
        epochs=5,
        batch_size=4,
        optimizer="sgd",
        learning_rate=10.0,
        loop=loop,
    )
    recorder = Recorder()
    with pytest.raises(Diverged) as caught:
        train(spec, [recorder])
    assert caught.value.epoch == 0
    assert str(caught.value) == "diverged at epoch 0"
    # The callbacks never saw the diverged epoch's logs.
    assert recorder.events == ["train_begin", "epoch_begin 0"]


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="needs another backend")
def test_custom_loop_needs_tensorflow() -> None:
    with pytest.raises(RuntimeError, match="needs the TensorFlow backend"):
        train(make_spec("wine", loop="custom"))


def test_diverged_survives_pickling() -> None:
    again = pickle.loads(pickle.dumps(Diverged(7)))
    assert again.epoch == 7 and str(again) == "diverged at epoch 7"


@needs_tensorflow
def test_conv1d_on_periodic_series_trains() -> None:
    layers = [
        {
            "type": "conv1d",
            "filters": 4,
            "kernel_size": 5,
            "pool_size": 4,
            "regularizer": {"kind": "smoothness"},
            "dropout": 0.2,
        },
        {"type": "dense", "units": 8},
    ]
    spec = make_spec({"name": "periodic_series", "n_samples": 200}, layers, loop="custom")
    assert input_layout(spec) == "sequence"
    result = train(spec)
    names = [layer.name for layer in result.model.layers]
    assert names == ["conv1d_0", "pool_0", "dropout_0", "flatten", "dense_1", "output"]
    assert result.model.input_shape == (None, 64, 1)
    assert result.model.get_layer("conv1d_0").kernel.shape == (5, 1, 4)
    assert result.epochs_completed == 1 and result.history["reg_loss"][0] > 0


def test_conv2d_on_digits_trains() -> None:
    layers = [{"type": "conv2d", "filters": 4, "pool_size": 2, "regularizer": {"kind": "l2"}}]
    spec = make_spec("digits", layers)
    assert input_layout(spec) == "image"
    result = train(spec)
    names = [layer.name for layer in result.model.layers]
    assert names == ["conv2d_0", "pool_0", "flatten", "output"]
    assert result.model.input_shape == (None, 8, 8, 1)
    assert result.epochs_completed == 1 and math.isfinite(result.test_metrics["test_accuracy"])


def test_builder_names_layers_after_the_spec() -> None:
    spec = make_spec(
        layers=[{"type": "dense", "units": 4, "dropout": 0.5}, {"type": "dense", "units": 3}]
    )
    model = build_model(spec)
    assert [layer.name for layer in model.layers] == ["dense_0", "dropout_0", "dense_1", "output"]
    assert model.get_layer("output").units == 10
    assert model.get_layer("dropout_0").rate == 0.5


def test_runs_are_bit_identical() -> None:
    first, _ = trained("classification", "fit")
    again = train(make_spec("digits", DIGITS_MLP, epochs=3, shuffle=False))
    assert again.history == first.history


@pytest.mark.parametrize("loop", LOOPS)
def test_trained_model_saves_and_loads(tmp_path: Path, loop: str) -> None:
    result, _ = trained("classification", loop)
    path = tmp_path / "model.keras"
    result.model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0))
