"""The rule for an attempt that ends without a result of its own, on SQLite and
PostgreSQL: requeued while the run has attempts left, failed after the last one."""

from __future__ import annotations

from sqlmodel import Session

from app.db import get_engine
from app.models import Experiment, Status
from app.services import experiments, queue
from app.spec import ExperimentSpec
from tests.factories import make_spec


def claim() -> Experiment:
    with Session(get_engine(), expire_on_commit=False) as session:
        row = queue.claim(
            session=session, worker_id="w", host="h", devices=["CPU"], lease_seconds=30
        )
    assert row is not None
    return row


def test_a_child_that_dies_every_attempt_is_requeued_then_failed(any_db: str) -> None:
    spec = ExperimentSpec.model_validate(make_spec())
    with Session(get_engine()) as session:
        run_id = experiments.create(session=session, spec=spec, max_attempts=2).id
    died = "training process died (killed by SIGKILL)"

    first = claim()
    with Session(get_engine()) as session:
        queue.finish(
            session=session,
            experiment_id=run_id,
            lease_token=first.lease_token,
            status=Status.failed,
            error=died,
            retryable=True,
        )
        row = session.get(Experiment, run_id)
        assert (row.status, row.attempt, row.error) == (Status.queued, 1, died)
        assert row.lease_token is None and row.worker_id is None

    second = claim()
    assert (second.id, second.attempt, second.error) == (run_id, 2, None)
    with Session(get_engine()) as session:
        queue.finish(
            session=session,
            experiment_id=run_id,
            lease_token=second.lease_token,
            status=Status.failed,
            error=died,
            retryable=True,
        )
        row = session.get(Experiment, run_id)
        assert (row.status, row.attempt, row.error) == (Status.failed, 2, died)
        assert row.finished_at is not None
    with Session(get_engine(), expire_on_commit=False) as session:
        assert (
            queue.claim(session=session, worker_id="w", host="h", devices=["CPU"], lease_seconds=30)
            is None
        )


def test_a_run_s_own_failure_is_not_retried(any_db: str) -> None:
    spec = ExperimentSpec.model_validate(make_spec())
    with Session(get_engine()) as session:
        run_id = experiments.create(session=session, spec=spec, max_attempts=3).id
    row = claim()
    with Session(get_engine()) as session:
        queue.finish(
            session=session,
            experiment_id=run_id,
            lease_token=row.lease_token,
            status=Status.failed,
            error="diverged at epoch 2",
            error_epoch=2,
        )
        row = session.get(Experiment, run_id)
        assert (row.status, row.attempt, row.error_epoch) == (Status.failed, 1, 2)
