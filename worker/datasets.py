"""Built-in and uploaded datasets, split and corrupted the same way for every seed.

Built-in ones are never downloaded: three ship with scikit-learn and three are generated.
An uploaded one is fetched from the server by the training child before training
(`use_upload_file`) and read with `allow_pickle=False`. The knobs that provoke
over-fitting (`train_fraction`, `label_noise`) touch the training split only, so validation
and test always measure true generalization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

from app.spec import DATASETS, UPLOAD, DatasetInfo, DatasetSpec

Layout = Literal["flat", "image", "sequence"]

# Generated datasets are one fixed sample whatever the run's seed (like the bundled ones):
# the seed changes the split, the subsample and the label noise, not the data itself.
GENERATION_SEED = 1234
DEFAULT_NOISE = {"moons": 0.25, "noisy_regression": 0.3, "periodic_series": 0.5}
SERIES_LENGTH = 64
SERIES_CYCLES = (2, 4, 6, 8)  # cycles per window, one per class


# Uploaded datasets this process has on disk, by id (the training child downloads them).
_UPLOAD_FILES: dict[int, Path] = {}


def use_upload_file(upload_id: int, path: Path) -> None:
    """Say where the stored arrays (x, y) of an uploaded dataset are on this host."""
    _UPLOAD_FILES[upload_id] = path


@dataclass
class Splits:
    """Train, validation and test arrays: x float32, y int32 ids or float32 (n, 1)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_dataset(spec: DatasetSpec, seed: int, layout: Layout = "flat") -> Splits:
    """Load, split, subsample, corrupt and standardize the dataset `spec` names.

    Same spec and seed give identical arrays; another seed gives another split.
    Layouts: "flat" (n, features); "image" (n, h, w, c), digits only; "sequence"
    (n, steps, 1), where a tabular dataset's features become the steps.
    """
    info = spec.info
    if layout == "image" and info.image is None:
        raise ValueError(f"dataset '{info.description or spec.name}' has no image layout")
    x, y = _raw(spec)
    classification = info.task == "classification"

    x_train, y_train, x_val, y_val, x_test, y_test = _split(spec, x, y, seed, classification)
    rng = np.random.default_rng((seed, 1))
    x_train, y_train = _subsample(x_train, y_train, spec.train_fraction, rng, classification)
    y_train = _corrupt(y_train, spec.label_noise, info.classes, rng)

    if spec.name == "digits":
        scale = _divide_by(16.0)
    elif spec.name == "periodic_series" or (spec.name == UPLOAD and info.image is not None):
        scale = _standardizer(x_train, per_feature=False)  # keep each wave's shape
    else:
        scale = _standardizer(x_train, per_feature=True)
    x_train, x_val, x_test = (scale(part) for part in (x_train, x_val, x_test))

    def shaped(part: np.ndarray) -> np.ndarray:
        if layout == "image":
            assert info.image is not None
            return part.reshape((-1, *info.image))
        if layout == "sequence":
            return part.reshape((len(part), -1, 1))
        return part

    def labels(part: np.ndarray) -> np.ndarray:
        if classification:
            return part.astype(np.int32)
        return part.astype(np.float32).reshape(-1, 1)

    return Splits(
        x_train=shaped(x_train).astype(np.float32),
        y_train=labels(y_train),
        x_val=shaped(x_val).astype(np.float32),
        y_val=labels(y_val),
        x_test=shaped(x_test).astype(np.float32),
        y_test=labels(y_test),
    )


