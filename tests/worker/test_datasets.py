"""Splits, layouts, determinism and the over-fitting knobs of the built-in datasets."""

from dataclasses import fields
from typing import Any

import numpy as np
import pytest

from app.spec import DATASETS, DatasetSpec
from worker.datasets import Splits, load_dataset

SIZES = {"digits": 1797, "breast_cancer": 569, "wine": 178}


def load(name: str, seed: int = 0, layout: Any = "flat", **knobs: Any) -> Splits:
    return load_dataset(DatasetSpec(name=name, **knobs), seed, layout)


def parts(splits: Splits) -> list[np.ndarray]:
    return [getattr(splits, field.name) for field in fields(splits)]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_shapes_dtypes_and_split_sizes(name: str) -> None:
    info = DATASETS[name]
    splits = load(name)
    total = SIZES.get(name, info.default_samples)
    pairs = [(splits.x_train, splits.y_train), (splits.x_val, splits.y_val)]
    pairs.append((splits.x_test, splits.y_test))
    assert sum(len(x) for x, _ in pairs) == total
    for x, y in pairs:
        assert x.dtype == np.float32
        assert x.shape == (len(y), info.features)
        if info.task == "classification":
            assert y.dtype == np.int32 and y.shape == (len(x),)
            assert set(np.unique(y)) <= set(range(info.classes))
        else:
            assert y.dtype == np.float32 and y.shape == (len(x), 1)
    # 60/20/20 by default, to within rounding.
    assert abs(len(splits.x_test) - 0.2 * total) <= 1
    assert abs(len(splits.x_val) - 0.2 * total) <= 2


def test_layouts() -> None:
    assert load("digits", layout="image").x_train.shape[1:] == (8, 8, 1)
    assert load("digits", layout="sequence").x_train.shape[1:] == (64, 1)
    assert load("breast_cancer", layout="sequence").x_val.shape[1:] == (30, 1)
    assert load("periodic_series", layout="sequence").x_test.shape[1:] == (64, 1)
    assert load("periodic_series").x_test.shape[1:] == (64,)
    flat, image = load("digits"), load("digits", layout="image")
    np.testing.assert_array_equal(flat.x_train, image.x_train.reshape(-1, 64))
    with pytest.raises(ValueError, match="no image layout"):
        load("wine", layout="image")


