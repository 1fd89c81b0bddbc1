"""The PostgreSQL relay: every replica's events reach every replica's viewers.

Each transaction that records events announces them with `pg_notify` (delivered only if
it commits, in commit order); each replica runs one `PgRelay`, a LISTEN connection that
feeds its broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import psycopg
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from app.events.broker import Broker, StreamEvent, to_stream_event
from app.models import Event

log = logging.getLogger("reglab.events")

CHANNEL = "reglab_events"
# A NOTIFY payload holds less than 8000 bytes. An event whose JSON is under
# `_INLINE_BYTES` travels whole (no read on the other side); a larger one by its id.
_PAYLOAD_BYTES = 7800
_INLINE_BYTES = 2000


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
            queued = queued or stream_event.is_queued
        if inline or ids:
            yield _payload(origin, experiment_id, inline, ids, queued)


def _payload(
    origin: str, experiment_id: int, inline: list[str], ids: list[str], queued: bool
) -> str:
    head = json.dumps({"o": origin, "e": experiment_id, "q": int(queued)}, separators=(",", ":"))
    return f'{head[:-1]},"d":[{",".join(inline)}],"i":[{",".join(ids)}]}}'


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
