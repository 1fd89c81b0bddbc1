"""Plain-function factories for specs used across tests."""

from __future__ import annotations

import copy
from typing import Any

BASE_SPEC: dict[str, Any] = {
    "name": "tiny",
    "dataset": {"name": "moons", "n_samples": 200},
    "model": {
        "layers": [
            {"type": "dense", "units": 8, "regularizer": {"kind": "l2", "l2": 0.01}, "dropout": 0.1}
        ]
    },
    "training": {"epochs": 3, "batch_size": 32, "seed": 0},
}


def make_spec(**changes: Any) -> dict[str, Any]:
    """A tiny valid spec; keyword arguments replace top-level sections or fields."""
    spec = copy.deepcopy(BASE_SPEC)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec
