"""The two training engines: Keras `fit`, and a `tf.GradientTape` loop in `tf.function`.

Both feed the caller's callbacks the same way (`set_model`, `on_train_begin`,
`on_epoch_begin`, `on_epoch_end`, `on_train_end`) with the same per-epoch logs, plain
floats under exactly the names of `EPOCH_METRICS_*` in `app.spec` (less
`epoch_seconds`, which the streaming callback adds). `loss` and `val_loss` include the
penalty as Keras reports them; `data_loss` and `val_data_loss` leave it out, and
`reg_loss` is the difference, the epoch's mean penalty.

A λ schedule (`spec.training.schedule`) sets the shared penalty scale at each epoch's
start, and the logs gain `reg_scale`. Early stopping (`spec.training.early_stopping`)
watches `val_data_loss` in both engines, restores the best epoch's weights before the test
evaluation, and reports the epoch it stopped at as the test metric `stopped_epoch`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np
from keras import ops

from app.spec import (
    EPOCH_METRICS_CLASSIFICATION,
    EPOCH_METRICS_REGRESSION,
    EarlyStoppingSpec,
    ExperimentSpec,
    Task,
)
from worker import regularizers
from worker.builders import build_model, input_layout, make_loss
from worker.datasets import Splits, load_dataset


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; `epoch` is the epoch it happened in."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"diverged at epoch {epoch}")
        self.epoch = epoch

    def __reduce__(self) -> tuple[type[Diverged], tuple[int]]:
        # Keep `epoch` across pickling (a child process may send the error to its parent).
        return (Diverged, (self.epoch,))


@dataclass
class TrainingResult:
    """What a finished run leaves: the model, its curves and one look at the test split."""

    model: keras.Model
    history: dict[str, list[float]]
    test_metrics: dict[str, float]  # test_loss, test_data_loss, test_accuracy or test_mae
    best_epoch: int | None  # the epoch with the lowest val_data_loss
    epochs_completed: int
    stopped_epoch: int | None = None  # the epoch early stopping ended training after


def epoch_metric_names(task: Task) -> tuple[str, ...]:
    """The keys of each epoch's logs for a task, in `app.spec` order."""
    names = EPOCH_METRICS_CLASSIFICATION if task == "classification" else EPOCH_METRICS_REGRESSION
    return tuple(name for name in names if name != "epoch_seconds")


def train(
    spec: ExperimentSpec, callbacks: Sequence[keras.callbacks.Callback] = ()
) -> TrainingResult:
    """Train the spec's model on its dataset with the loop it names, then test it once.

    A callback that sets `model.stop_training = True` ends training after that epoch.
    A non-finite training loss raises `Diverged` before the callbacks see that epoch
    (and, as in Keras, `on_train_end` is then not called).
    """
    splits = load_dataset(spec.dataset, spec.training.seed, input_layout(spec))
    model = build_model(spec)
    steps = math.ceil(len(splits.x_train) / spec.training.batch_size)
    feed = _EpochFeed(model, callbacks, spec, steps)
    if spec.training.loop == "custom":
        test_metrics = _train_custom(spec, model, splits, feed)
    else:
        test_metrics = _train_fit(spec, model, splits, feed)
    stopper = feed.early_stopping
    stopped_epoch = stopper.stopped_epoch if stopper is not None else None
    if stopped_epoch is not None:
        test_metrics["stopped_epoch"] = float(stopped_epoch)
    best = best_epoch(feed.history)
    if stopper is not None and stopper.restored:
        best = stopper.best_epoch  # the epoch whose weights the model now holds
    return TrainingResult(
        model=model,
        history=feed.history,
        test_metrics=test_metrics,
        best_epoch=best,
        epochs_completed=len(feed.history["loss"]),
        stopped_epoch=stopped_epoch,
    )


def best_epoch(history: Mapping[str, Sequence[float]]) -> int | None:
    """The epoch index with the lowest finite `val_data_loss`, None when there is none."""
    values = [(v, i) for i, v in enumerate(history.get("val_data_loss", ())) if math.isfinite(v)]
    return min(values)[1] if values else None


def epoch_logs(
    names: Sequence[str],
    figures: Mapping[str, Any],
    epoch: int,
    *,
    lr: float,
    scale: float | None = None,
) -> dict[str, float]:
    """One epoch's logs under exactly `names`, as plain floats: the loop's figures, with
    `reg_loss` (the epoch's mean penalty, loss - data_loss), `lr` and, under a schedule,
    `reg_scale`. Raises `Diverged` when the training loss is not finite."""
    logs = {name: float(figures[name]) for name in names if name in figures}
    if not math.isfinite(logs["loss"]):
        raise Diverged(epoch)
    logs["reg_loss"] = logs["loss"] - logs["data_loss"]
    logs["lr"] = lr
    if scale is not None:
        logs["reg_scale"] = scale
    missing = set(names) - logs.keys()
    if missing:
        raise RuntimeError(f"epoch logs lack {sorted(missing)}")
    return {name: logs[name] for name in names}


