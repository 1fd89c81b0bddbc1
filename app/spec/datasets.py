"""Datasets in the contract: what the built-in ones are, and a run's dataset spec (a
built-in or an uploaded one, and the knobs that provoke over-fitting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from app.spec.basics import MAX_ID, Float, Int, Task, _Strict


@dataclass(frozen=True)
class DatasetInfo:
    """What the builder and the server need to know about a built-in dataset."""

    task: Task
    classes: int  # 0 for regression
    features: int  # flat feature count
    image: tuple[int, int, int] | None = None  # (height, width, channels) for conv2d
    generated: bool = False  # n_samples and noise apply
    default_samples: int = 0
    description: str = ""


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "classification", 10, 64, image=(8, 8, 1), description="scikit-learn 8x8 digits, 1,797"
    ),
    "breast_cancer": DatasetInfo(
        "classification", 2, 30, description="scikit-learn breast cancer, 569 x 30"
    ),
    "wine": DatasetInfo("classification", 3, 13, description="scikit-learn wine, 178 x 13"),
    "moons": DatasetInfo(
        "classification", 2, 2, generated=True, default_samples=500, description="two moons"
    ),
    "noisy_regression": DatasetInfo(
        "regression",
        0,
        1,
        generated=True,
        default_samples=60,
        description="few noisy samples of a smooth curve; over-fits readily",
    ),
    "periodic_series": DatasetInfo(
        "classification",
        4,
        64,
        generated=True,
        default_samples=800,
        description="noisy waves of four frequencies, 64 steps; classify the frequency",
    ),
}

DatasetName = Literal[
    "digits", "breast_cancer", "wine", "moons", "noisy_regression", "periodic_series", "upload"
]
UPLOAD = "upload"  # the dataset name of an uploaded file; `dataset.upload` says which


class UploadRef(_Strict):
    """Which uploaded dataset a run trains on. A client gives `id` only; the server fills
    in the rest from the stored upload when the experiment is submitted."""

    id: Int = Field(ge=1, le=MAX_ID)
    name: str | None = Field(default=None, max_length=200)
    task: Task | None = None
    classes: Int | None = Field(default=None, ge=0, le=10_000)
    features: Int | None = Field(default=None, ge=1, le=1_000_000)
    image: tuple[Int, Int, Int] | None = None
    samples: Int | None = Field(default=None, ge=1)

    @property
    def resolved(self) -> bool:
        return self.task is not None and self.features is not None and self.classes is not None


class DatasetSpec(_Strict):
    """A built-in or uploaded dataset and the knobs that provoke over-fitting on purpose."""

    name: DatasetName
    upload: UploadRef | None = None
    validation_split: Float = Field(default=0.2, ge=0.05, le=0.5)
    test_split: Float = Field(default=0.2, ge=0.05, le=0.5)
    train_fraction: Float = Field(default=1.0, gt=0.0, le=1.0)
    label_noise: Float = Field(default=0.0, ge=0.0, le=1.0)
    n_samples: Int | None = Field(default=None, ge=30, le=100_000)
    noise: Float | None = Field(default=None, ge=0.0, le=10.0)

    @model_validator(mode="after")
    def _generated_only(self) -> DatasetSpec:
        if (self.name == UPLOAD) != (self.upload is not None):
            raise ValueError("'upload' (an uploaded dataset's id) goes with name 'upload' only")
        generated = self.name != UPLOAD and DATASETS[self.name].generated
        if not generated:
            for field in ("n_samples", "noise"):
                if getattr(self, field) is not None:
                    raise ValueError(f"'{field}' applies to generated datasets only")
        if self.validation_split + self.test_split > 0.8:
            raise ValueError("validation_split + test_split leaves under 20% for training")
        return self

    @property
    def resolved(self) -> bool:
        """False for an upload whose details the server has not filled in yet."""
        return self.upload is None or self.upload.resolved

    @property
    def info(self) -> DatasetInfo:
        if self.upload is not None:
            upload = self.upload
            if not upload.resolved:
                raise ValueError(f"uploaded dataset {upload.id} is not resolved yet")
            assert upload.task is not None and upload.features is not None
            return DatasetInfo(
                upload.task,
                upload.classes or 0,
                upload.features,
                image=upload.image,
                description=upload.name or f"upload {upload.id}",
            )
        return DATASETS[self.name]
