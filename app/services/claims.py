"""The long-poll claim: a worker's slot asks for work and waits for a run to arrive.

The wait ends as soon as a run is claimed, when `wait` seconds (at most the server's
`claim_wait_seconds`) pass without one, or when the claimer goes away. Claimers wake on
the broker's signal that a run was queued; they also look again every few seconds
(another replica may have queued work that this process's broker never hears of).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool

from app.db import session_scope
from app.events import broker
from app.models import Experiment
from app.services import queue
from app.settings import Settings

POLL_FALLBACK_SECONDS = 5.0


async def claim_waiting(
    *,
    settings: Settings,
    worker_id: str,
    host: str,
    devices: list[str],
    plugins: list[str],
    wait: float,
    gone: Callable[[], Awaitable[bool]],
) -> Experiment | None:
    """The oldest queued run, claimed for this worker, or None when the wait ran out (or
    `gone()` says the claimer left: a claimer that went away must not be handed a run)."""

    def try_claim() -> Experiment | None:
        with session_scope() as session:
            return queue.claim(
                session=session,
                worker_id=worker_id,
                host=host,
                devices=devices,
                lease_seconds=settings.lease_seconds,
                plugins=plugins,
            )

    deadline = time.monotonic() + min(wait, settings.claim_wait_seconds)
    waited = False
    while True:
        if waited and await gone():
            return None
        waiter = broker.queue_waiter()  # taken before looking: no wake-up is missed
        row = await run_in_threadpool(try_claim)
        if row is not None:
            return row
        remaining = deadline - time.monotonic()
        if remaining <= 0 or await gone():
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), timeout=min(remaining, POLL_FALLBACK_SECONDS))
        waited = True
