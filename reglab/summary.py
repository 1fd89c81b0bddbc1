"""What a script run's page shows in place of a spec: the model's layers, penalties,
dropout rates and optimizer, summed up in a line such as 'L2 0.01 · dropout 0.5'."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import keras
import numpy as np

_SHORT = 255


def short_text(text: str | None) -> str | None:
    """Text as the server keeps it: no NUL, at most 255 characters."""
    return None if text is None else text.replace("\x00", "")[:_SHORT]


def describe_regularizer(regularizer: Any) -> str | None:
    """A few words, e.g. 'L2 0.01' or 'L1 0.001 + L2 0.01', as the dashboard writes them."""
    if regularizer is None:
        return None
    try:
        config = regularizer.get_config()
    except Exception:
        config = {}
    l1, l2 = float(config.get("l1", 0) or 0), float(config.get("l2", 0) or 0)
    if "l1" in config or "l2" in config:
        if l1 and l2:
            return f"L1 {l1:g} + L2 {l2:g}"
        return f"L1 {l1:g}" if l1 else f"L2 {l2:g}"
    numbers = ", ".join(
        f"{key}={value:g}" for key, value in config.items() if isinstance(value, int | float)
    )
    return f"{type(regularizer).__name__}({numbers})" if numbers else type(regularizer).__name__


def describe_model(model: keras.Model) -> dict[str, Any]:
    """The layers (units, penalties, dropout rates), the optimizer and a one-line
    summary of the regularization, e.g. 'L2 0.01 · dropout 0.5'."""
    layers: list[dict[str, Any]] = []
    penalties: list[str] = []
    rates: set[float] = set()
    for layer in model.layers[:500]:
        kind = type(layer).__name__
        entry: dict[str, Any] = {"name": short_text(layer.name), "type": short_text(kind)}
        units = getattr(layer, "units", None) or getattr(layer, "filters", None)
        if isinstance(units, int):
            entry["units"] = units
        described = [
            text
            for text in (
                describe_regularizer(getattr(layer, "kernel_regularizer", None)),
                describe_regularizer(getattr(layer, "bias_regularizer", None)),
                describe_regularizer(getattr(layer, "activity_regularizer", None)),
            )
            if text
        ]
        if described:
            entry["regularizer"] = short_text(" / ".join(dict.fromkeys(described)))
            penalties.extend(text for text in described if text not in penalties)
        rate = getattr(layer, "rate", None)
        if "Dropout" in kind and isinstance(rate, int | float) and 0 <= rate <= 1:
            entry["dropout"] = float(rate)
            if rate > 0:
                rates.add(float(rate))
        layers.append(entry)
    parts = list(penalties)
    optimizer = getattr(model, "optimizer", None)
    decay = getattr(optimizer, "weight_decay", None)
    if isinstance(decay, int | float) and decay > 0:
        parts.append(f"weight decay {decay:g}")
    if rates:
        parts.append("dropout " + "/".join(f"{rate:g}" for rate in sorted(rates)))
    info: dict[str, Any] = {
        "layers": layers,
        "regularization": short_text(" · ".join(parts) or "none"),
    }
    with contextlib.suppress(Exception):  # a model not built yet has no count
        info["params"] = int(model.count_params())
    if optimizer is not None:
        info["optimizer"] = short_text(type(optimizer).__name__)
        try:
            rate = float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate)))
            if math.isfinite(rate) and rate >= 0:
                info["learning_rate"] = rate
        except Exception:  # a schedule that cannot be read as a number
            pass
    return info


def guess_task(model: keras.Model) -> str:
    """classification when the loss is a cross-entropy (or hinge), else regression."""
    loss = getattr(model, "loss", None)
    name = loss if isinstance(loss, str) else type(loss).__name__ if loss is not None else ""
    lowered = str(name).lower()
    return "classification" if ("entropy" in lowered or "hinge" in lowered) else "regression"
