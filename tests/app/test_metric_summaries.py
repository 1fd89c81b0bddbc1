"""The per-metric summaries that queries read (app/services/summaries.py), on SQLite and
PostgreSQL: after uploads in any order and resends they equal what the stored metric
rows say; a pack's upload keeps every member's in one statement; a retried attempt, a
script run, a deletion; and migration 0006 fills them (and the searchable spec values)
from the rows already stored, as the services write them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlmodel import Session

from app.db import get_engine, reset_engines
from app.main import create_app
from app.migrate import alembic_config
from app.models import Status
from app.services import experiments, ingest, metrics, queue, scripts, summaries
from app.settings import get_settings
from app.spec import ExperimentSpec
from tests.factories import make_spec

WORKER = {"worker_id": "w", "host": "h", "devices": ["CPU"], "slot": "CPU", "wait": 0}


@pytest.fixture
def api(any_db: str) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def from_rows(run_id: int) -> dict[str, dict[str, float | None]]:
    """The summaries as the metric rows have them, worked out the long way."""
    with get_engine().connect() as connection:
        rows = connection.execute(
            text("SELECT epoch, name, value FROM metric WHERE experiment_id = :id"),
            {"id": run_id},
        ).all()
    series: dict[str, dict[int, float]] = {}
    for epoch, name, value in rows:
        series.setdefault(name, {})[epoch] = value
    losses = series.get("val_data_loss", {})
    best = min(losses, key=lambda epoch: (losses[epoch], epoch)) if losses else None
    return {
        name: {
            "best": values.get(best) if best is not None else None,
            "last": values[max(values)],
            "min": min(values.values()),
            "max": max(values.values()),
        }
        for name, values in series.items()
    }


def spec_rows() -> list[tuple[Any, ...]]:
    """Every searchable spec value, as the services or the migration wrote them."""
    with get_engine().connect() as connection:
        rows = connection.execute(
            text("SELECT experiment_id, path, generic, kind, number, text FROM experimentparam")
        )
        return sorted(tuple(row) for row in rows)


def kept(run_id: int) -> dict[str, dict[str, float | None]]:
    with Session(get_engine()) as session:
        return summaries.of_runs(session=session, experiment_ids=[run_id])[run_id]


def new_run(session: Session, name: str = "run") -> Any:
    spec = ExperimentSpec.model_validate(make_spec(name=name))
    return experiments.create(session=session, spec=spec, max_attempts=2)


UPLOADS: list[list[tuple[int, dict[str, float], float | None]]] = [
    [(0, {"val_data_loss": 0.5, "val_accuracy": 0.1, "lr": 0.01}, None)],
    [(1, {"val_data_loss": 0.3, "val_accuracy": 0.2}, None)],  # best moves; lr not logged
    [(1, {"val_data_loss": 0.3, "val_accuracy": 0.2}, None)],  # a resend
    # Out of order, in one upload; epoch 2 ties the best (the earliest stays best).
    [
        (3, {"val_data_loss": 0.35, "val_accuracy": 0.4}, None),
        (2, {"val_data_loss": 0.3, "val_accuracy": 0.5}, None),
    ],
    [(4, {"val_data_loss": 0.2, "val_accuracy": 0.45, "lr": 0.001}, None)],  # best moves
    [(5, {"val_data_loss": 0.25}, None)],  # val_accuracy not logged: its last stays
]


def test_summaries_follow_every_upload(any_db: str) -> None:
    with Session(get_engine(), expire_on_commit=False) as session:
        row = new_run(session)
        for upload in UPLOADS:
            ingest.store(session=session, uploads=[(row, upload)])
            session.commit()
            assert kept(row.id) == from_rows(row.id)
    assert kept(row.id) == {
        "val_data_loss": {"best": 0.2, "last": 0.25, "min": 0.2, "max": 0.5},
        "val_accuracy": {"best": 0.45, "last": 0.45, "min": 0.1, "max": 0.5},
        "lr": {"best": 0.001, "last": 0.001, "min": 0.001, "max": 0.01},
    }


def test_a_series_missing_at_the_best_epoch_has_no_best(any_db: str) -> None:
    with Session(get_engine(), expire_on_commit=False) as session:
        row = new_run(session)
        for upload in UPLOADS[:2]:
            ingest.store(session=session, uploads=[(row, upload)])
        session.commit()
    assert kept(row.id)["lr"] == {"best": None, "last": 0.01, "min": 0.01, "max": 0.01}
    assert kept(row.id) == from_rows(row.id)


def test_a_run_without_validation_data_loss_has_no_best(any_db: str) -> None:
    with Session(get_engine(), expire_on_commit=False) as session:
        row = new_run(session)
        ingest.store(session=session, uploads=[(row, [(0, {"loss": 2.0}, None)])])
        ingest.store(session=session, uploads=[(row, [(1, {"loss": 1.0}, None)])])
        session.commit()
    assert kept(row.id) == {"loss": {"best": None, "last": 1.0, "min": 1.0, "max": 2.0}}


def test_a_pack_upload_keeps_every_member_in_one_statement(api: TestClient) -> None:
    body = {
        "name": "packed",
        "base": make_spec(),
        "axes": [{"path": "model.layers[*].regularizer.l2", "values": [0, 1e-3]}],
    }
    assert api.post("/api/sweeps", json=body).status_code == 201
    job = api.post("/api/worker/claim", json=WORKER).json()
    ids = [member["experiment_id"] for member in job["pack"]["members"]]
    assert len(ids) == 2
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "metricsummary" in statement.lower():
            statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", record)
    try:
        for epoch, losses in enumerate(([0.9, 0.8], [0.7, 0.85], [0.75, 0.6])):
            upload = {
                "lease_token": job["lease_token"],
                "points": [
                    {"experiment_id": run, "epoch": epoch, "values": {"val_data_loss": loss}}
                    for run, loss in zip(ids, losses, strict=True)
                ],
            }
            assert api.post("/api/worker/metrics", json=upload).status_code == 200
    finally:
        event.remove(get_engine(), "before_cursor_execute", record)
    assert len(statements) == 3  # one upsert per upload, for both members
    found = {run: api.get(f"/api/experiments/{run}").json()["metrics"] for run in ids}
    assert found[ids[0]]["val_data_loss"] == {"best": 0.7, "last": 0.75, "min": 0.7, "max": 0.9}
    assert found[ids[1]]["val_data_loss"] == {"best": 0.6, "last": 0.6, "min": 0.6, "max": 0.85}
    for run in ids:
        assert kept(run) == from_rows(run)


def test_a_retried_attempt_starts_its_summaries_over(any_db: str) -> None:
    with Session(get_engine(), expire_on_commit=False) as session:
        run_id = new_run(session).id
        first = queue.claim(
            session=session, worker_id="w", host="h", devices=["CPU"], lease_seconds=60
        )
        assert first is not None and first.lease_token is not None
        points = [(0, {"val_data_loss": 0.1, "old": 1.0}, None), (1, {"val_data_loss": 0.2}, None)]
        metrics.ingest(
            session=session, experiment_id=run_id, lease_token=first.lease_token, points=points
        )
        assert kept(run_id)["val_data_loss"]["best"] == 0.1
        queue.finish(
            session=session,
            experiment_id=run_id,
            lease_token=first.lease_token,
            status=Status.failed,
            error="child died",
            retryable=True,
        )
        second = queue.claim(
            session=session, worker_id="w", host="h", devices=["CPU"], lease_seconds=60
        )
        assert second is not None and second.id == run_id and second.attempt == 2
        assert kept(run_id) == {}  # cleared with the earlier attempt's metric rows
        assert second.lease_token is not None
        metrics.ingest(
            session=session,
            experiment_id=run_id,
            lease_token=second.lease_token,
            points=[(0, {"val_data_loss": 0.4}, None)],
        )
    assert kept(run_id) == {"val_data_loss": {"best": 0.4, "last": 0.4, "min": 0.4, "max": 0.4}}


def test_script_runs_and_deletion(any_db: str) -> None:
    with Session(get_engine(), expire_on_commit=False) as session:
        row = scripts.create(session=session, name="mine", script={}, lease_seconds=60)
        assert row.id is not None
        scripts.add_epochs(
            session=session,
            experiment_id=row.id,
            points=[(0, {"val_data_loss": 0.3, "data_loss": 0.2}, None)],
            lease_seconds=60,
        )
        assert kept(row.id)["data_loss"] == {"best": 0.2, "last": 0.2, "min": 0.2, "max": 0.2}
        experiments.cancel(session=session, experiment_id=row.id)
        experiments.delete(session=session, experiment_id=row.id, settings=get_settings())
    with get_engine().connect() as connection:
        left = connection.execute(text("SELECT count(*) FROM metricsummary")).scalar_one()
    assert left == 0


def test_migration_0006_fills_the_summaries_ingest_keeps(any_db: str) -> None:
    with Session(get_engine(), expire_on_commit=False) as session:
        runs = [new_run(session, f"run {index}") for index in range(3)]
        for upload in UPLOADS:
            ingest.store(session=session, uploads=[(runs[0], upload)])
        ingest.store(session=session, uploads=[(runs[1], UPLOADS[0])])
        noted = experiments.create(
            session=session,
            spec=ExperimentSpec.model_validate(make_spec(name="noted", notes="why")),
            max_attempts=1,
        )
        session.commit()
        scripts.create(session=session, name="script", script={"dataset": "x"}, lease_seconds=9)
    ids = [row.id for row in (*runs, noted)]
    before = {run: kept(run) for run in ids}
    params_before = spec_rows()
    reset_engines()
    command.downgrade(alembic_config(any_db), "0005")
    reset_engines()
    command.upgrade(alembic_config(any_db), "head")
    assert {run: kept(run) for run in ids} == before
    assert spec_rows() == params_before and len(params_before) > 4 * 20
    assert before[runs[0].id] == from_rows(runs[0].id) and before[runs[2].id] == {}
    with Session(get_engine()) as session:
        row = experiments.require(session=session, experiment_id=noted.id)
        assert row.notes == "why" and row.tags == {}
