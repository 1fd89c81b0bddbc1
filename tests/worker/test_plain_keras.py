"""A reglab run equals the same model written as a plain Keras script, with the same seed
and the split `load_dataset` makes: the worker adds nothing to what trains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from app.spec import ExperimentSpec
from worker.builders import input_layout
from worker.datasets import load_dataset
from worker.training import train


def _fit_plain(
    spec: ExperimentSpec, layers: Callable[[], list[keras.layers.Layer]], out: int
) -> Any:
    """Fit the layers that `layers()` makes (after seeding, as a script would), then a
    softmax output of `out` classes."""
    splits = load_dataset(spec.dataset, spec.training.seed, input_layout(spec))
    keras.utils.set_random_seed(spec.training.seed)
    model = keras.Sequential(
        [keras.Input(splits.x_train.shape[1:]), *layers(), keras.layers.Dense(out, "softmax")]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(spec.training.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model.fit(
        splits.x_train,
        splits.y_train,
        validation_data=(splits.x_val, splits.y_val),
        epochs=spec.training.epochs,
        batch_size=spec.training.batch_size,
        verbose=0,
    ).history


def _assert_equal(spec: ExperimentSpec, plain: dict[str, list[float]]) -> None:
    ours = train(spec).history
    for name in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_array_equal(ours[name], plain[name], err_msg=name)  # bit for bit


def test_the_seed_mlp_equals_plain_keras() -> None:
    """Dense 64/32, L2 0.01 and dropout 0.5 on each, digits."""
    layer = {"regularizer": {"kind": "l2", "l2": 0.01}, "dropout": 0.5}
    spec = ExperimentSpec.model_validate(
        {
            "name": "mlp",
            "dataset": {"name": "digits", "train_fraction": 0.3},
            "model": {
                "layers": [
                    {"type": "dense", "units": 64, **layer},
                    {"type": "dense", "units": 32, **layer},
                ]
            },
            "training": {"epochs": 3, "batch_size": 32, "seed": 3, "histogram_every": 0},
        }
    )
    L2, Dense, Dropout = keras.regularizers.L2, keras.layers.Dense, keras.layers.Dropout
    plain = _fit_plain(
        spec,
        lambda: [
            Dense(64, "relu", kernel_regularizer=L2(0.01)),
            Dropout(0.5),
            Dense(32, "relu", kernel_regularizer=L2(0.01)),
            Dropout(0.5),
        ],
        10,
    )
    _assert_equal(spec, plain)


def test_an_lstm_equals_plain_keras() -> None:
    """An LSTM with kernel and recurrent penalties, input and recurrent dropout, stacked on
    a GRU that returns its sequence, on the periodic series."""
    spec = ExperimentSpec.model_validate(
        {
            "name": "lstm",
            "dataset": {"name": "periodic_series", "n_samples": 200},
            "model": {
                "layers": [
                    {"type": "gru", "units": 6, "return_sequences": True},
                    {
                        "type": "lstm",
                        "units": 8,
                        "regularizer": {"kind": "l2", "l2": 0.01},
                        "recurrent_regularizer": {"kind": "l1", "l1": 0.001},
                        "dropout": 0.1,
                        "recurrent_dropout": 0.2,
                    },
                ]
            },
            "training": {"epochs": 2, "batch_size": 32, "seed": 1, "histogram_every": 0},
        }
    )
    plain = _fit_plain(
        spec,
        lambda: [
            keras.layers.GRU(6, return_sequences=True),
            keras.layers.LSTM(
                8,
                kernel_regularizer=keras.regularizers.L2(0.01),
                recurrent_regularizer=keras.regularizers.L1(0.001),
                dropout=0.1,
                recurrent_dropout=0.2,
            ),
        ],
        4,
    )
    _assert_equal(spec, plain)
