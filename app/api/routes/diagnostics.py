"""Diagnostics of regularization: verdicts from the curves and per-layer weight histograms."""

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
def get_verdict(row: ExperimentDep, session: ReadSessionDep) -> VerdictOut:
    """Over-fitting (from which epoch), under-fitting or healthy, from the data losses."""
    return VerdictOut(**diagnostics.verdict_of(session=session, row=row).as_dict())


@router.get("/verdicts", response_model=VerdictsOut)
def get_verdicts(session: ReadSessionDep, ids: IdsDep) -> VerdictsOut:
    """The verdicts of several runs at once (the runs table); unknown ids are listed as missing."""
    found, missing = diagnostics.verdicts(session=session, ids=ids)
    return VerdictsOut(
        verdicts={str(run_id): VerdictOut(**found[run_id].as_dict()) for run_id in found},
        missing=missing,
    )
