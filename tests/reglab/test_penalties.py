"""The penalty apart from the data loss in a user's own Keras model (reglab/penalties.py),
checked against a reference `data_loss` metric compiled into the same model: measured in
the step it is exact for every kind of penalty (kernel, bias, activity, `add_loss`), in
fit and evaluate, on a model fitted before too; from the weights it is exact at the
epoch's final weights and the mean of the start and the end in between."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from reglab import penalties


class AddedLoss(keras.layers.Layer):
    """A layer that adds a penalty on its input with `add_loss` (no weights of its own)."""

    def call(self, inputs: Any) -> Any:
        self.add_loss(0.01 * keras.ops.mean(keras.ops.square(inputs)))
        return inputs


def penalized_model(*, activity: bool = True) -> keras.Model:
    keras.utils.set_random_seed(0)
    layers: list[keras.layers.Layer] = [
        keras.Input((6,)),
        keras.layers.Dense(
            8,
            activation="relu",
            kernel_regularizer=keras.regularizers.L2(0.05),
            bias_regularizer=keras.regularizers.L1(0.01),
            activity_regularizer=keras.regularizers.L1(0.01) if activity else None,
        ),
        keras.layers.Dropout(0.2),
    ]
    if activity:
        layers.append(AddedLoss())
    layers.append(keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L2(0.05)))
    model = keras.Sequential(layers)
    # The reference: the compiled loss alone, as a metric (what a worker's model has).
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="mse",
        metrics=[keras.metrics.MeanSquaredError(name="ref_data_loss")],
    )
    return model


def data(samples: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 6)).astype("float32")
    return x, (x @ rng.normal(size=(6, 1)) + 0.3 * rng.normal(size=(samples, 1))).astype("float32")


class Logs(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs.append(dict(logs or {}))


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def test_in_the_step_every_kind_of_penalty_is_separated_exactly() -> None:
    model = penalized_model()
    assert penalties.install_penalty_metric(model) and penalties.measures_in_step(model)
    assert penalties.install_penalty_metric(model)  # once is enough
    logs = Logs()
    model.fit(*data(), epochs=4, batch_size=16, validation_split=0.25, verbose=0, callbacks=[logs])
    for epoch in logs.epochs:
        assert epoch["reg_loss"] > 0.01 and epoch["val_reg_loss"] > 0.01
        assert close(epoch["loss"] - epoch["reg_loss"], epoch["ref_data_loss"])
        assert close(epoch["val_loss"] - epoch["val_reg_loss"], epoch["val_ref_data_loss"])
    scores = model.evaluate(*data(40), verbose=0, return_dict=True)
    assert close(scores["loss"] - scores["reg_loss"], scores["ref_data_loss"])


def test_a_model_fitted_before_is_traced_again_with_the_metric() -> None:
    model = penalized_model()
    model.fit(*data(), epochs=1, batch_size=16, verbose=0)
    assert model.train_function is not None
    penalties.install_penalty_metric(model)
    logs = Logs()
    model.fit(*data(), epochs=2, batch_size=16, verbose=0, callbacks=[logs])
    last = logs.epochs[-1]
    assert close(last["loss"] - last["reg_loss"], last["ref_data_loss"])


def test_a_built_subclassed_model_gets_the_metric() -> None:
    class Subclassed(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = keras.layers.Dense(8, kernel_regularizer=keras.regularizers.L2(0.05))
            self.out = keras.layers.Dense(1)

        def call(self, inputs: Any) -> Any:
            return self.out(self.hidden(inputs))

    keras.utils.set_random_seed(0)
    model = Subclassed()
    model.compile(optimizer="adam", loss="mse", metrics=[keras.metrics.MeanSquaredError("ref")])
    model.fit(*data(), epochs=1, batch_size=16, verbose=0)  # built: its state is locked
    assert penalties.install_penalty_metric(model)
    logs = Logs()
    model.fit(*data(), epochs=2, batch_size=16, validation_split=0.25, verbose=0, callbacks=[logs])
    last = logs.epochs[-1]
    assert last["reg_loss"] > 0
    assert close(last["loss"] - last["reg_loss"], last["ref"])
    assert close(last["val_loss"] - last["val_reg_loss"], last["val_ref"])


def test_a_custom_train_step_gets_no_metric() -> None:
    class Custom(keras.Sequential):
        def train_step(self, data: Any) -> Any:
            return super().train_step(data)

    model = Custom([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    assert penalties.install_penalty_metric(model) is False
    assert not penalties.measures_in_step(model)


def test_from_the_weights_exact_at_the_end_and_the_mean_of_start_and_end() -> None:
    model = penalized_model(activity=False)
    regularized = penalties.regularized_weights(model)
    assert len(regularized) == 3  # two kernels and a bias
    start = penalties.FrozenPenalty(regularized)
    expected_start = sum(float(regularizer(v.value)) for regularizer, v in regularized)
    ends: list[penalties.FrozenPenalty] = []

    class Freeze(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            ends.append(penalties.FrozenPenalty(regularized))

    logs = Logs()
    model.fit(
        *data(),
        epochs=3,
        batch_size=16,
        validation_split=0.25,
        verbose=0,
        callbacks=[Freeze(), logs],
    )
    # The frozen values did not follow the training that went on.
    assert start.value() == pytest.approx(expected_start, rel=1e-6)
    assert ends[0].value() != pytest.approx(ends[-1].value(), rel=1e-6)
    for index, epoch in enumerate(logs.epochs):
        begin = start if index == 0 else ends[index - 1]
        derived = penalties.from_weights(begin, ends[index])(epoch)
        assert close(derived["val_data_loss"], epoch["val_ref_data_loss"])
        bound = abs(ends[index].value() - begin.value()) / 2 + 1e-6
        assert abs(derived["data_loss"] - epoch["ref_data_loss"]) <= bound
        assert derived["reg_loss"] == pytest.approx((begin.value() + ends[index].value()) / 2)


def test_a_model_without_penalties_has_none() -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    frozen = penalties.FrozenPenalty(penalties.regularized_weights(model))
    assert frozen.value() == 0.0
    derived = penalties.from_weights(frozen, frozen)({"loss": 0.5, "val_loss": 0.7})
    assert derived == {"reg_loss": 0.0, "data_loss": 0.5, "val_reg_loss": 0.0, "val_data_loss": 0.7}
