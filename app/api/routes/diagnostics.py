"""Diagnostics of regularization: verdicts from the curves (and against a sweep's best
point), the seed statistics of a compare set, and per-layer weight histograms."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ExperimentDep, ExperimentId, IdsDep, ReadSessionDep, SessionDep
from app.api.routes.worker import JSON_LEASE_LOST
from app.schemas import (
    HistogramsAck,
    HistogramsIn,
    HistogramsOut,
    VerdictOut,
    VerdictsOut,
    not_found,
)
from app.schemas.sweeps import CompareSummaryOut
from app.services import diagnostics

router = APIRouter(tags=["diagnostics"])
NOT_FOUND = not_found("experiment")


@router.post(
    "/worker/experiments/{experiment_id}/histograms",
    response_model=HistogramsAck,
    responses=JSON_LEASE_LOST,
)
def upload_histograms(
    experiment_id: ExperimentId, body: HistogramsIn, session: SessionDep
) -> HistogramsAck:
    """Store one epoch's per-layer kernel histograms; a resend stores nothing twice."""
    stored = diagnostics.store_histograms(
        session=session,
        experiment_id=experiment_id,
        lease_token=body.lease_token,
        epoch=body.epoch,
        layers={name: layer.model_dump() for name, layer in body.layers.items()},
    )
    return HistogramsAck(stored=stored)


@router.get(
    "/experiments/{experiment_id}/histograms", response_model=HistogramsOut, responses=NOT_FOUND
)
def get_histograms(row: ExperimentDep, session: ReadSessionDep) -> HistogramsOut:
    """The run's kernel histograms per layer, for the epochs that have them."""
    epochs, layers = diagnostics.histograms(session=session, row=row)
    return HistogramsOut.model_validate({"epochs": epochs, "layers": layers})


@router.get("/experiments/{experiment_id}/verdict", response_model=VerdictOut, responses=NOT_FOUND)
def get_verdict(row: ExperimentDep, session: ReadSessionDep, writer: SessionDep) -> VerdictOut:
    """Over-fitting (from which epoch), still improving, under-fitting or healthy, from the
    data losses; within a sweep also against its best point (`relative`)."""
    judged = diagnostics.verdict_of(session=session, row=row, writer=writer)
    return VerdictOut.model_validate(judged.as_dict())


@router.get("/verdicts", response_model=VerdictsOut)
def get_verdicts(session: ReadSessionDep, writer: SessionDep, ids: IdsDep) -> VerdictsOut:
    """The verdicts of several runs at once (the runs table); unknown ids are listed as missing."""
    found, missing = diagnostics.verdicts(session=session, ids=ids, writer=writer)
    return VerdictsOut(
        verdicts={
            str(run_id): VerdictOut.model_validate(found[run_id].as_dict()) for run_id in found
        },
        missing=missing,
    )


@router.get("/compare/summary", response_model=CompareSummaryOut)
def compare_summary(session: ReadSessionDep, ids: IdsDep) -> CompareSummaryOut:
    """The runs grouped by seed repeats: which group wins by its mean best validation data
    loss, and whether seed noise could explain it (Welch's t-test)."""
    summary, missing, same_data = diagnostics.compare_summary(session=session, ids=ids)
    return CompareSummaryOut.model_validate(
        {**summary.as_dict(), "missing": missing, "same_data": same_data}
    )
