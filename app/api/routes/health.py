"""Health and the workers the server knows."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter
from sqlalchemy import text
from sqlmodel import col, select

from app.api.deps import ReadSessionDep
from app.events import broker
from app.models import Experiment, Status, Worker
from app.schemas import Health, RunningExperiment, WorkerOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(session: ReadSessionDep) -> Health:
    """The server is up and its database answers."""
    session.exec(select(text("1"))).one()  # type: ignore[call-overload]
    return Health(
        status="ok",
        database=session.get_bind().dialect.name,
        version=version("reglab"),
        streams=broker.subscriber_count(),
    )


@router.get("/workers", response_model=list[WorkerOut])
def workers(session: ReadSessionDep) -> list[WorkerOut]:
    """Workers that have asked for work, most recently seen first, with their runs."""
    rows = session.exec(select(Worker).order_by(col(Worker.last_seen).desc())).all()
    running = session.exec(
        select(Experiment.id, Experiment.worker_id, Experiment.device).where(
            Experiment.status == Status.running
        )
    ).all()
    return [
        WorkerOut(
            id=row.id,
            host=row.host,
            devices=row.devices,
            started_at=row.started_at,
            last_seen=row.last_seen,
            running=[
                RunningExperiment(id=run_id, device=device)
                for run_id, worker_id, device in running
                if worker_id == row.id and run_id is not None
            ],
        )
        for row in rows
    ]
