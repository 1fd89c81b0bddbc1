"""Per-layer statistics, histograms and the kernel snapshot, written once for both sides."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from reglab.stats import (
    SPARSITY_THRESHOLD,
    finite_values,
    histogram_due,
    kernel_histograms,
    layer_statistics,
    metric_name,
    model_kernels,
    snapshot_kernels,
)


def test_layer_statistics_by_hand() -> None:
    kernel = np.array([[3.0, 0.0], [4.0, 0.0005]])
    stats = layer_statistics([("dense_0", kernel)])
    assert stats["kernel_norm/dense_0"] == pytest.approx(np.sqrt(9 + 16 + 0.0005**2))
    assert stats["sparsity/dense_0"] == 0.5
    assert SPARSITY_THRESHOLD == 1e-3


def test_names_the_server_refuses_are_sanitised() -> None:
    assert metric_name("val loss (%)") == "val_loss____"
    assert metric_name("x" * 150) == "x" * 100
    assert set(layer_statistics([("conv 1d", np.ones(3))])) == {
        "kernel_norm/conv_1d",
        "sparsity/conv_1d",
    }
    assert list(kernel_histograms([("conv 1d", np.ones(3))])) == ["conv_1d"]


def test_finite_values_are_plain_floats() -> None:
    logs = {"loss": np.float32(0.5), "acc": 1, "bad": float("nan"), "text": "x", "n/a": None}
    assert finite_values(logs) == {"loss": 0.5, "acc": 1.0}


def test_kernel_histograms_bin_every_finite_weight() -> None:
    kernel = np.arange(12, dtype="float32").reshape(3, 4)
    broken = np.array([np.nan, np.inf])
    result = kernel_histograms([("dense_0", kernel), ("broken", broken)], bins=4)
    assert list(result) == ["dense_0"]
    assert result["dense_0"]["edges"] == [0.0, 2.75, 5.5, 8.25, 11.0]
    assert result["dense_0"]["counts"] == [3.0, 3.0, 3.0, 3.0]


def test_histogram_due() -> None:
    assert [e for e in range(12) if histogram_due(e, 12, 5)] == [0, 5, 10, 11]
    assert not histogram_due(3, 12, 0, last=True)  # 0 turns them off
    assert histogram_due(3, 12, 5, last=True)  # training ends here (early stopping, cancel)


def test_a_snapshot_keeps_its_values_while_training_moves_on() -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense_0")])
    kernels = model_kernels(model)
    assert [name for name, _ in kernels] == ["dense_0"]
    before = np.array(model.get_layer("dense_0").kernel.numpy())
    snapshot = snapshot_kernels(kernels)
    model.get_layer("dense_0").kernel.assign(before + 1.0)
    assert np.array_equal(np.asarray(snapshot[0][1]), before)
    assert snapshot_kernels([]) == []


def test_a_recurrent_layer_gives_its_kernel_and_its_recurrent_kernel() -> None:
    model = keras.Sequential(
        [keras.Input((5, 2)), keras.layers.LSTM(3, name="lstm_0"), keras.layers.Dense(2)]
    )
    kernels = dict(model_kernels(model))
    assert list(kernels)[:2] == ["lstm_0", "lstm_0/recurrent"]
    assert tuple(kernels["lstm_0"].shape) == (2, 12)  # four gates of 3 units
    assert tuple(kernels["lstm_0/recurrent"].shape) == (3, 12)
    values = layer_statistics(snapshot_kernels(list(kernels.items())[:2]))
    assert set(values) == {
        "kernel_norm/lstm_0",
        "sparsity/lstm_0",
        "kernel_norm/lstm_0/recurrent",
        "sparsity/lstm_0/recurrent",
    }
