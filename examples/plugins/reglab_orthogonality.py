"""An example regularizer plugin: soft orthogonality, λ·‖WᵀW - I‖²_F.

It pushes a layer's columns towards an orthonormal set (decorrelated features), a penalty
none of the built-in ones gives. Install it on a worker host and name it there:

    export PYTHONPATH=/path/to/examples/plugins
    export REGLAB_REGULARIZER_PLUGINS=orthogonality=reglab_orthogonality:Orthogonality
    reglab worker --server http://server:8000

or ship it as a package with an entry point in its pyproject.toml:

    [project.entry-points."reglab.regularizers"]
    orthogonality = "reglab_orthogonality:Orthogonality"

A spec then uses it by name (the server never receives code):

    "regularizer": {"kind": "plugin", "plugin": "orthogonality", "params": {"strength": 0.01}}
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="reglab_orthogonality")
class Orthogonality(keras.regularizers.Regularizer):
    """`strength · ‖WᵀW - I‖²_F` over a kernel flattened to (inputs, units)."""

    def __init__(self, strength: float = 0.01) -> None:
        self.strength = float(strength)

    def __call__(self, x: Any) -> Any:
        weights = ops.reshape(ops.convert_to_tensor(x), (-1, ops.shape(x)[-1]))
        gram = ops.matmul(ops.transpose(weights), weights)
        identity = ops.eye(ops.shape(gram)[0], dtype=gram.dtype)
        return ops.convert_to_tensor(self.strength, dtype=gram.dtype) * ops.sum(
            ops.square(gram - identity)
        )

    def get_config(self) -> dict[str, Any]:
        return {"strength": self.strength}
