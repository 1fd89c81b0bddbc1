"""What the server knows of its workers: who asked for work, what they run, and the
regularizer plugins they offer."""

from __future__ import annotations

from datetime import timedelta
from typing import get_args

from sqlalchemy import text
from sqlmodel import Session, col, select

from app.models import Experiment, Status, Worker, utcnow
from app.schemas.health import PluginOut, RegularizersOut, RunningExperiment, WorkerOut
from app.spec import RegularizerKind

# A worker that has not claimed or heartbeated for this long no longer counts as offering
# its plugins (a live one long-polls its claims every 20 s at most).
LIVE_WORKER = timedelta(minutes=5)


def database_name(*, session: Session) -> str:
    """The database's dialect, once it has answered a query (the health check)."""
    session.exec(select(text("1"))).one()  # type: ignore[call-overload]
    return session.get_bind().dialect.name


def workers(*, session: Session) -> list[WorkerOut]:
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


def regularizers(*, session: Session) -> RegularizersOut:
    """The penalty kinds a spec may use: the built-in ones, and the plugins that live
    workers registered on their hosts."""
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
