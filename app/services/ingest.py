"""Storing epochs of metrics in bulk: one run's, a pack's members', a script's.

One upload is one transaction: one `INSERT … ON CONFLICT` for every (run, epoch, metric)
row of every run in it, one multi-row insert for the runs' new `metrics` events, each
run's summary (last values, best validation data loss), one upsert of the per-metric
summaries that queries read (app/services/summaries.py) and the sweep's pruning rule.
Metric rows are keyed by (run, epoch, name) and events by (run, kind, attempt, epoch), so
a resend after a lost answer stores nothing twice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, select

from app import events
from app.db import execute_many, insert_for
from app.errors import LeaseLost
from app.models import Experiment, Status, utcnow
from app.services import summaries, sweeps
from app.services.queue import STOPPED

EpochPoint = tuple[int, dict[str, float], float | None]
# The tables as Core sees them (the statements below are Core's, not the ORM's).
_METRICS = SQLModel.metadata.tables["metric"]
_EVENTS = SQLModel.metadata.tables["event"]
# Rows per INSERT statement: SQLite takes at most 32,766 bound values in one statement.
_CHUNK = 4000


@dataclass
class Stored:
    """What an upload stored: values written, each run's new epochs, the runs stopped."""

    values: int
    new_epochs: dict[int, list[int]]
    stopped: list[int]


def store(
    *, session: Session, uploads: Sequence[tuple[Experiment, Sequence[EpochPoint]]]
) -> dict[int, list[int]]:
    """Upsert the epochs of locked runs; returns each run's new epochs. The caller commits."""
    uploads = [(row, points) for row, points in uploads if points]
    metric_rows = [
        (row.id, epoch, name, value)
        for row, points in uploads
        for epoch, values, _ in points
        for name, value in values.items()
    ]
    if metric_rows:
        statement = _upsert_metrics(_dialect(session))
        execute_many(session, statement, ("experiment_id", "epoch", "name", "value"), metric_rows)
    new_epochs = _record_events(session=session, uploads=uploads)
    _summarize(session=session, uploads=uploads)
    summaries.keep(session=session, uploads=uploads)  # after _summarize: the best epochs
    pruning: dict[int, bool] = {}  # each sweep looked up once an upload
    for row, _ in uploads:
        assert row.id is not None
        sweep_id = row.sweep_id
        if not new_epochs.get(row.id) or sweep_id is None:
            continue
        if sweep_id not in pruning:
            pruning[sweep_id] = sweeps.prunes(session=session, sweep_id=sweep_id)
        if pruning[sweep_id]:
            sweeps.after_metrics(session=session, row=row, new_epochs=new_epochs[row.id])
    return new_epochs


def _dialect(session: Session) -> str:
    return str(session.get_bind().dialect.name)


# The statements are built once per dialect: building one (its `excluded` columns above
# all) cost more than running it, and a statement built once is compiled once.
@functools.cache
def _upsert_metrics(dialect: str) -> Any:
    statement = insert_for(dialect)(_METRICS)
    return statement.on_conflict_do_update(
        index_elements=["experiment_id", "epoch", "name"],
        set_={"value": statement.excluded.value},
    )


@functools.cache
def _insert_events(dialect: str) -> Any:
    return (
        insert_for(dialect)(_EVENTS)
        .on_conflict_do_nothing(index_elements=["experiment_id", "kind", "attempt", "epoch"])
        .returning(_EVENTS.c.id, _EVENTS.c.experiment_id, _EVENTS.c.epoch)
    )


