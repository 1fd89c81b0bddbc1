"""Packed layers: K members of one network shape trained as one Keras model.

Every weight gains a leading member axis (a dense kernel `(K, in, out)`, a conv kernel
`(K, k, in, out)`), and activations flow as `(K, batch, ...)`: member k only ever meets
its own slice of every weight, so members share no parameter. Each member has its own
penalty strengths (`Strengths`) and dropout rate. `PackedModel.compute_loss` sums each
member's mean data loss and its own penalty; the gradient of that sum with respect to
member k's weights is exactly member k's own gradient, and the optimizers work element by
element, so each member trains as its separate run would.

Written in `keras.ops` only, so the same code runs on the TensorFlow and JAX backends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

from app.spec import Task


@dataclass(frozen=True)
class Strengths:
    """Per-member strengths of one penalty slot (absent penalty: 0): `l1 · Σ|w| +
    l2 · Σw² + smoothness · Σ(w[i+1] - w[i])²`, the same sums as worker.regularizers."""

    l1: tuple[float, ...]
    l2: tuple[float, ...]
    smoothness: tuple[float, ...]

    @property
    def any(self) -> bool:
        return any(self.l1) or any(self.l2) or any(self.smoothness)


def member_penalty(x: Any, strengths: Strengths) -> Any:
    """Each member's penalty of a packed tensor `(K, ...)`: a vector of K.

    Member k's slice is `x[k]`; the smoothness differences run along its first axis, as
    `worker.regularizers.Smoothness` does on an unpacked tensor.
    """
    x = ops.convert_to_tensor(x)
    axes = tuple(range(1, len(x.shape)))
    total = None
    for values, term in (
        (strengths.l1, lambda: ops.sum(ops.abs(x), axis=axes)),
        (strengths.l2, lambda: ops.sum(ops.square(x), axis=axes)),
        (strengths.smoothness, lambda: ops.sum(ops.square(ops.diff(x, axis=1)), axis=axes)),
    ):
        if any(values):
            part = ops.convert_to_tensor(values, dtype=x.dtype) * term()
            total = part if total is None else total + part
    if total is None:
        return ops.zeros((x.shape[0],), dtype=x.dtype)
    return total


class PackedLayer(keras.layers.Layer):
    """A layer with weights of a leading member axis and per-member penalties on its
    kernel, bias and outputs (the outputs' penalty is divided by the batch size, as Keras
    does for an activity regularizer)."""

    def __init__(
        self,
        members: int,
        activation: str,
        kernel_strengths: Strengths | None = None,
        bias_strengths: Strengths | None = None,
        activity_strengths: Strengths | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.members = members
        self.activation = keras.activations.get(activation)
        self.kernel_strengths = kernel_strengths
        self.bias_strengths = bias_strengths
        self.activity_strengths = activity_strengths
        self.kernel: Any = None
        self.bias: Any = None
        self.scale: Any = None  # the schedule's penalty scale, set by PackedModel

    def _add_weights(self, kernel_shape: tuple[int, ...], units: int) -> None:
        # Zeros: the real initial values are each member's separate run's, set afterwards.
        self.kernel = self.add_weight(shape=(self.members, *kernel_shape), initializer="zeros")
        self.bias = self.add_weight(shape=(self.members, units), initializer="zeros")

    def weight_penalty(self) -> Any | None:
        """The members' penalties on this layer's weights, a vector of K, or None."""
        terms = [
            member_penalty(weight, strengths)
            for weight, strengths in (
                (self.kernel, self.kernel_strengths),
                (self.bias, self.bias_strengths),
            )
            if strengths is not None and strengths.any
        ]
        if not terms:
            return None
        return self._scaled(terms[0] if len(terms) == 1 else terms[0] + terms[1])

    def _scaled(self, penalty: Any) -> Any:
        if self.scale is None:
            return penalty
        return ops.cast(self.scale, penalty.dtype) * penalty

    def _finish(self, outputs: Any) -> Any:
        outputs = self.activation(outputs)
        if self.activity_strengths is not None and self.activity_strengths.any:
            batch = ops.cast(ops.shape(outputs)[1], outputs.dtype)
            self.add_loss(self._scaled(member_penalty(outputs, self.activity_strengths)) / batch)
        return outputs


class PackedDense(PackedLayer):
    """K dense layers: `(K, B, in) @ (K, in, units) + (K, 1, units)`."""

    def __init__(self, members: int, units: int, activation: str, **kwargs: Any) -> None:
        super().__init__(members, activation, **kwargs)
        self.units = units

    def build(self, input_shape: Sequence[int | None]) -> None:
        self._add_weights((int(input_shape[-1]), self.units), self.units)  # type: ignore[arg-type]

    def call(self, inputs: Any) -> Any:
        outputs = ops.matmul(inputs, self.kernel) + ops.expand_dims(self.bias, 1)
        return self._finish(outputs)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.units)


class PackedConv(PackedLayer):
    """K convolutions (rank 1 or 2, stride 1, "same" padding) as one batched matmul over
    the patches of each member's input: `(K, B·L, k·in) @ (K, k·in, filters)`."""

    def __init__(
        self, members: int, rank: int, filters: int, kernel_size: int, activation: str, **kw: Any
    ) -> None:
        super().__init__(members, activation, **kw)
        self.rank = rank
        self.filters = filters
        self.kernel_size = kernel_size

    def build(self, input_shape: Sequence[int | None]) -> None:
        channels = int(input_shape[-1])  # type: ignore[arg-type]
        taps = (self.kernel_size,) * self.rank
        self._add_weights((*taps, channels, self.filters), self.filters)

    def call(self, inputs: Any) -> Any:
        size = self.kernel_size
        before = (size - 1) // 2  # "same": the odd one out goes after, as in TensorFlow
        pad = [(0, 0), (0, 0)] + [(before, size - 1 - before)] * self.rank + [(0, 0)]
        padded = ops.pad(inputs, pad)
        spatial = tuple(inputs.shape[2 : 2 + self.rank])
        slices = []
        if self.rank == 1:
            (length,) = spatial
            slices = [padded[:, :, i : i + length, :] for i in range(size)]
        else:
            height, width = spatial
            slices = [
                padded[:, :, i : i + height, j : j + width, :]
                for i in range(size)
                for j in range(size)
            ]
        # (K, B, *spatial, taps, in) → (K, B·spatial, taps·in), the kernel's own order.
        patches = ops.stack(slices, axis=-2)
        channels = int(inputs.shape[-1])
        rows = ops.reshape(patches, (self.members, -1, len(slices) * channels))
        kernel = ops.reshape(self.kernel, (self.members, len(slices) * channels, self.filters))
        outputs = ops.matmul(rows, kernel) + ops.expand_dims(self.bias, 1)
        outputs = ops.reshape(outputs, (self.members, -1, *spatial, self.filters))
        return self._finish(outputs)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.filters)


