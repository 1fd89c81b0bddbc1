"""What the server knows of its workers: who asked for work, what their slots do (GPU,
run, or why they wait, as the workers report it), and the regularizer plugins they offer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, get_args

from sqlalchemy import text
from sqlmodel import Session, col, select

from app.db import dialect_insert
from app.models import Experiment, Status, Worker, utcnow
from app.schemas.health import (
    GpuOut,
    PluginOut,
    RegularizersOut,
    RunningExperiment,
    SlotOut,
    SlotRun,
    WorkerOut,
)
from app.schemas.worker import WorkerReportIn
from app.spec import RegularizerKind

# A worker that has not claimed or heartbeated for this long no longer counts as offering
# its plugins (a live one long-polls its claims every 20 s at most), nor is it listed.
LIVE_WORKER = timedelta(minutes=5)
# Not heard from for this long: marked silent (a worker reports every few seconds, and
# claims or heartbeats every 20 s at most).
SILENT_AFTER = timedelta(seconds=60)


def report(*, session: Session, body: WorkerReportIn) -> None:
    """Record a worker's report of its slots, and the worker as seen now. One upsert, as
    for a claim (app/services/queue.py touch_worker)."""
    now = utcnow()
    values: dict[str, Any] = {
        "host": body.host,
        "devices": body.devices or [slot.name for slot in body.slots],
        "plugins": sorted(set(body.plugins)),
        "slots": [slot.model_dump(mode="json") for slot in body.slots],
        "last_seen": now,
    }
    statement = dialect_insert(session, Worker).values(id=body.worker_id, started_at=now, **values)
    session.execute(statement.on_conflict_do_update(index_elements=["id"], set_=values))
    session.commit()


def database_name(*, session: Session) -> str:
    """The database's dialect, once it has answered a query (the health check)."""
    session.exec(select(text("1"))).one()  # type: ignore[call-overload]
    return session.get_bind().dialect.name


def workers(*, session: Session, seen_within: timedelta = LIVE_WORKER) -> list[WorkerOut]:
    """Workers seen in the last `seen_within`, most recently seen first: their slots as
    they last reported them (with the names and statuses of the runs they train), and the
    runs the server has them running."""
    now = utcnow()
    rows = session.exec(
        select(Worker)
        .where(col(Worker.last_seen) >= now - seen_within)
        .order_by(col(Worker.last_seen).desc())
    ).all()
    running = session.exec(
        select(Experiment.id, Experiment.worker_id, Experiment.device).where(
            Experiment.status == Status.running
        )
    ).all()
    slot_run_ids = {
        run for row in rows for slot in row.slots for run in slot.get("experiment_ids", [])
    }
    names = {
        run_id: SlotRun(id=run_id, name=name, status=status)
        for run_id, name, status in session.exec(
            select(Experiment.id, Experiment.name, Experiment.status).where(
                col(Experiment.id).in_(slot_run_ids)
            )
        ).all()
        if run_id is not None
    }
    answer = []
    for row in rows:
        slots = [_slot_out(slot, names) for slot in row.slots]
        since = (now - row.last_seen).total_seconds()
        stopped = bool(slots) and all(slot.state == "stopped" for slot in slots)
        answer.append(
            WorkerOut(
                id=row.id,
                host=row.host,
                devices=row.devices,
                started_at=row.started_at,
                last_seen=row.last_seen,
                running=[
                    RunningExperiment(id=run_id, device=device)
                    for run_id, worker_id, device in running
                    if worker_id == row.id and run_id is not None
                ],
                state=_state(stopped, since),
                seconds_since_seen=max(since, 0.0),
                plugins=row.plugins,
                slots=slots,
            )
        )
    return answer


def _state(stopped: bool, seconds_since_seen: float) -> Literal["live", "silent", "stopped"]:
    if stopped:
        return "stopped"
    return "silent" if seconds_since_seen > SILENT_AFTER.total_seconds() else "live"


def _slot_out(slot: dict[str, Any], runs: dict[int, SlotRun]) -> SlotOut:
    gpu = slot.get("gpu")
    return SlotOut(
        name=slot["name"],
        state=slot["state"],
        reason=slot.get("reason"),
        gpu=GpuOut.model_validate(gpu) if gpu else None,
        pack_id=slot.get("pack_id"),
        runs=[
            runs.get(run_id, SlotRun(id=run_id, name=f"#{run_id}", status="deleted"))
            for run_id in slot.get("experiment_ids", [])
        ],
    )


def regularizers(*, session: Session) -> RegularizersOut:
    """The penalty kinds a spec may use: the built-in ones, and the plugins that live
    workers registered on their hosts."""
    rows = session.exec(
        select(Worker.plugins).where(col(Worker.last_seen) >= utcnow() - LIVE_WORKER)
    ).all()
    counts: dict[str, int] = {}
    for plugins in rows:
        for name in plugins or []:
            counts[name] = counts.get(name, 0) + 1
    return RegularizersOut(
        builtin=[kind for kind in get_args(RegularizerKind) if kind != "plugin"],
        plugins=[PluginOut(name=name, workers=counts[name]) for name in sorted(counts)],
    )
