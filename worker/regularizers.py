"""Weight penalties λ·R(w) as Keras regularizers, written in `keras.ops`.

Each class is registered as `reglab>Name` and has `get_config`, so a model that uses it
saves to `.keras` and loads again once this module is imported. The same code runs on
the TensorFlow and JAX backends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import keras
from keras import ops

from app.spec import RegularizerSpec, ScheduleSpec
from worker.plugins import (  # noqa: F401  (plugin_names is part of this module's interface)
    ENTRY_POINT_GROUP,
    PLUGIN_ENV,
    configured_plugins,
    plugin_names,
)


def _strength(value: float, x: Any) -> Any:
    """The strength as a tensor of the weights' dtype (float16 weights stay float16)."""
    return ops.convert_to_tensor(value, dtype=x.dtype)


@keras.saving.register_keras_serializable(package="reglab")
class L1(keras.regularizers.Regularizer):
    """Lasso: `l1 · Σ|w|`, which drives weights to exactly zero (sparsity)."""

    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = float(l1)

    def __call__(self, x: Any) -> Any:
        x = ops.convert_to_tensor(x)
        return _strength(self.l1, x) * ops.sum(ops.abs(x))

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


@keras.saving.register_keras_serializable(package="reglab")
class L2(keras.regularizers.Regularizer):
    """Ridge (weight decay): `l2 · Σw²`, which shrinks every weight towards zero."""

    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = float(l2)

    def __call__(self, x: Any) -> Any:
        x = ops.convert_to_tensor(x)
        return _strength(self.l2, x) * ops.sum(ops.square(x))

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


