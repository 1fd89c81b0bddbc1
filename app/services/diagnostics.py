"""Diagnostics of stored runs: verdicts from their curves (app/domain/verdict.py), each
against the best point of its sweep too; the seed statistics of a compare set
(app/domain/winners.py); and the per-layer kernel histograms that workers upload (one
`Event` of kind "histogram" per run, attempt and epoch).

A run's own verdict is stored on its row when it reaches a final status (`store_verdicts`,
called where that happens), so that queries can filter on it; a read that finds a stored
verdict that the rules would now give otherwise writes the new one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import update
from sqlalchemy.orm import load_only
from sqlmodel import Session, col, select

from app import events
from app.db import dialect_insert
from app.domain import winners
from app.domain.verdict import (
    RelativeVerdict,
    RunVerdict,
    Verdict,
    VerdictKind,
    relative_verdict,
    trivial_loss,
    verdict,
)
from app.models import FINAL_STATUSES, Event, Experiment, Status, Sweep, utcnow
from app.services import experiments, metrics, sweeps
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


def own_verdicts(*, session: Session, rows: Iterable[Experiment]) -> dict[int, Verdict]:
    """The verdicts of runs on their own curves, by id (one query for the curves)."""
    by_id = {row.id: row for row in rows if row.id is not None}
    data = metrics.series_of_runs(
        session=session, experiment_ids=list(by_id), names=VERDICT_METRICS
    )
    found = {}
    for run_id, row in by_id.items():
        epochs, columns = data.get(run_id, ([], {}))
        found[run_id] = verdict_of_run(row, epochs, columns)
    return found


def store_verdicts(*, session: Session, rows: Sequence[Experiment]) -> None:
    """Store on each run that reached a final status its own verdict (the caller commits)."""
    final = {row.id: row for row in rows if row.id is not None and Status(row.status).is_final}
    for run_id, judged in own_verdicts(session=session, rows=final.values()).items():
        final[run_id].verdict = judged.verdict
        session.add(final[run_id])


def backfill_verdicts(*, session: Session, limit: int = 500) -> int:
    """Store the verdicts of up to `limit` ended runs that have none stored (runs that
    ended before verdicts were stored), oldest first, and commit; returns how many. Called
    until it returns 0, it fills every one."""
    rows = session.exec(
        select(Experiment)
        .where(col(Experiment.status).in_(list(FINAL_STATUSES)))
        .where(col(Experiment.verdict).is_(None))
        .order_by(col(Experiment.id))
        .limit(limit)
    ).all()
    store_verdicts(session=session, rows=rows)
    session.commit()
    return len(rows)


def relative_verdicts(
    *, session: Session, rows: Iterable[Experiment]
) -> dict[int, RelativeVerdict | None]:
    """Each succeeded sweep run against the best point of its sweep (lowest mean best
    validation data loss over seeds), by id; None outside a sweep, for a run that has not
    succeeded, or while its sweep has no finished point. One query for the sweeps' runs."""
    judged = [row for row in rows if row.sweep_id is not None and row.id is not None]
    out: dict[int, RelativeVerdict | None] = {row.id: None for row in rows if row.id is not None}
    sweep_ids = sorted(
        {
            row.sweep_id
            for row in judged
            if row.sweep_id is not None and row.status == Status.succeeded
        }
    )
    if not sweep_ids:
        return out
    found = session.exec(select(Sweep).where(col(Sweep.id).in_(sweep_ids))).all()
    siblings = session.exec(
        select(Experiment)
        .options(load_only(*_RESULT_COLUMNS))  # type: ignore[arg-type]
        .where(col(Experiment.sweep_id).in_(sweep_ids))
        .order_by(col(Experiment.id))
    ).all()
    by_sweep: dict[int, list[Experiment]] = {}
    for sibling in siblings:
        assert sibling.sweep_id is not None
        by_sweep.setdefault(sibling.sweep_id, []).append(sibling)
    best = {
        sweep.id: sweeps.winners_of(
            sweep, [(sweeps.result_of(run), run.point) for run in by_sweep.get(sweep.id, [])]
        ).best
        for sweep in found
        if sweep.id is not None
    }
    for row in judged:
        if row.sweep_id is None or row.id is None or row.status != Status.succeeded:
            continue
        point = best.get(row.sweep_id)
        if point is None:
            continue
        result = sweeps.result_of(row)
        out[row.id] = relative_verdict(
            train=result.train,
            val=result.val,
            reference=point.reference(),
            at_best=winners.point_key(row.point) == point.key,
        )
    return out


_RESULT_COLUMNS = (
    Experiment.id,
    Experiment.sweep_id,
    Experiment.point,
    Experiment.status,
    Experiment.best_val_data_loss,
    Experiment.last_metrics,
)


def verdicts(
    *, session: Session, ids: Sequence[int], writer: Session | None = None
) -> tuple[dict[int, RunVerdict], list[int]]:
    """The verdicts of the runs among `ids` that exist (own and against their sweep's best
    point), by id in the order asked, and the ids that name no run (the runs table asks
    for a page of them at once). A stale stored verdict is rewritten through `writer`."""
    rows, missing = experiments.find(session=session, ids=ids)
    own = own_verdicts(session=session, rows=rows.values())
    relative = relative_verdicts(session=session, rows=rows.values())
    if writer is not None:
        _restore(writer=writer, rows=rows.values(), own=own)
    return {run_id: RunVerdict(own[run_id], relative.get(run_id)) for run_id in rows}, missing


def _restore(*, writer: Session, rows: Iterable[Experiment], own: Mapping[int, Verdict]) -> None:
    """Write the verdicts of ended runs whose stored one differs (a rule changed, or the run
    ended before verdicts were stored): one UPDATE per verdict."""
    stale: dict[VerdictKind, list[int]] = {}
    for row in rows:
        if row.id is None or row.status not in FINAL_STATUSES:
            continue
        kind = own[row.id].verdict
        if row.verdict != kind:
            stale.setdefault(kind, []).append(row.id)
            row.verdict = kind
    if not stale:
        return
    for kind, run_ids in stale.items():
        writer.exec(
            update(Experiment)  # type: ignore[call-overload]
            .where(col(Experiment.id).in_(run_ids))
            .where(col(Experiment.status).in_(list(FINAL_STATUSES)))
            .values(verdict=kind)
        )
    writer.commit()


def compare_summary(
    *, session: Session, ids: Sequence[int]
) -> tuple[winners.Summary, list[int], bool]:
    """The seed statistics of a compare set: the runs among `ids` grouped by `group_key`
    (seed repeats), the best group by its mean and how surely; also the ids that name no
    run and whether every run trained on the same dataset."""
    rows, missing = experiments.find(session=session, ids=ids)
    points = winners.group_points(
        (sweeps.result_of(row), row.name, row.group_key, not winners.regularizes(row.spec))
        for row in rows.values()
    )
    datasets = {json.dumps(row.spec.get("dataset"), sort_keys=True) for row in rows.values()}
    return winners.summarize(points), missing, len(datasets) <= 1


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


def verdict_of(*, session: Session, row: Experiment, writer: Session | None = None) -> RunVerdict:
    """The verdict of one stored run: on its own curves, and against its sweep's best
    point. A stale stored verdict is rewritten through `writer`."""
    assert row.id is not None
    own = own_verdicts(session=session, rows=[row])
    if writer is not None:
        _restore(writer=writer, rows=[row], own=own)
    return RunVerdict(own[row.id], relative_verdicts(session=session, rows=[row])[row.id])
