"""Experiments: submit, list, read, cancel, and their metrics and model."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import FileResponse

from app.api.deps import ExperimentDep, ReadSessionDep, SessionDep, SettingsDep
from app.models import Status
from app.schemas import (
    BAD_BODY,
    MAX_ID,
    ErrorOut,
    ExperimentList,
    ExperimentOut,
    MetricSeries,
)
from app.services import datasets, experiments, metrics
from app.spec import ExperimentSpec
from app.storage import remove_artifacts, resolve_artifact

router = APIRouter(prefix="/experiments", tags=["experiments"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such experiment"}
}


@router.post("", status_code=201, response_model=ExperimentOut, responses=BAD_BODY)
def submit(spec: ExperimentSpec, session: SessionDep, settings: SettingsDep) -> ExperimentOut:
    """Queue an experiment."""
    spec = datasets.resolve(session, spec)
    row = experiments.create(session=session, spec=spec, max_attempts=settings.max_attempts)
    return ExperimentOut.of(row)


@router.get("", response_model=ExperimentList)
def list_experiments(
    session: ReadSessionDep,
    status: Status | None = None,
    name: Annotated[
        str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="Part of the name")
    ] = None,
    ids: Annotated[
        str | None,
        Query(
            max_length=2000,
            pattern=r"^\d{1,18}(,\d{1,18}){0,99}$",
            description="Only these runs, comma-separated ids (≤ 100)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> ExperimentList:
    """List experiments, newest first."""
    rows, total = experiments.list_experiments(
        session,
        status=status,
        name=name,
        ids=[i for i in map(int, ids.split(",")) if i <= MAX_ID] if ids else None,
        limit=limit,
        offset=offset,
    )
    return ExperimentList(items=[ExperimentOut.of(row) for row in rows], total=total)


@router.get("/{experiment_id}", response_model=ExperimentOut, responses=NOT_FOUND)
def read(experiment: ExperimentDep) -> ExperimentOut:
    """One experiment, with a summary of its latest metrics."""
    return ExperimentOut.of(experiment)


@router.get(
    "/{experiment_id}/metrics",
    response_model=MetricSeries,
    responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}}},
)
def read_metrics(
    experiment: ExperimentDep,
    session: ReadSessionDep,
    format: Literal["json", "csv"] = "json",
) -> MetricSeries | Response:
    """Every metric of a run per epoch, as JSON columns or as CSV."""
    assert experiment.id is not None
    epochs, columns = metrics.series(session, experiment.id)
    if format == "csv":
        filename = f"reglab-{experiment.id}-metrics.csv"
        return Response(
            metrics.to_csv(epochs, columns),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return MetricSeries(epochs=epochs, series=columns)


@router.post(
    "/{experiment_id}/cancel",
    response_model=ExperimentOut,
    responses={**NOT_FOUND, 409: {"model": ErrorOut, "description": "Already ended"}},
)
def cancel(experiment: ExperimentDep, session: SessionDep) -> ExperimentOut:
    """Cancel a queued or running experiment; a running one is stopped by its worker."""
    assert experiment.id is not None
    row = experiments.get(session, experiment.id)
    assert row is not None
    if not experiments.cancel(session, row):
        raise HTTPException(409, detail=f"experiment {row.id} already {row.status}")
    return ExperimentOut.of(row)


@router.delete(
    "/{experiment_id}",
    status_code=204,
    responses={**NOT_FOUND, 409: {"model": ErrorOut, "description": "Still running"}},
)
def delete(experiment: ExperimentDep, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete an experiment that is not running, with its metrics and model."""
    assert experiment.id is not None
    row = experiments.get(session, experiment.id)
    assert row is not None
    try:
        experiments.delete(session, row)
    except experiments.StillRunning as error:
        raise HTTPException(409, detail=str(error)) from None
    remove_artifacts(settings, experiment.id)
    return Response(status_code=204)


@router.get(
    "/{experiment_id}/model",
    response_class=FileResponse,
    responses={**NOT_FOUND, 200: {"content": {"application/octet-stream": {}}}},
)
def download_model(experiment: ExperimentDep, settings: SettingsDep) -> FileResponse:
    """The trained model as a `.keras` file."""
    path = resolve_artifact(settings, experiment.model_path) if experiment.model_path else None
    if path is None or not path.is_file():
        raise HTTPException(404, detail=f"experiment {experiment.id} has no saved model")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", experiment.name).strip("-")[:60] or "model"
    return FileResponse(
        path, media_type="application/octet-stream", filename=f"{slug}-{experiment.id}.keras"
    )
