"""Shapes of the worker's side of the API: claims, leases, uploads, the end of a run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.common import Epoch, ErrorText, FiniteValues, ShortText, Token, UtcDatetime
from app.schemas.metrics import MetricPoint
from app.spec import Bool, ExperimentSpec, Float, PluginName


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

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


class MetricsIn(LeaseIn):
    points: list[MetricPoint] = Field(min_length=1, max_length=1000)


class FinishIn(LeaseIn):
    """The end of an attempt: succeeded, or failed with its error and epoch."""

    model_config = ConfigDict(
        # What the validator below checks, said in the schema too: only a failure retries.
        json_schema_extra={
            "anyOf": [
                {"properties": {"status": {"const": "failed"}}},
                {"properties": {"retryable": {"const": False}}},
            ]
        }
    )

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
