"""Sweeps: a base spec, axes of settings and seeds, queued as one run per point and seed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field
from sqlmodel import Session

from app.api.deps import ReadSessionDep, SessionDep, SettingsDep
from app.models import Experiment, Status, Sweep
from app.schemas import BAD_BODY, MAX_ID, ErrorOut, UtcDatetime
from app.services import sweeps
from app.spec import ExperimentSpec
from app.sweeps import AxisIn, SweepIn, short_labels

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="The sweep's id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such sweep"}
}


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
    created_at: UtcDatetime
    experiment_ids: list[int]
    counts: dict[str, int] = Field(description="The sweep's runs by status")
    best_val_data_loss: float | None = Field(description="The lowest over the sweep's runs")

    @classmethod
    def of(cls, row: Sweep, experiment_ids: list[int], summary: dict[str, Any]) -> SweepOut:
        assert row.id is not None
        request = SweepIn.model_validate(row.spec)
        return cls(
            id=row.id,
            name=row.name,
            base=request.base,
            axes=request.axes,
            labels=short_labels([axis.path for axis in request.axes]),
            mode=request.mode,
            draws=request.draws,
            seeds=request.seeds,
            prune=request.prune,
            prune_after=request.prune_after,
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
        )


class SweepDetail(SweepOut):
    runs: list[SweepRunOut]


class SweepList(BaseModel):
    items: list[SweepOut]
    total: int


def _detail(session: Session, row: Sweep) -> SweepDetail:
    assert row.id is not None
    runs = sweeps.runs_of(session, row.id)
    summary = sweeps.summaries(session, [row.id])[row.id]
    out = SweepOut.of(row, [run.id for run in runs if run.id is not None], summary)
    return SweepDetail(**out.model_dump(), runs=[SweepRunOut.of(run) for run in runs])


def _get(session: Session, sweep_id: int) -> Sweep:
    row = sweeps.get(session, sweep_id)
    if row is None:
        raise HTTPException(404, detail=f"sweep {sweep_id} not found")
    return row


@router.post("", status_code=201, response_model=SweepDetail, responses=BAD_BODY)
def create(body: SweepIn, session: SessionDep, settings: SettingsDep) -> SweepDetail:
    """Queue one experiment per point of the axes and per seed, tagged with the sweep."""
    row, _ = sweeps.create(session, body, max_attempts=settings.max_attempts)
    return _detail(session, row)


@router.get("", response_model=SweepList)
def list_sweeps(
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> SweepList:
    """List sweeps, newest first, with their runs' counts by status."""
    rows, total = sweeps.list_sweeps(session, limit=limit, offset=offset)
    ids = [row.id for row in rows if row.id is not None]
    summary = sweeps.summaries(session, ids)
    members = sweeps.run_ids(session, ids)
    return SweepList(
        items=[
            SweepOut.of(row, members.get(row.id or 0, []), summary[row.id or 0]) for row in rows
        ],
        total=total,
    )


@router.get("/{sweep_id}", response_model=SweepDetail, responses=NOT_FOUND)
def read(sweep_id: SweepId, session: ReadSessionDep) -> SweepDetail:
    """A sweep and its runs: point, seed, best and final data losses."""
    return _detail(session, _get(session, sweep_id))


@router.post("/{sweep_id}/cancel", response_model=SweepDetail, responses=NOT_FOUND)
def cancel(sweep_id: SweepId, session: SessionDep) -> SweepDetail:
    """Cancel the sweep's unfinished runs; running ones are stopped by their workers."""
    row = _get(session, sweep_id)
    sweeps.cancel(session, sweep_id)
    return _detail(session, row)
