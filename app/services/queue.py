"""The queue: claims as leases, heartbeats, the end of a run, and expired leases.

A claim is one transaction: BEGIN IMMEDIATE on SQLite (the write engine begins every
transaction so), `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two claimers never get the
same run. Every call a worker makes for a run carries the lease token of its claim; a
token that no longer holds the run (the run was cancelled, requeued or claimed again)
raises `LeaseLost` and changes nothing.

Each attempt trains from the start, so a claim clears what an earlier attempt stored:
its metric rows and their summaries, and the summary on the run. Its events stay, keyed
by attempt (the stream replays the latest attempt's), except those of a claim handed
back (`release`), whose attempt number the next claim takes again.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlmodel import Session, col, select

from app.db import dialect_insert
from app.errors import LeaseLost
from app.models import Event, Experiment, Metric, Status, Worker, utcnow
from app.services import summaries
from app.services.experiments import change_status

# Kinds of events that an attempt stores once per epoch (status events are the story of
# every attempt, kept whole).
EPOCH_KINDS = ("metrics", "histogram")
# The final statuses that the server gives a run while its worker trains it: the worker
# learns them from its heartbeat (`cancel`) and stops the training.
STOPPED = frozenset({Status.cancelled, Status.pruned})


def touch_worker(
    *,
    session: Session,
    worker_id: str,
    host: str,
    devices: list[str],
    plugins: list[str] | None = None,
) -> None:
    """Record a worker as seen now. One upsert: a new worker's slots claim at the same
    moment, and a read-then-insert would collide on the key (PostgreSQL)."""
    now = utcnow()
    plugins = sorted(set(plugins or []))
    statement = dialect_insert(session, Worker).values(
        id=worker_id, host=host, devices=devices, plugins=plugins, started_at=now, last_seen=now
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["id"],
            set_={"host": host, "devices": devices, "plugins": plugins, "last_seen": now},
        )
    )


def claim(
    *,
    session: Session,
    worker_id: str,
    host: str,
    devices: list[str],
    lease_seconds: float,
    plugins: list[str] | None = None,
) -> Experiment | None:
    """Take the oldest queued experiment for this worker, or None when there is none; a
    pack's member comes with its queued pack mates, under the same lease."""
    touch_worker(session=session, worker_id=worker_id, host=host, devices=devices, plugins=plugins)
    row = session.exec(
        select(Experiment)
        .where(Experiment.status == Status.queued)
        .order_by(col(Experiment.id))
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is not None:
        now = utcnow()
        lease = {
            "lease_token": secrets.token_hex(16),
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "worker_id": worker_id,
            "started_at": now,
            "device": None,
            "error": None,
            "error_epoch": None,
        }
        for claimed in [row, *_pack_mates(session=session, row=row)]:
            _forget_earlier_attempts(session=session, row=claimed)
            change_status(
                claimed, Status.running, session=session, attempt=claimed.attempt + 1, **lease
            )
    session.commit()
    return row


def _pack_mates(*, session: Session, row: Experiment) -> list[Experiment]:
    """The other queued members of `row`'s pack: a pack is claimed whole, under one lease
    (the members requeued after a failed attempt, so a pack is retried as a pack)."""
    if row.pack_id is None:
        return []
    return list(
        session.exec(
            select(Experiment)
            .where(Experiment.pack_id == row.pack_id)
            .where(Experiment.status == Status.queued)
            .where(col(Experiment.id) != row.id)
            .order_by(col(Experiment.id))
            .with_for_update(skip_locked=True)
        ).all()
    )


def _forget_earlier_attempts(*, session: Session, row: Experiment) -> None:
    """Before an attempt starts over from epoch 0: drop the metric rows of the earlier
    one and its summary, and the epoch events of a handed-back claim of the same number."""
    assert row.id is not None
    if row.attempt == 0 and row.epochs_done == 0:
        return  # a first claim: nothing stored yet
    session.exec(sa_delete(Metric).where(col(Metric.experiment_id) == row.id))
    summaries.forget(session=session, experiment_id=row.id)
    session.exec(
        sa_delete(Event)
        .where(col(Event.experiment_id) == row.id)
        .where(col(Event.kind).in_(EPOCH_KINDS))
        .where(col(Event.attempt) > row.attempt)
    )
    row.epochs_done = 0
    row.last_metrics = {}
    row.best_epoch = None
    row.best_val_data_loss = None
    row.test_metrics = None


def held(
    *,
    session: Session,
    experiment_id: int,
    lease_token: str,
    allow_cancelled: bool = False,
) -> Experiment:
    """Lock and return the run that this token holds, or raise LeaseLost."""
    row = session.get(Experiment, experiment_id, with_for_update=True)
    if row is None or row.lease_token != lease_token:
        raise LeaseLost(f"lease on experiment {experiment_id} is not held by this token")
    # A run cancelled or pruned while it trains still answers its worker's heartbeat, so
    # that the worker learns to stop it.
    if row.status != Status.running and not (allow_cancelled and row.status in STOPPED):
        raise LeaseLost(f"experiment {experiment_id} is {row.status}")
    return row


def heartbeat(
    *, session: Session, experiment_id: int, lease_token: str, lease_seconds: float
) -> Experiment:
    """Renew the lease; a cancelled run answers so that its worker stops it."""
    row = held(
        session=session, experiment_id=experiment_id, lease_token=lease_token, allow_cancelled=True
    )
    if row.status == Status.running:
        row.lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)
        session.add(row)
    if row.worker_id is not None:
        worker = session.get(Worker, row.worker_id)
        if worker is not None:
            worker.last_seen = utcnow()
            session.add(worker)
    session.commit()
    return row


