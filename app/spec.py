"""The experiment spec: the one contract that the server validates and the worker trains.

Everything a run needs is in an `ExperimentSpec`. The server checks it (bounds that keep a
shared server safe, combinations that cannot be built) so that a bad spec is a 422 naming
its field, never a worker crash. This module imports pydantic only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

Task = Literal["classification", "regression"]


def _integral(value: object) -> object:
    # JSON Schema counts 3.0 as an integer; a fraction, a string or a bool is not one.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Numbers and booleans as JSON has them, for every request body: pydantic's lax mode
# would take `false` as 0 and "3" as 3, which the OpenAPI document says are not numbers.
# Only the scalars are strict: a spec read from a plain dict may hold lists for tuples.
Int = Annotated[int, BeforeValidator(_integral), Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
# The largest id the API takes or gives: ids are BIGINT columns (64-bit), and a JSON reader
# holds integers exactly up to 2**53 - 1 (a browser's Number.MAX_SAFE_INTEGER).
MAX_ID = 2**53 - 1


_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def json_bounds(schema: dict[str, Any]) -> None:
    """Bounds under the names JSON Schema gives them: pydantic writes a bound on an `Int`
    behind an alias or in an optional field under its own name (`ge`), which no reader of
    the OpenAPI document knows (a model's `json_schema_extra`)."""
    for key, value in list(schema.items()):
        if key in _BOUNDS and isinstance(value, int | float) and "type" in schema:
            schema[_BOUNDS[key]] = schema.pop(key)
        elif isinstance(value, dict):
            json_bounds(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    json_bounds(item)


class OnlyPatternKeys:
    """JSON schema of a mapping whose keys have a pattern: pydantic lists the pattern under
    `patternProperties`, which leaves other keys allowed; the server refuses them. Said
    as `propertyNames` (every key matches) and `additionalProperties` (every value)."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> Any:
        schema = handler(core_schema)
        patterns = schema.pop("patternProperties", {})
        if len(patterns) == 1:
            ((pattern, values),) = patterns.items()
            schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": pattern}
            schema["additionalProperties"] = values
        else:
            schema["patternProperties"] = patterns
            schema["additionalProperties"] = False
        return schema


class Status(StrEnum):
    """Where a run is. The server, the clients and the pages (static/js/status.js, tied to
    this by a test) all read the final ones from here."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    pruned = "pruned"  # stopped early by its sweep: worse than the sweep's median so far

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({Status.succeeded, Status.failed, Status.cancelled, Status.pruned})


@dataclass(frozen=True)
class DatasetInfo:
    """What the builder and the server need to know about a built-in dataset."""

    task: Task
    classes: int  # 0 for regression
    features: int  # flat feature count
    image: tuple[int, int, int] | None = None  # (height, width, channels) for conv2d
    generated: bool = False  # n_samples and noise apply
    default_samples: int = 0
    description: str = ""


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "classification", 10, 64, image=(8, 8, 1), description="scikit-learn 8x8 digits, 1,797"
    ),
    "breast_cancer": DatasetInfo(
        "classification", 2, 30, description="scikit-learn breast cancer, 569 x 30"
    ),
    "wine": DatasetInfo("classification", 3, 13, description="scikit-learn wine, 178 x 13"),
    "moons": DatasetInfo(
        "classification", 2, 2, generated=True, default_samples=500, description="two moons"
    ),
    "noisy_regression": DatasetInfo(
        "regression",
        0,
        1,
        generated=True,
        default_samples=60,
        description="few noisy samples of a smooth curve; over-fits readily",
    ),
    "periodic_series": DatasetInfo(
        "classification",
        4,
        64,
        generated=True,
        default_samples=800,
        description="noisy waves of four frequencies, 64 steps; classify the frequency",
    ),
}

DatasetName = Literal[
    "digits", "breast_cancer", "wine", "moons", "noisy_regression", "periodic_series", "upload"
]
UPLOAD = "upload"  # the dataset name of an uploaded file; `dataset.upload` says which
RegularizerKind = Literal["l1", "l2", "l1l2", "smoothness", "plugin"]
PluginName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.\-]*$")
]
ParamName = Annotated[
    str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z_][a-z0-9_]*$")
]
ParamValue = Annotated[Float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Activation = Literal["relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish", "linear"]
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]

