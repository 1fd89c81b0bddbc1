"""Penalties and layers in the contract: a regularizer spec, one schema per layer type
(a union tagged by `type`), and the error paths of that union."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from app.spec.basics import (
    _KIND_FIELDS,
    DEFAULT_STRENGTH,
    Activation,
    Bool,
    Float,
    Int,
    OnlyPatternKeys,
    ParamName,
    ParamValue,
    PluginName,
    RegularizerKind,
    Strength,
    _Strict,
)


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