class PackedPool(keras.layers.Layer):
    """Max pooling ("same", stride = pool size) of every member, the member axis folded
    into the batch."""

    def __init__(self, rank: int, pool_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rank = rank
        self.pool_size = pool_size

    def call(self, inputs: Any) -> Any:
        members = inputs.shape[0]
        folded = ops.reshape(inputs, (-1, *inputs.shape[2:]))
        pooled = ops.max_pool(folded, self.pool_size, strides=self.pool_size, padding="same")
        return ops.reshape(pooled, (members, -1, *pooled.shape[1:]))


class PackedDropout(keras.layers.Layer):
    """Dropout with a rate per member; a member whose rate is 0 passes through unchanged."""

    def __init__(self, rates: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rates = tuple(float(rate) for rate in rates)
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training or not any(self.rates):
            return inputs
        shape = (len(self.rates),) + (1,) * (len(inputs.shape) - 1)
        rates = ops.reshape(ops.convert_to_tensor(self.rates, dtype=inputs.dtype), shape)
        noise = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator)
        keep = ops.greater_equal(ops.cast(noise, inputs.dtype), rates)
        return ops.where(keep, inputs / (1.0 - rates), ops.zeros_like(inputs))


class PackedFlatten(keras.layers.Layer):
    """`(K, B, ...)` → `(K, B, features)`, each sample flattened in Keras' own order."""

    def call(self, inputs: Any) -> Any:
        features = math.prod(int(size) for size in inputs.shape[2:])
        return ops.reshape(inputs, (inputs.shape[0], -1, features))


class MemberMeans(keras.metrics.Metric):
    """Per-member running means over an epoch's samples: `total` (K,) and `count`.

    `result()` is a dict `{"<k>:<name>": value}`, which Keras spreads into the logs (and
    prefixes with `val_` on the validation pass).
    """

    def __init__(self, members: int, name: str, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.members = members
        self.total = self.add_variable(shape=(members,), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, sums: Any, count: Any) -> None:  # type: ignore[override]
        """Add each member's sum over `count` samples."""
        self.total.assign(self.total + ops.cast(sums, self.total.dtype))
        self.count.assign(self.count + ops.cast(count, self.count.dtype))

    def result(self) -> dict[str, Any]:  # type: ignore[override]
        means = ops.divide_no_nan(self.total, self.count)
        return {f"{k}:{self.name}": means[k] for k in range(self.members)}

    def reset_state(self) -> None:
        self.total.assign(ops.zeros_like(self.total))
        self.count.assign(ops.zeros_like(self.count))


class PackedModel(keras.Model):
    """K members of one shape: input `(B, ...)`, output `(B, K, outputs)`.

    `compute_loss` returns Σ_k (mean data loss_k + penalty_k) and records, per member, the
    epoch means of `loss` (with its penalty, as Keras reports it), `data_loss` and the
    task's score (`accuracy` or `mae`), so one pass yields every member's logs.
    """

    def __init__(self, members: int, task: Task, blocks: Sequence[keras.layers.Layer]) -> None:
        super().__init__(name="reglab_pack")
        self.members = members
        self.task: Task = task
        self.blocks = list(blocks)
        self.score_name = "accuracy" if task == "classification" else "mae"
        self.member_loss = MemberMeans(members, "loss")
        self.member_data_loss = MemberMeans(members, "data_loss")
        self.member_score = MemberMeans(members, self.score_name)
        # The GradientTape loop's global penalty on every weight, per member (else None).
        self.global_strengths: Strengths | None = None

    def call(self, inputs: Any, training: bool = False) -> Any:
        outputs = ops.repeat(ops.expand_dims(inputs, 0), self.members, axis=0)
        for block in self.blocks:
            if isinstance(block, PackedDropout):
                outputs = block(outputs, training=training)
            else:
                outputs = block(outputs)
        return ops.moveaxis(outputs, 0, 1)

    def member_penalties(self) -> Any:
        """Each member's penalty on its weights and (from the last forward pass) its
        layers' outputs: a vector of K."""
        total = ops.zeros((self.members,))
        for block in self.blocks:
            if isinstance(block, PackedLayer):
                penalty = block.weight_penalty()
                if penalty is not None:
                    total = total + penalty
        for loss in self.losses:  # the activity penalties, vectors of K
            total = total + loss
        if self.global_strengths is not None:
            for block in self.blocks:
                if isinstance(block, PackedLayer):
                    for weight in (block.kernel, block.bias):
                        total = total + block._scaled(member_penalty(weight, self.global_strengths))
        return total

    def member_data_losses(self, y: Any, y_pred: Any) -> tuple[Any, Any]:
        """Per member: the sum over the batch of each sample's data loss and score."""
        if self.task == "classification":
            labels = ops.repeat(ops.expand_dims(ops.cast(y, "int32"), 1), self.members, axis=1)
            per_sample = keras.losses.sparse_categorical_crossentropy(labels, y_pred)
            hits = ops.equal(ops.argmax(y_pred, axis=-1), labels)
            return ops.sum(per_sample, axis=0), ops.sum(ops.cast(hits, y_pred.dtype), axis=0)
        target = ops.expand_dims(ops.cast(y, y_pred.dtype), 1)  # (B, 1, 1) against (B, K, 1)
        error = y_pred - target
        squared = ops.mean(ops.square(error), axis=-1)
        absolute = ops.mean(ops.abs(error), axis=-1)
        return ops.sum(squared, axis=0), ops.sum(absolute, axis=0)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        batch = ops.cast(ops.shape(y_pred)[0], y_pred.dtype)
        data_sums, score_sums = self.member_data_losses(y, y_pred)
        data = data_sums / batch  # each member's mean data loss, as its own run's loss
        loss = data + self.member_penalties()
        self.member_loss.update_state(loss * batch, batch)
        self.member_data_loss.update_state(data_sums, batch)
        self.member_score.update_state(score_sums, batch)
        return ops.sum(loss)
