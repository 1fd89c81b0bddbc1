"""Packs: the runs of a sweep that train together as one packed model.

Runs whose specs differ only in penalty strengths, dropout rates and early stopping
(`app.spec.pack_signature`) build the same network from the same seed, so they train as
the members of one model. A sweep's packable runs are grouped at submit time, at most
`max_pack` to a pack; what cannot pack (another seed, learning rate, shape, a plugin
penalty, a recurrent layer) stays a run of its own. A pack is claimed as one job (every
queued member under one lease token), heartbeated and retried as one; each member keeps
its own row, stream, status and model.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlmodel import Session, col, select

from app.errors import LeaseLost
from app.models import Experiment, Pack, Status, Worker, utcnow
from app.services.experiments import change_status
from app.services.queue import STOPPED
from app.spec import ExperimentSpec, pack_signature


def plan(specs: Sequence[ExperimentSpec], *, max_pack: int) -> list[list[int]]:
    """Which of `specs` (by index) train together: groups of two or more with one pack
    signature, in the order of their first member, none larger than `max_pack`."""
    groups: dict[str, list[int]] = {}
    for index, spec in enumerate(specs):
        signature = pack_signature(spec)
        if signature is not None:
            groups.setdefault(signature, []).append(index)
    packs: list[list[int]] = []
    for members in groups.values():
        # Split evenly: 33 members with max 32 make packs of 17 and 16, not 32 and 1.
        count = -(-len(members) // max(max_pack, 1))
        size, extra = divmod(len(members), count)
        start = 0
        for index in range(count):
            end = start + size + (index < extra)
            packs.append(members[start:end])
            start = end
    return [members for members in packs if len(members) >= 2]


def create(*, session: Session, sweep_id: int | None, rows: Sequence[Experiment]) -> Pack:
    """A pack of `rows` (flushed runs), each given its member slot; the caller commits."""
    pack = Pack(sweep_id=sweep_id, members=len(rows))
    session.add(pack)
    session.flush()
    for index, row in enumerate(rows):
        row.pack_id, row.pack_index = pack.id, index
        session.add(row)
    return pack


def sizes(*, session: Session, rows: Sequence[Experiment]) -> dict[int, int]:
    """The member counts of the packs these runs trained in, by pack id."""
    ids = sorted({row.pack_id for row in rows if row.pack_id is not None})
    if not ids:
        return {}
    packs = session.exec(select(Pack).where(col(Pack.id).in_(ids))).all()
    return {pack.id: pack.members for pack in packs if pack.id is not None}


def members(*, session: Session, pack_id: int, lease_token: str) -> list[Experiment]:
    """The runs of a pack that this token holds, in member order."""
    return list(
        session.exec(
            select(Experiment)
            .where(Experiment.pack_id == pack_id)
            .where(Experiment.lease_token == lease_token)
            .order_by(col(Experiment.pack_index), col(Experiment.id))
            .with_for_update()
        ).all()
    )


def _held(*, session: Session, pack_id: int, lease_token: str) -> list[Experiment]:
    rows = members(session=session, pack_id=pack_id, lease_token=lease_token)
    if not any(row.status in (Status.running, *STOPPED) for row in rows):
        raise LeaseLost(f"lease on pack {pack_id} is not held by this token")
    return rows


def heartbeat(
    *, session: Session, pack_id: int, lease_token: str, lease_seconds: float
) -> tuple[list[int], bool]:
    """Renew the lease of the pack's running members; returns the members stopped
    (cancelled, pruned) and whether none is left running (the worker stops the pack)."""
    rows = _held(session=session, pack_id=pack_id, lease_token=lease_token)
    expires = utcnow() + timedelta(seconds=lease_seconds)
    running = [row for row in rows if row.status == Status.running]
    for row in running:
        row.lease_expires_at = expires
        session.add(row)
    worker_id = next((row.worker_id for row in rows if row.worker_id), None)
    if worker_id is not None:
        worker = session.get(Worker, worker_id)
        if worker is not None:
            worker.last_seen = utcnow()
            session.add(worker)
    stopped = [row.id for row in rows if row.status in STOPPED and row.id is not None]
    session.commit()
    return stopped, not running


def started(*, session: Session, pack_id: int, lease_token: str, device: str) -> None:
    """Record the device the pack's training child found on every running member."""
    for row in _held(session=session, pack_id=pack_id, lease_token=lease_token):
        if row.status == Status.running:
            change_status(row, Status.running, session=session, device=device)
    session.commit()
