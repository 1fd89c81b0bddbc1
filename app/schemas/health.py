"""Shapes of the server's health, the workers it knows and the regularizers they offer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.common import UtcDatetime


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    version: str
    streams: int = Field(default=0, description="Event streams open on this server process")


class RunningExperiment(BaseModel):
    id: int
    device: str | None


class GpuOut(BaseModel):
    index: int
    uuid: str
    name: str
    memory_used_mb: float | None
    memory_total_mb: float | None
    utilization_percent: float | None


class SlotRun(BaseModel):
    id: int
    name: str
    status: str


class SlotOut(BaseModel):
    name: str
    state: Literal["starting", "waiting", "training", "stopped"]
    reason: str | None = Field(description="Why a waiting slot waits: no work, or GPU busy")
    gpu: GpuOut | None = Field(description="Its GPU as last reported; null on a CPU slot")
    pack_id: int | None
    runs: list[SlotRun] = Field(description="The runs it trains (a pack's members)")


class WorkerOut(BaseModel):
    id: str
    host: str
    devices: list[str]
    started_at: UtcDatetime
    last_seen: UtcDatetime
    running: list[RunningExperiment]
    state: Literal["live", "silent", "stopped"] = Field(
        description="silent: not heard from for a minute; stopped: it said it stopped"
    )
    seconds_since_seen: float
    plugins: list[str]
    slots: list[SlotOut] = Field(
        description="Its slots as it last reported them (empty for a worker that does not)"
    )


class PluginOut(BaseModel):
    name: str
    workers: int = Field(description="Live workers that offer it")


class RegularizersOut(BaseModel):
    builtin: list[str] = Field(description="Kinds every worker has")
    plugins: list[PluginOut] = Field(
        description="Plugins registered on the hosts of workers seen in the last few minutes"
    )
