"""ExperimentSpec → a compiled Keras model.

Layers are named after their place in the spec (`dense_0`, `conv2d_0`, `dropout_0`,
`output`) so that per-layer statistics line up with the form that made them. Conv and
pooling layers pad "same", so every spec the server accepts builds, whatever the
dataset's length.
"""

from __future__ import annotations

from typing import Any, Literal

import keras

from app.spec import (
    RECURRENT_TYPES,
    ConvLayer,
    DenseLayer,
    ExperimentSpec,
    LayerSpec,
    RecurrentLayer,
    Task,
)
from worker import regularizers

InputLayout = Literal["flat", "image", "sequence"]


def input_layout(spec: ExperimentSpec) -> InputLayout:
    """The array layout the model takes: image for conv2d, sequence for conv1d, else flat."""
    first = spec.model.layers[0].type
    if first == "conv2d":
        return "image"
    if first == "conv1d" or first in RECURRENT_TYPES:
        return "sequence"
    return "flat"


def input_shape(spec: ExperimentSpec) -> tuple[int, ...]:
    """One sample's shape in the layout `input_layout(spec)` chose."""
    info = spec.dataset.info
    layout = input_layout(spec)
    if layout == "image":
        if info.image is None:
            raise ValueError(f"dataset '{spec.dataset.name}' has no image layout")
        return info.image
    if layout == "sequence":
        return (info.features, 1)
    return (info.features,)


def build_model(spec: ExperimentSpec) -> keras.Model:
    """The spec's model, compiled for `fit`, with weights seeded by `spec.training.seed`.

    The compiled metrics include the penalty-free `data_loss`: Keras 3 adds the penalty
    to `loss` and `val_loss`, and runs with different λ compare on data loss only. A spec
    with a λ schedule gets a `PenaltyScale` layer first, whose weight scales every penalty.
    """
    keras.utils.set_random_seed(spec.training.seed)
    info = spec.dataset.info
    model = keras.Sequential(name="reglab")
    model.add(keras.Input(shape=input_shape(spec), name="input"))
    scale = None
    if spec.training.schedule is not None:
        holder = regularizers.PenaltyScale(name="penalty_scale")
        model.add(holder)
        scale = holder.scale
    flattened = input_layout(spec) == "flat"
    for index, layer in enumerate(spec.model.layers):
        if layer.type == "dense" and not flattened:
            model.add(keras.layers.Flatten(name="flatten"))
            flattened = True
        for keras_layer in _layers_for(layer, index, scale):
            model.add(keras_layer)
        if isinstance(layer, RecurrentLayer):
            flattened = not layer.return_sequences  # one vector per sample
    if not flattened:
        model.add(keras.layers.Flatten(name="flatten"))
    if info.task == "classification":
        model.add(keras.layers.Dense(info.classes, activation="softmax", name="output"))
    else:
        model.add(keras.layers.Dense(1, activation="linear", name="output"))
    model.compile(
        optimizer=make_optimizer(spec),
        loss=make_loss(info.task),
        metrics=_metrics(info.task),
    )
    return model


def _layers_for(layer: LayerSpec, index: int, scale: Any = None) -> list[keras.layers.Layer]:
    """The Keras layers for one LayerSpec: the layer, its pooling, its dropout. With a
    λ schedule's `scale` variable, every penalty is multiplied by it."""
    penalties = {
        "kernel_regularizer": regularizers.scheduled(
            regularizers.from_spec(layer.regularizer), scale
        ),
        "bias_regularizer": regularizers.scheduled(
            regularizers.from_spec(layer.bias_regularizer), scale
        ),
        "activity_regularizer": regularizers.scheduled(
            regularizers.from_spec(layer.activity_regularizer), scale
        ),
    }
    name = f"{layer.type}_{index}"
    built: list[keras.layers.Layer] = []
    if isinstance(layer, RecurrentLayer):
        # Keras' own dropout arguments: on the inputs and on the recurrent state.
        recurrent = regularizers.from_spec(layer.recurrent_regularizer)
        return [
            _RECURRENT[layer.type](
                layer.units,
                activation=layer.activation,
                recurrent_regularizer=regularizers.scheduled(recurrent, scale),
                dropout=layer.dropout,
                recurrent_dropout=layer.recurrent_dropout,
                return_sequences=layer.return_sequences,
                name=name,
                **penalties,
            )
        ]
    if isinstance(layer, DenseLayer):
        built.append(
            keras.layers.Dense(layer.units, activation=layer.activation, name=name, **penalties)
        )
    elif isinstance(layer, ConvLayer):
        conv = keras.layers.Conv1D if layer.type == "conv1d" else keras.layers.Conv2D
        built.append(
            conv(
                layer.filters,
                layer.kernel_size,
                padding="same",
                activation=layer.activation,
                name=name,
                **penalties,
            )
        )
        if layer.pool_size is not None:
            pool = (
                keras.layers.MaxPooling1D if layer.type == "conv1d" else keras.layers.MaxPooling2D
            )
            built.append(pool(layer.pool_size, padding="same", name=f"pool_{index}"))
    if layer.dropout > 0:
        built.append(keras.layers.Dropout(layer.dropout, name=f"dropout_{index}"))
    return built


_RECURRENT: dict[str, type[keras.layers.Layer]] = {
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
    "simple_rnn": keras.layers.SimpleRNN,
}


def make_optimizer(spec: ExperimentSpec) -> keras.optimizers.Optimizer:
    """The optimizer the spec names, at its learning rate and weight decay (no decay unless
    the spec asks: AdamW's own default of 0.004 would be regularization nobody chose)."""
    rate = spec.training.learning_rate
    decay = spec.training.weight_decay
    optimizers: dict[str, type[keras.optimizers.Optimizer]] = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    optimizer = spec.training.optimizer
    if optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=decay)
    return optimizers[optimizer](learning_rate=rate, weight_decay=decay or None)


def make_loss(task: Task) -> keras.losses.Loss:
    """The data loss: cross-entropy on class ids, or mean squared error."""
    if task == "classification":
        return keras.losses.SparseCategoricalCrossentropy()
    return keras.losses.MeanSquaredError()


def _metrics(task: Task) -> list[keras.metrics.Metric]:
    if task == "classification":
        return [
            keras.metrics.SparseCategoricalCrossentropy(name="data_loss"),
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        ]
    return [
        keras.metrics.MeanSquaredError(name="data_loss"),
        keras.metrics.MeanAbsoluteError(name="mae"),
    ]
