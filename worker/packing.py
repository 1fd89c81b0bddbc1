"""Packed sweeps: the points of a sweep that differ only in penalty strengths and dropout
rates train together as one `PackedModel` of K members.

Each member trains exactly as its separate run would: the members share the run's seed,
so they share its split and batch order, and each starts from the initial weights of its
own separate run (its single model is built for that seed, and its weights stacked into
the member's slot). Each member keeps its own logs, early stopping, failure and end: a
member that stops (early stopping, cancelled, pruned, diverged) finishes at once with its
test metrics and its `.keras` model (a plain single model holding the member's slice of
every weight), and the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import keras
import numpy as np
from keras import ops

from app.spec import ExperimentSpec
from worker import regularizers
from worker.builders import build_model, input_layout
from worker.datasets import Splits, load_dataset
from worker.pack_build import (
    MemberWeights,
    build_pack,
    check_packable,
    export_member,
    packed_layers,
    stack_initial_weights,
)
from worker.packed_layers import PackedModel
from worker.training import (
    Diverged,
    EarlyStopping,
    best_epoch,
    epoch_logs,
    epoch_metric_names,
)


@dataclass
class MemberResult:
    """How one member ended: its model and curves, or the error it failed with."""

    index: int
    model: keras.Model  # a plain single model with the member's final weights
    history: dict[str, list[float]]
    test_metrics: dict[str, float] = field(default_factory=dict)
    best_epoch: int | None = None
    epochs_completed: int = 0
    stopped_epoch: int | None = None  # early stopping ended it after this epoch
    stopped_by: str | None = None  # "cancelled" when told to stop from outside
    error: Diverged | None = None


class PackObserver(Protocol):
    """What the caller learns as the pack trains (the training child streams it)."""

    def member_epoch(
        self, index: int, epoch: int, logs: dict[str, float], kernels: list[tuple[str, Any]]
    ) -> None:
        """Member `index` finished `epoch` with these logs (its history's, plus the pack's
        `epoch_seconds`) and kernels (numpy arrays)."""

    def member_end(self, result: MemberResult) -> None:
        """Member `result.index` will train no more: finish its run now."""

    def stop_requested(self, index: int) -> bool:
        """Whether member `index` was cancelled or pruned from outside."""


class _Member:
    """One member's bookkeeping: its curves, its early stopping, whether it goes on."""

    def __init__(self, index: int, spec: ExperimentSpec, model: PackedModel) -> None:
        self.index = index
        self.names = epoch_metric_names(spec.dataset.info.task)
        if spec.training.schedule is not None:
            self.names = (*self.names, "reg_scale")
        self.history: dict[str, list[float]] = {name: [] for name in self.names}
        self.early_stopping = (
            EarlyStopping(spec.training.early_stopping, MemberWeights(model, index))
            if spec.training.early_stopping is not None
            else None
        )
        self.active = True


