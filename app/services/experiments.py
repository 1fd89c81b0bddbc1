"""Submitting, finding, listing, cancelling and deleting experiments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import func
from sqlmodel import Session, col, select

from app import events
from app.domain.groups import group_key
from app.domain.storage import remove_artifacts
from app.errors import Conflict, NotFound
from app.models import BatchMetric, Event, Experiment, Metric, Status, utcnow
from app.services import datasets
from app.settings import Settings
from app.spec import ExperimentSpec


def status_data(row: Experiment) -> dict[str, Any]:
    """The payload of a `status` event."""
    return {
        "status": row.status,
        "attempt": row.attempt,
        "device": row.device,
        "error": row.error,
        "error_epoch": row.error_epoch,
        "epochs_done": row.epochs_done,
    }


def change_status(row: Experiment, status: Status, *, session: Session, **fields: Any) -> None:
    """Set a new status (and any other fields) and record its event; the caller commits."""
    row.status = status
    for name, value in fields.items():
        setattr(row, name, value)
    if status.is_final and row.finished_at is None:
        row.finished_at = utcnow()
    session.add(row)
    session.flush()
    assert row.id is not None
    events.record(session, row.id, "status", status_data(row), attempt=row.attempt)


def create(
    *,
    session: Session,
    spec: ExperimentSpec,
    max_attempts: int,
    sweep_id: int | None = None,
    point: dict[str, float] | None = None,
    commit: bool = True,
) -> Experiment:
    """Queue a run whose uploaded dataset, if any, is resolved already."""
    row = Experiment(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        status=Status.queued,
        max_attempts=max_attempts,
        sweep_id=sweep_id,
        point=point,
        group_key=group_key(spec),
    )
    session.add(row)
    session.flush()
    change_status(row, Status.queued, session=session)
    if commit:
        session.commit()
    return row


def submit(*, session: Session, spec: ExperimentSpec, max_attempts: int) -> Experiment:
    """Queue a run as submitted: an uploaded dataset is filled in from the stored upload
    (InvalidField when there is none, or its data cannot feed the layers)."""
    return create(
        session=session,
        spec=datasets.resolve(session=session, spec=spec),
        max_attempts=max_attempts,
    )


def require(*, session: Session, experiment_id: int, lock: bool = False) -> Experiment:
    """The run with this id (locked for update when asked), or NotFound."""
    row = session.get(Experiment, experiment_id, with_for_update=lock)
    if row is None:
        raise NotFound(f"experiment {experiment_id} not found")
    return row


def find(*, session: Session, ids: Sequence[int]) -> tuple[dict[int, Experiment], list[int]]:
    """The runs among `ids` that exist, by id in the order asked, and the ids that name
    no run (the pages ask for several runs at once)."""
    rows = session.exec(select(Experiment).where(col(Experiment.id).in_(list(ids)))).all()
    by_id = {row.id: row for row in rows if row.id is not None}
    found = {run_id: by_id[run_id] for run_id in ids if run_id in by_id}
    return found, [run_id for run_id in ids if run_id not in by_id]


def list_experiments(
    *,
    session: Session,
    status: Status | None = None,
    name: str | None = None,
    ids: list[int] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Experiment], int]:
    """Newest first, with the total that matches the filters."""
    query = select(Experiment)
    count = select(func.count()).select_from(Experiment)
    if status is not None:
        query = query.where(Experiment.status == status)
        count = count.where(Experiment.status == status)
    if name:
        pattern = f"%{name}%"
        query = query.where(col(Experiment.name).ilike(pattern))
        count = count.where(col(Experiment.name).ilike(pattern))
    if ids is not None:
        query = query.where(col(Experiment.id).in_(ids))
        count = count.where(col(Experiment.id).in_(ids))
    rows = session.exec(query.order_by(col(Experiment.id).desc()).offset(offset).limit(limit)).all()
    total = session.exec(count).one()
    return list(rows), int(total)


def cancel(*, session: Session, experiment_id: int) -> Experiment:
    """Cancel a queued or running experiment at once; its worker learns it at the next
    heartbeat and stops the training child. Conflict when it had already ended."""
    row = require(session=session, experiment_id=experiment_id, lock=True)
    if Status(row.status).is_final:
        raise Conflict(f"experiment {row.id} already {row.status}")
    change_status(row, Status.cancelled, session=session, lease_expires_at=None)
    session.commit()
    return row


def delete(*, session: Session, experiment_id: int, settings: Settings) -> None:
    """Delete a run that is not running, with its metrics, events and files (Conflict
    while it runs: cancel it first)."""
    row = require(session=session, experiment_id=experiment_id, lock=True)
    if row.status == Status.running:
        raise Conflict(f"experiment {row.id} is running: cancel it first")
    for table in (Metric, BatchMetric, Event):
        session.exec(sa_delete(table).where(col(table.experiment_id) == experiment_id))
    session.delete(row)
    session.commit()
    remove_artifacts(settings, experiment_id)
