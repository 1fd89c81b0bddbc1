"""Runs streamed from users' own training scripts (ReglabCallback, reglab.Run), and
per-batch series.

A script calls these with the user token (it is not a worker): create its run (with the
device it trains on), upload epochs and batches (each upload renews the run's lease),
heartbeat while it has nothing to send, and finish (with its test metrics). The device
and the test metrics may also come on their own, later. Every call is idempotent; uploads
are keyed by (run, epoch) and (run, step).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app.api.deps import ExperimentDep, ExperimentId, ReadSessionDep, SessionDep, SettingsDep
from app.db import session_scope
from app.models import Status
from app.schemas import (
    BAD_BODY,
    ErrorOut,
    ExperimentOut,
    MetricsAck,
    ScriptFinishIn,
    ScriptHeartbeatOut,
    ScriptMetricsIn,
    ScriptRunIn,
    StepsAck,
    StepSeries,
    StepSeriesSet,
    StepsIn,
    not_found,
)
from app.schemas.scripts import ScriptDeviceIn, ScriptTestIn
from app.services import metrics, scripts

router = APIRouter(tags=["scripts"])

NOT_FOUND = not_found("script run")
ENDED: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "The run has ended (finished or cancelled)"}
}
_NAMES = r"^[A-Za-z0-9_.:/\-]{1,100}(,[A-Za-z0-9_.:/\-]{1,100}){0,199}$"


# --- writing: the callback's calls ---------------------------------------------------------


@router.post("/runs", status_code=201, response_model=ExperimentOut, responses=BAD_BODY)
def create_run(body: ScriptRunIn, session: SessionDep, settings: SettingsDep) -> ExperimentOut:
    """Start a run streamed from the caller's own training script; it is running at once."""
    row = scripts.create(
        session=session,
        name=body.name,
        script=body.script.model_dump(mode="json"),
        lease_seconds=settings.lease_seconds,
        device=body.device,
    )
    return ExperimentOut.of(row)


@router.post(
    "/runs/{experiment_id}/device",
    response_model=ExperimentOut,
    responses={**BAD_BODY, **NOT_FOUND},
)
def set_device(
    experiment_id: ExperimentId, body: ScriptDeviceIn, session: SessionDep
) -> ExperimentOut:
    """Record the device the script trains on, when it was not known at the run's creation."""
    row = scripts.set_device(session=session, experiment_id=experiment_id, device=body.device)
    return ExperimentOut.of(row)


@router.post(
    "/runs/{experiment_id}/test-metrics",
    response_model=ExperimentOut,
    responses={**BAD_BODY, **NOT_FOUND},
)
def add_test_metrics(
    experiment_id: ExperimentId, body: ScriptTestIn, session: SessionDep
) -> ExperimentOut:
    """Store the script's test metrics (merged; also after the run has ended)."""
    row = scripts.add_test_metrics(
        session=session, experiment_id=experiment_id, test_metrics=body.test_metrics
    )
    return ExperimentOut.of(row)


@router.post(
    "/runs/{experiment_id}/metrics",
    response_model=MetricsAck,
    responses={**BAD_BODY, **NOT_FOUND, **ENDED},
)
def upload_epochs(
    experiment_id: ExperimentId, body: ScriptMetricsIn, session: SessionDep, settings: SettingsDep
) -> MetricsAck:
    """Store epochs of metrics; resending an epoch stores nothing twice."""
    new_epochs = scripts.add_epochs(
        session=session,
        experiment_id=experiment_id,
        points=[(point.epoch, point.values, point.time) for point in body.points],
        lease_seconds=settings.lease_seconds,
    )
    return MetricsAck(stored=sum(len(point.values) for point in body.points), new_epochs=new_epochs)


@router.post(
    "/runs/{experiment_id}/batches",
    response_model=StepsAck,
    responses={**BAD_BODY, **NOT_FOUND, **ENDED},
)
def upload_steps(
    experiment_id: ExperimentId, body: StepsIn, session: SessionDep, settings: SettingsDep
) -> StepsAck:
    """Store per-batch values by training step; resending a step stores nothing twice."""
    stored = scripts.add_steps(
        session=session,
        experiment_id=experiment_id,
        points=[(point.step, point.values) for point in body.points],
        lease_seconds=settings.lease_seconds,
    )
    return StepsAck(stored=stored)


@router.post(
    "/runs/{experiment_id}/heartbeat", response_model=ScriptHeartbeatOut, responses=NOT_FOUND
)
def heartbeat(
    experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep
) -> ScriptHeartbeatOut:
    """Keep a quiet script's run alive; `cancel` says the run ended (stop training)."""
    row = scripts.heartbeat(
        session=session, experiment_id=experiment_id, lease_seconds=settings.lease_seconds
    )
    return ScriptHeartbeatOut(
        status=Status(row.status),
        cancel=Status(row.status).is_final,
        lease_seconds=settings.lease_seconds,
    )


@router.post(
    "/runs/{experiment_id}/finish",
    response_model=ExperimentOut,
    responses={**BAD_BODY, **NOT_FOUND},
)
def finish(experiment_id: ExperimentId, body: ScriptFinishIn, session: SessionDep) -> ExperimentOut:
    """End the run (idempotent: a run that already ended keeps its status)."""
    row = scripts.finish(
        session=session,
        experiment_id=experiment_id,
        status=Status(body.status),
        error=body.error,
        error_epoch=body.error_epoch,
        test_metrics=body.test_metrics,
    )
    return ExperimentOut.of(row)


# --- reading: per-batch series -------------------------------------------------------------


@router.get(
    "/experiments/{experiment_id}/batches",
    response_model=StepSeriesSet,
    responses=not_found("experiment"),
)
def read_batches(
    experiment: ExperimentDep,
    session: ReadSessionDep,
    names: Annotated[
        str | None,
        Query(max_length=20_000, pattern=_NAMES, description="Only these series (≤ 200)"),
    ] = None,
    max_points: Annotated[int, Query(ge=10, le=10_000, description="Buckets per series")] = 1000,
) -> StepSeriesSet:
    """Each per-batch series in at most `max_points` buckets, each with its first step,
    minimum, maximum and mean (a spike stays as its bucket's maximum); exact data when a
    series has fewer points. Every point: `batches.csv`."""
    assert experiment.id is not None
    found = metrics.bucketed_steps(
        session=session,
        experiment_id=experiment.id,
        names=names.split(",") if names else None,
        max_points=max_points,
    )
    return StepSeriesSet(
        max_points=max_points,
        series={
            name: StepSeries(
                points=buckets.points,
                step=buckets.step,
                last_step=buckets.last_step,
                min=buckets.min,
                max=buckets.max,
                mean=buckets.mean,
                count=buckets.count,
            )
            for name, buckets in found.items()
        },
    )


@router.get(
    "/experiments/{experiment_id}/batches.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "Every per-batch value"},
        404: {"model": ErrorOut, "description": "No such experiment"},
    },
)
def read_batches_csv(experiment: ExperimentDep) -> StreamingResponse:
    """Every stored per-batch value: `step`, then one column per series."""
    experiment_id = experiment.id
    assert experiment_id is not None

    def chunks() -> Iterator[str]:
        # Its own short session: the request's closes before the body is sent.
        with session_scope(read_only=True) as session:
            yield from metrics.steps_csv(session=session, experiment_id=experiment_id)

    filename = f"reglab-{experiment_id}-batches.csv"
    return StreamingResponse(
        chunks(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