def _raw(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """All samples of the dataset, x as (n, features) float64."""
    if spec.upload is not None:
        return _uploaded(spec.upload.id, spec.info)
    info = DATASETS[spec.name]
    n = spec.n_samples or info.default_samples
    noise = spec.noise if spec.noise is not None else DEFAULT_NOISE.get(spec.name, 0.0)
    if spec.name == "digits":
        x, y = sk_datasets.load_digits(return_X_y=True)
    elif spec.name == "breast_cancer":
        x, y = sk_datasets.load_breast_cancer(return_X_y=True)
    elif spec.name == "wine":
        x, y = sk_datasets.load_wine(return_X_y=True)
    elif spec.name == "moons":
        x, y = sk_datasets.make_moons(n_samples=n, noise=noise, random_state=GENERATION_SEED)
    elif spec.name == "noisy_regression":
        x, y = noisy_curve(n, noise, np.random.default_rng(GENERATION_SEED))
    elif spec.name == "periodic_series":
        x, y = periodic_series(n, noise, np.random.default_rng(GENERATION_SEED))
    else:
        raise ValueError(f"unknown dataset '{spec.name}'")
    return np.asarray(x, dtype=np.float64), np.asarray(y)


def _uploaded(upload_id: int, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    path = _UPLOAD_FILES.get(upload_id)
    if path is None:
        raise ValueError(f"uploaded dataset {upload_id} was not fetched to this host")
    with np.load(path, allow_pickle=False) as arrays:
        x, y = arrays["x"], arrays["y"]
    if x.shape[0] != y.shape[0] or int(np.prod(x.shape[1:])) != info.features:
        raise ValueError(
            f"uploaded dataset {upload_id} has x {x.shape}, y {y.shape}: "
            f"not the {info.features} features it was registered with"
        )
    return x.reshape(len(x), -1).astype(np.float64), y


def noisy_curve(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` points of `sin(x) + 0.3·x` on [-3, 3] plus gaussian noise: few enough to over-fit."""
    x = rng.uniform(-3.0, 3.0, size=(n, 1))
    y = np.sin(x[:, 0]) + 0.3 * x[:, 0] + rng.normal(0.0, noise, size=n)
    return x, y


def periodic_series(
    n: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`n` sine waves of 64 steps, random phase and amplitude; the class is the frequency."""
    y = rng.permutation(np.arange(n) % len(SERIES_CYCLES))
    cycles = np.asarray(SERIES_CYCLES, dtype=np.float64)[y]
    t = np.arange(SERIES_LENGTH) / SERIES_LENGTH
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    amplitude = rng.uniform(0.5, 1.5, size=(n, 1))
    x = amplitude * np.sin(2 * np.pi * cycles[:, None] * t[None, :] + phase)
    x += rng.normal(0.0, noise, size=x.shape)
    return x, y


def _split(
    spec: DatasetSpec, x: np.ndarray, y: np.ndarray, seed: int, classification: bool
) -> tuple[np.ndarray, ...]:
    """Test split first, then validation from the rest, stratified where the sizes allow."""
    x_rest, x_test, y_rest, y_test = _stratified_split(x, y, spec.test_split, seed, classification)
    # validation_split is a fraction of the whole dataset, not of what the test split left.
    val_fraction = spec.validation_split / (1.0 - spec.test_split)
    x_train, x_val, y_train, y_val = _stratified_split(
        x_rest, y_rest, val_fraction, seed + 1, classification
    )
    return x_train, y_train, x_val, y_val, x_test, y_test


def _stratified_split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, classification: bool
) -> list[np.ndarray]:
    state = seed % 2**32
    if classification:
        try:
            return train_test_split(x, y, test_size=fraction, stratify=y, random_state=state)
        except ValueError:
            pass  # a class too small to stratify (tiny generated sets): split plainly
    return train_test_split(x, y, test_size=fraction, random_state=state)


def _subsample(
    x: np.ndarray, y: np.ndarray, fraction: float, rng: np.random.Generator, classification: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Keep `fraction` of the training split (at least one sample), stratified if it can."""
    if fraction >= 1.0:
        return x, y
    keep = max(1, round(fraction * len(x)))
    if keep >= len(x):
        return x, y
    if classification:
        classes = len(np.unique(y))
        if classes <= keep <= len(x) - classes:
            try:
                x_keep, _, y_keep, _ = train_test_split(
                    x, y, train_size=keep, stratify=y, random_state=int(rng.integers(2**31))
                )
                return x_keep, y_keep
            except ValueError:
                pass
    index = np.sort(rng.choice(len(x), size=keep, replace=False))
    return x[index], y[index]


def _corrupt(
    y: np.ndarray, label_noise: float, classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Training labels with noise: a fraction moved to another class, or gaussian noise."""
    if label_noise <= 0.0:
        return y
    if classes == 0:
        return y + rng.normal(0.0, label_noise * float(np.std(y)), size=y.shape)
    y = y.copy()
    flip = rng.choice(len(y), size=round(label_noise * len(y)), replace=False)
    # A shift of 1..classes-1 always lands on a different class, uniformly.
    y[flip] = (y[flip] + rng.integers(1, classes, size=len(flip))) % classes
    return y


def _divide_by(value: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda part: part / value


def _standardizer(x_train: np.ndarray, per_feature: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Standardize with the training split's mean and std (a constant feature stays 0)."""
    axis = 0 if per_feature else None
    mean = x_train.mean(axis=axis)
    std = x_train.std(axis=axis)
    std = np.where(std > 0, std, 1.0)
    return lambda part: (part - mean) / std
