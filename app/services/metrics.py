"""Storing epochs of metrics exactly once, and reading them back as series."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from app import events
from app.db import dialect_insert
from app.errors import NotFound
from app.models import BatchMetric, Event, Experiment, Metric, Status
from app.services import experiments
from app.services.ingest import EpochPoint, store
from app.services.queue import EPOCH_KINDS, held


def ingest(
    *,
    session: Session,
    experiment_id: int,
    lease_token: str,
    points: Sequence[EpochPoint],
) -> list[int]:
    """Upsert (epoch, values, time) points for a run that this token holds.

    Metric rows are keyed by (experiment, epoch, name) and events by (experiment, attempt,
    epoch), so a resend after a lost answer stores nothing twice. Returns the epochs that
    are new.
    """
    row = held(session=session, experiment_id=experiment_id, lease_token=lease_token)
    new_epochs = store_epochs(session=session, row=row, points=points)
    session.commit()
    return new_epochs


def store_epochs(*, session: Session, row: Experiment, points: Sequence[EpochPoint]) -> list[int]:
    """Upsert epochs of a locked run, record one `metrics` event per new epoch of its
    attempt and update the run's summary (the bulk path of app/services/ingest.py, for one
    run); the caller commits. Shared by the worker's uploads and by script runs."""
    assert row.id is not None
    return store(session=session, uploads=[(row, points)]).get(row.id, [])


Columns = dict[str, list[float | None]]


def series(*, session: Session, experiment_id: int) -> tuple[list[int], Columns]:
    """All of a run's metrics as columns aligned on the epochs."""
    found = series_of_runs(session=session, experiment_ids=[experiment_id])
    return found.get(experiment_id, ([], {}))


def series_of_runs(
    *, session: Session, experiment_ids: Sequence[int], names: Sequence[str] | None = None
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


def runs_series(
    *, session: Session, ids: Sequence[int], names: Sequence[str] | None = None
) -> tuple[dict[int, tuple[list[int], Columns]], list[int]]:
    """The metrics of the runs among `ids` that exist, by id in the order asked, and the
    ids that name no run (the compare view asks for several at once)."""
    found, missing = experiments.find(session=session, ids=ids)
    data = series_of_runs(session=session, experiment_ids=list(found), names=names)
    return {run_id: data.get(run_id, ([], {})) for run_id in found}, missing


def to_csv(epochs: list[int], columns: Columns) -> str:
    """Columns as CSV: `epoch`, then one column per metric (empty where missing)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(columns)
    writer.writerow(["epoch", *names])
    for index, epoch in enumerate(epochs):
        writer.writerow(
            [epoch, *("" if (v := columns[n][index]) is None else repr(v) for n in names)]
        )
    return buffer.getvalue()


def replay(
    *, session: Session, experiment_id: int, after_id: int
) -> tuple[list[events.StreamEvent], bool]:
    """The stored events of a run after a given id, for a stream that (re)connects, and
    whether the run has ended. Epoch events come from the run's latest attempt only (an
    earlier attempt's were replaced by the retry, as its metric rows were); status events
    tell every attempt's story. NotFound when there is no such run."""
    row = session.get(Experiment, experiment_id)
    if row is None:
        raise NotFound(f"experiment {experiment_id} not found")
    rows = session.exec(
        select(Event)
        .where(Event.experiment_id == experiment_id)
        .where(col(Event.id) > after_id)
        .where(col(Event.kind).not_in(EPOCH_KINDS) | (col(Event.attempt) == row.attempt))
        .order_by(col(Event.id))
    ).all()
    return [events.to_stream_event(event) for event in rows], Status(row.status).is_final


# --- per-batch series (script runs that log every batch or every N steps) -------------


def store_steps(
    *, session: Session, experiment_id: int, points: Sequence[tuple[int, dict[str, float]]]
) -> int:
    """Upsert (step, values) points keyed by (experiment, step, name): a resend stores
    nothing twice. Returns the number of values written; the caller commits."""
    rows = [
        {"experiment_id": experiment_id, "step": step, "name": name, "value": value}
        for step, values in points
        for name, value in values.items()
    ]
    if rows:
        statement = dialect_insert(session, BatchMetric)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["experiment_id", "step", "name"],
                set_={"value": statement.excluded.value},
            ),
            rows,
        )
    return len(rows)


