"""Health, the workers the server knows, and the regularizers they offer."""

from __future__ import annotations

from datetime import timedelta
from importlib.metadata import version
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import ReadSessionDep, SessionDep
from app.events import broker
from app.schemas import BAD_BODY, Health, RegularizersOut, WorkerOut
from app.schemas.worker import WorkerReportIn
from app.services import workers as workers_service

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(session: ReadSessionDep) -> Health:
    """The server is up and its database answers."""
    return Health(
        status="ok",
        database=workers_service.database_name(session=session),
        version=version("reglab"),
        streams=broker.subscriber_count(),
    )


@router.get("/workers", response_model=list[WorkerOut])
def workers(
    session: ReadSessionDep,
    seen_within: Annotated[
        int, Query(ge=1, le=366 * 86_400, description="Seconds: workers seen this recently")
    ] = 300,
) -> list[WorkerOut]:
    """Workers seen in the last five minutes (`seen_within`), most recently seen first:
    each one's host, plugins and slots (its GPU's memory and utilization or the CPU, the
    runs it trains or why it waits), and whether it went silent or stopped."""
    return workers_service.workers(session=session, seen_within=timedelta(seconds=seen_within))


@router.post(
    "/worker/report",
    status_code=204,
    tags=["worker"],
    responses={**BAD_BODY, 204: {"description": "Recorded"}},
)
def report(body: WorkerReportIn, session: SessionDep) -> Response:
    """A worker's report of its slots (what each does, its GPU's state), sent every few
    seconds and whenever a slot changes what it does; it also marks the worker as seen."""
    workers_service.report(session=session, body=body)
    return Response(status_code=204)


@router.get("/regularizers", response_model=RegularizersOut)
def regularizers(session: ReadSessionDep) -> RegularizersOut:
    """The penalty kinds a spec may use: the built-in ones, and the plugins that live
    workers registered on their hosts (a spec naming one runs on a worker that has it)."""
    return workers_service.regularizers(session=session)
