"""Shapes of what the API reads and returns, kept apart from the tables."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from app.models import Experiment, Status
from app.spec import ExperimentSpec, PluginName, Task


def _as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back without their zone; they are stored in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
MetricName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/\-]+$")
]
Token = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
ShortText = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00]*$")]
# The largest id a row can have: ids are INTEGER columns, 32-bit on PostgreSQL, so a larger
# one names no row (and must never reach a query, where PostgreSQL refuses it).
MAX_ID = 2**31 - 1


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; a worker's error text is kept, not refused.
    return value.replace("\x00", "\ufffd")


ErrorText = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_no_nul)]


class ScriptLayer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ShortText
    type: ShortText = Field(description="The Keras class, e.g. Dense")
    units: int | None = Field(default=None, ge=0, le=10**9)
    regularizer: ShortText | None = Field(default=None, description="e.g. 'L2 0.01'")
    dropout: float | None = Field(default=None, ge=0, le=1)


class ScriptInfo(BaseModel):
    """What a user's own training script tells about itself (ReglabCallback fills it in
    from the model and `fit`'s parameters); it stands in for the spec of a queued run."""

    model_config = ConfigDict(extra="forbid")

    task: Task = "classification"
    epochs: int | None = Field(default=None, ge=1, le=10**6)
    batch_size: int | None = Field(default=None, ge=1, le=10**7)
    optimizer: ShortText | None = None
    learning_rate: float | None = Field(default=None, ge=0, le=1e6, allow_inf_nan=False)
    params: int | None = Field(default=None, ge=0, le=10**13)
    layers: list[ScriptLayer] = Field(default_factory=list, max_length=500)
    regularization: ShortText = Field(default="none", description="e.g. 'L2 0.01 · dropout 0.5'")
    dataset: ShortText | None = None
    host: ShortText | None = None
    command: ShortText | None = Field(default=None, description="The script's command line")
    framework: ShortText | None = Field(default=None, description="e.g. 'keras 3.15 (jax)'")
    log_every: Literal["epoch", "batch"] | int = Field(
        default="epoch", description="epoch, batch, or every N batches"
    )


class ExperimentOut(BaseModel):
    id: int
    name: str
    status: Status
    spec: ExperimentSpec | None = Field(description="The spec of a queued run; null for a script")
    script: ScriptInfo | None = Field(
        default=None, description="What a script run told about itself; null for a queued run"
    )
    regularization: str = Field(description="The regularization in a few words")
    task: Task = Field(description="classification or regression, from the dataset")
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    attempt: int
    max_attempts: int
    worker_id: str | None
    device: str | None = Field(description="The device the run trained on, as Keras saw it")
    error: str | None
    error_epoch: int | None
    epochs_done: int
    epochs_total: int
    last_metrics: dict[str, float]
    best_epoch: int | None
    best_val_data_loss: float | None
    test_metrics: dict[str, float] | None
    has_model: bool
    source: Literal["queue", "script"] = Field(
        description="queue: trained by a reglab worker; script: streamed by a ReglabCallback"
    )
    sweep_id: int | None = Field(description="The sweep this run belongs to")
    point: dict[str, float] | None = Field(description="The swept settings' values, by path")
    group_key: str | None = Field(
        description="Equal for runs whose specs differ only in name, notes and seed"
    )

    @classmethod
    def of(cls, row: Experiment) -> ExperimentOut:
        assert row.id is not None
        spec: ExperimentSpec | None = None
        script: ScriptInfo | None = None
        if row.source == "script":
            script = ScriptInfo.model_validate(row.spec.get("script", {}))
            regularization, task, epochs_total = (
                script.regularization,
                script.task,
                script.epochs or row.epochs_done,
            )
        else:
            spec = ExperimentSpec.model_validate(row.spec)
            regularization, task, epochs_total = (
                spec.describe_regularization(),
                spec.dataset.info.task,
                spec.training.epochs,
            )
        return cls(
            id=row.id,
            name=row.name,
            status=Status(row.status),
            spec=spec,
            script=script,
            regularization=regularization,
            task=task,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            worker_id=row.worker_id,
            device=row.device,
            error=row.error,
            error_epoch=row.error_epoch,
            epochs_done=row.epochs_done,
            epochs_total=epochs_total,
            last_metrics=row.last_metrics or {},
            best_epoch=row.best_epoch,
            best_val_data_loss=row.best_val_data_loss,
            test_metrics=row.test_metrics,
            has_model=row.model_path is not None,
            source="script" if row.source == "script" else "queue",
            sweep_id=row.sweep_id,
            point=row.point,
            group_key=row.group_key,
        )