@dataclass
class StepBuckets:
    """One series cut into at most `max_points` buckets of consecutive steps.

    Each bucket keeps its first and last step, its minimum, maximum and mean, and how many
    points it holds: a chart draws the mean as a line and min-max as a band, so a spike is
    never sampled away. With fewer points than buckets, each point is its own bucket.
    """

    step: list[int] = field(default_factory=list)
    last_step: list[int] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(self.count)


def step_names(*, session: Session, experiment_id: int) -> list[str]:
    """The names of a run's per-batch series, sorted."""
    query = (
        select(BatchMetric.name)
        .where(BatchMetric.experiment_id == experiment_id)
        .distinct()
        .order_by(col(BatchMetric.name))
    )
    return list(session.exec(query).all())


def bucketed_steps(
    *,
    session: Session,
    experiment_id: int,
    names: Sequence[str] | None = None,
    max_points: int = 1000,
) -> dict[str, StepBuckets]:
    """Each per-batch series in at most `max_points` buckets of (nearly) equal counts.

    The database does the work in one query (NTILE over each series ordered by step, then
    one GROUP BY), so only the buckets travel: ~100 ms for 100k points on SQLite.
    """
    bucket = (
        func.ntile(max_points)
        .over(partition_by=col(BatchMetric.name), order_by=col(BatchMetric.step))
        .label("bucket")
    )
    inner = sa_select(
        col(BatchMetric.name).label("name"),
        col(BatchMetric.step).label("step"),
        col(BatchMetric.value).label("value"),
        bucket,
    ).where(col(BatchMetric.experiment_id) == experiment_id)
    if names:
        inner = inner.where(col(BatchMetric.name).in_(list(names)))
    ranked = inner.subquery()
    query = (
        sa_select(
            ranked.c.name,
            func.min(ranked.c.step),
            func.max(ranked.c.step),
            func.min(ranked.c.value),
            func.max(ranked.c.value),
            func.avg(ranked.c.value),
            func.count(),
        )
        .group_by(ranked.c.name, ranked.c.bucket)
        .order_by(ranked.c.name, ranked.c.bucket)
    )
    result: dict[str, StepBuckets] = {}
    for name, first, last, low, high, mean, count in session.execute(query):
        buckets = result.setdefault(name, StepBuckets())
        buckets.step.append(int(first))
        buckets.last_step.append(int(last))
        buckets.min.append(float(low))
        buckets.max.append(float(high))
        # A bucket's mean lies within its bounds (float sums may stray by an ulp).
        buckets.mean.append(min(max(float(mean), float(low)), float(high)))
        buckets.count.append(int(count))
    return result


def steps_csv(*, session: Session, experiment_id: int) -> Iterator[str]:
    """Every stored per-batch value as CSV (`step` then one column per series), in step
    order, produced a chunk at a time so that a long run is never held whole as text."""
    names = step_names(session=session, experiment_id=experiment_id)
    position = {name: index for index, name in enumerate(names)}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", *names])
    query = (
        select(BatchMetric.step, BatchMetric.name, BatchMetric.value)
        .where(BatchMetric.experiment_id == experiment_id)
        .order_by(col(BatchMetric.step))
        .execution_options(yield_per=5000)
    )
    current: int | None = None
    row: list[str] = []
    for step, name, value in session.exec(query):
        if step != current:
            if current is not None:
                writer.writerow([current, *row])
            current, row = step, [""] * len(names)
        row[position[name]] = repr(value)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if current is not None:
        writer.writerow([current, *row])
    yield buffer.getvalue()
