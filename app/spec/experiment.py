"""The experiment spec: the model, its training, and what can train together (packs)."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field, model_validator

from app.spec.basics import Bool, Float, Int, Name, Notes, Optimizer, _Strict
from app.spec.datasets import DatasetSpec
from app.spec.layers import RECURRENT_TYPES, LayerSpec, RecurrentLayer, RegularizerSpec


class ModelSpec(_Strict):
    layers: list[LayerSpec] = Field(min_length=1, max_length=20)


class ScheduleSpec(_Strict):
    """How the strength of every penalty changes over training: λ(epoch) = λ · scale(epoch).

    constant: scale 1. warmup: from 0 up to 1, linearly over `warmup_epochs`, then 1.
    cosine: from 1 down to `final_fraction` along half a cosine over the run's epochs.
    """

    kind: Literal["constant", "warmup", "cosine"] = "constant"
    warmup_epochs: Int = Field(default=5, ge=1, le=1000)
    final_fraction: Float = Field(default=0.0, ge=0.0, le=1.0)


class EarlyStoppingSpec(_Strict):
    """Stop when `val_data_loss` has not improved by `min_delta` for `patience` epochs."""

    patience: Int = Field(default=5, ge=1, le=1000)
    min_delta: Float = Field(default=0.0, ge=0.0, le=1e6, allow_inf_nan=False)
    restore_best_weights: Bool = True


class TrainingSpec(_Strict):
    epochs: Int = Field(default=20, ge=1, le=1000)
    batch_size: Int = Field(default=32, ge=1, le=4096)
    optimizer: Optimizer = "adam"
    learning_rate: Float = Field(default=0.001, gt=0.0, le=10.0)
    seed: Int = Field(default=0, ge=0, le=2**31 - 1)
    loop: Literal["fit", "custom"] = "fit"
    shuffle: Bool = True
    # Decoupled weight decay in the optimizer (any optimizer; AdamW's own default is off here).
    weight_decay: Float = Field(default=0.0, ge=0.0, le=1.0)
    # The textbook GradientTape loop: one penalty on every trainable weight, biases included.
    global_regularizer: RegularizerSpec | None = None
    # λ schedule for every penalty; its current scale is streamed as the metric "reg_scale".
    schedule: ScheduleSpec | None = None
    early_stopping: EarlyStoppingSpec | None = None
    # Per-layer weight histograms every this many epochs (and at the last); 0 turns them off.
    histogram_every: Int = Field(default=5, ge=0, le=1000)

    @model_validator(mode="after")
    def _global_needs_custom(self) -> TrainingSpec:
        if self.global_regularizer is not None and self.loop != "custom":
            raise ValueError("'global_regularizer' needs loop 'custom'")
        return self


class ExperimentSpec(_Strict):
    """Everything one run needs: what to learn, from which model, trained how."""

    name: Name
    notes: Notes | None = None
    dataset: DatasetSpec
    model: ModelSpec
    training: TrainingSpec = TrainingSpec()

    @model_validator(mode="after")
    def _layers_fit_dataset(self) -> ExperimentSpec:
        if not self.dataset.resolved:
            return self  # the server checks the layers again once the upload is filled in
        info = self.dataset.info
        seen_dense = False
        flat_recurrent = False  # a recurrent layer before gave one vector, not a sequence
        kinds = {layer.type for layer in self.model.layers}
        for index, layer in enumerate(self.model.layers):
            where = f"model.layers.{index}"
            if layer.type == "dense":
                seen_dense = True
                continue
            if seen_dense:
                raise ValueError(f"{where}: a {layer.type} layer cannot follow a dense layer")
            if flat_recurrent:
                raise ValueError(
                    f"{where}: a {layer.type} layer needs a sequence; set return_sequences "
                    f"on the recurrent layer before it"
                )
            if isinstance(layer, RecurrentLayer):
                flat_recurrent = not layer.return_sequences
            if layer.type == "conv2d" and info.image is None:
                raise ValueError(
                    f"{where}: conv2d needs an image dataset (digits), not '{self.dataset.name}'"
                    if self.dataset.upload is None
                    else f"{where}: conv2d needs an image upload (an NPZ whose x is "
                    f"n x height x width [x channels]), not '{info.description}'"
                )
            if layer.type != "conv2d" and "conv2d" in kinds:
                raise ValueError(f"{where}: {layer.type} and conv2d layers cannot be mixed")
        return self

    def describe_regularization(self) -> str:
        """The regularization in a few words, e.g. 'L2 0.01 · dropout 0.5'."""
        parts: list[str] = []
        for layer in self.model.layers:
            recurrent = getattr(layer, "recurrent_regularizer", None)
            for reg in (
                layer.regularizer,
                recurrent,
                layer.bias_regularizer,
                layer.activity_regularizer,
            ):
                if reg is not None and reg.describe() not in parts:
                    parts.append(reg.describe())
        if self.training.weight_decay > 0:
            parts.append(f"weight decay {self.training.weight_decay:g}")
        if self.training.global_regularizer is not None:
            parts.append(f"all weights {self.training.global_regularizer.describe()}")
        rates = sorted(
            {
                rate
                for layer in self.model.layers
                for rate in (layer.dropout, getattr(layer, "recurrent_dropout", 0.0))
                if rate > 0
            }
        )
        if rates:
            parts.append("dropout " + "/".join(f"{rate:g}" for rate in rates))
        return " · ".join(parts) or "none"


def pack_signature(spec: ExperimentSpec) -> str | None:
    """What runs must share to train as one packed model: everything but their name,
    notes, penalty strengths, dropout rates and early stopping, which act per member (a
    digest). None for a spec that cannot pack: one with a plugin penalty (its code cannot
    be applied per member) or a recurrent layer (the packed layers have no recurrent kind).
    The seed is part of it: each seed is its own split, so its own pack."""
    data = spec.model_dump(mode="json", exclude={"name", "notes"})
    data["training"].pop("early_stopping")
    if any(layer["type"] in RECURRENT_TYPES for layer in data["model"]["layers"]):
        return None  # the packed layers have no recurrent kind: these train one by one
    penalties = [data["training"].pop("global_regularizer")]
    for layer in data["model"]["layers"]:
        penalties += [layer.pop(key) for key in _PENALTY_FIELDS]
        layer.pop("dropout")
    if any(penalty is not None and penalty["kind"] == "plugin" for penalty in penalties):
        return None
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_PENALTY_FIELDS = ("regularizer", "bias_regularizer", "activity_regularizer")


# Metric names that both training loops stream each epoch (per-layer names are added
# as "kernel_norm/<layer>" and "sparsity/<layer>").
EPOCH_METRICS_CLASSIFICATION = (
    "loss",
    "val_loss",
    "data_loss",
    "val_data_loss",
    "reg_loss",
    "accuracy",
    "val_accuracy",
    "lr",
    "epoch_seconds",
)
EPOCH_METRICS_REGRESSION = (
    "loss",
    "val_loss",
    "data_loss",
    "val_data_loss",
    "reg_loss",
    "mae",
    "val_mae",
    "lr",
    "epoch_seconds",
)
