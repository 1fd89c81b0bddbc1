"""The penalties against hand computations, and a model using them saved and loaded."""

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from app.spec import RegularizerSpec
from worker import regularizers
from worker.regularizers import L1, L1L2, L2, Smoothness

WEIGHTS = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.25], [-2.0, 3.0, 1.0]], dtype=np.float32)


def value(regularizer: keras.regularizers.Regularizer, x: np.ndarray) -> float:
    return float(ops.convert_to_numpy(regularizer(ops.convert_to_tensor(x))))


def test_l1_l2_l1l2_match_numpy() -> None:
    assert value(L1(0.1), WEIGHTS) == pytest.approx(0.1 * np.abs(WEIGHTS).sum(), rel=1e-6)
    assert value(L2(0.1), WEIGHTS) == pytest.approx(0.1 * np.square(WEIGHTS).sum(), rel=1e-6)
    expected = 0.1 * np.abs(WEIGHTS).sum() + 0.2 * np.square(WEIGHTS).sum()
    assert value(L1L2(l1=0.1, l2=0.2), WEIGHTS) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (3, 2, 4)], ids=["bias", "dense", "conv1d"])
def test_smoothness_sums_squared_neighbour_differences_on_first_axis(
    shape: tuple[int, ...],
) -> None:
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    expected = 0.5 * sum(float(np.sum((x[k + 1] - x[k]) ** 2)) for k in range(shape[0] - 1))
    assert value(Smoothness(0.5), x) == pytest.approx(expected, rel=1e-5)


def test_smoothness_of_rank_one_by_hand() -> None:
    # (2-1)² + (4-2)² + (4-4)² = 5
    assert value(Smoothness(1.0), np.array([1.0, 2.0, 4.0, 4.0], dtype=np.float32)) == 5.0


def test_smoothness_of_a_single_tap_is_zero() -> None:
    assert value(Smoothness(1.0), np.ones((1, 3, 2), dtype=np.float32)) == 0.0


@pytest.mark.parametrize(
    "regularizer",
    [L1(0.3), L2(0.02), L1L2(l1=0.1, l2=0.2), Smoothness(0.7)],
    ids=lambda regularizer: type(regularizer).__name__,
)
def test_config_round_trip(regularizer: keras.regularizers.Regularizer) -> None:
    again = type(regularizer).from_config(regularizer.get_config())
    assert again.get_config() == regularizer.get_config()
    assert value(again, WEIGHTS) == value(regularizer, WEIGHTS)
    # By the registered name too, as `.keras` files store it.
    restored = keras.regularizers.deserialize(keras.regularizers.serialize(regularizer))
    assert type(restored) is type(regularizer)
    assert restored.get_config() == regularizer.get_config()


def test_from_spec() -> None:
    assert regularizers.from_spec(None) is None
    l1l2 = regularizers.from_spec(RegularizerSpec(kind="l1l2", l2=0.5))
    assert isinstance(l1l2, L1L2)
    assert l1l2.get_config() == {"l1": 0.01, "l2": 0.5}
    assert isinstance(regularizers.from_spec(RegularizerSpec(kind="l1")), L1)
    assert isinstance(regularizers.from_spec(RegularizerSpec(kind="l2", l2=2.0)), L2)
    smooth = regularizers.from_spec(RegularizerSpec(kind="smoothness", smoothness=0.3))
    assert isinstance(smooth, Smoothness)
    assert smooth.smoothness == 0.3


def test_penalty_of_sums_over_weights() -> None:
    spec = RegularizerSpec(kind="l2", l2=0.1)
    bias = np.array([1.0, -2.0], dtype=np.float32)
    total = regularizers.penalty_of([WEIGHTS, bias], spec)
    expected = 0.1 * (np.square(WEIGHTS).sum() + np.square(bias).sum())
    assert float(ops.convert_to_numpy(total)) == pytest.approx(expected, rel=1e-6)
    assert float(ops.convert_to_numpy(regularizers.penalty_of([WEIGHTS], None))) == 0.0
    assert float(ops.convert_to_numpy(regularizers.penalty_of([], spec))) == 0.0


def test_model_with_every_regularizer_saves_and_loads(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 2)),
            keras.layers.Conv1D(
                3,
                3,
                kernel_regularizer=Smoothness(0.1),
                bias_regularizer=L1(0.01),
                activity_regularizer=L2(0.001),
            ),
            keras.layers.Flatten(),
            keras.layers.Dense(
                4,
                kernel_regularizer=L1L2(l1=0.01, l2=0.02),
                bias_regularizer=Smoothness(0.5),
                activity_regularizer=L1(0.001),
            ),
            keras.layers.Dense(1, kernel_regularizer=L2(0.1), activity_regularizer=Smoothness(1)),
        ]
    )
    x = np.random.default_rng(0).normal(size=(6, 8, 2)).astype(np.float32)
    model(x)  # build, so that the penalties have weights to read
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.saving.load_model(path)

    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for original, again in zip(model.layers, loaded.layers, strict=True):
        for attribute in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            before, after = getattr(original, attribute, None), getattr(again, attribute, None)
            assert type(after) is type(before)
            if before is not None:
                assert after.get_config() == before.get_config()
    # The penalties too: weights' from the loaded weights, activities' from an eager call.
    penalties = []
    for each in (model, loaded):
        each(x)
        penalties.append([float(ops.convert_to_numpy(loss)) for loss in each.losses])
    assert len(penalties[0]) == 8
    assert penalties[1] == pytest.approx(penalties[0])
