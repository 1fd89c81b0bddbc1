"""Sweeps: a base spec, axes of settings and seeds, queued as one run per point and seed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import ReadSessionDep, SessionDep, SettingsDep, SweepDep, SweepId
from app.schemas import BAD_BODY, ErrorOut, SweepDetail, SweepIn, SweepList, not_found
from app.schemas.sweeps import SeedsIn
from app.services import sweeps

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
NOT_FOUND = not_found("sweep")


@router.post("", status_code=201, response_model=SweepDetail, responses=BAD_BODY)
def create(body: SweepIn, session: SessionDep, settings: SettingsDep) -> SweepDetail:
    """Queue one experiment per point of the axes and per seed, tagged with the sweep; the
    points that differ only in penalty strengths and dropout rates train together as one
    packed model (each still its own run), unless `pack` is false."""
    row = sweeps.create(
        session=session,
        request=body,
        max_attempts=settings.max_attempts,
        max_pack=settings.max_pack,
    )
    return sweeps.detail(session=session, row=row)


@router.get("", response_model=SweepList)
def list_sweeps(
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> SweepList:
    """List sweeps, newest first, with their runs' counts by status."""
    return sweeps.listing(session=session, limit=limit, offset=offset)


@router.get("/{sweep_id}", response_model=SweepDetail, responses=NOT_FOUND)
def read(sweep: SweepDep, session: ReadSessionDep) -> Response:
    """A sweep and its runs (point, seed, best and final data losses), and its summary:
    the points by their mean over seeds, the best and the runner-up, and whether seed
    noise could explain the difference."""
    detail = sweeps.detail(session=session, row=sweep)
    # Serialized once here: FastAPI would dump and validate the model again, a third of
    # the answer's time at a sweep of 1,000 runs.
    return Response(detail.model_dump_json(), media_type="application/json")


@router.post("/{sweep_id}/cancel", response_model=SweepDetail, responses=NOT_FOUND)
def cancel(sweep_id: SweepId, session: SessionDep) -> SweepDetail:
    """Cancel the sweep's unfinished runs; running ones are stopped by their workers."""
    row = sweeps.cancel(session=session, sweep_id=sweep_id)
    return sweeps.detail(session=session, row=row)


@router.post(
    "/{sweep_id}/seeds",
    response_model=SweepDetail,
    responses={
        **NOT_FOUND,
        **BAD_BODY,
        409: {"model": ErrorOut, "description": "No runs left to repeat"},
    },
)
def add_seeds(
    sweep_id: SweepId, body: SeedsIn, session: SessionDep, settings: SettingsDep
) -> SweepDetail:
    """Queue `count` more seeds for every point of the sweep (seeds continue after the
    largest used; the new runs pack like the sweep's own); 422 past the sweep's run limit,
    409 when every run of the sweep was deleted."""
    row = sweeps.add_seeds(
        session=session,
        sweep_id=sweep_id,
        count=body.count,
        max_attempts=settings.max_attempts,
        max_pack=settings.max_pack,
    )
    return sweeps.detail(session=session, row=row)
