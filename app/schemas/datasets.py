"""Shapes of uploaded datasets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.models import Dataset
from app.schemas.common import UtcDatetime


class DatasetOut(BaseModel):
    id: int
    name: str
    format: Literal["csv", "npz"] = Field(description="The format it was uploaded in")
    task: Literal["classification", "regression"]
    classes: int = Field(description="Number of classes; 0 for regression")
    features: int = Field(description="Values per sample")
    image: list[int] | None = Field(description="[height, width, channels] for image data")
    samples: int
    class_names: list[str] | None = Field(description="Class id i is class_names[i]")
    size_bytes: int = Field(description="The size of the uploaded file")
    sha256: str = Field(description="The uploaded file's SHA-256")
    created_at: UtcDatetime

    @classmethod
    def of(cls, row: Dataset) -> DatasetOut:
        assert row.id is not None
        return cls.model_validate(row, from_attributes=True)


class DatasetList(BaseModel):
    items: list[DatasetOut]
    total: int
