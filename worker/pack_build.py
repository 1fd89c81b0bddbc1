"""Building a pack: the packed model of K member specs (one network shape, each member's
own penalty strengths and dropout rates), each member's separate-run initial weights
stacked into its slot, and a member's slice taken back out as a plain single model."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from app.spec import ConvLayer, DenseLayer, ExperimentSpec, RegularizerSpec, pack_signature
from worker import regularizers
from worker.builders import input_layout, make_optimizer
from worker.packed_layers import (
    PackedConv,
    PackedDense,
    PackedDropout,
    PackedFlatten,
    PackedLayer,
    PackedModel,
    PackedPool,
    Strengths,
)

STEPS_PER_CALL = 16


def strengths_of(specs: Sequence[RegularizerSpec | None]) -> Strengths:
    """Per-member strengths of one penalty slot; an absent penalty is strength 0."""
    l1, l2, smoothness = [], [], []
    for spec in specs:
        l1.append(float(spec.l1 or 0.0) if spec is not None else 0.0)
        l2.append(float(spec.l2 or 0.0) if spec is not None else 0.0)
        smoothness.append(float(spec.smoothness or 0.0) if spec is not None else 0.0)
    return Strengths(tuple(l1), tuple(l2), tuple(smoothness))


def build_pack(specs: Sequence[ExperimentSpec], sample: np.ndarray) -> PackedModel:
    """The packed model of `specs` (one network shape), compiled, with zero weights."""
    first = specs[0]
    members = len(specs)
    info = first.dataset.info
    blocks: list[keras.layers.Layer] = []
    scale = None
    if first.training.schedule is not None:
        holder = regularizers.PenaltyScale(name="penalty_scale")
        blocks.append(holder)
        scale = holder.scale
    flattened = input_layout(first) == "flat"
    for index, layer in enumerate(first.model.layers):
        column = [spec.model.layers[index] for spec in specs]
        penalties = {
            "kernel_strengths": strengths_of([member.regularizer for member in column]),
            "bias_strengths": strengths_of([member.bias_regularizer for member in column]),
            "activity_strengths": strengths_of([member.activity_regularizer for member in column]),
        }
        name = f"{layer.type}_{index}"
        if isinstance(layer, DenseLayer):
            if not flattened:
                blocks.append(PackedFlatten(name="flatten"))
                flattened = True
            blocks.append(
                PackedDense(members, layer.units, layer.activation, name=name, **penalties)
            )
        elif isinstance(layer, ConvLayer):
            rank = 1 if layer.type == "conv1d" else 2
            blocks.append(
                PackedConv(
                    members,
                    rank,
                    layer.filters,
                    layer.kernel_size,
                    layer.activation,
                    name=name,
                    **penalties,
                )
            )
            if layer.pool_size is not None:
                blocks.append(PackedPool(rank, layer.pool_size, name=f"pool_{index}"))
        else:  # pack_signature keeps recurrent layers out of packs
            raise ValueError(f"a {layer.type} layer cannot be packed")
        rates = [member.dropout for member in column]
        if any(rate > 0 for rate in rates):
            blocks.append(PackedDropout(rates, name=f"dropout_{index}"))
    if not flattened:
        blocks.append(PackedFlatten(name="flatten"))
    if info.task == "classification":
        blocks.append(PackedDense(members, info.classes, "softmax", name="output"))
    else:
        blocks.append(PackedDense(members, 1, "linear", name="output"))
    for block in blocks:
        if isinstance(block, PackedLayer):
            block.scale = scale
    model = PackedModel(members, info.task, blocks)
    global_specs = [spec.training.global_regularizer for spec in specs]
    if any(spec is not None for spec in global_specs):
        model.global_strengths = strengths_of(global_specs)
    model(sample[:1])
    # Several steps a call: a pack's step is heavier than a single run's, but Keras' own
    # overhead per call is the same, and it was a fifth of a small pack's epoch.
    model.compile(optimizer=make_optimizer(first), steps_per_execution=STEPS_PER_CALL)
    return model


def stack_initial_weights(model: PackedModel, singles: Sequence[keras.Model]) -> None:
    """Put each member's separate-run initial weights into its slot of every layer."""
    for block in model.blocks:
        if not isinstance(block, PackedLayer):
            continue
        layers = [single.get_layer(block.name) for single in singles]
        block.kernel.assign(np.stack([ops.convert_to_numpy(layer.kernel) for layer in layers]))
        block.bias.assign(np.stack([ops.convert_to_numpy(layer.bias) for layer in layers]))


class MemberWeights:
    """One member's slice of a packed model's weights, read and written like a model's
    (`get_weights`/`set_weights`), so that `EarlyStopping` keeps and restores it."""

    def __init__(self, model: PackedModel, index: int) -> None:
        self.model = model
        self.index = index

    def get_weights(self) -> list[np.ndarray]:
        return [
            ops.convert_to_numpy(block.kernel)[self.index] for block in packed_layers(self.model)
        ] + [ops.convert_to_numpy(block.bias)[self.index] for block in packed_layers(self.model)]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        layers = packed_layers(self.model)
        kernels, biases = weights[: len(layers)], weights[len(layers) :]
        for block, kernel, bias in zip(layers, kernels, biases, strict=True):
            for variable, value in ((block.kernel, kernel), (block.bias, bias)):
                values = ops.convert_to_numpy(variable).copy()
                values[self.index] = value
                variable.assign(values)


def packed_layers(model: PackedModel) -> list[PackedLayer]:
    """The layers of a packed model that hold weights (kernel and bias per member)."""
    return [block for block in model.blocks if isinstance(block, PackedLayer)]


def export_member(model: PackedModel, index: int, single: keras.Model) -> keras.Model:
    """`single` (the member's own model, as its separate run builds it) with the member's
    current weights and penalty scale: what its `.keras` file holds."""
    for block in packed_layers(model):
        layer = single.get_layer(block.name)
        layer.kernel.assign(ops.convert_to_numpy(block.kernel)[index])
        layer.bias.assign(ops.convert_to_numpy(block.bias)[index])
    scale = regularizers.penalty_scale(model)
    single_scale = regularizers.penalty_scale(single)
    if scale is not None and single_scale is not None:
        single_scale.assign(ops.convert_to_numpy(scale))
    return single


def check_packable(specs: Sequence[ExperimentSpec]) -> None:
    """Raise ValueError unless the specs may train as one pack."""
    if not specs:
        raise ValueError("a pack needs at least one member")
    signatures = {pack_signature(spec) for spec in specs}
    if None in signatures or len(signatures) != 1:
        raise ValueError("these runs do not share a network shape and training settings")
