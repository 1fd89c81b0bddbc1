"""Submitting, listing and cancelling experiments."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import func
from sqlmodel import Session, col, select

from app import events
from app.models import Event, Experiment, Metric, Status, utcnow
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


def change_status(session: Session, row: Experiment, status: Status, **fields: Any) -> None:
    """Set a new status (and any other fields) and record its event; the caller commits."""
    row.status = status
    for name, value in fields.items():
        setattr(row, name, value)
    if status.is_final and row.finished_at is None:
        row.finished_at = utcnow()
    session.add(row)
    session.flush()
    assert row.id is not None
    events.record(session, row.id, "status", status_data(row))


def group_key(spec: ExperimentSpec) -> str:
    """The same for specs that differ only in name, notes and seed: seed repeats of one
    configuration, which the compare and sweep views draw as a mean and a band."""
    data = spec.model_dump(mode="json", exclude={"name": True, "notes": True})
    data["training"].pop("seed", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def create(
    session: Session,
    spec: ExperimentSpec,
    *,
    max_attempts: int,
    sweep_id: int | None = None,
    point: dict[str, float] | None = None,
    commit: bool = True,
) -> Experiment:
    """Queue a run (the caller resolves an uploaded dataset in the spec first)."""
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
    change_status(session, row, Status.queued)
    if commit:
        session.commit()
    return row


def get(session: Session, experiment_id: int) -> Experiment | None:
    return session.get(Experiment, experiment_id)


def list_experiments(
    session: Session,
    *,
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


def cancel(session: Session, row: Experiment) -> bool:
    """Cancel a queued or running experiment at once; its worker learns it at the next
    heartbeat and stops the training child. False when it had already ended."""
    session.refresh(row, with_for_update=True)
    if Status(row.status).is_final:
        return False
    change_status(session, row, Status.cancelled, lease_expires_at=None)
    session.commit()
    return True


class StillRunning(Exception):
    """A running experiment cannot be deleted; cancel it first."""


def delete(session: Session, row: Experiment) -> None:
    """Delete a run that is not running, with its metrics and events (the caller removes
    its files)."""
    session.refresh(row, with_for_update=True)
    if row.status == Status.running:
        raise StillRunning(f"experiment {row.id} is running: cancel it first")
    session.exec(sa_delete(Metric).where(col(Metric.experiment_id) == row.id))
    session.exec(sa_delete(Event).where(col(Event.experiment_id) == row.id))
    session.delete(row)
    session.commit()