def _record_events(
    *, session: Session, uploads: Sequence[tuple[Experiment, Sequence[EpochPoint]]]
) -> dict[int, list[int]]:
    """One `metrics` event per new (run, attempt, epoch), in one insert per chunk, in
    epoch order; queued for publishing at commit."""
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for row, points in uploads:
        for epoch, values, time in sorted(points, key=lambda point: point[0]):
            rows.append(
                {
                    "experiment_id": row.id,
                    "kind": "metrics",
                    "attempt": row.attempt,
                    "epoch": epoch,
                    "data": {"epoch": epoch, "values": values, "time": time},
                    "created_at": now,
                }
            )
    new: dict[int, list[int]] = {}
    created: dict[tuple[int, int], int] = {}
    statement = _insert_events(_dialect(session))
    connection = session.connection()
    for start in range(0, len(rows), _CHUNK):
        # Many rows with RETURNING: SQLAlchemy sends them as multi-row INSERTs of one
        # cached statement ("insertmanyvalues").
        for event_id, experiment_id, epoch in connection.execute(
            statement, rows[start : start + _CHUNK]
        ):
            created[(experiment_id, epoch)] = event_id
    for data in rows:  # in upload order, so each run's events publish in epoch order
        key = (data["experiment_id"], data["epoch"])
        if key in created:
            new.setdefault(key[0], []).append(key[1])
            events.remember(
                session, events.StreamEvent(created[key], key[0], "metrics", data["data"])
            )
    return new


_SUMMARY = ("epochs_done", "last_metrics", "best_epoch", "best_val_data_loss")


def _summarize(
    *, session: Session, uploads: Sequence[tuple[Experiment, Sequence[EpochPoint]]]
) -> None:
    """Each run's last values and its best validation data loss so far: set on the (locked)
    rows as already stored, and written with one UPDATE for every run of the upload
    rather than the ORM's one flush per row."""
    changes = []
    for row, points in uploads:
        fields = {name: getattr(row, name) for name in _SUMMARY}
        last_epoch, last_values, _ = max(points, key=lambda point: point[0])
        if last_epoch + 1 >= fields["epochs_done"]:
            fields["epochs_done"] = last_epoch + 1
            fields["last_metrics"] = {**fields["last_metrics"], **last_values}
        for epoch, values, _ in points:
            value = values.get("val_data_loss")
            best = fields["best_val_data_loss"]
            if value is not None and (best is None or value < best):
                fields["best_val_data_loss"], fields["best_epoch"] = value, epoch
        for name, value in fields.items():
            set_committed_value(row, name, value)
        changes.append({"run": row.id, **fields})
    if changes:
        session.connection().execute(_UPDATE_SUMMARY, changes)


_UPDATE_SUMMARY = (
    update(Experiment)
    .where(col(Experiment.id) == bindparam("run"))
    .values({name: bindparam(name) for name in _SUMMARY})
)


def ingest_points(
    *,
    session: Session,
    lease_token: str,
    points: Sequence[tuple[int, EpochPoint]],
) -> Stored:
    """Store (run, epoch point) pairs of the runs one lease holds (a pack's members, or a
    single run), in one transaction. A run that was cancelled or pruned meanwhile stores
    nothing more and is named in `stopped`, as is one its points pruned just now. Raises
    LeaseLost when the token holds none of the runs."""
    ids = sorted({experiment_id for experiment_id, _ in points})
    rows = session.exec(
        select(Experiment)
        .where(col(Experiment.id).in_(ids))
        .where(Experiment.lease_token == lease_token)
        .order_by(col(Experiment.id))
        .with_for_update()
    ).all()
    held = {row.id: row for row in rows if row.id is not None}
    running = {run: row for run, row in held.items() if row.status == Status.running}
    foreign = [run for run in ids if run not in held]
    if foreign or not running:
        what = f"experiments {foreign}" if foreign else "none of these experiments"
        session.rollback()
        raise LeaseLost(f"this lease holds {what} (running)")
    by_run: dict[int, list[EpochPoint]] = {run: [] for run in running}
    for experiment_id, point in points:
        if experiment_id in by_run:
            by_run[experiment_id].append(point)
    new_epochs = store(session=session, uploads=[(running[run], by_run[run]) for run in by_run])
    stopped = [run for run, row in held.items() if row.status in STOPPED and run is not None]
    session.commit()
    values = sum(len(values) for run in by_run for _, values, _ in by_run[run])
    return Stored(values=values, new_epochs=new_epochs, stopped=sorted(stopped))
