"""Server-Sent Events: a run's epochs and status changes, live and resumable."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Response
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import ExperimentId, SettingsDep
from app.db import session_scope
from app.events import OVERFLOW, StreamEvent, Subscription, broker
from app.schemas import MAX_ID, not_found
from app.services import metrics

router = APIRouter(tags=["experiments"])

# Once the server begins to stop, each stream has this long to end with its last chunk
# (a clean close, after which clients resume with Last-Event-ID) before it is cut off.
_SHUTDOWN_GRACE_SECONDS = 1.0


def _load_events(experiment_id: int, after_id: int) -> tuple[list[StreamEvent], bool]:
    """The stored events after an id and whether the run has ended (NotFound if no such
    run). A short session of its own: a stream must not hold a database connection open."""
    with session_scope(read_only=True) as session:
        return metrics.replay(session=session, experiment_id=experiment_id, after_id=after_id)


def _parse_last_event_id(value: str | None) -> int:
    """A garbage Last-Event-ID replays from the start rather than failing."""
    if value is None:
        return 0
    try:
        parsed = int(value.strip())
    except ValueError:
        return 0
    return parsed if 0 <= parsed <= MAX_ID else 0


def _message(stream_event: StreamEvent) -> dict[str, Any]:
    return {
        "event": stream_event.kind,
        "id": str(stream_event.id),
        "data": json.dumps(stream_event.data, separators=(",", ":")),
    }


async def _end_when(stopping: anyio.Event, subscription: Subscription) -> None:
    """Wake a waiting stream when the server begins to stop, so that it ends cleanly."""
    await stopping.wait()
    subscription.overflowed = True
    with contextlib.suppress(asyncio.QueueFull):
        subscription.queue.put_nowait(OVERFLOW)


async def _stream(
    subscription: Subscription, replay: list[StreamEvent], after_id: int, stopping: anyio.Event
) -> AsyncIterator[dict[str, Any]]:
    # The subscription was opened before the replay was read, so nothing committed in
    # between is missed; what arrives both ways is dropped by id.
    watcher = asyncio.create_task(_end_when(stopping, subscription))
    try:
        last_id = after_id
        for stream_event in replay:
            if stopping.is_set():
                return
            yield _message(stream_event)
            last_id = stream_event.id
            if stream_event.is_final_status:
                return
        while True:
            stream_event = await subscription.get()
            if subscription.overflowed and stream_event.kind == "overflow":
                return  # too slow a reader: it reconnects and resumes from the database
            if stream_event.id <= last_id:
                continue
            yield _message(stream_event)
            last_id = stream_event.id
            if stream_event.is_final_status:
                return
    finally:
        watcher.cancel()
        broker.unsubscribe(subscription)


@router.get(
    "/experiments/{experiment_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        204: {"description": "The run is over and nothing is left after Last-Event-ID"},
        **not_found("experiment"),
    },
)
async def stream_events(
    experiment_id: ExperimentId,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    """A `metrics` event per epoch and a `status` event per change, each with an id;
    reconnect with Last-Event-ID to resume. The stream ends after the final status."""
    after_id = _parse_last_event_id(last_event_id)
    subscription = broker.subscribe(experiment_id)
    try:
        replay, ended = await run_in_threadpool(_load_events, experiment_id, after_id)
    except BaseException:
        broker.unsubscribe(subscription)
        raise
    if ended and not replay and after_id > 0:
        # Everything was seen and the run is over: 204 tells EventSource not to reconnect.
        broker.unsubscribe(subscription)
        return Response(status_code=204)
    stopping = anyio.Event()
    return EventSourceResponse(
        _stream(subscription, replay, after_id, stopping),
        ping=settings.sse_ping_seconds,
        send_timeout=settings.sse_send_timeout,
        shutdown_event=stopping,
        shutdown_grace_period=_SHUTDOWN_GRACE_SECONDS,
    )
