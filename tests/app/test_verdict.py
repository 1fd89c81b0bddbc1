"""The verdict rule on synthetic curves, and on a real tiny run built to over-fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.domain.verdict import MIN_EPOCHS, smooth, trivial_loss, verdict
from tests.factories import make_spec


def noisy(values: np.ndarray, seed: int = 0, scale: float = 0.01) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in values * (1 + scale * rng.standard_normal(len(values)))]


EPOCHS = np.arange(40)
FALLING = 1.0 * np.exp(-EPOCHS / 8) + 0.05


def test_overfitting_from_the_validation_minimum() -> None:
    # Validation falls to a minimum at epoch 12, then climbs; training keeps falling.
    val = 0.6 + 0.002 * (EPOCHS - 12) ** 2
    result = verdict(list(EPOCHS), noisy(FALLING), noisy(val, seed=1))
    assert result.verdict == "overfitting"
    assert result.from_epoch is not None and 10 <= result.from_epoch <= 15
    assert "raise λ" in result.hint and "dropout" in result.hint
    assert f"epoch {result.from_epoch}" in result.reason


def test_one_noisy_spike_is_not_overfitting() -> None:
    val = list(FALLING + 0.1)
    val[-1] = val[-1] * 3  # one bad epoch at the end
    result = verdict(list(EPOCHS), list(FALLING), val)
    assert result.verdict == "healthy"


def test_validation_rising_with_training_rising_is_not_overfitting() -> None:
    rising = list(0.5 + 0.01 * EPOCHS)
    assert verdict(list(EPOCHS), rising, [v + 0.1 for v in rising]).verdict != "overfitting"


def test_underfitting_high_and_flat() -> None:
    flat = noisy(np.full(len(EPOCHS), 2.2), scale=0.002)
    flat_val = noisy(np.full(len(EPOCHS), 2.25), seed=2, scale=0.002)
    result = verdict(list(EPOCHS), flat, flat_val, trivial_loss=math.log(10))
    assert result.verdict == "underfitting"
    assert result.from_epoch is None
    assert "lower λ" in result.hint
    assert "trivial loss" in result.reason


def test_underfitting_against_the_first_epoch_without_a_trivial_loss() -> None:
    # Falls a little at first, then stays at 80% of where it started.
    curve = list(0.8 + 0.2 * np.exp(-EPOCHS / 2))
    result = verdict(list(EPOCHS), curve, [v * 1.05 for v in curve])
    assert result.verdict == "underfitting"
    assert "first epoch" in result.reason


def test_healthy_when_both_fall() -> None:
    result = verdict(list(EPOCHS), noisy(FALLING), noisy(FALLING + 0.05, seed=3))
    assert result.verdict == "healthy"
    assert result.as_dict()["verdict"] == "healthy"


def test_too_early_and_gaps() -> None:
    few = verdict([0, 1, 2], [1.0, 0.9, 0.8], [1.0, 0.95, 0.9])
    assert few.verdict == "too_early" and f"needs {MIN_EPOCHS}" in few.reason
    # Missing and non-finite points are skipped, not counted.
    gappy = verdict(
        range(6), [1.0, None, 0.8, float("nan"), 0.6, 0.5], [1.0, 0.9, None, 0.8, 0.7, 0.6]
    )
    assert gappy.verdict == "too_early"


def test_smooth_is_a_centred_mean() -> None:
    assert smooth([3.0, 0.0, 3.0, 6.0], 3) == [1.5, 2.0, 3.0, 4.5]


def test_trivial_loss_of_a_spec() -> None:
    assert trivial_loss(make_spec()) == pytest.approx(math.log(2))  # two moons
    assert trivial_loss({"name": "x"}) is None  # not a spec
    assert trivial_loss(None) is None


OVERFITTING_SPEC = {
    "name": "built to over-fit",
    "dataset": {"name": "digits", "train_fraction": 0.15, "label_noise": 0.2},
    "model": {"layers": [{"type": "dense", "units": 256}, {"type": "dense", "units": 256}]},
    "training": {"epochs": 40, "batch_size": 16, "learning_rate": 0.003, "histogram_every": 0},
}


def test_a_real_run_built_to_overfit() -> None:
    """A big net on 15% of digits with a fifth of the labels wrong memorizes the noise."""
    from app.spec import ExperimentSpec
    from worker.training import train

    result = train(ExperimentSpec.model_validate(OVERFITTING_SPEC))
    history = result.history
    judged = verdict(range(40), history["data_loss"], history["val_data_loss"])
    assert judged.verdict == "overfitting", (judged, history["val_data_loss"])
    assert judged.from_epoch is not None
    val = history["val_data_loss"]
    # It starts near the best epoch and the validation loss ends well above it.
    assert abs(judged.from_epoch - int(np.argmin(val))) <= 4
    assert val[-1] > min(val) * 1.05
