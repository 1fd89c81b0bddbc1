"""What a script run's page shows in place of a spec: the model's layers, penalties,
dropout rates and optimizer, summed up in a line such as 'L2 0.01 · dropout 0.5'; a custom
loop's config; the host, the command and the device it trains on.

No framework is imported here: `reglab.Run` uses this module in scripts that may train
with anything, and a framework is only asked about once the script has loaded it.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_SHORT = 255
MAX_CONFIG = 200  # entries of a config the server keeps
# Words of a config key that name regularization ('l2', 'dropout_rate', 'weight_decay'...).
_REGULARIZATION_WORDS = frozenset(
    ("l1", "l2", "dropout", "penalty", "lambda", "lam", "reg", "smoothness", "decay")
)
_WORD = re.compile(r"[a-z]+[0-9]*|[0-9]+")


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


def describe_model(model: Any) -> dict[str, Any]:
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
            import keras  # the model is a Keras model: Keras is loaded already

            rate = float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate)))
            if math.isfinite(rate) and rate >= 0:
                info["learning_rate"] = rate
        except Exception:  # a schedule that cannot be read as a number
            pass
    return info


def guess_task(model: Any) -> str:
    """classification when the loss is a cross-entropy (or hinge), else regression."""
    loss = getattr(model, "loss", None)
    name = loss if isinstance(loss, str) else type(loss).__name__ if loss is not None else ""
    lowered = str(name).lower()
    return "classification" if ("entropy" in lowered or "hinge" in lowered) else "regression"


def describe_host() -> dict[str, str | None]:
    """The machine and the command line the script runs as."""
    return {
        "host": short_text(socket.gethostname()),
        "command": short_text(" ".join([Path(sys.executable).name, *sys.argv])),
    }


def describe_framework() -> str | None:
    """The framework the script has loaded, e.g. 'keras 3.15.1 (tensorflow)'; None when
    it has loaded none of Keras, TensorFlow, JAX and PyTorch (yet)."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return short_text(f"keras {keras.__version__} ({keras.backend.backend()})")
    for name in ("tensorflow", "jax", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            return short_text(f"{name} {getattr(module, '__version__', '')}".strip())
    return None


def describe_device() -> str | None:
    """The device the script trains on, as its framework sees it and as the worker's runs
    say it ('GPU:0 NVIDIA H100 80GB HBM3 (tensorflow)', 'CPU (tensorflow)'); None while
    no framework is loaded. Imports nothing the script has not imported."""
    keras = sys.modules.get("keras")
    backend = keras.backend.backend() if keras is not None and hasattr(keras, "backend") else None
    try:
        if backend == "tensorflow" or (backend is None and "tensorflow" in sys.modules):
            tf = sys.modules["tensorflow"]
            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return short_text(f"GPU:0 {details.get('device_name', 'GPU')} (tensorflow)")
            return "CPU (tensorflow)"
        if backend == "jax" or (backend is None and "jax" in sys.modules):
            device = sys.modules["jax"].devices()[0]
            return short_text(f"{device.platform.upper()}:{device.id} {device.device_kind} (jax)")
        if backend == "torch" or (backend is None and "torch" in sys.modules):
            torch = sys.modules["torch"]
            if torch.cuda.is_available():
                return short_text(f"GPU:0 {torch.cuda.get_device_name(0)} (torch)")
            return "CPU (torch)"
    except Exception:  # a framework that cannot say: the run has no device, training goes on
        return None
    return f"CPU ({backend})" if backend else None


def _scalar(value: Any) -> bool | int | float | str | None:
    """A config value as the server keeps it: a bool, int, finite float, short text or None."""
    if value is None or isinstance(value, bool | str):
        return short_text(value) if isinstance(value, str) else value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    try:  # a 0-d tensor or array: its number
        number = float(value)
    except (TypeError, ValueError):
        return short_text(str(value))
    return number if math.isfinite(number) else str(number)


def flatten_config(config: Mapping[str, Any] | None) -> dict[str, bool | int | float | str | None]:
    """A config as flat `key: scalar` pairs: nested mappings joined with dots (`optimizer.lr`),
    lists and tuples by index (`layers.0`), anything else as its text; at most MAX_CONFIG."""
    flat: dict[str, bool | int | float | str | None] = {}

    def walk(prefix: str, value: Any) -> None:
        if len(flat) >= MAX_CONFIG:
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                walk(f"{prefix}.{index}" if prefix else str(index), item)
        else:
            key = prefix.replace("\x00", "")[:100] or "_"
            flat[key] = _scalar(value)

    walk("", config or {})
    return flat


def config_regularization(config: Mapping[str, Any]) -> str | None:
    """A one-line regularization summary from a flat config's penalty-like entries, e.g.
    'l2 0.001 · dropout 0.5' for {"l2": 1e-3, "dropout": 0.5}; None when it has none."""
    parts = []
    for key, value in config.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        words = set(_WORD.findall(key.lower().replace("_", " ")))
        if "decay" in words and "weight" not in words:
            continue  # a learning rate's decay is not a penalty
        if words & _REGULARIZATION_WORDS or any(word.startswith("regulari") for word in words):
            parts.append(f"{key} {value:g}")
    return short_text(" · ".join(parts)) if parts else None
