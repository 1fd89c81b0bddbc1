"""Database tables. API shapes live in app/schemas/; a row is never returned as is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

# The statuses live in the contract; re-exported for the server's modules.
from app.spec import FINAL_STATUSES as FINAL_STATUSES
from app.spec import Status as Status


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC, timezone-aware on the way out (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# Ids (and byte counts) are 64-bit: BIGINT on PostgreSQL, whose INTEGER stops at 2**31 - 1.
# SQLite's INTEGER is 64-bit already, and only `INTEGER PRIMARY KEY` numbers new rows.
Int64 = BigInteger().with_variant(Integer(), "sqlite")


# A deleted row's id is never given to a new one (SQLite reuses the highest id unless told
# not to; PostgreSQL's sequences never go back): a page, a link or a Last-Event-ID that
# names a deleted run or event names nothing rather than another.
_NEVER_REUSED = {"sqlite_autoincrement": True}


def _id() -> Any:
    return Field(default=None, primary_key=True, sa_type=Int64)


def _timestamp(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(UtcDateTime(), nullable=nullable, index=index),
    )


class Experiment(SQLModel, table=True):
    """One run: its spec, where it is in the queue, and a summary of its metrics."""

    __table_args__ = (
        # The claim scans queued rows only, oldest first.
        Index(
            "ix_experiment_queued",
            "id",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        _NEVER_REUSED,
    )

    id: int | None = _id()
    name: str = Field(max_length=200, index=True)
    status: str = Field(default=Status.queued, max_length=16, index=True)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
    started_at: datetime | None = _timestamp()
    finished_at: datetime | None = _timestamp()

    attempt: int = 0
    max_attempts: int = 1
    lease_token: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = _timestamp(index=True)
    worker_id: str | None = Field(default=None, max_length=64)
    device: str | None = Field(default=None, max_length=200)

    error: str | None = None
    error_epoch: int | None = None
    epochs_done: int = 0
    last_metrics: dict[str, float] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    best_epoch: int | None = None
    best_val_data_loss: float | None = None
    test_metrics: dict[str, float] | None = Field(default=None, sa_column=Column(JSON))
    model_path: str | None = Field(default=None, max_length=500)

    # "queue": trained by a reglab worker; "script": streamed by a ReglabCallback in a
    # user's own training script (no lease, no worker).
    source: str = Field(default="queue", max_length=16)
    sweep_id: int | None = Field(default=None, foreign_key="sweep.id", index=True, sa_type=Int64)
    # The sweep point's swept values, {"model.layers[*].regularizer.l2": 0.001, ...}.
    point: dict[str, float] | None = Field(default=None, sa_column=Column(JSON))
    # Sweep points that train together as one packed model share a pack; `pack_index` is
    # the run's member slot in it.
    pack_id: int | None = Field(default=None, foreign_key="pack.id", index=True, sa_type=Int64)
    pack_index: int | None = None
    # Runs whose specs differ only in name, notes and seed share a group (seed repeats).
    group_key: str | None = Field(default=None, max_length=64, index=True)
    # The run's own verdict on its curves (app/domain/verdict.py), stored when it reaches a
    # final status so that queries can filter on it; null before that.
    verdict: str | None = Field(default=None, max_length=16, index=True)
    # Labels given to the run at any time: key → value, or a bare label (null value); and a
    # free text note (set from the spec's notes when queued, editable after).
    tags: dict[str, str | None] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False, server_default=text("'{}'")),
    )
    notes: str | None = None


class Metric(SQLModel, table=True):
    """One value of one named series at one epoch; the key makes uploads idempotent."""

    experiment_id: int = Field(
        foreign_key="experiment.id", primary_key=True, ondelete="CASCADE", sa_type=Int64
    )
    epoch: int = Field(primary_key=True)
    name: str = Field(primary_key=True, max_length=100)
    value: float


class MetricSummary(SQLModel, table=True):
    """Per run and metric: the value at the run's best epoch (lowest `val_data_loss`), the
    last value, the minimum and the maximum, kept at ingest (app/services/summaries.py)
    so that queries filter and sort on metrics without reading every epoch."""

    # A filter on one summary of one metric reads the runs it matches from one of these;
    # keyed by (run, name) without a rowid on SQLite, so each index holds the run's id and
    # a run's summary is one lookup.
    __table_args__ = (
        *(
            Index(f"ix_metricsummary_name_{column}", "name", column)
            for column in ("best_value", "last_value", "min_value", "max_value")
        ),
        {"sqlite_with_rowid": False},
    )

    experiment_id: int = Field(
        foreign_key="experiment.id", primary_key=True, ondelete="CASCADE", sa_type=Int64
    )
    name: str = Field(primary_key=True, max_length=100)
    last_epoch: int
    last_value: float
    min_value: float
    max_value: float
    best_epoch: int | None = None
    best_value: float | None = None


class ExperimentParam(SQLModel, table=True):
    """One value of a run's spec, by its path (`model.layers[0].regularizer.l2`) and the
    path's generic form (`model.layers[*].regularizer.l2`), written once when the run is
    queued (app/domain/spec_values.py): queries over `params.` search these indexes."""

    # Keyed by (run, path) without a rowid on SQLite: each index holds the key too, so a
    # search by generic path and value never reads the table.
    __table_args__ = (
        Index("ix_experimentparam_generic_number", "generic", "number"),
        Index("ix_experimentparam_generic_text", "generic", "text"),
        {"sqlite_with_rowid": False},
    )

    experiment_id: int = Field(
        foreign_key="experiment.id", primary_key=True, ondelete="CASCADE", sa_type=Int64
    )
    path: str = Field(primary_key=True, max_length=300)
    generic: str = Field(max_length=300)
    kind: str = Field(max_length=8)  # number, text or bool (1.0 or 0.0 in `number`)
    number: float | None = None
    text: str | None = Field(default=None, max_length=500)


class Event(SQLModel, table=True):
    """What the event stream sends, in order; its id is the stream's `id:` field.

    A metrics (or histogram) event exists once per (experiment, attempt, epoch): a retried
    run's attempts each have their own, and a replay shows the latest attempt's only.
    Status events have no epoch.
    """

    __table_args__ = (
        UniqueConstraint("experiment_id", "kind", "attempt", "epoch", name="uq_event_epoch"),
        _NEVER_REUSED,
    )

    id: int | None = _id()
    experiment_id: int = Field(
        foreign_key="experiment.id", index=True, ondelete="CASCADE", sa_type=Int64
    )
    kind: str = Field(max_length=16)
    attempt: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    epoch: int | None = None
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )


class Worker(SQLModel, table=True):
    """A worker supervisor, known from its claims and heartbeats."""

    id: str = Field(primary_key=True, max_length=64)
    host: str = Field(max_length=255)
    devices: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    started_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
    last_seen: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
    # Regularizer plugins registered on this worker's host, by name.
    plugins: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Its slots as it last reported them (app/schemas/worker.py SlotReport): what each
    # does, its GPU's memory and utilization.
    slots: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )


class BatchMetric(SQLModel, table=True):
    """One value of one named series at one training step, for runs that log per batch."""

    experiment_id: int = Field(
        foreign_key="experiment.id", primary_key=True, ondelete="CASCADE", sa_type=Int64
    )
    step: int = Field(primary_key=True)
    name: str = Field(primary_key=True, max_length=100)
    value: float


class Pack(SQLModel, table=True):
    """Runs of a sweep that train as one packed model of `members` members (the same
    network, seed and training settings; their own penalty strengths and dropout rates),
    claimed, leased and retried together as one job."""

    __table_args__ = _NEVER_REUSED

    id: int | None = _id()
    sweep_id: int | None = Field(default=None, foreign_key="sweep.id", index=True, sa_type=Int64)
    members: int
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )


class Sweep(SQLModel, table=True):
    """A family of runs: one base spec, the swept settings and the seeds per point."""

    __table_args__ = _NEVER_REUSED

    id: int | None = _id()
    name: str = Field(max_length=200)
    # The request as submitted: base spec, axes, seeds, pruning.
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )


class Dataset(SQLModel, table=True):
    """An uploaded dataset, validated and stored by the server as plain arrays.

    `path` is chosen by the server (relative to the data folder), never taken from a request.
    """

    __table_args__ = _NEVER_REUSED

    id: int | None = _id()
    name: str = Field(max_length=200)
    format: str = Field(max_length=8)  # the upload's format: "csv" or "npz"
    task: str = Field(max_length=16)
    classes: int = 0
    features: int
    image: list[int] | None = Field(default=None, sa_column=Column(JSON))
    samples: int
    class_names: list[str] | None = Field(default=None, sa_column=Column(JSON))
    size_bytes: int = Field(sa_type=Int64)
    sha256: str = Field(max_length=64)
    path: str = Field(max_length=500)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
