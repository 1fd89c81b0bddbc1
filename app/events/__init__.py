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

from app.events.broker import (
    OVERFLOW,
    Broker,
    StreamEvent,
    Subscription,
    broker,
    to_stream_event,
)
from app.events.recording import record, remember
from app.events.relay import CHANNEL, PgRelay, libpq_url, load_events, notify_payloads

__all__ = [
    "CHANNEL",
    "OVERFLOW",
    "Broker",
    "PgRelay",
    "StreamEvent",
    "Subscription",
    "broker",
    "libpq_url",
    "load_events",
    "notify_payloads",
    "record",
    "remember",
    "to_stream_event",
]
