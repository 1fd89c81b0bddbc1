"""Recording events in a transaction and publishing them once it commits.

Services write `Event` rows through `record()` (or `remember()` for rows inserted in
bulk); the session's `after_commit` hook hands them to the broker. On PostgreSQL the
`before_commit` hook also announces them to every replica (app/events/relay.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from app.events.broker import StreamEvent, broker
from app.events.relay import CHANNEL, notify_payloads
from app.models import Event

_PENDING = "reglab_pending_events"
_RELAYED = "reglab_events_relayed"  # this transaction's events come back by NOTIFY


def record(
    session: Session,
    experiment_id: int,
    kind: str,
    data: dict[str, Any],
    *,
    attempt: int,
    epoch: int | None = None,
) -> Event:
    """Add an event of a run's attempt in the session's transaction; it is published
    once that commits."""
    row = Event(experiment_id=experiment_id, kind=kind, attempt=attempt, epoch=epoch, data=data)
    session.add(row)
    session.flush()
    assert row.id is not None
    remember(session, StreamEvent(row.id, experiment_id, kind, data))
    return row


def remember(session: Session, stream_event: StreamEvent) -> None:
    """Queue an event written outside the ORM (bulk insert) for publishing at commit."""
    session.info.setdefault(_PENDING, []).append(stream_event)


@sa_event.listens_for(OrmSession, "before_commit")
def _notify_before_commit(session: OrmSession) -> None:
    """On PostgreSQL, announce the transaction's events to every replica (delivered only
    if it commits). This replica's own copies wait for the notification's return, unless
    its relay is not listening: then `after_commit` publishes them directly."""
    pending: list[StreamEvent] | None = session.info.get(_PENDING)
    if not pending or session.get_bind().dialect.name != "postgresql":
        return
    relay = broker.relay
    if relay is not None and relay.listening:
        # Before the commit: its notification may come back before after_commit runs.
        relay.expect(pending)
        session.info[_RELAYED] = True
    for payload in notify_payloads(broker.origin, pending):
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
        )


@sa_event.listens_for(OrmSession, "after_commit")
def _publish_after_commit(session: OrmSession) -> None:
    pending = session.info.pop(_PENDING, None)
    relayed = session.info.pop(_RELAYED, False)
    if pending and not relayed:
        broker.publish(pending)


@sa_event.listens_for(OrmSession, "after_rollback")
def _drop_after_rollback(session: OrmSession) -> None:
    pending = session.info.pop(_PENDING, None)
    if session.info.pop(_RELAYED, False) and pending and broker.relay is not None:
        broker.relay.forget(pending)
