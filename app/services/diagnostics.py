"""Diagnostics of stored runs: verdicts from their curves (app/domain/verdict.py) and the
per-layer kernel histograms that workers upload (one `Event` of kind "histogram" per run,
attempt and epoch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlmodel import Session, col, select

from app import events
from app.db import dialect_insert
from app.domain.verdict import Verdict, trivial_loss, verdict
from app.models import Event, Experiment, utcnow
from app.services import experiments, metrics
from app.services.queue import held

HISTOGRAM = "histogram"
VERDICT_METRICS = ["data_loss", "val_data_loss"]
LayerHistograms = dict[str, dict[str, list[float]]]


def verdict_of_run(
    row: Experiment, epochs: Sequence[int], columns: Mapping[str, Sequence[float | None]]
) -> Verdict:
    """The verdict of a stored run from its metric columns (as `metrics.series` reads them)."""
    size = len(epochs)
    return verdict(
        epochs,
        columns.get("data_loss", [None] * size),
        columns.get("val_data_loss", [None] * size),
        trivial_loss=trivial_loss(row.spec) if row.source == "queue" else None,
    )


def verdicts(*, session: Session, ids: Sequence[int]) -> tuple[dict[int, Verdict], list[int]]:
    """The verdicts of the runs among `ids` that exist, by id in the order asked, and the
    ids that name no run (the runs table asks for a page of them at once)."""
    rows, missing = experiments.find(session=session, ids=ids)
    data = metrics.series_of_runs(session=session, experiment_ids=list(rows), names=VERDICT_METRICS)
    found = {}
    for run_id, row in rows.items():
        epochs, columns = data.get(run_id, ([], {}))
        found[run_id] = verdict_of_run(row, epochs, columns)
    return found, missing


def store_histograms(
    *,
    session: Session,
    experiment_id: int,
    lease_token: str,
    epoch: int,
    layers: LayerHistograms,
) -> bool:
    """Store one epoch's histograms of a run that this token holds, once per attempt: a
    resend changes nothing. Returns whether they were new."""
    row = held(session=session, experiment_id=experiment_id, lease_token=lease_token)
    data = {"epoch": epoch, "layers": layers}
    event_id = session.execute(
        dialect_insert(session, Event)
        .values(
            experiment_id=experiment_id,
            kind=HISTOGRAM,
            attempt=row.attempt,
            epoch=epoch,
            data=data,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["experiment_id", "kind", "attempt", "epoch"])
        .returning(col(Event.id))
    ).scalar()
    if event_id is not None:
        events.remember(session, events.StreamEvent(event_id, experiment_id, HISTOGRAM, data))
    session.commit()
    return event_id is not None


def histograms(
    *, session: Session, row: Experiment
) -> tuple[list[int], dict[str, list[dict[str, list[float]] | None]]]:
    """A run's histograms (of its latest attempt): the epochs that have them, and per
    layer one histogram per epoch (None where that epoch lacks the layer)."""
    rows = session.exec(
        select(Event.epoch, Event.data)
        .where(Event.experiment_id == row.id, Event.kind == HISTOGRAM)
        .where(Event.attempt == row.attempt)
        .order_by(col(Event.epoch))
    ).all()
    epochs = [int(epoch) for epoch, _ in rows if epoch is not None]
    layers: dict[str, list[dict[str, list[float]] | None]] = {}
    for index, (_, data) in enumerate(rows):
        for name, histogram in (data.get("layers") or {}).items():
            layers.setdefault(name, [None] * len(rows))[index] = histogram
    return epochs, layers


def verdict_of(*, session: Session, row: Experiment) -> Verdict:
    """The verdict of one stored run."""
    assert row.id is not None
    data = metrics.series_of_runs(session=session, experiment_ids=[row.id], names=VERDICT_METRICS)
    epochs, columns = data.get(row.id, ([], {}))
    return verdict_of_run(row, epochs, columns)