Strength = Annotated[Float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
# Checked as given (what the OpenAPI document says: some character that is not a space),
# then stored without surrounding spaces.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$"),
    AfterValidator(str.strip),
]
Notes = Annotated[str, StringConstraints(max_length=10_000, pattern=r"^[^\x00]*$")]

# Which strength fields each kind reads; the others must stay unset.
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "l1": ("l1",),
    "l2": ("l2",),
    "l1l2": ("l1", "l2"),
    "smoothness": ("smoothness",),
    "plugin": (),
}
DEFAULT_STRENGTH = 0.01


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=json_bounds)


class RegularizerSpec(_Strict):
    """A penalty λ·R(w) added to the loss. Unset strengths of the kind default to 0.01.

    Kind "plugin" names a penalty registered on the worker hosts (never code sent here),
    with its numeric parameters; a worker without that plugin fails the run, saying so.
    """

    kind: RegularizerKind
    l1: Strength | None = None
    l2: Strength | None = None
    smoothness: Strength | None = None
    plugin: PluginName | None = None
    params: Annotated[dict[ParamName, ParamValue], OnlyPatternKeys()] | None = Field(
        default=None, max_length=10
    )

    @model_validator(mode="after")
    def _fields_of_kind(self) -> RegularizerSpec:
        if (self.kind == "plugin") != (self.plugin is not None):
            raise ValueError("'plugin' names the plugin of a regularizer of kind 'plugin' only")
        if self.params is not None and self.kind != "plugin":
            raise ValueError("'params' applies to a regularizer of kind 'plugin' only")
        wanted = _KIND_FIELDS[self.kind]
        for field in ("l1", "l2", "smoothness"):
            value = getattr(self, field)
            if field in wanted and value is None:
                setattr(self, field, DEFAULT_STRENGTH)
            elif field not in wanted and value is not None:
                raise ValueError(f"'{field}' does not apply to a regularizer of kind '{self.kind}'")
        return self

    def describe(self) -> str:
        """A few words, e.g. 'L2 0.01' or 'L1 0.001 + L2 0.01'."""
        if self.kind == "l1l2":
            return f"L1 {self.l1:g} + L2 {self.l2:g}"
        if self.kind == "smoothness":
            return f"smoothness {self.smoothness:g}"
        if self.kind == "plugin":
            params = ", ".join(f"{key}={value:g}" for key, value in (self.params or {}).items())
            return f"{self.plugin}({params})"
        return f"{self.kind.upper()} {getattr(self, self.kind):g}"


class _Layer(_Strict):
    """What every hidden layer has: an activation, penalties on its weights and outputs,
    and a dropout rate after it. The builder adds the flatten and the output layer."""

    activation: Activation = "relu"
    regularizer: RegularizerSpec | None = None
    bias_regularizer: RegularizerSpec | None = None
    activity_regularizer: RegularizerSpec | None = None
    dropout: Float = Field(default=0.0, ge=0.0, lt=1.0, allow_inf_nan=False)


class DenseLayer(_Layer):
    """A fully connected layer of `units` outputs."""

    type: Literal["dense"]
    units: Int = Field(ge=1, le=4096)


class ConvLayer(_Layer):
    filters: Int = Field(ge=1, le=512)
    kernel_size: Int = Field(default=3, ge=1, le=16)
    pool_size: Int | None = Field(default=None, ge=2, le=8)


class Conv1DLayer(ConvLayer):
    """A 1-D convolution ("same" padding) over a series, with optional max pooling."""

    type: Literal["conv1d"]


class Conv2DLayer(ConvLayer):
    """A 2-D convolution ("same" padding) over an image, with optional max pooling."""

    type: Literal["conv2d"]


class RecurrentLayer(_Layer):
    """A recurrent layer over a series. `dropout` is the fraction of the layer's inputs
    dropped and `recurrent_dropout` that of its recurrent state (Keras' own arguments);
    `recurrent_regularizer` penalizes the recurrent kernel. `return_sequences` passes the
    whole sequence on, as a stacked recurrent (or conv1d) layer after it needs."""

    units: Int = Field(ge=1, le=1024)
    activation: Activation = "tanh"
    recurrent_regularizer: RegularizerSpec | None = None
    recurrent_dropout: Float = Field(default=0.0, ge=0.0, lt=1.0, allow_inf_nan=False)
    return_sequences: Bool = False