def test_same_seed_same_arrays_other_seed_other_split() -> None:
    knobs = {"train_fraction": 0.5, "label_noise": 0.2}
    first, again, other = (load("wine", seed, **knobs) for seed in (3, 3, 4))
    for a, b in zip(parts(first), parts(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.x_test.shape == other.x_test.shape
    assert not np.array_equal(first.x_test, other.x_test)


def test_classification_splits_are_stratified() -> None:
    splits = load("breast_cancer")
    shares = [np.mean(y) for y in (splits.y_train, splits.y_val, splits.y_test)]
    assert max(shares) - min(shares) < 0.02


def test_train_fraction_shrinks_the_training_split_only() -> None:
    full, tenth = load("digits"), load("digits", train_fraction=0.1)
    assert len(tenth.x_train) == round(0.1 * len(full.x_train))
    np.testing.assert_array_equal(tenth.x_val, full.x_val)
    np.testing.assert_array_equal(tenth.y_test, full.y_test)
    assert set(np.unique(tenth.y_train)) == set(range(10))  # still every class


def test_label_noise_corrupts_training_labels_only() -> None:
    clean, noisy = load("digits", seed=1), load("digits", seed=1, label_noise=0.3)
    np.testing.assert_array_equal(noisy.x_train, clean.x_train)
    np.testing.assert_array_equal(noisy.y_val, clean.y_val)
    np.testing.assert_array_equal(noisy.y_test, clean.y_test)
    changed = np.sum(noisy.y_train != clean.y_train)
    assert changed == round(0.3 * len(clean.y_train))  # each flipped label is another class
    all_wrong = load("digits", seed=1, label_noise=1.0)
    assert np.all(all_wrong.y_train != clean.y_train)


def test_regression_label_noise_is_gaussian_on_training_labels() -> None:
    clean = load("noisy_regression", n_samples=2000)
    noisy = load("noisy_regression", n_samples=2000, label_noise=0.5)
    np.testing.assert_array_equal(noisy.y_val, clean.y_val)
    np.testing.assert_array_equal(noisy.y_test, clean.y_test)
    added = noisy.y_train - clean.y_train
    assert np.std(added) == pytest.approx(0.5 * np.std(clean.y_train), rel=0.1)


def test_features_standardized_with_training_statistics() -> None:
    wine = load("wine")
    np.testing.assert_allclose(wine.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(wine.x_train.std(axis=0), 1.0, atol=1e-4)
    assert abs(wine.x_test.mean()) > 1e-4  # the test split's own statistics were not used
    digits = load("digits")
    assert digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0


def test_generated_datasets_follow_their_knobs() -> None:
    moons = load("moons", n_samples=100)
    assert sum(len(y) for y in (moons.y_train, moons.y_val, moons.y_test)) == 100
    calm, rough = load("moons", noise=0.0), load("moons", noise=1.0)
    assert not np.array_equal(calm.x_train, rough.x_train)
    regression = load("noisy_regression")
    assert len(regression.x_train) + len(regression.x_val) + len(regression.x_test) == 60
    series = load("periodic_series", n_samples=400)
    labels = np.concatenate([series.y_train, series.y_val, series.y_test])
    np.testing.assert_array_equal(np.bincount(labels), [100, 100, 100, 100])


def test_periodic_series_classes_differ_in_frequency() -> None:
    series = load("periodic_series", n_samples=200, noise=0.0)
    # The strongest FFT bin of a clean wave is its class's cycle count: 2, 4, 6 or 8.
    peaks = np.abs(np.fft.rfft(series.x_train, axis=1))[:, 1:].argmax(axis=1) + 1
    np.testing.assert_array_equal(peaks, 2 * series.y_train + 2)


def test_tiny_generated_set_still_splits() -> None:
    splits = load("periodic_series", n_samples=30, test_split=0.05, validation_split=0.05)
    assert len(splits.x_test) >= 1 and len(splits.x_val) >= 1


def _uploaded(tmp_path: Any, x: np.ndarray, y: np.ndarray, **upload: Any) -> DatasetSpec:
    from app.domain import uploads
    from worker.datasets import use_upload_file

    source = tmp_path / "upload.npz"
    np.savez(source, x=x, y=y)
    parsed = uploads.parse(source, "npz", max_bytes=10**8)
    stored = tmp_path / "stored.npz"
    uploads.save(parsed, stored)
    use_upload_file(7, stored)
    return DatasetSpec(
        name="upload",
        upload={
            "id": 7,
            "task": parsed.task,
            "classes": parsed.classes,
            "features": parsed.features,
            "image": parsed.image,
            **upload,
        },
    )


def test_an_uploaded_table_splits_like_a_built_in_one(tmp_path: Any) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(100, 4))
    y = np.asarray(["cat", "dog"] * 50)
    spec = _uploaded(tmp_path, x, y)
    splits = load_dataset(spec, seed=0)
    assert sum(len(part) for part in (splits.x_train, splits.x_val, splits.x_test)) == 100
    assert splits.x_train.shape[1] == 4 and splits.y_train.dtype == np.int32
    assert set(np.unique(splits.y_train)) == {0, 1}
    # Standardized with the training split's statistics, like the tabular built-ins.
    np.testing.assert_allclose(splits.x_train.mean(axis=0), 0.0, atol=1e-5)
    again = load_dataset(spec, seed=0)
    np.testing.assert_array_equal(again.x_val, splits.x_val)
    assert load_dataset(spec, seed=0, layout="sequence").x_test.shape[1:] == (4, 1)


def test_an_uploaded_image_set_has_the_image_layout(tmp_path: Any) -> None:
    x = np.random.default_rng(1).random((60, 6, 5, 2))
    spec = _uploaded(tmp_path, x, np.arange(60) % 3)
    splits = load_dataset(spec, seed=1, layout="image")
    assert splits.x_train.shape[1:] == (6, 5, 2)


def test_an_upload_that_was_not_fetched_or_does_not_match_fails_clearly(tmp_path: Any) -> None:
    spec = _uploaded(tmp_path, np.zeros((20, 3)), np.arange(20) % 2)
    wrong = spec.model_copy(update={"upload": spec.upload.model_copy(update={"features": 9})})
    with pytest.raises(ValueError, match="not the 9 features"):
        load_dataset(wrong, seed=0)
    missing = spec.model_copy(update={"upload": spec.upload.model_copy(update={"id": 8})})
    with pytest.raises(ValueError, match="not fetched"):
        load_dataset(missing, seed=0)
