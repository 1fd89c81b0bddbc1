"""Shapes of sweeps: the request (a base spec, axes, seeds) and the sweep read back."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.models import Experiment, Sweep
from app.schemas.common import Body, UtcDatetime
from app.spec import Bool, ExperimentSpec, Float, Int, Name, Status

MAX_RUNS = 200  # runs one sweep may queue (points times seeds)

FiniteFloat = Annotated[Float, Field(allow_inf_nan=False)]


class AxisIn(Body):
    """One swept setting: a list of `values`, or a range `low`..`high` on a `scale`
    (drawn at random in random mode, `count` evenly spaced points in grid mode)."""

    path: str = Field(max_length=200, examples=["model.layers[*].regularizer.l2"])
    values: list[FiniteFloat] | None = Field(default=None, min_length=1, max_length=100)
    low: FiniteFloat | None = None
    high: FiniteFloat | None = None
    scale: Literal["log", "linear"] = "log"
    count: Int | None = Field(
        default=None, ge=2, le=100, description="Grid mode: points spaced evenly over a range"
    )


class SweepIn(Body):
    """A base spec, the axes to sweep, and how many seeds to run each point with."""

    name: Name
    base: ExperimentSpec
    axes: list[AxisIn] = Field(default_factory=list, max_length=10)
    mode: Literal["grid", "random"] = "grid"
    draws: Int | None = Field(
        default=None, ge=1, le=MAX_RUNS, description="Random mode: the number of points"
    )
    seeds: Int = Field(default=1, ge=1, le=10, description="Runs per point; seed = base + i")
    prune: Bool = Field(default=False, description="Stop runs that lag the sweep's median")
    prune_after: Int = Field(
        default=3, ge=1, le=1000, description="The first epoch (from 0) at which pruning may act"
    )
    pack: Bool = Field(
        default=True,
        description="Train the runs that differ only in penalty strengths and dropout rates "
        "as one packed model (false: every run on its own)",
    )


class _StoredSweep(SweepIn):
    """A sweep's request as stored: its `seeds` grows past a request's limit as seeds are
    added (POST /api/sweeps/{id}/seeds), bounded by the run limit."""

    seeds: Int = Field(default=1, ge=1, le=MAX_RUNS)


class SeedsIn(Body):
    """More seeds for every point of a sweep."""

    count: Int = Field(ge=1, le=10, description="Seeds to add to every point")


class SweepOut(BaseModel):
    id: int
    name: str
    base: ExperimentSpec
    axes: list[AxisIn]
    labels: list[str] = Field(description="Each axis's short name, as run names show it")
    mode: Literal["grid", "random"]
    draws: int | None
    seeds: int
    prune: bool
    prune_after: int
    pack: bool = Field(description="Whether runs that can train as one packed model do so")
    created_at: UtcDatetime
    experiment_ids: list[int]
    counts: dict[str, int] = Field(description="The sweep's runs by status")
    best_val_data_loss: float | None = Field(description="The lowest over the sweep's runs")

    @classmethod
    def of(
        cls, row: Sweep, experiment_ids: list[int], summary: dict[str, Any], labels: list[str]
    ) -> SweepOut:
        assert row.id is not None
        request = _StoredSweep.model_validate(row.spec)
        return cls(
            id=row.id,
            name=row.name,
            base=request.base,
            axes=request.axes,
            labels=labels,
            mode=request.mode,
            draws=request.draws,
            seeds=request.seeds,
            prune=request.prune,
            prune_after=request.prune_after,
            pack=request.pack,
            created_at=row.created_at,
            experiment_ids=experiment_ids,
            counts=summary["counts"],
            best_val_data_loss=summary["best"],
        )


class SweepRunOut(BaseModel):
    id: int
    name: str
    status: Status
    point: dict[str, float]
    seed: int
    best_val_data_loss: float | None
    best_epoch: int | None
    data_loss: float | None = Field(description="At the last epoch")
    val_data_loss: float | None = Field(description="At the last epoch")
    epochs_done: int
    epochs_total: int
    group_key: str | None
    error: str | None
    pack_id: int | None = Field(default=None, description="The pack it trained in, if any")
    verdict: str | None = Field(
        default=None, description="Its own verdict, stored when it reached a final status"
    )

    @classmethod
    def of(cls, row: Experiment) -> SweepRunOut:
        assert row.id is not None
        training = row.spec.get("training", {})
        last = row.last_metrics or {}
        return cls(
            id=row.id,
            name=row.name,
            status=Status(row.status),
            point=row.point or {},
            seed=int(training.get("seed", 0)),
            best_val_data_loss=row.best_val_data_loss,
            best_epoch=row.best_epoch,
            data_loss=last.get("data_loss"),
            val_data_loss=last.get("val_data_loss"),
            epochs_done=row.epochs_done,
            epochs_total=int(training.get("epochs", row.epochs_done)),
            group_key=row.group_key,
            error=row.error,
            pack_id=row.pack_id,
            verdict=row.verdict,
        )


class PointOut(BaseModel):
    """One setting of a sweep (or one seed group of a compare set) over its seeds."""

    key: str = Field(description="Identifies the point within its summary")
    label: str = Field(examples=["l2=0.001"])
    point: dict[str, float] = Field(description="The swept values (empty in a compare set)")
    n: int = Field(description="Finished (succeeded) runs with a validation data loss")
    mean: float | None = Field(description="Mean best validation data loss; null with n = 0")
    std: float | None = Field(description="Sample standard deviation; null with n < 2")
    train_mean: float | None = Field(description="Mean final training data loss")
    run_ids: list[int] = Field(description="The n runs counted")
    all_run_ids: list[int] = Field(description="Every run of the point, finished or not")
    side: Literal["underfitting", "overfitting", "best"] | None = Field(
        description="Its side of the U against the best point; null where neither clearly"
    )


class ComparisonOut(BaseModel):
    """The best point against another, by Welch's t-test over their seeds."""

    against: Literal["runner_up", "unregularized"]
    label: str
    difference: float = Field(description="Its mean minus the best point's")
    std_error: float | None = Field(description="Of the difference; null with one seed")
    p_value: float | None = Field(description="Two-sided; null with one seed on a side")
    n: list[int] = Field(description="Seeds of the best point and of this one")
    distinguishable: bool = Field(description="p < 0.05: told apart from seed noise")
    text: str


class SummaryOut(BaseModel):
    """Which point wins by its mean over seeds, and whether seed noise could explain it."""

    metric: Literal["best_val_data_loss"]
    points: list[PointOut] = Field(description="By mean; points with no finished run last")
    best: PointOut | None
    runner_up: PointOut | None
    comparisons: list[ComparisonOut]
    judgement: Literal["one_seed", "within_noise", "real_difference", "too_early"]
    text: str = Field(description="One line for the page")


class CompareSummaryOut(SummaryOut):
    missing: list[int] = Field(description="Ids that name no run")
    same_data: bool = Field(description="Whether every run trained on the same dataset")


class SweepDetail(SweepOut):
    runs: list[SweepRunOut]
    summary: SummaryOut


class SweepList(BaseModel):
    items: list[SweepOut]
    total: int
