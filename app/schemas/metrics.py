"""Shapes of epochs of metrics: uploaded points and the series read back."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.common import Body, Epoch, FiniteValues
from app.spec import Float


class MetricPoint(Body):
    epoch: Epoch
    values: FiniteValues = Field(max_length=500)
    time: Float | None = Field(default=None, ge=0, le=1e11, description="Unix time of epoch end")


class MetricsAck(BaseModel):
    stored: int
    new_epochs: list[int]


class MetricSeries(BaseModel):
    epochs: list[int]
    series: dict[str, list[float | None]] = Field(
        description="One list per metric, aligned with `epochs` (null where a value is missing)"
    )


class RunsMetrics(BaseModel):
    runs: dict[str, MetricSeries] = Field(description="By run id, in the order asked")
    missing: list[int] = Field(description="Asked-for ids that do not exist")
