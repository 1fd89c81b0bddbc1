"""Health, the workers the server knows, and the regularizers they offer."""

from __future__ import annotations

from datetime import timedelta
from importlib.metadata import version
from typing import get_args

from fastapi import APIRouter
from sqlalchemy import text
from sqlmodel import col, select

from app.api.deps import ReadSessionDep
from app.events import broker
from app.models import Experiment, Status, Worker, utcnow
from app.schemas import (
    Health,
    PluginOut,
    RegularizersOut,
    RunningExperiment,
    WorkerOut,
)
from app.spec import RegularizerKind

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


# A worker that has not claimed or heartbeated for this long no longer counts as offering
# its plugins (a live one long-polls its claims every 20 s at most).
LIVE_WORKER = timedelta(minutes=5)


@router.get("/regularizers", response_model=RegularizersOut)
def regularizers(session: ReadSessionDep) -> RegularizersOut:
    """The penalty kinds a spec may use: the built-in ones, and the plugins that live
    workers registered on their hosts (a spec naming one runs on a worker that has it)."""
    rows = session.exec(
        select(Worker.plugins).where(col(Worker.last_seen) >= utcnow() - LIVE_WORKER)
    ).all()
    counts: dict[str, int] = {}
    for plugins in rows:
        for name in plugins or []:
            counts[name] = counts.get(name, 0) + 1
    return RegularizersOut(
        builtin=[kind for kind in get_args(RegularizerKind) if kind != "plugin"],
        plugins=[PluginOut(name=name, workers=counts[name]) for name in sorted(counts)],
    )
