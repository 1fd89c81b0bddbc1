"""The broker: fans a process's committed events out to the viewers of each run, each
through a bounded queue, and wakes long-polling claimers when a run is queued."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.models import Event
from app.spec import FINAL_STATUSES, Status

if TYPE_CHECKING:
    from app.events.relay import PgRelay


@dataclass(frozen=True)
class StreamEvent:
    id: int
    experiment_id: int
    kind: str  # "metrics" | "status" | "histogram"
    data: dict[str, Any]

    @property
    def is_final_status(self) -> bool:
        """A status event that ends the run (and so its stream): any of FINAL_STATUSES."""
        return self.kind == "status" and self.data.get("status") in FINAL_STATUSES

    @property
    def is_queued(self) -> bool:
        """A status event that puts a run in the queue (long-polling claimers look again)."""
        return self.kind == "status" and self.data.get("status") == Status.queued


def to_stream_event(row: Event) -> StreamEvent:
    assert row.id is not None
    return StreamEvent(row.id, row.experiment_id, row.kind, row.data)


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
        # Set while a PostgreSQL relay runs in this process (app/main.py's lifespan).
        self.relay: PgRelay | None = None
        # Tells this process's notifications from those of other replicas.
        self.origin = secrets.token_hex(8)

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

    def has_subscribers(self, experiment_id: int) -> bool:
        return experiment_id in self._subscribers

    def end_all_streams(self) -> None:
        """Tell every viewer to go: its client resumes from the database (on the loop)."""
        for experiment_id in list(self._subscribers):
            self.end_streams_of(experiment_id)

    def end_streams_of(self, experiment_id: int) -> None:
        """Tell the viewers of one run to go and resume from the database (on the loop)."""
        for subscription in list(self._subscribers.get(experiment_id, ())):
            if not subscription.overflowed:
                subscription.overflowed = True
                with contextlib.suppress(asyncio.QueueFull):
                    subscription.queue.put_nowait(OVERFLOW)

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

    def dispatch(self, events: list[StreamEvent]) -> None:
        """Deliver now (on the loop only)."""
        self._dispatch(events)

    def _dispatch(self, events: list[StreamEvent]) -> None:
        for stream_event in events:
            if stream_event.is_queued:
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

    def wake_claimers_now(self) -> None:
        """Nudge long-polling claimers (on the loop only)."""
        self._wake_claimers()


broker = Broker()
