"""The queue on real databases: atomic claims, lease fencing, expiry, release."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import Session

from app.db import get_engine
from app.models import Experiment, Status, utcnow
from app.services import experiments, metrics, queue
from app.spec import ExperimentSpec
from tests.factories import make_spec


def submit(count: int = 1, **changes: object) -> list[int]:
    spec = ExperimentSpec.model_validate(make_spec(**changes))
    with Session(get_engine()) as session:
        return [
            experiments.create(session=session, spec=spec, max_attempts=1).id for _ in range(count)
        ]


def claim_one(worker_id: str = "w") -> Experiment | None:
    with Session(get_engine(), expire_on_commit=False) as session:
        return queue.claim(
            session=session, worker_id=worker_id, host="h", devices=["CPU"], lease_seconds=30
        )


def race(claimers: int) -> list[int]:
    """Start `claimers` threads at once; return the ids they won."""
    barrier = threading.Barrier(claimers)
    won: list[int] = []
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            row = claim_one(f"w{index}")
            if row is not None:
                won.append(row.id)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return won


def test_racing_claimers_get_one_run_once(any_db: str) -> None:
    for _ in range(10):
        (run_id,) = submit()
        assert race(20) == [run_id]
    with Session(get_engine()) as session:
        assert session.get(Experiment, run_id).attempt == 1


def test_claimers_draining_the_queue_take_each_run_once(any_db: str) -> None:
    ids = submit(30)
    won: list[int] = []
    while len(won) < 30:
        batch = race(4)
        assert batch, "a queued run was left unclaimed"
        won.extend(batch)
    assert sorted(won) == ids


def test_claims_oldest_first_and_records_the_lease(any_db: str) -> None:
    first, second = submit(2)
    row = claim_one()
    assert row is not None and row.id == first
    assert row.status == Status.running
    assert row.lease_token and row.lease_expires_at is not None
    assert claim_one().id == second
    assert claim_one() is None


def test_a_lost_lease_changes_nothing(any_db: str) -> None:
    submit()
    row = claim_one()
    with Session(get_engine()) as session, pytest.raises(queue.LeaseLost):
        metrics.ingest(
            session=session,
            experiment_id=row.id,
            lease_token="not-the-token",
            points=[(0, {"loss": 1.0}, None)],
        )
    with Session(get_engine()) as session, pytest.raises(queue.LeaseLost):
        queue.finish(
            session=session,
            experiment_id=row.id,
            lease_token="not-the-token",
            status=Status.succeeded,
        )
    with Session(get_engine()) as session:
        assert session.get(Experiment, row.id).status == Status.running
        assert metrics.series(session=session, experiment_id=row.id) == ([], {})


def test_heartbeat_extends_the_lease_and_reports_cancel(any_db: str) -> None:
    submit()
    row = claim_one()
    with Session(get_engine()) as session:
        beat = queue.heartbeat(
            session=session,
            experiment_id=row.id,
            lease_token=row.lease_token,
            lease_seconds=300,
        )
        assert beat.lease_expires_at > row.lease_expires_at
        assert beat.status == Status.running
    with Session(get_engine()) as session:
        assert experiments.cancel(session=session, experiment_id=row.id).status == Status.cancelled
    with Session(get_engine()) as session:
        beat = queue.heartbeat(
            session=session,
            experiment_id=row.id,
            lease_token=row.lease_token,
            lease_seconds=300,
        )
        assert beat.status == Status.cancelled
    # The cancelled run's worker can no longer write to it.
    with Session(get_engine()) as session, pytest.raises(queue.LeaseLost):
        metrics.ingest(
            session=session,
            experiment_id=row.id,
            lease_token=row.lease_token,
            points=[(0, {"loss": 1.0}, None)],
        )


def test_expired_lease_requeues_then_fails_after_the_last_attempt(any_db: str) -> None:
    submit()
    with Session(get_engine(), expire_on_commit=False) as session:
        row = session.get(Experiment, claim_one().id)
        row.max_attempts = 2
        session.add(row)
        session.commit()
    later = utcnow() + timedelta(seconds=60)
    with Session(get_engine()) as session:
        assert queue.sweep_expired(session=session, now=later) == [row.id]
        assert session.get(Experiment, row.id).status == Status.queued
    second = claim_one()
    assert second.id == row.id and second.attempt == 2
    with Session(get_engine()) as session:
        queue.sweep_expired(session=session, now=utcnow() + timedelta(seconds=60))
        failed = session.get(Experiment, row.id)
        assert failed.status == Status.failed
        assert "lease expired" in failed.error
    # The first holder's token was fenced off by the new claim.
    with Session(get_engine()) as session, pytest.raises(queue.LeaseLost):
        queue.heartbeat(
            session=session,
            experiment_id=row.id,
            lease_token=row.lease_token,
            lease_seconds=30,
        )


def test_a_live_lease_is_not_swept(any_db: str) -> None:
    submit()
    claim_one()
    with Session(get_engine()) as session:
        assert queue.sweep_expired(session=session) == []


def test_release_hands_the_run_back_without_spending_an_attempt(any_db: str) -> None:
    submit()
    row = claim_one()
    with Session(get_engine()) as session:
        queue.release(session=session, experiment_id=row.id, lease_token=row.lease_token)
    again = claim_one()
    assert again.id == row.id
    assert again.attempt == 1
    assert again.lease_token != row.lease_token
