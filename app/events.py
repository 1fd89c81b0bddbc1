"""In-process pub/sub feeding the event streams and waking long-polling claimers.

Services write `Event` rows through `record()`; once their transaction commits, the
session's `after_commit` hook hands the new events to the broker, which copies each into
the bounded queue of every viewer of that experiment. A viewer whose queue is full is
told to go (its stream ends and the browser resumes from Last-Event-ID, replayed from the
database), so a slow reader never slows the others nor grows the server's memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from app.models import Event

_PENDING = "reglab_pending_events"


@dataclass(frozen=True)
class StreamEvent:
    id: int
    experiment_id: int
    kind: str  # "metrics" | "status"
    data: dict[str, Any]

    @property
    def is_final_status(self) -> bool:
        return self.kind == "status" and self.data.get("status") in (
            "succeeded",
            "failed",
            "cancelled",
        )


OVERFLOW = StreamEvent(id=-1, experiment_id=-1, kind="overflow", data={})


@dataclass(eq=False)
class Subscription:
    experiment_id: int
    queue: asyncio.Queue[StreamEvent] = field(default_factory=lambda: asyncio.Queue(1000))
    overflowed: bool = False

    async def get(self) -> StreamEvent:
        return await self.queue.get()


class Broker:
    """Fans committed events out to the subscribers of one process."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[int, set[Subscription]] = defaultdict(set)
        self._subscriber_count = 0  # read from other threads (health), so kept apart
        self._queue_changed: asyncio.Event | None = None
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the server's event loop (lifespan start)."""
        self._loop = loop
        self._queue_changed = asyncio.Event()

    def unbind(self) -> None:
        self._loop = None
        for subscriptions in list(self._subscribers.values()):
            for subscription in subscriptions:
                subscription.overflowed = True
                if not subscription.queue.full():
                    subscription.queue.put_nowait(OVERFLOW)
        self._subscribers.clear()
        self._subscriber_count = 0

    def subscribe(self, experiment_id: int) -> Subscription:
        subscription = Subscription(experiment_id, asyncio.Queue(self.queue_size))
        self._subscribers[experiment_id].add(subscription)
        self._subscriber_count += 1
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscriptions = self._subscribers.get(subscription.experiment_id)
        if subscriptions is not None and subscription in subscriptions:
            subscriptions.remove(subscription)
            self._subscriber_count -= 1
            if not subscriptions:
                del self._subscribers[subscription.experiment_id]

    def subscriber_count(self) -> int:
        """Open subscriptions (thread-safe: health reads it from the thread pool)."""
        return self._subscriber_count

    def publish(self, events: list[StreamEvent]) -> None:
        """Thread-safe: deliver on the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed() or not events:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._dispatch(events)
        else:
            loop.call_soon_threadsafe(self._dispatch, events)

    def queue_waiter(self) -> asyncio.Event:
        """The event that the next change to the queue sets (take it before looking)."""
        assert self._queue_changed is not None, "broker not bound to a loop"
        return self._queue_changed

    def _dispatch(self, events: list[StreamEvent]) -> None:
        for stream_event in events:
            if stream_event.kind == "status" and stream_event.data.get("status") == "queued":
                self._wake_claimers()
            for subscription in list(self._subscribers.get(stream_event.experiment_id, ())):
                if subscription.overflowed:
                    continue
                if subscription.queue.qsize() >= self.queue_size - 1:
                    # Leave room for the marker that tells the stream to end.
                    subscription.overflowed = True
                    subscription.queue.put_nowait(OVERFLOW)
                else:
                    subscription.queue.put_nowait(stream_event)

    def _wake_claimers(self) -> None:
        if self._queue_changed is not None:
            self._queue_changed.set()
            self._queue_changed = asyncio.Event()

    def wake_claimers(self) -> None:
        """Thread-safe nudge for long-polling claimers."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake_claimers)


broker = Broker()


def record(
    session: Session,
    experiment_id: int,
    kind: str,
    data: dict[str, Any],
    *,
    epoch: int | None = None,
) -> Event:
    """Add an event in the session's transaction; it is published once that commits."""
    row = Event(experiment_id=experiment_id, kind=kind, epoch=epoch, data=data)
    session.add(row)
    session.flush()
    assert row.id is not None
    remember(session, StreamEvent(row.id, experiment_id, kind, data))
    return row


def remember(session: Session, stream_event: StreamEvent) -> None:
    """Queue an event written outside the ORM (bulk insert) for publishing at commit."""
    session.info.setdefault(_PENDING, []).append(stream_event)


@sa_event.listens_for(OrmSession, "after_commit")
def _publish_after_commit(session: OrmSession) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        broker.publish(pending)


@sa_event.listens_for(OrmSession, "after_rollback")
def _drop_after_rollback(session: OrmSession) -> None:
    session.info.pop(_PENDING, None)


def to_stream_event(row: Event) -> StreamEvent:
    assert row.id is not None
    return StreamEvent(row.id, row.experiment_id, row.kind, row.data)
