"""Sweeps: queuing a base spec expanded over axes and seeds, reading them back with their
runs and which point wins (app/domain/winners.py), adding seeds, cancelling them, and
pruning runs that lag the sweep's median."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.domain import winners
from app.domain.spec_paths import short_labels
from app.domain.sweep_plan import MAX_SEED, SweepInvalid, expand, run_name
from app.errors import Conflict, FieldProblem, InvalidField, NotFound
from app.models import FINAL_STATUSES, Experiment, Metric, Status, Sweep
from app.schemas.sweeps import (
    MAX_RUNS,
    SummaryOut,
    SweepDetail,
    SweepIn,
    SweepList,
    SweepOut,
    SweepRunOut,
)
from app.services import datasets, experiments, packs
from app.spec import ExperimentSpec

# Fewest other runs of the sweep with a value at an epoch before pruning judges by them.
MIN_PEERS = 2
PRUNE_METRIC = "val_data_loss"  # penalty-free, so runs with different λ compare fairly


def create(*, session: Session, request: SweepIn, max_attempts: int, max_pack: int = 32) -> Sweep:
    """Queue one run per point and seed, tagged with the new sweep, in one transaction;
    unless the request says `pack: false`, the runs that can train as one packed model
    (app/services/packs.py) are grouped into packs of at most `max_pack` members.

    Raises InvalidField naming the request's field (`body.axes.0.path`, ...).
    """
    base = datasets.resolve(session=session, spec=request.base, loc=("body", "base"))
    try:
        planned = expand(request, base)
    except SweepInvalid as error:
        raise InvalidField.several(
            [FieldProblem(("body", *loc), msg) for loc, msg in error.errors]
        ) from None
    stored = request.model_dump(mode="json")
    stored["base"] = base.model_dump(mode="json")
    sweep = Sweep(name=request.name, spec=stored)
    session.add(sweep)
    session.flush()
    rows = [
        experiments.create(
            session=session,
            spec=run.spec,
            max_attempts=max_attempts,
            sweep_id=sweep.id,
            point=run.point,
            commit=False,
        )
        for run in planned
    ]
    if request.pack:
        for members in packs.plan([run.spec for run in planned], max_pack=max_pack):
            packs.create(session=session, sweep_id=sweep.id, rows=[rows[i] for i in members])
    session.commit()
    return sweep


def require(*, session: Session, sweep_id: int) -> Sweep:
    """The sweep with this id, or NotFound."""
    row = session.get(Sweep, sweep_id)
    if row is None:
        raise NotFound(f"sweep {sweep_id} not found")
    return row


def detail(*, session: Session, row: Sweep) -> SweepDetail:
    """A sweep with its runs (point, seed, best and final data losses) and the summary of
    its points over seeds; one query for the runs, the statistics in Python."""
    assert row.id is not None
    runs = run_columns(session=session, sweep_id=row.id)
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    losses = [run.best_val_data_loss for run in runs if run.best_val_data_loss is not None]
    out = _out(row, [run.id for run in runs], {"counts": counts, "best": min(losses, default=None)})
    summary = winners_of(row, [(_result(run), run.point) for run in runs])
    return SweepDetail(
        **dict(out),
        runs=[SweepRunOut.model_validate(run, from_attributes=True) for run in runs],
        summary=SummaryOut.model_validate(summary.as_dict()),
    )


# What the sweep page shows of each run, read without decoding whole specs: the seed and
# the epochs are paths into the spec's JSON, the last data losses into `last_metrics`.
_RUN_COLUMNS = (
    col(Experiment.id),
    col(Experiment.name),
    col(Experiment.status),
    col(Experiment.point),
    col(Experiment.spec)[("training", "seed")].as_integer().label("seed"),
    col(Experiment.spec)[("training", "epochs")].as_integer().label("epochs_total"),
    col(Experiment.best_val_data_loss),
    col(Experiment.best_epoch),
    col(Experiment.last_metrics)["data_loss"].as_float().label("data_loss"),
    col(Experiment.last_metrics)["val_data_loss"].as_float().label("val_data_loss"),
    col(Experiment.epochs_done),
    col(Experiment.group_key),
    col(Experiment.error),
    col(Experiment.pack_id),
    col(Experiment.verdict),
)


@dataclass(slots=True)
class SweepRun:
    """One run of a sweep as its page shows it (SweepRunOut's fields)."""

    id: int
    name: str
    status: str
    point: dict[str, float]
    seed: int
    epochs_total: int
    best_val_data_loss: float | None
    best_epoch: int | None
    data_loss: float | None
    val_data_loss: float | None
    epochs_done: int
    group_key: str | None
    error: str | None
    pack_id: int | None
    verdict: str | None


def run_columns(*, session: Session, sweep_id: int) -> list[SweepRun]:
    """A sweep's runs in the order they were queued, as its page shows them (one query)."""
    rows = session.execute(
        select(*_RUN_COLUMNS)  # type: ignore[call-overload]
        .where(col(Experiment.sweep_id) == sweep_id)
        .order_by(col(Experiment.id))
    ).all()
    return [
        SweepRun(
            id=row.id,
            name=row.name,
            status=row.status,
            point=row.point or {},
            seed=row.seed or 0,
            epochs_total=row.epochs_total if row.epochs_total is not None else row.epochs_done,
            best_val_data_loss=row.best_val_data_loss,
            best_epoch=row.best_epoch,
            data_loss=row.data_loss,
            val_data_loss=row.val_data_loss,
            epochs_done=row.epochs_done,
            group_key=row.group_key,
            error=row.error,
            pack_id=row.pack_id,
            verdict=row.verdict,
        )
        for row in rows
    ]


def _result(run: SweepRun) -> winners.RunResult:
    return winners.RunResult(
        run.id, run.status == Status.succeeded, run.best_val_data_loss, run.data_loss
    )


def axis_paths(row: Sweep) -> list[str]:
    """The sweep's swept paths, in axis order."""
    return [str(axis["path"]) for axis in row.spec.get("axes", [])]


def winners_of(
    row: Sweep, runs: Iterable[tuple[winners.RunResult, Mapping[str, float] | None]]
) -> winners.Summary:
    """Which point of the sweep wins by its mean over seeds, and how surely (the pure
    rules in app/domain/winners.py), from its runs in order with their swept values."""
    paths = axis_paths(row)
    points = winners.sweep_points(paths, runs, fallback=row.name)
    return winners.summarize(points, regularizing=winners.regularizing_paths(paths))


def result_of(run: Experiment) -> winners.RunResult:
    """A run as the statistics see it: succeeded or not, best validation and final
    training data loss."""
    assert run.id is not None
    train = (run.last_metrics or {}).get("data_loss")
    return winners.RunResult(run.id, run.status == Status.succeeded, run.best_val_data_loss, train)


def add_seeds(
    *, session: Session, sweep_id: int, count: int, max_attempts: int, max_pack: int = 32
) -> Sweep:
    """Queue `count` more seeds for every point of the sweep, seeds continuing after the
    largest it used; the new runs pack like the sweep's own, and its `seeds` grows.

    Raises InvalidField (`body.count`) when the sweep would pass its run limit, Conflict
    when it has no runs left (all deleted) to take the points from.
    """
    sweep = session.get(Sweep, sweep_id, with_for_update=True)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} not found")
    runs = runs_of(session=session, sweep_id=sweep_id)
    templates: dict[str, Experiment] = {}
    for run in runs:
        templates.setdefault(winners.point_key(run.point), run)
    if not templates:
        raise Conflict(f"sweep {sweep_id} has no runs left to repeat with more seeds")
    total = len(runs) + len(templates) * count
    if total > MAX_RUNS:
        raise InvalidField.several(
            [
                FieldProblem(
                    ("body", "count"),
                    f"{len(templates)} points x {count} more seeds make {total} runs; "
                    f"a sweep holds at most {MAX_RUNS}",
                )
            ]
        )
    first = max((int(run.spec["training"].get("seed", 0)) for run in runs), default=-1) + 1
    if first + count - 1 > MAX_SEED:
        raise InvalidField.several([FieldProblem(("body", "count"), f"seeds pass {MAX_SEED}")])
    paths = axis_paths(sweep)
    labels = short_labels(paths)
    planned: list[tuple[ExperimentSpec, dict[str, float]]] = []
    for template in templates.values():
        point = dict(template.point or {})
        values = [point[path] for path in paths]
        for seed in range(first, first + count):
            data = dict(template.spec)
            data["training"] = {**data["training"], "seed": seed}
            data["name"] = run_name(sweep.name, labels, values, seed)
            planned.append((ExperimentSpec.model_validate(data), point))
    rows = [
        experiments.create(
            session=session,
            spec=spec,
            max_attempts=max_attempts,
            sweep_id=sweep_id,
            point=point,
            commit=False,
        )
        for spec, point in planned
    ]
    if sweep.spec.get("pack", True):
        for members in packs.plan([spec for spec, _ in planned], max_pack=max_pack):
            packs.create(session=session, sweep_id=sweep_id, rows=[rows[i] for i in members])
    sweep.spec = {**sweep.spec, "seeds": int(sweep.spec.get("seeds", 1)) + count}
    session.add(sweep)
    session.commit()
    return sweep


