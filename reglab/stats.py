"""Per-layer statistics of a model's kernels, their histograms, and the snapshot that
freezes the kernels on the training thread so that all of this runs on another.

One home for these facts: the user's callback and the worker's both stream them, and the
dashboard reads `kernel_norm/<layer>` and `sparsity/<layer>` by these names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

SPARSITY_THRESHOLD = 1e-3  # a weight with |w| below this counts as zero
HISTOGRAM_BINS = 30
_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_.:/\-]")

Kernels = list[tuple[str, Any]]  # (layer name, kernel: a variable, a tensor or an array)


def metric_name(name: str) -> str:
    """A Keras log or layer name as the server accepts it (letters, digits and `_.:/-`)."""
    return _NAME_CHARACTERS.sub("_", str(name))[:100] or "_"


def finite_values(logs: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats out of Keras logs; NaN, infinities and non-numbers are left out (JSON
    has no NaN, and the server refuses them)."""
    values: dict[str, float] = {}
    for name, value in logs.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            values[metric_name(name)] = number
    return values


def layer_statistics(kernels: Kernels) -> dict[str, float]:
    """Per layer: the kernel's L2 norm and the share of weights with |w| < SPARSITY_THRESHOLD."""
    values: dict[str, float] = {}
    for name, kernel in kernels:
        flat = np.asarray(kernel, dtype=np.float64).ravel()
        values[metric_name(f"kernel_norm/{name}")] = float(np.sqrt(np.dot(flat, flat)))
        values[metric_name(f"sparsity/{name}")] = float(np.mean(np.abs(flat) < SPARSITY_THRESHOLD))
    return values


def kernel_histograms(
    kernels: Kernels, bins: int = HISTOGRAM_BINS
) -> dict[str, dict[str, list[float]]]:
    """Per layer: `bins` equal-width bins over the kernel's finite values, as `edges`
    (bins + 1 of them) and `counts`. A layer with no finite value is left out."""
    histograms: dict[str, dict[str, list[float]]] = {}
    for name, kernel in kernels:
        flat = np.asarray(kernel, dtype=np.float64).ravel()
        flat = flat[np.isfinite(flat)]
        if flat.size == 0:
            continue
        counts, edges = np.histogram(flat, bins=bins)
        histograms[metric_name(name)] = {
            "edges": [float(edge) for edge in edges],
            "counts": [float(count) for count in counts],
        }
    return histograms


def histogram_due(epoch: int, epochs: int | None, every: int, last: bool = False) -> bool:
    """Whether an epoch (0-based) gets histograms: every `every`-th from the first, the
    last of `epochs`, and one that ends training early (`last`); never when `every` is 0."""
    if every <= 0:
        return False
    return epoch % every == 0 or last or (epochs is not None and epoch == epochs - 1)


def model_kernels(model: Any) -> Kernels:
    """(layer name, kernel variable) for each layer of `model` that has a kernel; a
    recurrent layer (LSTM, GRU, SimpleRNN: its cell holds the weights) gives its kernel
    and, as `<name>/recurrent`, its recurrent kernel."""
    kernels: Kernels = []
    for layer in model.layers:
        holder = getattr(layer, "cell", layer)
        if getattr(holder, "kernel", None) is not None:
            kernels.append((layer.name, holder.kernel))
        if getattr(holder, "recurrent_kernel", None) is not None:
            kernels.append((f"{layer.name}/recurrent", holder.recurrent_kernel))
    return kernels


def snapshot_kernels(kernels: Kernels) -> Kernels:
    """Freeze the kernels' current values without copying them to the host here.

    On TensorFlow one `identity_n` reads every kernel in a single op; the variables are
    copy-on-write, so later updates leave this snapshot as it was. JAX (and NumPy) arrays
    are immutable: their current values are the snapshot. Torch tensors are updated in
    place, so they are detached and cloned. The sender thread turns them into arrays.
    """
    if not kernels:
        return []
    import keras  # the caller trains with Keras already; importing it here costs nothing

    names = [name for name, _ in kernels]
    values = [variable.value for _, variable in kernels]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        values = tf.identity_n(values)
    elif backend == "torch":
        values = [value.detach().clone() for value in values]
    return list(zip(names, values, strict=True))
