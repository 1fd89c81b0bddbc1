"""Shapes of runs streamed from users' own training scripts (ReglabCallback, reglab.Run),
and of per-batch series."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.schemas.common import Body, Epoch, ErrorText, FiniteValues, MetricName, ShortText
from app.schemas.metrics import MetricPoint
from app.spec import Bool, Float, Int, OnlyPatternKeys, Status, Task

MAX_STEP = 10**9
ConfigKey = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]
ConfigValue = (
    Bool | Int | Annotated[float, Field(strict=True, allow_inf_nan=False)] | ShortText | None
)
# The device as the run records it (the column holds 200 characters).
DeviceText = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class ScriptLayer(Body):
    name: ShortText
    type: ShortText = Field(description="The Keras class, e.g. Dense")
    units: Int | None = Field(default=None, ge=0, le=10**9)
    regularizer: ShortText | None = Field(default=None, description="e.g. 'L2 0.01'")
    dropout: Float | None = Field(default=None, ge=0, le=1)


class ScriptInfo(Body):
    """What a user's own training script tells about itself (ReglabCallback fills it in
    from the model and `fit`'s parameters); it stands in for the spec of a queued run."""

    task: Task = "classification"
    epochs: Int | None = Field(default=None, ge=1, le=10**6)
    batch_size: Int | None = Field(default=None, ge=1, le=10**7)
    optimizer: ShortText | None = None
    learning_rate: Float | None = Field(default=None, ge=0, le=1e6, allow_inf_nan=False)
    params: Int | None = Field(default=None, ge=0, le=10**13)
    layers: list[ScriptLayer] = Field(default_factory=list, max_length=500)
    regularization: ShortText = Field(default="none", description="e.g. 'L2 0.01 · dropout 0.5'")
    dataset: ShortText | None = None
    host: ShortText | None = None
    command: ShortText | None = Field(default=None, description="The script's command line")
    framework: ShortText | None = Field(default=None, description="e.g. 'keras 3.15 (jax)'")
    log_every: Literal["epoch", "batch"] | Annotated[Int, Field(ge=1, le=10**9)] = Field(
        default="epoch", description="epoch, batch, or every N batches"
    )
    config: Annotated[dict[ConfigKey, ConfigValue], OnlyPatternKeys()] = Field(
        default_factory=dict,
        max_length=200,
        description="A custom loop's settings as its script gave them (reglab.Run's config)",
    )
    series: Annotated[dict[MetricName, ShortText], OnlyPatternKeys()] = Field(
        default_factory=dict,
        max_length=50,
        description="How the script measured a series, by name (e.g. how reg_loss is averaged)",
    )


class ScriptRunIn(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
    script: ScriptInfo = Field(default_factory=ScriptInfo)
    device: DeviceText | None = Field(
        default=None, description="The device the script trains on, e.g. 'CPU (tensorflow)'"
    )


class ScriptDeviceIn(Body):
    device: DeviceText = Field(description="The device the script trains on")


class ScriptTestIn(Body):
    test_metrics: FiniteValues = Field(
        min_length=1,
        max_length=100,
        description="One look at the test split, e.g. test_loss, test_data_loss, test_accuracy",
    )


class ScriptMetricsIn(Body):
    points: list[MetricPoint] = Field(min_length=1, max_length=1000)


class StepPoint(Body):
    step: Int = Field(ge=0, le=MAX_STEP, description="Training step (batch) since the start")
    values: FiniteValues = Field(min_length=1, max_length=100)


class StepsIn(Body):
    points: list[StepPoint] = Field(min_length=1, max_length=5000)


class StepsAck(BaseModel):
    stored: int = Field(description="Values written (a resent step overwrites itself)")


class ScriptHeartbeatOut(BaseModel):
    status: Status
    cancel: bool = Field(description="True when the run has ended: stop sending, stop training")
    lease_seconds: float = Field(description="Silence longer than this fails the run")


class ScriptFinishIn(Body):
    status: Literal["succeeded", "failed", "cancelled"]
    error: ErrorText | None = None
    error_epoch: Epoch | None = None
    test_metrics: FiniteValues | None = Field(
        default=None, max_length=100, description="The test metrics, when the script has them"
    )


class StepSeries(BaseModel):
    points: int = Field(description="Points stored in this series")
    step: list[int] = Field(description="Each bucket's first step")
    last_step: list[int]
    min: list[float]
    max: list[float]
    mean: list[float]
    count: list[int] = Field(description="Points in each bucket (1 everywhere: exact data)")


class StepSeriesSet(BaseModel):
    max_points: int
    series: dict[str, StepSeries]
