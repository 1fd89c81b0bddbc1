"""Pub/sub feeding the event streams and waking long-polling claimers.

Services write `Event` rows through `record()`; once their transaction commits, the
session's `after_commit` hook hands the new events to the broker, which copies each into
the bounded queue of every viewer of that experiment. A viewer whose queue is full is
told to go (its stream ends and the browser resumes from Last-Event-ID, replayed from the
database), so a slow reader never slows the others nor grows the server's memory.

On PostgreSQL several server processes (replicas) share one database, so a point stored
through one must reach the viewers of all. Each transaction that records events also
calls `pg_notify` (delivered only if it commits, in commit order) with the experiment and
the event ids, never the values (a payload holds at most 8000 bytes). Every replica runs
one `PgRelay`: a LISTEN connection that feeds its broker, loading the events of other
replicas by id, and only when it has viewers of that experiment. A replica's own events
travel the same way (kept in memory until their notification comes back, so not read
again): one path, so that each viewer gets every event once and in commit order. While
the relay is not listening, a replica publishes its own events directly; when it
(re)connects it ends every open stream, whose clients resume from the database with
Last-Event-ID, so that nothing sent while it was deaf is missed. SQLite has one process
and no relay: events go straight from the commit to the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from app.models import Event

log = logging.getLogger("reglab.events")

_PENDING = "reglab_pending_events"
_RELAYED = "reglab_events_relayed"  # this transaction's events come back by NOTIFY
CHANNEL = "reglab_events"
# A NOTIFY payload holds less than 8000 bytes. An event whose JSON is under
# `_INLINE_BYTES` travels whole (no read on the other side); a larger one by its id.
_PAYLOAD_BYTES = 7800
_INLINE_BYTES = 2000


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

    def wake_claimers_now(self) -> None:
        """Nudge long-polling claimers (on the loop only)."""
        self._wake_claimers()


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


def notify_payloads(origin: str, events: Sequence[StreamEvent]) -> Iterator[str]:
    """The NOTIFY payloads announcing events, per experiment, each under `_PAYLOAD_BYTES`:
    `d` holds small events whole as [id, kind, data], `i` the ids of the others (read
    from the database by the replicas that show them), `q` says a run was queued (wakes
    long-polling claimers). Payloads are ASCII (json.dumps escapes the rest)."""
    by_experiment: dict[int, list[StreamEvent]] = {}
    for stream_event in events:
        by_experiment.setdefault(stream_event.experiment_id, []).append(stream_event)
    for experiment_id, group in by_experiment.items():
        head = json.dumps({"o": origin, "e": experiment_id, "q": 0}, separators=(",", ":"))
        base = len(head) + len(',"d":[],"i":[]')
        inline: list[str] = []
        ids: list[str] = []
        queued = False
        size = base
        for stream_event in group:
            encoded = json.dumps(
                [stream_event.id, stream_event.kind, stream_event.data], separators=(",", ":")
            )
            whole = len(encoded) <= _INLINE_BYTES
            part = encoded if whole else str(stream_event.id)
            if size + len(part) + 1 > _PAYLOAD_BYTES:
                yield _payload(origin, experiment_id, inline, ids, queued)
                inline, ids, queued, size = [], [], False, base
            (inline if whole else ids).append(part)
            size += len(part) + 1
            queued = queued or _is_queued(stream_event)
        if inline or ids:
            yield _payload(origin, experiment_id, inline, ids, queued)


def _payload(
    origin: str, experiment_id: int, inline: list[str], ids: list[str], queued: bool
) -> str:
    head = json.dumps({"o": origin, "e": experiment_id, "q": int(queued)}, separators=(",", ":"))
    return f'{head[:-1]},"d":[{",".join(inline)}],"i":[{",".join(ids)}]}}'


def _is_queued(stream_event: StreamEvent) -> bool:
    return stream_event.kind == "status" and stream_event.data.get("status") == "queued"


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


def to_stream_event(row: Event) -> StreamEvent:
    assert row.id is not None
    return StreamEvent(row.id, row.experiment_id, row.kind, row.data)


def load_events(ids: Sequence[int]) -> list[StreamEvent]:
    """Stored events by id, in id order (a short read session of its own)."""
    from app.db import session_scope

    with session_scope(read_only=True) as session:
        rows = session.exec(
            select(Event).where(col(Event.id).in_(list(ids))).order_by(col(Event.id))
        )
        return [to_stream_event(row) for row in rows]


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://...`) as psycopg's own connection string."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgRelay:
    """One LISTEN connection per replica, feeding its broker with every replica's events.

    Notifications arrive in commit order and are handled one at a time, so that each
    viewer keeps that order. The connection is re-opened with backoff when it drops, and
    checked every `check_seconds` while idle (a dead peer must not leave it deaf).

    Example:
        relay = PgRelay(broker, "postgresql://reglab@db/reglab")
        task = asyncio.create_task(relay.run())
        await relay.wait_listening(5)
    """

    def __init__(
        self,
        target: Broker,
        database_url: str,
        *,
        load: Callable[[Sequence[int]], list[StreamEvent]] = load_events,
        check_seconds: float = 15.0,
        max_backoff: float = 5.0,
        max_expected: int = 100_000,
    ) -> None:
        self.broker = target
        self.conninfo = libpq_url(database_url)
        self.load = load
        self.check_seconds = check_seconds
        self.max_backoff = max_backoff
        self.max_expected = max_expected
        self.listening = False
        self.connections = 0  # how many times LISTEN began (tests, logs)
        self._listening_event = asyncio.Event()
        self._expected: OrderedDict[int, StreamEvent] = OrderedDict()
        self._expected_lock = threading.Lock()

    def expect(self, events: Sequence[StreamEvent]) -> None:
        """Hold this replica's events until their notification returns (any thread)."""
        with self._expected_lock:
            for stream_event in events:
                self._expected[stream_event.id] = stream_event
            while len(self._expected) > self.max_expected:  # never returned: not kept forever
                self._expected.popitem(last=False)

    def forget(self, events: Sequence[StreamEvent]) -> None:
        """Drop events whose transaction rolled back (any thread)."""
        with self._expected_lock:
            for stream_event in events:
                self._expected.pop(stream_event.id, None)

    async def wait_listening(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening_event.wait(), timeout)
        return self.listening

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff (0.1 s doubling to the max)."""
        backoff = 0.1
        while True:
            connections = self.connections
            try:
                await self._listen()
            except (psycopg.Error, OSError) as error:
                log.warning("event relay lost its connection (%s); retry in %.1f s", error, backoff)
            finally:
                self.listening = False
                self._listening_event.clear()
            if self.connections > connections:
                backoff = 0.1  # it had listened: a fresh outage starts low again
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            application_name="reglab-events",
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        ) as connection:
            await connection.execute(f"LISTEN {CHANNEL}")
            with self._expected_lock:
                self._expected.clear()  # what was awaited before is no longer coming
            self.listening = True
            self.connections += 1
            self._listening_event.set()
            # Whatever was committed while nobody listened reaches no viewer live: end
            # the open streams so that they resume from the database, and let claimers look.
            self.broker.end_all_streams()
            self.broker.wake_claimers_now()
            if self.connections > 1:
                log.warning("event relay listening again; open streams told to resume")
            while True:
                async for notify in connection.notifies(timeout=self.check_seconds):
                    await self.handle(notify.payload)
                await connection.execute("SELECT 1")  # idle: is the server still there?

    async def handle(self, payload: str) -> None:
        """Publish the events that one notification announces, in id order."""
        try:
            message = json.loads(payload)
            origin, experiment_id = str(message["o"]), int(message["e"])
            inline = [
                StreamEvent(int(event_id), experiment_id, str(kind), dict(data))
                for event_id, kind, data in message["d"]
            ]
            ids = [int(event_id) for event_id in message["i"]]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed event notification: %.200s", payload)
            return
        if message.get("q"):
            self.broker.wake_claimers_now()
        if origin == self.broker.origin:
            with self._expected_lock:
                found = [
                    self._expected.pop(event_id, None)
                    for event_id in sorted([*ids, *(event.id for event in inline)])
                ]
            # Missing ones were published directly (committed while not listening).
            self.broker.dispatch([stream_event for stream_event in found if stream_event])
            return
        if not self.broker.has_subscribers(experiment_id):
            return  # nobody here watches it; a later viewer replays it from the database
        loaded: list[StreamEvent] = []
        if ids:
            try:
                loaded = await asyncio.to_thread(self.load, ids)
            except Exception:  # the stream must not stop for one failed read
                log.exception("could not load events; ending the streams of run %s", experiment_id)
                self.broker.end_streams_of(experiment_id)
                return
        self.broker.dispatch(sorted([*inline, *loaded], key=lambda event: event.id))