class WeightHolder(Protocol):
    """What early stopping copies and restores: a model, or one member of a pack."""

    def get_weights(self) -> list[np.ndarray]: ...

    def set_weights(self, weights: Sequence[np.ndarray]) -> None: ...


class EarlyStopping:
    """Stops training when `val_data_loss` has not improved by `min_delta` for `patience`
    epochs, and keeps a copy of the best epoch's weights to restore at the end.

    Unlike Keras' own callback it works the same in both engines; the best weights are
    restored whether or not training stopped early (the model then is the best epoch's).

    Args:
        spec: patience, min_delta and restore_best_weights.
        model: the model whose weights are copied and restored.
    """

    def __init__(self, spec: EarlyStoppingSpec, model: WeightHolder) -> None:
        self.spec = spec
        self.model = model
        self.best = math.inf
        self.best_epoch: int | None = None
        self.best_weights: list[np.ndarray] | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.restored = False

    def update(self, epoch: int, val_data_loss: float) -> bool:
        """Record an epoch's `val_data_loss`; True when training should stop after it."""
        if math.isfinite(val_data_loss) and val_data_loss < self.best - self.spec.min_delta:
            self.best, self.best_epoch, self.wait = val_data_loss, epoch, 0
            if self.spec.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return False
        self.wait += 1
        if self.wait >= self.spec.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def restore(self) -> None:
        if self.spec.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self.restored = True


class _EpochFeed:
    """Shapes an epoch's figures into logs, records them, and passes them to the callbacks."""

    def __init__(
        self,
        model: keras.Model,
        callbacks: Sequence[keras.callbacks.Callback],
        spec: ExperimentSpec,
        steps: int,
    ) -> None:
        self.model = model
        self.callbacks = list(callbacks)
        self.names = epoch_metric_names(spec.dataset.info.task)
        self.schedule = spec.training.schedule
        self.epochs = spec.training.epochs
        self.scale = regularizers.penalty_scale(model)
        if self.schedule is not None:
            self.names = (*self.names, "reg_scale")
        self.early_stopping = (
            EarlyStopping(spec.training.early_stopping, model)
            if spec.training.early_stopping is not None
            else None
        )
        self.history: dict[str, list[float]] = {name: [] for name in self.names}
        params = {
            "epochs": spec.training.epochs,
            "steps": steps,
            "verbose": 0,
            "histogram_every": spec.training.histogram_every,
        }
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)

    def train_begin(self) -> None:
        self.model.stop_training = False
        for callback in self.callbacks:
            callback.on_train_begin({})

    def epoch_begin(self, epoch: int) -> None:
        if self.scale is not None:
            self.scale.assign(regularizers.schedule_scale(self.schedule, epoch, self.epochs))
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, {})

    def epoch_end(self, epoch: int, figures: Mapping[str, Any]) -> dict[str, float]:
        """Turn the loop's figures into logs; raise Diverged before any callback sees them."""
        lr = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))
        scale = float(ops.convert_to_numpy(self.scale)) if self.scale is not None else None
        logs = epoch_logs(self.names, figures, epoch, lr=lr, scale=scale)
        for name in self.names:
            self.history[name].append(logs[name])
        # Decided before the callbacks run, so that they see `stop_training` at the last epoch.
        if self.early_stopping is not None and self.early_stopping.update(
            epoch, logs["val_data_loss"]
        ):
            self.model.stop_training = True
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)
        return logs

    def train_end(self) -> None:
        if self.early_stopping is not None:
            self.early_stopping.restore()
        last = {name: values[-1] for name, values in self.history.items() if values}
        for callback in self.callbacks:
            callback.on_train_end(last)