def started(*, session: Session, experiment_id: int, lease_token: str, device: str) -> None:
    """Record the device the training child found, as its framework saw it."""
    row = held(session=session, experiment_id=experiment_id, lease_token=lease_token)
    change_status(row, Status.running, session=session, device=device)
    session.commit()


def finish(
    *,
    session: Session,
    experiment_id: int,
    lease_token: str,
    status: Status,
    error: str | None = None,
    error_epoch: int | None = None,
    test_metrics: dict[str, float] | None = None,
    best_epoch: int | None = None,
    retryable: bool = False,
) -> Experiment:
    """End the attempt that this token holds.

    A `retryable` failure is one that was not the run's own doing (its training process
    died): the run goes back to the queue while it has attempts left, like a run whose
    lease expired, and fails after its last attempt.
    """
    row = held(session=session, experiment_id=experiment_id, lease_token=lease_token)
    if status == Status.failed and retryable:
        if error_epoch is None:
            error_epoch = row.epochs_done
        requeue_or_fail(
            session=session, row=row, error=error or "attempt failed", error_epoch=error_epoch
        )
        session.commit()
        return row
    fields: dict[str, Any] = {"error": error, "error_epoch": error_epoch, "lease_expires_at": None}
    if test_metrics is not None:
        fields["test_metrics"] = test_metrics
    if best_epoch is not None:
        fields["best_epoch"] = best_epoch
    change_status(row, status, session=session, **fields)
    _store_verdict(session=session, row=row)
    session.commit()
    return row


def _store_verdict(*, session: Session, row: Experiment) -> None:
    """Store the verdict of a run that reached a final status, so queries can filter on it."""
    # Imported here: diagnostics reads leases through this module (a cycle at import).
    from app.services import diagnostics

    diagnostics.store_verdicts(session=session, rows=[row])


def requeue_or_fail(
    *, session: Session, row: Experiment, error: str, error_epoch: int | None
) -> None:
    """The one rule for an attempt that ended without a result of its own: back to the
    queue while `attempt < max_attempts` (the error stays as the reason until the next
    claim), else failed with that error. Either way the lease is void; the caller commits."""
    if row.attempt < row.max_attempts:
        change_status(
            row,
            Status.queued,
            session=session,
            lease_token=None,
            lease_expires_at=None,
            worker_id=None,
            error=error,
            error_epoch=error_epoch,
        )
    else:
        change_status(
            row,
            Status.failed,
            session=session,
            error=error,
            error_epoch=error_epoch,
            lease_expires_at=None,
        )
        _store_verdict(session=session, row=row)


def release(*, session: Session, experiment_id: int, lease_token: str) -> None:
    """Hand a run back to the queue (its worker is shutting down); not a failed attempt."""
    row = held(session=session, experiment_id=experiment_id, lease_token=lease_token)
    change_status(
        row,
        Status.queued,
        session=session,
        attempt=max(row.attempt - 1, 0),
        lease_token=None,
        lease_expires_at=None,
        worker_id=None,
        started_at=None,
    )
    session.commit()


def set_model_path(*, session: Session, experiment_id: int, lease_token: str, path: str) -> None:
    """Record where the run's trained model was stored."""
    row = held(session=session, experiment_id=experiment_id, lease_token=lease_token)
    row.model_path = path
    session.add(row)
    session.commit()


def sweep_expired(*, session: Session, now: datetime | None = None) -> list[int]:
    """Requeue (or fail, after the last attempt) runs whose lease ran out."""
    now = now or utcnow()
    rows = session.exec(
        select(Experiment)
        .where(Experiment.status == Status.running)
        .where(col(Experiment.lease_expires_at) < now)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        requeue_or_fail(
            session=session,
            row=row,
            error=(
                "script went quiet: no upload or heartbeat for a lease period"
                if row.source == "script"
                else "worker lost: its lease expired without a heartbeat"
            ),
            error_epoch=row.epochs_done,
        )
    session.commit()
    return [row.id for row in rows if row.id is not None]
