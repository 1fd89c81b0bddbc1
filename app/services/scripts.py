"""Runs streamed from users' own training scripts (ReglabCallback, reglab.Run): no queue,
no worker.

A script run is created running and holds a lease like a claimed run: every upload and
every heartbeat of its callback renews it, and the lease sweeper
(`queue.sweep_expired`) fails the run once its script has gone quiet for a whole lease
(the script was killed, its machine lost power). A script run has one attempt, so the
sweeper never puts it back in the queue.

What a worker records on a claimed run, a script tells about itself: the device it trains
on (with the run's creation, or later), and its test metrics (with the finish, or after:
a Keras script evaluates once `fit` has ended the run).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from app.errors import Conflict, NotFound
from app.models import Experiment, Status, utcnow
from app.services import diagnostics, metrics, params
from app.services.experiments import change_status


def create(
    *,
    session: Session,
    name: str,
    script: dict[str, Any],
    lease_seconds: float,
    device: str | None = None,
) -> Experiment:
    """Record a script's run, already running, with what it told about itself."""
    now = utcnow()
    row = Experiment(
        name=name,
        spec={"script": script},
        source="script",
        status=Status.running,
        attempt=1,
        max_attempts=1,
        created_at=now,
        started_at=now,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        device=device,
    )
    session.add(row)
    session.flush()
    params.record(session=session, rows=[row])  # its dataset, for queries
    change_status(row, Status.running, session=session)
    session.commit()
    return row


def set_device(*, session: Session, experiment_id: int, device: str) -> Experiment:
    """Record the device a script trains on, learned after its run was created (a custom
    loop's framework may load later). Idempotent; the last word stands."""
    row = _locked(session=session, experiment_id=experiment_id)
    row.device = device
    session.add(row)
    session.commit()
    return row


def add_test_metrics(
    *, session: Session, experiment_id: int, test_metrics: dict[str, float]
) -> Experiment:
    """Merge test metrics into the run's (a resend changes nothing). Taken whatever the
    run's status: a Keras script evaluates after `fit`, once its run has succeeded."""
    row = _locked(session=session, experiment_id=experiment_id)
    row.test_metrics = {**(row.test_metrics or {}), **test_metrics}
    session.add(row)
    session.commit()
    return row


def _locked(*, session: Session, experiment_id: int) -> Experiment:
    """Lock the script run with this id; NotFound for no run, or one that a worker trains
    (its calls take a lease token)."""
    row = session.get(Experiment, experiment_id, with_for_update=True)
    if row is None or row.source != "script":
        raise NotFound(f"experiment {experiment_id} is not a script run")
    return row


def _running(*, session: Session, experiment_id: int, lease_seconds: float) -> Experiment:
    """Lock a running script run and renew its lease. Conflict when the run already has
    its final status (finished, cancelled from the dashboard, or failed because its
    script went quiet): it takes no more points."""
    row = _locked(session=session, experiment_id=experiment_id)
    if row.status != Status.running:
        raise Conflict(f"experiment {row.id} is {row.status}")
    row.lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)
    session.add(row)
    return row


def add_epochs(
    *,
    session: Session,
    experiment_id: int,
    points: Sequence[metrics.EpochPoint],
    lease_seconds: float,
) -> list[int]:
    """Store epochs (idempotent on (run, epoch)); returns the epochs that are new."""
    row = _running(session=session, experiment_id=experiment_id, lease_seconds=lease_seconds)
    new_epochs = metrics.store_epochs(session=session, row=row, points=points)
    session.commit()
    return new_epochs


def add_steps(
    *,
    session: Session,
    experiment_id: int,
    points: Sequence[tuple[int, dict[str, float]]],
    lease_seconds: float,
) -> int:
    """Store per-batch values (idempotent on (run, step, name)); returns how many."""
    _running(session=session, experiment_id=experiment_id, lease_seconds=lease_seconds)
    stored = metrics.store_steps(session=session, experiment_id=experiment_id, points=points)
    session.commit()
    return stored


def heartbeat(*, session: Session, experiment_id: int, lease_seconds: float) -> Experiment:
    """Renew the lease of a script that has nothing to upload; a run that has ended (e.g.
    cancelled from the dashboard) answers with its status, so the script can stop."""
    row = _locked(session=session, experiment_id=experiment_id)
    if row.status == Status.running:
        row.lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)
        session.add(row)
    session.commit()
    return row


def finish(
    *,
    session: Session,
    experiment_id: int,
    status: Status,
    error: str | None = None,
    error_epoch: int | None = None,
    test_metrics: dict[str, float] | None = None,
) -> Experiment:
    """End a script run. Idempotent: a run that already ended keeps its status (a resent
    finish, or a run cancelled from the dashboard before its script finished); test
    metrics sent with it are kept either way."""
    row = _locked(session=session, experiment_id=experiment_id)
    if test_metrics:
        row.test_metrics = {**(row.test_metrics or {}), **test_metrics}
        session.add(row)
    if row.status == Status.running:
        change_status(
            row,
            status,
            session=session,
            error=error,
            error_epoch=error_epoch,
            lease_expires_at=None,
        )
        diagnostics.store_verdicts(session=session, rows=[row])
    session.commit()
    return row
