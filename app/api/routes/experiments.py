"""Experiments: submit, list, read, cancel, delete, and their metrics and model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from app.api.deps import (
    ExperimentDep,
    ExperimentId,
    OptionalIdsDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
)
from app.models import Status
from app.schemas import (
    BAD_BODY,
    ErrorOut,
    ExperimentList,
    ExperimentOut,
    MetricSeries,
    not_found,
)
from app.services import artifacts, experiments, metrics, packs
from app.spec import ExperimentSpec

router = APIRouter(prefix="/experiments", tags=["experiments"])
NOT_FOUND = not_found("experiment")


def _conflict(description: str) -> dict[int | str, dict[str, Any]]:
    return {409: {"model": ErrorOut, "description": description}}


@router.post("", status_code=201, response_model=ExperimentOut, responses=BAD_BODY)
def submit(spec: ExperimentSpec, session: SessionDep, settings: SettingsDep) -> ExperimentOut:
    """Queue an experiment."""
    row = experiments.submit(session=session, spec=spec, max_attempts=settings.max_attempts)
    return ExperimentOut.of(row)


@router.get("", response_model=ExperimentList)
def list_experiments(
    session: ReadSessionDep,
    ids: OptionalIdsDep,
    status: Status | None = None,
    name: Annotated[
        str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="Part of the name")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> ExperimentList:
    """List experiments, newest first."""
    rows, total = experiments.list_experiments(
        session=session, status=status, name=name, ids=ids, limit=limit, offset=offset
    )
    sizes = packs.sizes(session=session, rows=rows)
    return ExperimentList(items=[ExperimentOut.of(row, sizes) for row in rows], total=total)


@router.get("/{experiment_id}", response_model=ExperimentOut, responses=NOT_FOUND)
def read(experiment: ExperimentDep, session: ReadSessionDep) -> ExperimentOut:
    """One experiment, with a summary of its latest metrics (and its pack, if it trained
    in one)."""
    return ExperimentOut.of(experiment, packs.sizes(session=session, rows=[experiment]))


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
    epochs, columns = metrics.series(session=session, experiment_id=experiment.id)
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
    responses={**NOT_FOUND, **_conflict("Already ended")},
)
def cancel(experiment_id: ExperimentId, session: SessionDep) -> ExperimentOut:
    """Cancel a queued or running experiment; a running one is stopped by its worker."""
    return ExperimentOut.of(experiments.cancel(session=session, experiment_id=experiment_id))


@router.delete(
    "/{experiment_id}",
    status_code=204,
    responses={**NOT_FOUND, **_conflict("Still running")},
)
def delete(experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete an experiment that is not running, with its metrics and model."""
    experiments.delete(session=session, experiment_id=experiment_id, settings=settings)
    return Response(status_code=204)


@router.get(
    "/{experiment_id}/model",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The .keras file"},
        404: {
            "model": ErrorOut,
            "description": "No such experiment, or it has no saved model (yet: the model "
            "is saved when training ends)",
        },
    },
)
def download_model(experiment: ExperimentDep, settings: SettingsDep) -> FileResponse:
    """The trained model as a `.keras` file."""
    path, filename = artifacts.model_file(row=experiment, settings=settings)
    return FileResponse(path, media_type="application/octet-stream", filename=filename)
