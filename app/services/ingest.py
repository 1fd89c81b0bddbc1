"""Storing epochs of metrics in bulk: one run's, a pack's members', a script's.

One upload is one transaction: one `INSERT … ON CONFLICT` for every (run, epoch, metric)
row of every run in it, one multi-row insert for the runs' new `metrics` events, each
run's summary (last values, best validation data loss), one upsert of the per-metric
summaries that queries read (app/services/summaries.py) and the sweep's pruning rule.
Metric rows are keyed by (run, epoch, name) and events by (run, kind, attempt, epoch), so
a resend after a lost answer stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, SQLModel, col, select

from app import events
from app.db import dialect_insert
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
        {"experiment_id": row.id, "epoch": epoch, "name": name, "value": value}
        for row, points in uploads
        for epoch, values, _ in points
        for name, value in values.items()
    ]
    if metric_rows:
        # A Core statement on the table, not the ORM entity: the ORM's bulk path costs
        # more than the insert itself at a pack's 32 x 20 rows an upload.
        statement = dialect_insert(session, _METRICS)
        statement = statement.on_conflict_do_update(
            index_elements=["experiment_id", "epoch", "name"],
            set_={"value": statement.excluded.value},
        )
        connection = session.connection()
        for start in range(0, len(metric_rows), _CHUNK):
            connection.execute(statement, metric_rows[start : start + _CHUNK])
    new_epochs = _record_events(session=session, uploads=uploads)
    for row, points in uploads:
        _summarize(row, points)
        session.add(row)
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
    table = _EVENTS
    connection = session.connection()
    for start in range(0, len(rows), _CHUNK):
        statement = (
            dialect_insert(session, table)
            .values(rows[start : start + _CHUNK])
            .on_conflict_do_nothing(index_elements=["experiment_id", "kind", "attempt", "epoch"])
            .returning(table.c.id, table.c.experiment_id, table.c.epoch)
        )
        for event_id, experiment_id, epoch in connection.execute(statement):
            created[(experiment_id, epoch)] = event_id
    for data in rows:  # in upload order, so each run's events publish in epoch order
        key = (data["experiment_id"], data["epoch"])
        if key in created:
            new.setdefault(key[0], []).append(key[1])
            events.remember(
                session, events.StreamEvent(created[key], key[0], "metrics", data["data"])
            )
    return new


def _summarize(row: Experiment, points: Sequence[EpochPoint]) -> None:
    """The run's last values and its best validation data loss so far."""
    last_epoch, last_values, _ = max(points, key=lambda point: point[0])
    if last_epoch + 1 >= row.epochs_done:
        row.epochs_done = last_epoch + 1
        row.last_metrics = {**row.last_metrics, **last_values}
    for epoch, values, _ in points:
        value = values.get("val_data_loss")
        if value is not None and (row.best_val_data_loss is None or value < row.best_val_data_loss):
            row.best_val_data_loss, row.best_epoch = value, epoch


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