def listing(*, session: Session, limit: int, offset: int) -> SweepList:
    """Sweeps, newest first, with their runs' counts by status."""
    rows, total = list_sweeps(session=session, limit=limit, offset=offset)
    ids = [row.id for row in rows if row.id is not None]
    summary = summaries(session=session, sweep_ids=ids)
    members = run_ids(session=session, sweep_ids=ids)
    return SweepList(
        items=[_out(row, members.get(row.id or 0, []), summary[row.id or 0]) for row in rows],
        total=total,
    )


def _out(row: Sweep, experiment_ids: list[int], summary: dict[str, Any]) -> SweepOut:
    labels = short_labels([axis["path"] for axis in row.spec.get("axes", [])])
    return SweepOut.of(row, experiment_ids, summary, labels)


def runs_of(*, session: Session, sweep_id: int) -> list[Experiment]:
    """A sweep's runs in the order they were queued."""
    return list(
        session.exec(
            select(Experiment).where(Experiment.sweep_id == sweep_id).order_by(col(Experiment.id))
        ).all()
    )


def list_sweeps(*, session: Session, limit: int, offset: int) -> tuple[list[Sweep], int]:
    """Newest first, with the total."""
    rows = session.exec(
        select(Sweep).order_by(col(Sweep.id).desc()).offset(offset).limit(limit)
    ).all()
    total = session.exec(select(func.count()).select_from(Sweep)).one()
    return list(rows), int(total)


