"""Submitting, finding, querying, editing, cancelling and deleting experiments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import func, literal
from sqlmodel import Session, col, select

from app import events
from app.domain.groups import group_key
from app.domain.query import QueryError, parse_filter, parse_order
from app.domain.query_sql import order_clauses, where_clause
from app.domain.storage import remove_artifacts
from app.errors import Conflict, InvalidField, NotFound
from app.models import (
    BatchMetric,
    Event,
    Experiment,
    ExperimentParam,
    Metric,
    MetricSummary,
    Status,
    utcnow,
)
from app.services import datasets, params
from app.settings import Settings
from app.spec import ExperimentSpec

MAX_TAGS = 100


def status_data(row: Experiment) -> dict[str, Any]:
    """The payload of a `status` event."""
    return {
        "status": row.status,
        "attempt": row.attempt,
        "device": row.device,
        "error": row.error,
        "error_epoch": row.error_epoch,
        "epochs_done": row.epochs_done,
    }


def change_status(row: Experiment, status: Status, *, session: Session, **fields: Any) -> None:
    """Set a new status (and any other fields) and record its event; the caller commits."""
    row.status = status
    for name, value in fields.items():
        setattr(row, name, value)
    if status.is_final and row.finished_at is None:
        row.finished_at = utcnow()
    session.add(row)
    session.flush()
    assert row.id is not None
    events.record(session, row.id, "status", status_data(row), attempt=row.attempt)


def create(
    *,
    session: Session,
    spec: ExperimentSpec,
    max_attempts: int,
    sweep_id: int | None = None,
    point: dict[str, float] | None = None,
    commit: bool = True,
) -> Experiment:
    """Queue a run whose uploaded dataset, if any, is resolved already."""
    row = Experiment(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        status=Status.queued,
        max_attempts=max_attempts,
        sweep_id=sweep_id,
        point=point,
        group_key=group_key(spec),
        notes=spec.notes,
    )
    session.add(row)
    session.flush()
    params.record(session=session, rows=[row])
    change_status(row, Status.queued, session=session)
    if commit:
        session.commit()
    return row


def submit(*, session: Session, spec: ExperimentSpec, max_attempts: int) -> Experiment:
    """Queue a run as submitted: an uploaded dataset is filled in from the stored upload
    (InvalidField when there is none, or its data cannot feed the layers)."""
    return create(
        session=session,
        spec=datasets.resolve(session=session, spec=spec),
        max_attempts=max_attempts,
    )


def require(*, session: Session, experiment_id: int, lock: bool = False) -> Experiment:
    """The run with this id (locked for update when asked), or NotFound."""
    row = session.get(Experiment, experiment_id, with_for_update=lock)
    if row is None:
        raise NotFound(f"experiment {experiment_id} not found")
    return row


def find(*, session: Session, ids: Sequence[int]) -> tuple[dict[int, Experiment], list[int]]:
    """The runs among `ids` that exist, by id in the order asked, and the ids that name
    no run (the pages ask for several runs at once)."""
    rows = session.exec(select(Experiment).where(col(Experiment.id).in_(list(ids)))).all()
    by_id = {row.id: row for row in rows if row.id is not None}
    found = {run_id: by_id[run_id] for run_id in ids if run_id in by_id}
    return found, [run_id for run_id in ids if run_id not in by_id]


def list_experiments(
    *,
    session: Session,
    status: Status | None = None,
    name: str | None = None,
    ids: list[int] | None = None,
    filter: str | None = None,
    order_by: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Experiment], int]:
    """One page of the runs that match, in the order asked (newest first by default),
    with how many match in all. `filter` and `order_by` are in the query language of
    app/domain/query.py; a mistake in either is InvalidField naming it and the position."""
    try:
        condition = where_clause(parse_filter(filter or ""), _dialect(session))
    except QueryError as error:
        raise InvalidField(("query", "filter"), str(error), input=filter) from None
    try:
        order = order_clauses(parse_order(order_by or ""), _dialect(session))
    except QueryError as error:
        raise InvalidField(("query", "order_by"), str(error), input=order_by) from None
    conditions: list[Any] = [] if condition is None else [condition]
    if status is not None:
        conditions.append(Experiment.status == status)
    if name:
        conditions.append(col(Experiment.name).ilike(f"%{name}%"))
    if ids is not None:
        conditions.append(col(Experiment.id).in_(ids))
    # The page's ids first (the search and the sort read indexes, never a spec), then
    # those runs whole. With a filter, the count of every match comes in the same pass.
    count = func.count().over() if conditions else literal(None)
    page = session.execute(
        select(col(Experiment.id), count)
        .where(*conditions)
        .order_by(*order)
        .offset(offset)
        .limit(limit)
    ).all()
    found, _ = find(session=session, ids=[run_id for run_id, _ in page])
    if page and conditions:
        total = page[0][1]
    elif len(page) < limit and (page or offset == 0):
        total = offset + len(page)  # this page holds the last match
    else:  # no filter (a count of the table is instant), or past the last page
        total = session.exec(select(func.count()).select_from(Experiment).where(*conditions)).one()
    return list(found.values()), int(total)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def edit(
    *,
    session: Session,
    experiment_id: int,
    tags: dict[str, str | None] | None = None,
    remove_tags: Sequence[str] = (),
    notes: str | None = None,
    set_notes: bool = False,
) -> Experiment:
    """Change a run's tags and notes, whatever its status. Tags merge: `remove_tags` go
    first, then each key of `tags` is set (a null value makes a bare label); the notes
    are replaced when `set_notes` (None clears them). InvalidField past MAX_TAGS."""
    row = require(session=session, experiment_id=experiment_id, lock=True)
    merged = {key: value for key, value in row.tags.items() if key not in set(remove_tags)}
    merged.update(tags or {})
    if len(merged) > MAX_TAGS:
        session.rollback()
        raise InvalidField(
            ("body", "tags"), f"a run has at most {MAX_TAGS} tags; this would make {len(merged)}"
        )
    row.tags = merged  # a new dict: the JSON column sees the change
    if set_notes:
        row.notes = notes
    session.add(row)
    session.commit()
    return row


def cancel(*, session: Session, experiment_id: int) -> Experiment:
    """Cancel a queued or running experiment at once; its worker learns it at the next
    heartbeat and stops the training child. Conflict when it had already ended."""
    row = require(session=session, experiment_id=experiment_id, lock=True)
    if Status(row.status).is_final:
        raise Conflict(f"experiment {row.id} already {row.status}")
    change_status(row, Status.cancelled, session=session, lease_expires_at=None)
    session.commit()
    return row


def delete(*, session: Session, experiment_id: int, settings: Settings) -> None:
    """Delete a run that is not running, with its metrics, events and files (Conflict
    while it runs: cancel it first)."""
    row = require(session=session, experiment_id=experiment_id, lock=True)
    if row.status == Status.running:
        raise Conflict(f"experiment {row.id} is running: cancel it first")
    for table in (Metric, MetricSummary, ExperimentParam, BatchMetric, Event):
        session.exec(sa_delete(table).where(col(table.experiment_id) == experiment_id))
    session.delete(row)
    session.commit()
    remove_artifacts(settings, experiment_id)