class _FitFeed(keras.callbacks.Callback):
    """The one callback `fit` sees: it hands each epoch to the feed (and so to the caller's)."""

    def __init__(self, feed: _EpochFeed) -> None:
        super().__init__()
        self.feed = feed

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.feed.train_begin()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.feed.epoch_begin(epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.feed.epoch_end(epoch, logs or {})

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.feed.train_end()


def _train_fit(
    spec: ExperimentSpec, model: keras.Model, splits: Splits, feed: _EpochFeed
) -> dict[str, float]:
    """Keras `fit`; returns the test metrics."""
    batch_size = spec.training.batch_size
    model.fit(
        splits.x_train,
        splits.y_train,
        validation_data=(splits.x_val, splits.y_val),
        epochs=spec.training.epochs,
        batch_size=batch_size,
        shuffle=spec.training.shuffle,
        verbose=0,
        callbacks=[_FitFeed(feed)],
    )
    scores = model.evaluate(
        splits.x_test, splits.y_test, batch_size=batch_size, verbose=0, return_dict=True
    )
    return _test_metrics(spec.dataset.info.task, scores)


def _test_metrics(task: Task, scores: Mapping[str, Any]) -> dict[str, float]:
    score = "accuracy" if task == "classification" else "mae"
    return {f"test_{name}": float(scores[name]) for name in ("loss", "data_loss", score)}


def _train_custom(
    spec: ExperimentSpec, model: keras.Model, splits: Splits, feed: _EpochFeed
) -> dict[str, float]:
    """The textbook loop: loss = data loss + penalty, the penalty read inside the tape."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "the custom training loop needs the TensorFlow backend "
            f"(KERAS_BACKEND=tensorflow), not '{keras.backend.backend()}'; use loop 'fit'"
        )
    import tensorflow as tf

    task = spec.dataset.info.task
    loss_fn = make_loss(task)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    global_regularizer = spec.training.global_regularizer
    scale = regularizers.penalty_scale(model)

    def penalty() -> Any:
        # Keras 3 recomputes weight penalties from the current weights on each read of
        # `model.losses`; activity penalties come from the forward pass just made. The
        # per-layer penalties carry the schedule's scale already; the global one gets it here.
        terms = list(model.losses)
        if global_regularizer is not None:
            term = regularizers.penalty_of(model.trainable_variables, global_regularizer)
            if scale is not None:
                term = term * ops.cast(scale, term.dtype)
            terms.append(term)
        return ops.sum(ops.stack(terms)) if terms else ops.convert_to_tensor(0.0)

    def score(y: Any, y_pred: Any) -> Any:
        if task == "classification":
            return ops.mean(keras.metrics.sparse_categorical_accuracy(y, y_pred))
        return ops.mean(ops.abs(y - y_pred))

    x_spec = tf.TensorSpec((None, *splits.x_train.shape[1:]), tf.float32)
    y_spec = tf.TensorSpec((None, *splits.y_train.shape[1:]), tf.as_dtype(splits.y_train.dtype))

    @tf.function(input_signature=[x_spec, y_spec])
    def train_step(x: Any, y: Any) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            data_loss = loss_fn(y, y_pred)
            loss = data_loss + penalty()
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss, data_loss, score(y, y_pred)

    @tf.function(input_signature=[x_spec, y_spec])
    def test_step(x: Any, y: Any) -> tuple[Any, Any, Any]:
        y_pred = model(x, training=False)
        data_loss = loss_fn(y, y_pred)
        return data_loss + penalty(), data_loss, score(y, y_pred)

    score_name = "accuracy" if task == "classification" else "mae"
    batch_size = spec.training.batch_size
    rng = np.random.default_rng(spec.training.seed)
    n_train = len(splits.x_train)

    feed.train_begin()
    for epoch in range(spec.training.epochs):
        feed.epoch_begin(epoch)
        order = rng.permutation(n_train) if spec.training.shuffle else np.arange(n_train)
        x_train, y_train = splits.x_train[order], splits.y_train[order]
        figures = _weighted_means(train_step, x_train, y_train, batch_size, score_name)
        val = _weighted_means(test_step, splits.x_val, splits.y_val, batch_size, score_name)
        figures.update({f"val_{name}": value for name, value in val.items()})
        feed.epoch_end(epoch, figures)
        if model.stop_training:
            break
    feed.train_end()

    test = _weighted_means(test_step, splits.x_test, splits.y_test, batch_size, score_name)
    return _test_metrics(task, test)


def _weighted_means(
    step: Callable[[Any, Any], tuple[Any, Any, Any]],
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    score_name: str,
) -> dict[str, float]:
    """Run `step` over the batches; each figure is the batch-size-weighted mean, like Keras."""
    totals = np.zeros(3)
    for start in range(0, len(x), batch_size):
        x_batch, y_batch = x[start : start + batch_size], y[start : start + batch_size]
        figures = step(x_batch, y_batch)
        totals += len(x_batch) * np.array([float(value) for value in figures])
    loss, data_loss, score = totals / len(x)
    return {"loss": loss, "data_loss": data_loss, score_name: score}
