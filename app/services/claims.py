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
from app.services import packs, queue
from app.settings import Settings

Claimed = tuple[Experiment, list[Experiment]]  # the run, and its pack's members (or [])

POLL_FALLBACK_SECONDS = 5.0
GONE_CHECK_SECONDS = 0.5


async def claim_waiting(
    *,
    settings: Settings,
    worker_id: str,
    host: str,
    devices: list[str],
    plugins: list[str],
    wait: float,
    gone: Callable[[], Awaitable[bool]],
) -> Claimed | None:
    """The oldest queued run, claimed for this worker, with the members of its pack if it
    is a pack's (all under one lease), or None when the wait ran out (or `gone()` says the
    claimer left: a claimer that went away must not be handed a run)."""

    def try_claim() -> Claimed | None:
        with session_scope() as session:
            row = queue.claim(
                session=session,
                worker_id=worker_id,
                host=host,
                devices=devices,
                lease_seconds=settings.lease_seconds,
                plugins=plugins,
            )
            if row is None:
                return None
            if row.pack_id is None or row.lease_token is None:
                return row, []
            members = packs.members(
                session=session, pack_id=row.pack_id, lease_token=row.lease_token
            )
            session.commit()  # the members were read under a lock: let it go
            return row, members

    deadline = time.monotonic() + min(wait, settings.claim_wait_seconds)
    waited = False
    while True:
        if waited and await gone():
            return None
        waiter = broker.queue_waiter()  # taken before looking: no wake-up is missed
        claimed = await run_in_threadpool(try_claim)
        if claimed is not None:
            return claimed
        remaining = deadline - time.monotonic()
        if remaining <= 0 or await gone():
            return None
        if not await _woken_or_gone(waiter, min(remaining, POLL_FALLBACK_SECONDS), gone):
            return None
        waited = True


async def _woken_or_gone(
    waiter: asyncio.Event, seconds: float, gone: Callable[[], Awaitable[bool]]
) -> bool:
    """Wait up to `seconds` for the queue to change; False as soon as the claimer has gone
    (looked at every GONE_CHECK_SECONDS). A claimer that left is noticed at once, not when
    the wait runs out: a server shutting down waits for open requests (a few seconds),
    and a worker stopping closes its long poll before it goes."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), timeout=min(left, GONE_CHECK_SECONDS))
            return True
        if await gone():
            return False
    return True
