"""Diagnostics of regularization: verdicts from the curves and per-layer weight histograms."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, model_validator
from sqlmodel import col, select

from app import diagnostics
from app.api.deps import ExperimentDep, ExperimentId, ReadSessionDep, SessionDep
from app.api.routes.worker import JSON_LEASE_LOST
from app.models import Experiment
from app.schemas import MAX_ID, ErrorOut, Token
from app.services import metrics, queue

router = APIRouter(tags=["diagnostics"])

LayerName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/\-]+$")]
Finite = Annotated[float, Field(ge=-1e30, le=1e30, allow_inf_nan=False)]
Count = Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)]
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorOut, "description": "No such experiment"}
}


class LayerHistogram(BaseModel):
    """One layer's kernel histogram: `len(edges) == len(counts) + 1`, edges ascending."""

    edges: list[Finite] = Field(min_length=2, max_length=201)
    counts: list[Count] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _shape(self) -> LayerHistogram:
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError("edges needs one more value than counts")
        if any(b < a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must not decrease")
        return self


class HistogramsIn(BaseModel):
    lease_token: Token
    epoch: int = Field(ge=0, le=1_000_000)
    layers: dict[LayerName, LayerHistogram] = Field(max_length=100)


class HistogramsAck(BaseModel):
    stored: bool = Field(description="False when this epoch's histograms were stored before")


class HistogramsOut(BaseModel):
    epochs: list[int] = Field(description="The epochs with histograms, ascending")
    layers: dict[str, list[LayerHistogram | None]] = Field(
        description="Per layer, one histogram per epoch of `epochs` (null where missing)"
    )


class VerdictOut(BaseModel):
    verdict: Literal["overfitting", "underfitting", "healthy", "too_early"]
    from_epoch: int | None = Field(description="Where over-fitting starts (the validation minimum)")
    hint: str
    reason: str


class VerdictsOut(BaseModel):
    verdicts: dict[str, VerdictOut] = Field(description="By run id")
    missing: list[int] = Field(description="Ids that name no run")


@router.post(
    "/worker/experiments/{experiment_id}/histograms",
    response_model=HistogramsAck,
    responses=JSON_LEASE_LOST,
)
def upload_histograms(
    experiment_id: ExperimentId, body: HistogramsIn, session: SessionDep
) -> HistogramsAck:
    """Store one epoch's per-layer kernel histograms; a resend stores nothing twice."""
    row = queue.held(session, experiment_id, body.lease_token)
    layers = {name: layer.model_dump() for name, layer in body.layers.items()}
    stored = diagnostics.store_histograms(session, row, body.epoch, layers)
    session.commit()
    return HistogramsAck(stored=stored)


@router.get(
    "/experiments/{experiment_id}/histograms", response_model=HistogramsOut, responses=NOT_FOUND
)
def get_histograms(row: ExperimentDep, session: ReadSessionDep) -> HistogramsOut:
    """The run's kernel histograms per layer, for the epochs that have them."""
    assert row.id is not None
    epochs, layers = diagnostics.histograms(session, row.id)
    return HistogramsOut.model_validate({"epochs": epochs, "layers": layers})


@router.get("/experiments/{experiment_id}/verdict", response_model=VerdictOut, responses=NOT_FOUND)
def get_verdict(row: ExperimentDep, session: ReadSessionDep) -> VerdictOut:
    """Over-fitting (from which epoch), under-fitting or healthy, from the data losses."""
    assert row.id is not None
    epochs, columns = metrics.series_of_runs(session, [row.id], _VERDICT_METRICS).get(
        row.id, ([], {})
    )
    return VerdictOut(**diagnostics.verdict_of_run(row, epochs, columns).as_dict())


_VERDICT_METRICS = ["data_loss", "val_data_loss"]


@router.get("/verdicts", response_model=VerdictsOut)
def get_verdicts(
    session: ReadSessionDep,
    ids: Annotated[
        str,
        Query(
            max_length=2000,
            pattern=r"^\d{1,18}(,\d{1,18}){0,99}$",
            description="Run ids, comma-separated (≤ 100)",
        ),
    ],
) -> VerdictsOut:
    """The verdicts of several runs at once (the runs table); unknown ids are listed as missing."""
    wanted = list(dict.fromkeys(int(part) for part in ids.split(",")))
    possible = [i for i in wanted if i <= MAX_ID]
    rows: dict[int, Experiment] = {
        row.id: row
        for row in session.exec(select(Experiment).where(col(Experiment.id).in_(possible))).all()
        if row.id is not None
    }
    data = metrics.series_of_runs(session, list(rows), _VERDICT_METRICS)
    verdicts = {}
    for run_id, row in rows.items():
        epochs, columns = data.get(run_id, ([], {}))
        verdicts[str(run_id)] = VerdictOut(
            **diagnostics.verdict_of_run(row, epochs, columns).as_dict()
        )
    return VerdictsOut(verdicts=verdicts, missing=[i for i in wanted if i not in rows])