class LSTMLayer(RecurrentLayer):
    """Long short-term memory (gates on input, forget and output)."""

    type: Literal["lstm"]


class GRULayer(RecurrentLayer):
    """Gated recurrent unit (update and reset gates)."""

    type: Literal["gru"]


class SimpleRNNLayer(RecurrentLayer):
    """A fully connected recurrent layer, the output fed back as the state."""

    type: Literal["simple_rnn"]


RECURRENT_TYPES = frozenset({"lstm", "gru", "simple_rnn"})

# One schema per layer type, told apart by `type`: the OpenAPI document then says what
# each type needs (a dense layer without `units` is invalid by the schema too).
LayerSpec = Annotated[
    DenseLayer | Conv1DLayer | Conv2DLayer | LSTMLayer | GRULayer | SimpleRNNLayer,
    Field(discriminator="type"),
]
LAYER_TYPES: dict[str, type[_Layer]] = {
    "dense": DenseLayer,
    "conv1d": Conv1DLayer,
    "conv2d": Conv2DLayer,
    "lstm": LSTMLayer,
    "gru": GRULayer,
    "simple_rnn": SimpleRNNLayer,
}


def error_location(loc: tuple[str | int, ...] | list[str | int]) -> tuple[str | int, ...]:
    """A validation error's location as the spec's JSON names it: pydantic adds the layer
    type after the index in a tagged union (`model.layers.0.dense.units`); drop it."""
    out: list[str | int] = []
    for part in loc:
        if out and isinstance(out[-1], int) and part in LAYER_TYPES:
            continue
        out.append(part)
    return tuple(out)


class UploadRef(_Strict):
    """Which uploaded dataset a run trains on. A client gives `id` only; the server fills
    in the rest from the stored upload when the experiment is submitted."""

    id: Int = Field(ge=1, le=MAX_ID)
    name: str | None = Field(default=None, max_length=200)
    task: Task | None = None
    classes: Int | None = Field(default=None, ge=0, le=10_000)
    features: Int | None = Field(default=None, ge=1, le=1_000_000)
    image: tuple[Int, Int, Int] | None = None
    samples: Int | None = Field(default=None, ge=1)

    @property
    def resolved(self) -> bool:
        return self.task is not None and self.features is not None and self.classes is not None


class DatasetSpec(_Strict):
    """A built-in or uploaded dataset and the knobs that provoke over-fitting on purpose."""

    name: DatasetName
    upload: UploadRef | None = None
    validation_split: Float = Field(default=0.2, ge=0.05, le=0.5)
    test_split: Float = Field(default=0.2, ge=0.05, le=0.5)
    train_fraction: Float = Field(default=1.0, gt=0.0, le=1.0)
    label_noise: Float = Field(default=0.0, ge=0.0, le=1.0)
    n_samples: Int | None = Field(default=None, ge=30, le=100_000)
    noise: Float | None = Field(default=None, ge=0.0, le=10.0)

    @model_validator(mode="after")
    def _generated_only(self) -> DatasetSpec:
        if (self.name == UPLOAD) != (self.upload is not None):
            raise ValueError("'upload' (an uploaded dataset's id) goes with name 'upload' only")
        generated = self.name != UPLOAD and DATASETS[self.name].generated
        if not generated:
            for field in ("n_samples", "noise"):
                if getattr(self, field) is not None:
                    raise ValueError(f"'{field}' applies to generated datasets only")
        if self.validation_split + self.test_split > 0.8:
            raise ValueError("validation_split + test_split leaves under 20% for training")
        return self

    @property
    def resolved(self) -> bool:
        """False for an upload whose details the server has not filled in yet."""
        return self.upload is None or self.upload.resolved

    @property
    def info(self) -> DatasetInfo:
        if self.upload is not None:
            upload = self.upload
            if not upload.resolved:
                raise ValueError(f"uploaded dataset {upload.id} is not resolved yet")
            assert upload.task is not None and upload.features is not None
            return DatasetInfo(
                upload.task,
                upload.classes or 0,
                upload.features,
                image=upload.image,
                description=upload.name or f"upload {upload.id}",
            )
        return DATASETS[self.name]


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
