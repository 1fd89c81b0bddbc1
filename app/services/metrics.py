"""Storing epochs of metrics exactly once, and reading them back as series."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from sqlmodel import Session, col, select

from app import events
from app.db import dialect_insert
from app.models import Event, Metric, utcnow
from app.services import sweeps
from app.services.queue import held


def ingest(
    session: Session,
    experiment_id: int,
    lease_token: str,
    points: Sequence[tuple[int, dict[str, float], float | None]],
) -> list[int]:
    """Upsert (epoch, values, time) points for a run that this token holds.

    Metric rows are keyed by (experiment, epoch, name) and events by (experiment, epoch),
    so a resend after a lost answer stores nothing twice. Returns the epochs that are new.
    """
    row = held(session, experiment_id, lease_token)
    metric_rows = [
        {"experiment_id": experiment_id, "epoch": epoch, "name": name, "value": value}
        for epoch, values, _ in points
        for name, value in values.items()
    ]
    if metric_rows:
        statement = dialect_insert(session, Metric)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["experiment_id", "epoch", "name"],
                set_={"value": statement.excluded.value},
            ),
            metric_rows,
        )
    new_epochs: list[int] = []
    now = utcnow()
    for epoch, values, time in sorted(points, key=lambda point: point[0]):
        data = {"epoch": epoch, "values": values, "time": time}
        event_id = session.execute(
            dialect_insert(session, Event)
            .values(
                experiment_id=experiment_id, kind="metrics", epoch=epoch, data=data, created_at=now
            )
            .on_conflict_do_nothing(index_elements=["experiment_id", "kind", "epoch"])
            .returning(col(Event.id))
        ).scalar()
        if event_id is not None:
            new_epochs.append(epoch)
            events.remember(session, events.StreamEvent(event_id, experiment_id, "metrics", data))

    last_epoch, last_values, _ = max(points, key=lambda point: point[0])
    if last_epoch + 1 >= row.epochs_done:
        row.epochs_done = last_epoch + 1
        row.last_metrics = {**row.last_metrics, **last_values}
    for epoch, values, _ in points:
        value = values.get("val_data_loss")
        if value is not None and (row.best_val_data_loss is None or value < row.best_val_data_loss):
            row.best_val_data_loss, row.best_epoch = value, epoch
    session.add(row)
    if new_epochs and row.sweep_id is not None:
        sweeps.after_metrics(session, row, new_epochs)
    session.commit()
    return new_epochs


Columns = dict[str, list[float | None]]


def series(session: Session, experiment_id: int) -> tuple[list[int], Columns]:
    """All of a run's metrics as columns aligned on the epochs."""
    return series_of_runs(session, [experiment_id]).get(experiment_id, ([], {}))


def series_of_runs(
    session: Session, experiment_ids: Sequence[int], names: Sequence[str] | None = None
) -> dict[int, tuple[list[int], Columns]]:
    """Several runs' metrics in one query (the compare view draws them all at once)."""
    query = select(Metric.experiment_id, Metric.epoch, Metric.name, Metric.value).where(
        col(Metric.experiment_id).in_(list(experiment_ids))
    )
    if names:
        query = query.where(col(Metric.name).in_(list(names)))
    rows = session.exec(query.order_by(col(Metric.experiment_id), col(Metric.epoch))).all()
    by_run: dict[int, list[tuple[int, str, float]]] = {}
    for experiment_id, epoch, name, value in rows:
        by_run.setdefault(experiment_id, []).append((epoch, name, value))
    result: dict[int, tuple[list[int], Columns]] = {}
    for experiment_id, run_rows in by_run.items():
        epochs = sorted({epoch for epoch, _, _ in run_rows})
        position = {epoch: index for index, epoch in enumerate(epochs)}
        columns: Columns = {}
        for epoch, name, value in run_rows:
            column = columns.setdefault(name, [None] * len(epochs))
            column[position[epoch]] = value if math.isfinite(value) else None
        result[experiment_id] = (epochs, dict(sorted(columns.items())))
    return result


def to_csv(epochs: list[int], columns: Columns) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(columns)
    writer.writerow(["epoch", *names])
    for index, epoch in enumerate(epochs):
        writer.writerow(
            [epoch, *("" if (v := columns[n][index]) is None else repr(v) for n in names)]
        )
    return buffer.getvalue()


def events_after(session: Session, experiment_id: int, after_id: int) -> list[events.StreamEvent]:
    """The stored events of a run after a given id, for a stream that (re)connects."""
    rows = session.exec(
        select(Event)
        .where(Event.experiment_id == experiment_id)
        .where(col(Event.id) > after_id)
        .order_by(col(Event.id))
    ).all()
    return [events.to_stream_event(row) for row in rows]
