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
