"""Shapes of the worker's side of the API: claims, leases, uploads, the end of a run."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.common import Body, Epoch, ErrorText, FiniteValues, ShortText, Token, UtcDatetime
from app.schemas.metrics import MetricPoint
from app.spec import MAX_ID, Bool, ExperimentSpec, Float, Int, PluginName, json_bounds


class ClaimIn(Body):
    worker_id: Token
    host: ShortText
    devices: list[ShortText] = Field(default_factory=list, max_length=64)
    slot: ShortText = Field(description="The device of the slot asking for work")
    wait: Float = Field(
        default=20.0,
        ge=0,
        le=60,
        description="Seconds to long-poll: the answer comes when a run is claimed, or "
        "empty (204) once this long (at most the server's own limit) has passed without one",
    )
    plugins: list[PluginName] = Field(
        default_factory=list, max_length=200, description="Regularizer plugins on this host"
    )


class GpuReport(Body):
    """A GPU as nvidia-smi saw it (MiB and percent; null where it did not say)."""

    index: Int = Field(ge=0, le=1024)
    uuid: ShortText
    name: ShortText
    memory_used_mb: Float | None = Field(default=None, ge=0, le=1e9)
    memory_total_mb: Float | None = Field(default=None, ge=0, le=1e9)
    utilization_percent: Float | None = Field(default=None, ge=0, le=100)


class SlotReport(Body):
    """What one slot of a worker is doing."""

    name: ShortText = Field(description="The slot's device, as in the claim's `slot`")
    state: Literal["starting", "waiting", "training", "stopped"]
    reason: ShortText | None = Field(
        default=None, description="Why a waiting slot waits: no work, or its GPU is busy"
    )
    experiment_ids: list[Annotated[Int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=1000, description="The runs it trains (a pack's members)"
    )
    pack_id: Int | None = Field(default=None, ge=1, le=MAX_ID)
    gpu: GpuReport | None = Field(default=None, description="Its GPU now; null on a CPU slot")


class WorkerReportIn(Body):
    """A worker's slots, sent every few seconds and whenever one changes what it does."""

    worker_id: Token
    host: ShortText
    devices: list[ShortText] = Field(default_factory=list, max_length=256)
    plugins: list[PluginName] = Field(
        default_factory=list, max_length=200, description="Regularizer plugins on this host"
    )
    slots: list[SlotReport] = Field(max_length=256)


class PackMember(BaseModel):
    experiment_id: int
    index: int = Field(description="The member's slot in the packed model")
    spec: ExperimentSpec
    attempt: int


class PackClaim(BaseModel):
    """Sweep points claimed together, to train as one packed model under one lease."""

    id: int
    members: list[PackMember]


class ClaimOut(BaseModel):
    experiment_id: int = Field(description="The run claimed (a pack's first member)")
    spec: ExperimentSpec
    attempt: int
    lease_token: str
    lease_seconds: float
    heartbeat_seconds: float
    pack: PackClaim | None = Field(
        default=None,
        description="Set when the run is a member of a pack: every member claimed with it "
        "(the run itself included), all under this lease token",
    )


class LeaseIn(Body):
    lease_token: Token


class HeartbeatOut(BaseModel):
    cancel: bool = Field(description="True when the run was cancelled or pruned: stop its training")
    lease_expires_at: UtcDatetime | None


class PackHeartbeatOut(BaseModel):
    cancel: bool = Field(description="True when no member is left running: stop the pack")
    stopped: list[int] = Field(description="The members cancelled or pruned: stop training them")


class StartedIn(LeaseIn):
    device: ShortText


class MetricsIn(LeaseIn):
    points: list[MetricPoint] = Field(min_length=1, max_length=1000)


class RunMetricPoint(MetricPoint):
    experiment_id: Int = Field(ge=1, le=MAX_ID, description="The run (a pack's member)")


class PointsIn(LeaseIn):
    """Epochs of the runs one lease holds (a pack's members), stored in one transaction."""

    points: list[RunMetricPoint] = Field(min_length=1, max_length=10_000)


class PointsAck(BaseModel):
    stored: int = Field(description="Values stored")
    new_epochs: dict[int, list[int]] = Field(description="Each run's epochs new to the server")
    stopped: list[int] = Field(
        description="Runs cancelled or pruned: their points were not stored; stop training them"
    )


def _only_failures_retry(schema: dict[str, Any]) -> None:
    """What FinishIn's validator checks, said in its schema too: only a failure retries."""
    json_bounds(schema)
    schema["anyOf"] = [
        {"properties": {"status": {"const": "failed"}}},
        {"properties": {"retryable": {"const": False}}},
    ]


class FinishIn(LeaseIn):
    """The end of an attempt: succeeded, or failed with its error and epoch."""

    model_config = ConfigDict(json_schema_extra=_only_failures_retry)

    status: Literal["succeeded", "failed"]
    error: ErrorText | None = None
    error_epoch: Epoch | None = None
    test_metrics: FiniteValues | None = None
    best_epoch: Epoch | None = None
    retryable: Bool = Field(
        default=False,
        description="Only with status failed: the failure was not the run's own (its "
        "training process died), so the server requeues the run while it has attempts left",
    )

    @model_validator(mode="after")
    def _retryable_failures_only(self) -> FinishIn:
        if self.retryable and self.status != "failed":
            raise ValueError("retryable goes with status failed only")
        return self