class PackTrainer:
    """Trains a pack with `fit` (or the GradientTape loop) and reports to an observer."""

    def __init__(self, specs: Sequence[ExperimentSpec], observer: PackObserver) -> None:
        check_packable(specs)
        self.specs = list(specs)
        self.observer = observer
        first = self.specs[0]
        self.splits: Splits = load_dataset(first.dataset, first.training.seed, input_layout(first))
        self.singles = [build_model(spec) for spec in self.specs]
        self.model = build_pack(self.specs, self.splits.x_train)
        stack_initial_weights(self.model, self.singles)
        self.scale = regularizers.penalty_scale(self.model)
        self.members = [_Member(k, spec, self.model) for k, spec in enumerate(self.specs)]
        self.results: dict[int, MemberResult] = {}
        self.score = self.model.score_name
        self._epoch_started = time.perf_counter()

    @property
    def training(self) -> Any:
        return self.specs[0].training

    def train(self) -> list[MemberResult]:
        """Train until every member has ended; returns their results in member order."""
        self.model.stop_training = False
        if self.training.loop == "custom":
            self._train_custom()
        else:
            self.model.fit(
                self.splits.x_train,
                self.splits.y_train,
                validation_data=(self.splits.x_val, self.splits.y_val),
                epochs=self.training.epochs,
                batch_size=self.training.batch_size,
                shuffle=self.training.shuffle,
                verbose=0,
                callbacks=[_FitHook(self)],
            )
        self._end([(member, None, None) for member in self.members if member.active])
        return [self.results[k] for k in range(len(self.members))]

    def epoch_begin(self, epoch: int) -> None:
        self._epoch_started = time.perf_counter()
        if self.scale is not None:
            self.scale.assign(
                regularizers.schedule_scale(self.training.schedule, epoch, self.training.epochs)
            )

    def epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        """Split the pack's logs into each member's, record them, and end the members that
        diverged, stopped early or were stopped from outside."""
        seconds = time.perf_counter() - self._epoch_started
        lr = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))
        scale = float(ops.convert_to_numpy(self.scale)) if self.scale is not None else None
        kernels = [
            (block.name, ops.convert_to_numpy(block.kernel)) for block in packed_layers(self.model)
        ]
        ending: list[tuple[_Member, Diverged | None, str | None]] = []
        for member in self.members:
            if not member.active:
                continue
            k = member.index
            names = ("loss", "data_loss", self.score)
            figures = {name: logs[f"{k}:{name}"] for name in names}
            figures.update({f"val_{name}": logs[f"val_{k}:{name}"] for name in names})
            try:
                member_logs = epoch_logs(member.names, figures, epoch, lr=lr, scale=scale)
            except Diverged as error:
                ending.append((member, error, None))
                continue
            for name in member.names:
                member.history[name].append(member_logs[name])
            stop = member.early_stopping is not None and member.early_stopping.update(
                epoch, member_logs["val_data_loss"]
            )
            self.observer.member_epoch(
                k,
                epoch,
                {**member_logs, "epoch_seconds": seconds},
                [(name, values[k]) for name, values in kernels],
            )
            if stop:
                ending.append((member, None, None))
            elif self.observer.stop_requested(k):
                ending.append((member, None, "cancelled"))
        self._end(ending)
        if not any(member.active for member in self.members):
            self.model.stop_training = True

    def _end(self, ending: Sequence[tuple[_Member, Diverged | None, str | None]]) -> None:
        """Finish members: restore their best weights, test them (one pass of the pack over
        the test split for all of them), export them, tell the observer."""
        for member, error, _ in ending:
            member.active = False
            if member.early_stopping is not None and error is None:
                member.early_stopping.restore()
        tested = [member for member, error, stopped_by in ending if not (error or stopped_by)]
        scores = self._evaluate(self.splits.x_test, self.splits.y_test) if tested else {}
        for member, error, stopped_by in ending:
            k = member.index
            stopper = member.early_stopping
            test_metrics: dict[str, float] = {}
            if member in tested:
                names = ("loss", "data_loss", self.score)
                test_metrics = {f"test_{name}": float(scores[f"{k}:{name}"]) for name in names}
                if stopper is not None and stopper.stopped_epoch is not None:
                    test_metrics["stopped_epoch"] = float(stopper.stopped_epoch)
            best = best_epoch(member.history)
            if stopper is not None and stopper.restored:
                best = stopper.best_epoch
            result = MemberResult(
                index=k,
                model=export_member(self.model, k, self.singles[k]),
                history=member.history,
                test_metrics=test_metrics,
                best_epoch=best,
                epochs_completed=len(member.history["loss"]),
                stopped_epoch=stopper.stopped_epoch if stopper is not None else None,
                stopped_by=stopped_by,
                error=error,
            )
            self.results[k] = result
            self.observer.member_end(result)

    def _evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        if self.training.loop == "custom":
            return self._custom_pass(x, y, training=False)
        return self.model.evaluate(
            x, y, batch_size=self.training.batch_size, verbose=0, return_dict=True
        )

    # --- the GradientTape loop (TensorFlow) ---------------------------------------------

    def _train_custom(self) -> None:
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                "the custom training loop needs the TensorFlow backend "
                f"(KERAS_BACKEND=tensorflow), not '{keras.backend.backend()}'; use loop 'fit'"
            )
        import tensorflow as tf

        model = self.model
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        splits = self.splits
        x_spec = tf.TensorSpec((None, *splits.x_train.shape[1:]), tf.float32)
        y_spec = tf.TensorSpec((None, *splits.y_train.shape[1:]), tf.as_dtype(splits.y_train.dtype))

        @tf.function(input_signature=[x_spec, y_spec])
        def train_step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                loss = model.compute_loss(x, y, y_pred, training=True)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            return loss

        @tf.function(input_signature=[x_spec, y_spec])
        def test_step(x: Any, y: Any) -> Any:
            y_pred = model(x, training=False)
            return model.compute_loss(x, y, y_pred, training=False)

        self._steps = {True: train_step, False: test_step}
        rng = np.random.default_rng(self.training.seed)
        n_train = len(splits.x_train)
        for epoch in range(self.training.epochs):
            self.epoch_begin(epoch)
            shuffle = self.training.shuffle
            order = rng.permutation(n_train) if shuffle else np.arange(n_train)
            logs = self._custom_pass(splits.x_train[order], splits.y_train[order], training=True)
            val = self._custom_pass(splits.x_val, splits.y_val, training=False)
            logs.update({f"val_{name}": value for name, value in val.items()})
            self.epoch_end(epoch, logs)
            if model.stop_training:
                break

    def _custom_pass(self, x: np.ndarray, y: np.ndarray, *, training: bool) -> dict[str, Any]:
        """One pass over `x`, `y` in batches; the members' epoch means, as `fit` logs them."""
        for metric in self.model.metrics:
            metric.reset_state()
        step: Callable[[Any, Any], Any] = self._steps[training]
        batch_size = self.training.batch_size
        for start in range(0, len(x), batch_size):
            step(x[start : start + batch_size], y[start : start + batch_size])
        logs: dict[str, Any] = {}
        for metric in self.model.metrics:
            result = metric.result()
            if isinstance(result, dict):
                logs.update({name: float(value) for name, value in result.items()})
        return logs


class _FitHook(keras.callbacks.Callback):
    def __init__(self, trainer: PackTrainer) -> None:
        super().__init__()
        self.trainer = trainer

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.trainer.epoch_begin(epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.trainer.epoch_end(epoch, logs or {})