@keras.saving.register_keras_serializable(package="reglab")
class L1L2(keras.regularizers.Regularizer):
    """Elastic net: `l1 · Σ|w| + l2 · Σw²`."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = float(l1)
        self.l2 = float(l2)

    def __call__(self, x: Any) -> Any:
        x = ops.convert_to_tensor(x)
        return _strength(self.l1, x) * ops.sum(ops.abs(x)) + _strength(self.l2, x) * ops.sum(
            ops.square(x)
        )

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


@keras.saving.register_keras_serializable(package="reglab")
class Smoothness(keras.regularizers.Regularizer):
    """`smoothness · Σ (w[k+1] - w[k])²` between neighbours along the first axis.

    For a Conv1D kernel `(k, in, out)` that is adjacent taps, for a Dense kernel
    `(in, out)` adjacent input units; a rank-1 bias works too. A first axis of length 1
    has no neighbours and costs nothing.
    """

    def __init__(self, smoothness: float = 0.01) -> None:
        self.smoothness = float(smoothness)

    def __call__(self, x: Any) -> Any:
        x = ops.convert_to_tensor(x)
        if len(x.shape) == 0:
            raise ValueError("the smoothness penalty needs a tensor of rank 1 or more")
        return _strength(self.smoothness, x) * ops.sum(ops.square(ops.diff(x, axis=0)))

    def get_config(self) -> dict[str, Any]:
        return {"smoothness": self.smoothness}


def from_spec(spec: RegularizerSpec | None) -> keras.regularizers.Regularizer | None:
    """The regularizer a spec describes, or None for no penalty."""
    if spec is None:
        return None
    if spec.kind == "l1":
        return L1(_set(spec.l1))
    if spec.kind == "l2":
        return L2(_set(spec.l2))
    if spec.kind == "l1l2":
        return L1L2(l1=_set(spec.l1), l2=_set(spec.l2))
    if spec.kind == "smoothness":
        return Smoothness(_set(spec.smoothness))
    if spec.kind == "plugin" and spec.plugin is not None:
        if spec.plugin not in PLUGINS:
            load_plugins()
        factory = PLUGINS.get(spec.plugin)
        if factory is None:
            known = ", ".join(sorted(PLUGINS)) or "none"
            raise UnknownPlugin(
                f"no regularizer plugin named {spec.plugin!r} on this worker (installed: {known})"
            )
        return factory(**(spec.params or {}))
    raise ValueError(f"unknown regularizer kind {spec.kind!r}")


# --- plugins ---------------------------------------------------------------------------
# Custom penalties live on the worker hosts as Python modules; a spec only names them.

PluginFactory = Callable[..., keras.regularizers.Regularizer]
PLUGINS: dict[str, PluginFactory] = {}


class UnknownPlugin(LookupError):
    """A spec names a regularizer plugin that this worker host does not have."""


def register(name: str) -> Callable[[PluginFactory], PluginFactory]:
    """Register a penalty under `name` for specs of kind "plugin".

    Example:
        >>> @keras.saving.register_keras_serializable(package="my_lab")
        ... class Orthogonal(keras.regularizers.Regularizer): ...
        >>> register("orthogonal")(Orthogonal)   # spec: {"kind": "plugin",
        ...                                       #  "plugin": "orthogonal", "params": {...}}
    """

    def decorate(factory: PluginFactory) -> PluginFactory:
        PLUGINS[name] = factory
        return factory

    return decorate


def load_plugins() -> list[str]:
    """Import and register the configured plugins and the installed entry points; returns
    the registered names."""
    from importlib import import_module
    from importlib.metadata import entry_points

    for name, target in configured_plugins().items():
        module_name, _, attribute = target.partition(":")
        if not attribute:
            raise ValueError(f"{PLUGIN_ENV}: {name}={target} needs the form name=module:attribute")
        register(name)(getattr(import_module(module_name), attribute))
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name not in PLUGINS:
            register(entry_point.name)(entry_point.load())
    return sorted(PLUGINS)


def _set(value: float | None) -> float:
    # RegularizerSpec fills the kind's strengths with a default, so None is a bug upstream.
    if value is None:
        raise ValueError("regularizer strength is unset")
    return value


def penalty_of(weights: Iterable[Any], spec: RegularizerSpec | None) -> Any:
    """The penalty of `spec` summed over `weights` (the custom loop's global regularizer).

    Returns a scalar tensor; 0.0 when `spec` is None or there are no weights.
    """
    regularizer = from_spec(spec)
    if regularizer is None:
        return ops.convert_to_tensor(0.0)
    terms = [regularizer(weight) for weight in weights]
    if not terms:
        return ops.convert_to_tensor(0.0)
    return ops.sum(ops.stack(terms))


# --- λ schedules ---------------------------------------------------------------------
# Every penalty of a run with a schedule is wrapped in `Scheduled`, which multiplies it by
# one shared scale: the non-trainable weight of the model's `PenaltyScale` layer. A layer
# weight (not a free variable) is part of the model's state, so `fit` on JAX passes its
# current value into the compiled step rather than baking in the value it was traced with.


def schedule_scale(schedule: ScheduleSpec | None, epoch: int, epochs: int) -> float:
    """The scale of λ at the start of `epoch` (0-based) of a run of `epochs` epochs.

    constant: 1. warmup: `epoch / warmup_epochs` up to 1 (0 at the first epoch).
    cosine: `f + (1 - f) · (1 + cos(π · epoch / (epochs - 1))) / 2`, 1 at the first epoch
    and `final_fraction` (f) at the last.
    """
    if schedule is None or schedule.kind == "constant":
        return 1.0
    if schedule.kind == "warmup":
        return min(1.0, epoch / schedule.warmup_epochs)
    if epochs <= 1:
        return 1.0
    progress = min(max(epoch / (epochs - 1), 0.0), 1.0)
    final = schedule.final_fraction
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


@keras.saving.register_keras_serializable(package="reglab")
class PenaltyScale(keras.layers.Layer):
    """An identity layer that holds the current scale of every penalty, `scale`.

    The training loops set it at each epoch's start; a saved model keeps the last value,
    and a loaded model's penalties are plain again (the link to `Scheduled` is not saved).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="scale", dtype="float32"
        )

    def call(self, inputs: Any) -> Any:
        return inputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="reglab")
class Scheduled(keras.regularizers.Regularizer):
    """A penalty times the shared scale of a `PenaltyScale` layer: `scale · R(w)`.

    Args:
        regularizer: the penalty (any Keras regularizer, plugins included).
        scale: the scale variable; None (as after loading) leaves the penalty as it is.
    """

    def __init__(
        self, regularizer: keras.regularizers.Regularizer | dict[str, Any], scale: Any = None
    ) -> None:
        if isinstance(regularizer, dict):
            regularizer = keras.regularizers.deserialize(regularizer)
        self.regularizer = regularizer
        self.scale = scale

    def __call__(self, x: Any) -> Any:
        penalty = self.regularizer(x)
        if self.scale is None:
            return penalty
        penalty = ops.convert_to_tensor(penalty)
        return ops.cast(self.scale, penalty.dtype) * penalty

    def get_config(self) -> dict[str, Any]:
        return {"regularizer": keras.regularizers.serialize(self.regularizer)}


def scheduled(
    regularizer: keras.regularizers.Regularizer | None, scale: Any
) -> keras.regularizers.Regularizer | None:
    """`regularizer` scaled by `scale`, or as it is when either is None."""
    if regularizer is None or scale is None:
        return regularizer
    return Scheduled(regularizer, scale)


def penalty_scale(model: keras.Model) -> Any:
    """The scale variable of a model built with a schedule, else None."""
    for layer in model.layers:
        if isinstance(layer, PenaltyScale):
            return layer.scale
    return None
