"""Per run and metric: the value at the best epoch, the last, the minimum and the maximum.

Queries filter and sort on these (`metrics.val_data_loss.best < 0.4`) without reading
every epoch, so they are kept at ingest: one upsert per upload, in the upload's own
transaction, each row folding the upload's values into what was there. The best epoch is
the run's epoch of lowest `val_data_loss` (the run's `best_epoch` as ingest sets it);
when an upload moves it, every series takes its value there (none, for a series not
logged at that epoch). A retried attempt starts over: `forget` clears them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, or_, select, update
from sqlalchemy import delete as sa_delete
from sqlmodel import Session, SQLModel, col

from app.db import execute_many, insert_for
from app.models import Experiment, MetricSummary

EpochPoint = tuple[int, dict[str, float], float | None]
SUMMARIES = ("best", "last", "min", "max")
_COLUMNS = (
    "experiment_id",
    "name",
    "last_epoch",
    "last_value",
    "min_value",
    "max_value",
    "best_epoch",
    "best_value",
)
_TABLE = SQLModel.metadata.tables["metricsummary"]


def _fold(row: Experiment, points: Sequence[EpochPoint]) -> list[tuple[Any, ...]]:
    """One summary row per series of one run's upload (the upload's own best/last/min/max),
    its values in the order of `_COLUMNS`."""
    best = row.best_epoch
    at_best: dict[str, float] | None = None
    for epoch, values, _ in points:
        if epoch == best:
            at_best = values
    if len(points) == 1:  # the usual upload: one epoch, each series its own summary
        ((epoch, values, _),) = points
        return [
            (row.id, name, epoch, value, value, value, *_best(best, at_best, name))
            for name, value in values.items()
        ]
    series: dict[str, list[Any]] = {}
    for epoch, values, _ in points:
        for name, value in values.items():
            summary = series.get(name)
            if summary is None:
                series[name] = [epoch, value, value, value]
                continue
            if epoch >= summary[0]:
                summary[0], summary[1] = epoch, value
            summary[2] = min(summary[2], value)
            summary[3] = max(summary[3], value)
    return [(row.id, name, *folded, *_best(best, at_best, name)) for name, folded in series.items()]


def _best(
    best: int | None, at_best: dict[str, float] | None, name: str
) -> tuple[int | None, float | None]:
    """(best epoch, the series' value there) when this upload holds the best epoch."""
    if at_best is None:
        return None, None
    return best, at_best.get(name)


@functools.cache
def _upsert(dialect: str) -> Any:
    """The upsert that folds an upload's summaries into the stored ones, built once a
    dialect (building it cost more than running it)."""
    statement = insert_for(dialect)(_TABLE)
    new, old = statement.excluded, _TABLE.c
    later = new.last_epoch >= old.last_epoch
    moved = new.best_epoch.is_not(None)
    return statement.on_conflict_do_update(
        index_elements=["experiment_id", "name"],
        set_={
            "last_epoch": case((later, new.last_epoch), else_=old.last_epoch),
            "last_value": case((later, new.last_value), else_=old.last_value),
            "min_value": case((new.min_value < old.min_value, new.min_value), else_=old.min_value),
            "max_value": case((new.max_value > old.max_value, new.max_value), else_=old.max_value),
            "best_epoch": case((moved, new.best_epoch), else_=old.best_epoch),
            "best_value": case((moved, new.best_value), else_=old.best_value),
        },
    )


def keep(*, session: Session, uploads: Sequence[tuple[Experiment, Sequence[EpochPoint]]]) -> None:
    """Fold an upload into its runs' summaries: one upsert (per 4,000 series). Call after
    the runs' `best_epoch` took this upload into account; the caller commits."""
    rows = [summary for row, points in uploads for summary in _fold(row, points)]
    if not rows:
        return
    statement = _upsert(session.get_bind().dialect.name)
    execute_many(session, statement, _COLUMNS, rows)
    for row, points in uploads:
        _clear_stale_bests(session=session, row=row, points=points)


def _clear_stale_bests(*, session: Session, row: Experiment, points: Sequence[EpochPoint]) -> None:
    """A run's series that this upload left out have no value at a best epoch the upload
    brought: their best becomes none. Rare (a run logs the same series every epoch), so
    an upload stays one statement."""
    best = row.best_epoch
    if best is None or all(epoch != best for epoch, _, _ in points):
        return
    uploaded = {name for _, values, _ in points for name in values}
    stale = sorted(set(row.last_metrics or {}) - uploaded)
    if stale:
        session.execute(
            update(_TABLE)
            .where(_TABLE.c.experiment_id == row.id, _TABLE.c.name.in_(stale))
            .where(or_(_TABLE.c.best_epoch.is_(None), _TABLE.c.best_epoch != best))
            .values(best_epoch=best, best_value=None)
        )


def forget(*, session: Session, experiment_id: int) -> None:
    """Drop a run's summaries (its metric rows are going: a new attempt, a deletion)."""
    session.exec(sa_delete(MetricSummary).where(col(MetricSummary.experiment_id) == experiment_id))


def of_runs(
    *, session: Session, experiment_ids: Sequence[int], names: Sequence[str] | None = None
) -> dict[int, dict[str, dict[str, float | None]]]:
    """Each run's summaries (of every metric, or of those named): run id → metric →
    {best, last, min, max}; a run without any maps to {}."""
    found: dict[int, dict[str, dict[str, float | None]]] = {run: {} for run in experiment_ids}
    if not experiment_ids:
        return found
    query = select(
        col(MetricSummary.experiment_id),
        col(MetricSummary.name),
        col(MetricSummary.best_value),
        col(MetricSummary.last_value),
        col(MetricSummary.min_value),
        col(MetricSummary.max_value),
    ).where(col(MetricSummary.experiment_id).in_(list(experiment_ids)))
    if names is not None:
        query = query.where(col(MetricSummary.name).in_(list(names)))
    rows = session.execute(query).all()
    for experiment_id, name, best, last, low, high in rows:
        found.setdefault(experiment_id, {})[name] = {
            "best": best,
            "last": last,
            "min": low,
            "max": high,
        }
    return found