class ExperimentList(BaseModel):
    items: list[ExperimentOut]
    total: int


class MetricSeries(BaseModel):
    epochs: list[int]
    series: dict[str, list[float | None]] = Field(
        description="One list per metric, aligned with `epochs` (null where a value is missing)"
    )


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    version: str
    streams: int = Field(default=0, description="Event streams open on this server process")


class RunningExperiment(BaseModel):
    id: int
    device: str | None


class WorkerOut(BaseModel):
    id: str
    host: str
    devices: list[str]
    started_at: UtcDatetime
    last_seen: UtcDatetime
    running: list[RunningExperiment]


class PluginOut(BaseModel):
    name: str
    workers: int = Field(description="Live workers that offer it")


class RegularizersOut(BaseModel):
    builtin: list[str] = Field(description="Kinds every worker has")
    plugins: list[PluginOut] = Field(
        description="Plugins registered on the hosts of workers seen in the last few minutes"
    )


class ErrorOut(BaseModel):
    detail: str


# What any route that reads a body may answer before validating it: bytes that do not
# parse as JSON text (not UTF-8, nested deeper than the parser goes) and bodies over the
# server's limit (app/limits.py).
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body could not be parsed"},
    413: {"model": ErrorOut, "description": "The body is larger than the server accepts"},
}


# --- the worker's side of the API -------------------------------------------------------


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker_id: Token
    host: ShortText
    devices: list[ShortText] = Field(default_factory=list, max_length=64)
    slot: ShortText = Field(description="The device of the slot asking for work")
    wait: float = Field(default=20.0, ge=0, le=60, description="Seconds to long-poll")
    plugins: list[PluginName] = Field(
        default_factory=list, max_length=200, description="Regularizer plugins on this host"
    )


class ClaimOut(BaseModel):
    experiment_id: int
    spec: ExperimentSpec
    attempt: int
    lease_token: str
    lease_seconds: float
    heartbeat_seconds: float


class LeaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_token: Token


class HeartbeatOut(BaseModel):
    cancel: bool = Field(description="True when the run was cancelled or pruned: stop its training")
    lease_expires_at: UtcDatetime | None


class StartedIn(LeaseIn):
    device: ShortText


def _finite(values: dict[str, float]) -> dict[str, float]:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"value of '{name}' is not finite")
    return values


FiniteValues = Annotated[dict[MetricName, float], AfterValidator(_finite)]


class MetricPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: int = Field(ge=0, le=1_000_000)
    values: FiniteValues = Field(max_length=500)
    time: float | None = Field(default=None, ge=0, le=1e11, description="Unix time of epoch end")


class MetricsIn(LeaseIn):
    points: list[MetricPoint] = Field(min_length=1, max_length=1000)


class MetricsAck(BaseModel):
    stored: int
    new_epochs: list[int]


class FinishIn(LeaseIn):
    status: Literal["succeeded", "failed"]
    error: ErrorText | None = None
    error_epoch: int | None = Field(default=None, ge=0, le=1_000_000)
    test_metrics: FiniteValues | None = None
    best_epoch: int | None = Field(default=None, ge=0, le=1_000_000)
    retryable: bool = Field(
        default=False,
        description="Only with status failed: the failure was not the run's own (its "
        "training process died), so the server requeues the run while it has attempts left",
    )

    @model_validator(mode="after")
    def _retryable_failures_only(self) -> FinishIn:
        if self.retryable and self.status != "failed":
            raise ValueError("retryable goes with status failed only")
        return self


class RunsMetrics(BaseModel):
    runs: dict[str, MetricSeries] = Field(description="By run id, in the order asked")
    missing: list[int] = Field(description="Asked-for ids that do not exist")
