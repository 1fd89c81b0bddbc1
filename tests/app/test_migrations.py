"""Migrations match the models, go down and up again with the data kept, and the server
never loads TensorFlow."""

from __future__ import annotations

import subprocess
import sys

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import Session, SQLModel

import app.models
from app.db import get_engine, reset_engines
from app.migrate import alembic_config
from app.models import Dataset, Event, Experiment
from app.services import experiments, metrics, queue
from app.settings import get_settings
from app.spec import MAX_ID, ExperimentSpec
from tests.factories import make_spec


def assert_models_match(url: str) -> None:
    with get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert context.get_current_revision() == head


def test_the_alembic_head_matches_the_models(any_db: str) -> None:
    assert_models_match(any_db)


def retried_run() -> int:
    """A run whose first attempt stored two epochs and whose second stored one."""
    spec = ExperimentSpec.model_validate(make_spec())
    with Session(get_engine(), expire_on_commit=False) as session:
        run_id = experiments.create(session=session, spec=spec, max_attempts=2).id
        assert run_id is not None
        for attempt, epochs in ((1, 2), (2, 1)):
            row = queue.claim(
                session=session, worker_id="w", host="h", devices=["CPU"], lease_seconds=60
            )
            assert row is not None and row.attempt == attempt and row.lease_token is not None
            points = [(epoch, {"loss": attempt + epoch / 10}, None) for epoch in range(epochs)]
            metrics.ingest(
                session=session, experiment_id=run_id, lease_token=row.lease_token, points=points
            )
            if attempt == 1:
                queue.finish(
                    session=session,
                    experiment_id=run_id,
                    lease_token=row.lease_token,
                    status=app.models.Status.failed,
                    error="died",
                    retryable=True,
                )
    return run_id


def epoch_events(run_id: int) -> list[tuple[int, int | None]]:
    with get_engine().connect() as connection:
        rows = connection.execute(
            text("SELECT attempt, epoch FROM event WHERE experiment_id = :id AND kind = 'metrics'"),
            {"id": run_id},
        )
        return sorted(tuple(row) for row in rows)


def test_migrations_go_down_and_up_again_keeping_the_data(any_db: str) -> None:
    run_id = retried_run()
    assert epoch_events(run_id) == [(1, 0), (1, 1), (2, 0)]
    config = alembic_config(any_db)

    reset_engines()  # no pooled connection holds the tables while they change
    command.downgrade(config, "0002")
    with get_engine().connect() as connection:
        # Back to one event per (run, epoch): the latest attempt's stays.
        rows = connection.execute(
            text("SELECT epoch FROM event WHERE experiment_id = :id AND kind = 'metrics'"),
            {"id": run_id},
        )
        assert sorted(epoch for (epoch,) in rows) == [0, 1]
    reset_engines()
    command.upgrade(config, "head")
    assert_models_match(any_db)
    assert [attempt for attempt, _ in epoch_events(run_id)] == [2, 2]

    # And from nothing, twice.
    reset_engines()
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    assert_models_match(any_db)


def test_ids_are_64_bit(any_db: str) -> None:
    """A row numbered past 2**31 - 1 (PostgreSQL's INTEGER) is stored and found, and the
    next one is numbered after it."""
    big = 2**40
    spec = ExperimentSpec.model_validate(make_spec())
    with Session(get_engine(), expire_on_commit=False) as session:
        row = Experiment(id=big, name="big", spec=spec.model_dump(mode="json"))
        session.add(row)
        session.flush()
        session.add(Event(experiment_id=big, kind="status", data={}, id=big))
        session.add(
            Dataset(
                id=big,
                name="d",
                format="csv",
                task="regression",
                features=1,
                samples=10,
                size_bytes=2**33,
                sha256="0" * 64,
                path="datasets/x.npz",
            )
        )
        session.commit()
        if get_engine().dialect.name == "postgresql":
            for table in ("experiment", "event", "dataset"):
                session.execute(
                    text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
                )
            session.commit()
        after = experiments.create(session=session, spec=spec, max_attempts=1)
        assert after.id == big + 1
        assert experiments.require(session=session, experiment_id=big).name == "big"
        assert session.get(Dataset, big).size_bytes == 2**33  # type: ignore[union-attr]
    assert 2**40 < MAX_ID < 2**63


def test_a_deleted_row_s_id_is_never_given_again(any_db: str) -> None:
    """A page or a Last-Event-ID naming a deleted run names nothing, never another run:
    SQLite tables are AUTOINCREMENT (every rebuild by a migration keeps them so), and
    PostgreSQL's sequences never go back."""
    spec = ExperimentSpec.model_validate(make_spec())
    settings = get_settings()
    with Session(get_engine(), expire_on_commit=False) as session:
        first = experiments.create(session=session, spec=spec, max_attempts=1)
        assert first.id is not None
        experiments.delete(session=session, experiment_id=first.id, settings=settings)
        second = experiments.create(session=session, spec=spec, max_attempts=1)
        assert second.id is not None and second.id > first.id
    if get_engine().dialect.name == "sqlite":
        wanted = {
            table.name
            for table in SQLModel.metadata.tables.values()
            if table.dialect_kwargs.get("sqlite_autoincrement")
        }
        assert {"experiment", "event", "sweep", "dataset"} <= wanted
        with get_engine().connect() as connection:
            made = dict(connection.exec_driver_sql("SELECT name, sql FROM sqlite_master").all())
        assert [name for name in sorted(wanted) if "AUTOINCREMENT" not in made[name]] == []


def test_importing_the_server_loads_no_tensorflow() -> None:
    code = (
        "import sys, app.main, app.client;"
        "bad = [m for m in ('tensorflow', 'keras', 'jax', 'worker') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