def summaries(*, session: Session, sweep_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per sweep: its runs' counts by status and the best `best_val_data_loss`."""
    out: dict[int, dict[str, Any]] = {
        sweep_id: {"counts": {}, "best": None} for sweep_id in sweep_ids
    }
    if not sweep_ids:
        return out
    rows = session.exec(
        select(
            Experiment.sweep_id,
            Experiment.status,
            func.count(),
            func.min(Experiment.best_val_data_loss),
        )
        .where(col(Experiment.sweep_id).in_(list(sweep_ids)))
        .group_by(col(Experiment.sweep_id), col(Experiment.status))
    ).all()
    for sweep_id, status, count, best in rows:
        assert sweep_id is not None
        summary = out[sweep_id]
        summary["counts"][status] = int(count)
        if best is not None and (summary["best"] is None or best < summary["best"]):
            summary["best"] = float(best)
    return out


def cancel(*, session: Session, sweep_id: int) -> Sweep:
    """Cancel the sweep's unfinished runs at once (workers stop the running ones at their
    next heartbeat)."""
    sweep = require(session=session, sweep_id=sweep_id)
    rows = session.exec(
        select(Experiment)
        .where(Experiment.sweep_id == sweep_id)
        .where(col(Experiment.status).not_in(list(FINAL_STATUSES)))
        .order_by(col(Experiment.id))
        .with_for_update()
    ).all()
    for row in rows:
        experiments.change_status(row, Status.cancelled, session=session, lease_expires_at=None)
    _store_verdicts(session=session, rows=rows)
    session.commit()
    return sweep


def _store_verdicts(*, session: Session, rows: Sequence[Experiment]) -> None:
    # Imported here: diagnostics reads metrics, whose ingest calls this module.
    from app.services import diagnostics

    diagnostics.store_verdicts(session=session, rows=rows)


def prunes(*, session: Session, sweep_id: int) -> bool:
    """Whether the sweep prunes its lagging runs (ingest asks once an upload). A sweep's
    request never changes, so the answer is read once a process and database (not the
    sweep's whole stored request on every upload)."""
    key = (str(session.get_bind().engine.url), sweep_id)
    found = _PRUNES.get(key)
    if found is None:
        prune = session.execute(
            select(col(Sweep.spec)["prune"].as_boolean()).where(col(Sweep.id) == sweep_id)
        ).scalar()
        found = _PRUNES[key] = bool(prune)
    return found


_PRUNES: dict[tuple[str, int], bool] = {}


def after_metrics(*, session: Session, row: Experiment, new_epochs: Sequence[int]) -> None:
    """Called by metrics ingest (inside its transaction, before the commit) for every run
    that received new epochs; prunes a sweep's run that lags the sweep's median.

    At each new epoch k ≥ `prune_after`, the run's best `val_data_loss` over epochs 0..k is
    set against the same for every other run of the sweep that has reached epoch k; worse
    than their median (with at least MIN_PEERS of them) marks the run pruned, and its
    worker stops it at the next heartbeat.
    """
    if row.sweep_id is None or row.status != Status.running:
        return
    sweep = session.get(Sweep, row.sweep_id)
    if sweep is None or not sweep.spec.get("prune"):
        return
    prune_after = int(sweep.spec.get("prune_after", 3))
    for epoch in sorted(epoch for epoch in new_epochs if epoch >= prune_after):
        best = _best_so_far(session=session, sweep_id=row.sweep_id, epoch=epoch)
        mine = best.pop(row.id, None) if row.id is not None else None
        if mine is None or len(best) < MIN_PEERS:
            continue
        median = statistics.median(best.values())
        if mine > median:
            experiments.change_status(
                row,
                Status.pruned,
                session=session,
                lease_expires_at=None,
                error=f"pruned: best {PRUNE_METRIC} {mine:.4g} by epoch {epoch} is worse "
                f"than the median {median:.4g} of {len(best)} other runs of the sweep",
                error_epoch=epoch,
            )
            _store_verdicts(session=session, rows=[row])
            return


def _best_so_far(*, session: Session, sweep_id: int, epoch: int) -> dict[int, float]:
    """Each run of the sweep that reached `epoch`: its lowest PRUNE_METRIC up to it."""
    rows = session.exec(
        select(Metric.experiment_id, func.min(Metric.value))
        .join(Experiment, col(Experiment.id) == col(Metric.experiment_id))
        .where(Experiment.sweep_id == sweep_id)
        .where(Metric.name == PRUNE_METRIC)
        .where(col(Metric.epoch) <= epoch)
        .group_by(col(Metric.experiment_id))
        .having(func.max(Metric.epoch) >= epoch)
    ).all()
    return {int(run_id): float(value) for run_id, value in rows}


def run_ids(*, session: Session, sweep_ids: Sequence[int]) -> dict[int, list[int]]:
    """The ids of each sweep's runs, in order."""
    out: dict[int, list[int]] = {sweep_id: [] for sweep_id in sweep_ids}
    if not sweep_ids:
        return out
    rows = session.exec(
        select(Experiment.sweep_id, Experiment.id)
        .where(col(Experiment.sweep_id).in_(list(sweep_ids)))
        .order_by(col(Experiment.id))
    ).all()
    for sweep_id, run_id in rows:
        if sweep_id is not None and run_id is not None:
            out[sweep_id].append(run_id)
    return out
