"""The penalty apart from the data loss, in a user's own Keras model.

Keras 3 puts every penalty (weight and activity regularizers, `add_loss` terms) into both
`loss` and `val_loss`; runs with different λ compare on the data loss only. A worker's
model compiles a `data_loss` metric; a user's model does not, so `ReglabCallback` measures
the penalty itself, in one of two ways (the run's `script.series` says which):

- in the step (TensorFlow backend, a model with Keras' own `train_step`): a `reg_loss`
  metric, updated in each training and test step with the sum of `model.losses` that the
  step added to the loss, weighted by batch size as Keras weights the loss. Exact: then
  `data_loss = loss - reg_loss` and `val_data_loss = val_loss - val_reg_loss`, and
  `model.evaluate` reports `reg_loss` too. The training thread does nothing more.
- from the weights (any other backend or model): the weight penalty of frozen copies of
  the regularized weights, computed on the sender's thread. `val_data_loss = val_loss -`
  the penalty at the epoch's final weights, exact for weight penalties (Keras evaluates
  validation with them); `reg_loss` is the mean of the penalty at the epoch's starting and
  final weights, an approximation of the mean over its batches. Activity regularizers and
  `add_loss` terms cannot be had from weights: they stay in `data_loss`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from reglab.stats import snapshot_kernels

PENALTY_METRIC = "reg_loss"
IN_STEP = "in the step"
FROM_WEIGHTS = "from the weights"
SERIES: dict[str, dict[str, str]] = {
    IN_STEP: {
        "reg_loss": "The epoch's mean penalty: the sum of model.losses (weight and activity "
        "regularizers, add_loss) measured in each training step beside the loss, averaged "
        "like the loss",
        "data_loss": "loss - reg_loss: the training loss without the penalty (exact)",
        "val_data_loss": "val_loss - val_reg_loss, the penalty measured on the validation "
        "batches at the epoch's final weights (exact)",
    },
    FROM_WEIGHTS: {
        "reg_loss": "The mean of the weight penalty at the epoch's starting and final "
        "weights (approximates the mean over its batches); activity regularizers and "
        "add_loss are not included",
        "data_loss": "loss - reg_loss (approximate: see reg_loss)",
        "val_data_loss": "val_loss - the weight penalty at the epoch's final weights (exact "
        "for weight penalties)",
    },
}
_INSTALLED = "_reglab_penalty"


def measures_in_step(model: keras.Model) -> bool:
    """Whether `model` has the in-step penalty metric (installed by `install_penalty_metric`)."""
    return getattr(model, _INSTALLED, None) is not None


def install_penalty_metric(model: keras.Model) -> bool:
    """Add a `reg_loss` metric to the model's training and test steps, measured where
    Keras adds the penalty to the loss (its `compute_loss`). Only on the TensorFlow
    backend, for a model whose steps are Keras' own; False where it cannot be (the
    weights then tell the penalty). Idempotent. A step traced before is traced again."""
    if measures_in_step(model):
        return True
    if keras.backend.backend() != "tensorflow" or not getattr(model, "compiled", False):
        return False
    for step in ("train_step", "test_step"):
        if getattr(type(model), step, None) is not getattr(keras.Model, step):
            return False  # a custom step may never call compute_loss
    tracker = keras.metrics.Mean(name=PENALTY_METRIC)
    # Tracked as the model's own metric (reset each epoch, reported in the logs); a built
    # subclassed model locks its state, as Keras itself unlocks it to add some.
    state: Any = getattr(model, "_tracker", None)
    locked = bool(getattr(state, "locked", False))
    if locked:
        state.unlock()
    try:
        setattr(model, _INSTALLED, tracker)
    finally:
        if locked:
            state.lock()
    original = model.compute_loss
    takes_training = "training" in inspect.signature(original).parameters

    def compute_loss(
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        if takes_training:
            total = original(x, y, y_pred, sample_weight, training=training)
        else:
            total = original(x, y, y_pred, sample_weight)
        inputs = [item for item in keras.tree.flatten(x) if item is not None]
        size = ops.shape(inputs[0])[0] if inputs else None
        tracker.update_state(_penalty_sum(model.losses), sample_weight=size)
        return total

    model.compute_loss = compute_loss
    # Steps traced before (an earlier fit or evaluate) do not call the wrapper: trace again.
    for name in ("train_function", "test_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    return True


def _penalty_sum(losses: list[Any]) -> Any:
    # As Keras' compute_loss adds them: each term summed and cast to floatx.
    terms = [ops.sum(ops.cast(loss, keras.backend.floatx())) for loss in losses]
    if not terms:
        return ops.zeros((), dtype=keras.backend.floatx())
    return ops.sum(ops.stack(terms))


def regularized_weights(model: keras.Model) -> list[tuple[Any, Any]]:
    """(regularizer, variable) for each trainable weight that carries a penalty, as Keras
    finds them for `model.losses` (kernels, biases, recurrent kernels, custom weights)."""
    return [
        (variable.regularizer, variable)
        for variable in model.trainable_weights
        if getattr(variable, "regularizer", None) is not None
    ]


class FrozenPenalty:
    """The weight penalty of the regularized weights as they are now: their values are
    frozen at once (cheap), the penalty computed on first use, on the thread that asks."""

    def __init__(self, regularized: list[tuple[Any, Any]]) -> None:
        self._regularizers = [regularizer for regularizer, _ in regularized]
        frozen = snapshot_kernels([(str(index), var) for index, (_, var) in enumerate(regularized)])
        self._values = [value for _, value in frozen]
        self._penalty: float | None = None

    def value(self) -> float:
        """The penalty, Σ regularizer(weight)."""
        if self._penalty is None:
            total = 0.0
            for regularizer, value in zip(self._regularizers, self._values, strict=True):
                total += float(np.asarray(ops.convert_to_numpy(regularizer(value))))
            self._penalty = total
        return self._penalty


def from_weights(
    start: FrozenPenalty, end: FrozenPenalty
) -> Callable[[Mapping[str, float]], dict[str, float]]:
    """What the sender adds to an epoch's values from its starting and final weights:
    `reg_loss`, `data_loss`, `val_reg_loss` and `val_data_loss` (see the module's text)."""

    def derive(values: Mapping[str, float]) -> dict[str, float]:
        final = end.value()
        mean = (start.value() + final) / 2
        derived: dict[str, float] = {}
        if "loss" in values:
            derived.update(reg_loss=mean, data_loss=values["loss"] - mean)
        if "val_loss" in values:
            derived.update(val_reg_loss=final, val_data_loss=values["val_loss"] - final)
        return {name: value for name, value in derived.items() if math.isfinite(value)}

    return derive
