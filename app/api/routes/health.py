"""Health, the workers the server knows, and the regularizers they offer."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter

from app.api.deps import ReadSessionDep
from app.events import broker
from app.schemas import Health, RegularizersOut, WorkerOut
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
def workers(session: ReadSessionDep) -> list[WorkerOut]:
    """Workers that have asked for work, most recently seen first, with their runs."""
    return workers_service.workers(session=session)


@router.get("/regularizers", response_model=RegularizersOut)
def regularizers(session: ReadSessionDep) -> RegularizersOut:
    """The penalty kinds a spec may use: the built-in ones, and the plugins that live
    workers registered on their hosts (a spec naming one runs on a worker that has it)."""
    return workers_service.regularizers(session=session)
