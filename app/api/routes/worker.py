"""The worker's side: claim (long-poll), heartbeat, started, metrics, model, finish, release.

Every call about a run carries the lease token of the claim; a token that no longer
holds the run gets 409 and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import ExperimentId, SessionDep, SettingsDep
from app.db import session_scope
from app.events import broker
from app.models import Experiment, Status
from app.schemas import (
    BAD_BODY,
    ClaimIn,
    ClaimOut,
    ErrorOut,
    FinishIn,
    HeartbeatOut,
    LeaseIn,
    MetricsAck,
    MetricsIn,
    StartedIn,
    Token,
)
from app.services import metrics, queue
from app.settings import Settings
from app.spec import ExperimentSpec
from app.storage import model_relpath, resolve_artifact

router = APIRouter(prefix="/worker", tags=["worker"])
LEASE_LOST: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "The lease token no longer holds the run"}
}
# The calls with a JSON body: also 400 (unreadable body) and 413 (too large).
JSON_LEASE_LOST = {**BAD_BODY, **LEASE_LOST}

# While nobody submits, claimers also look again this often (another server replica
# may have queued work that this process's broker never hears of).
_POLL_FALLBACK_SECONDS = 5.0


def _try_claim(body: ClaimIn, settings: Settings) -> Experiment | None:
    with session_scope() as session:
        return queue.claim(
            session,
            worker_id=body.worker_id,
            host=body.host,
            devices=body.devices or [body.slot],
            lease_seconds=settings.lease_seconds,
            plugins=body.plugins,
        )


@router.post(
    "/claim",
    response_model=ClaimOut,
    responses={**BAD_BODY, 204: {"description": "Nothing to claim before the wait ran out"}},
)
async def claim(body: ClaimIn, request: Request, settings: SettingsDep) -> ClaimOut | Response:
    """Claim the oldest queued run, waiting up to `wait` seconds for one to arrive."""
    deadline = time.monotonic() + min(body.wait, settings.claim_wait_seconds)
    waited = False
    while True:
        # A claimer that went away while waiting must not be handed a run.
        if waited and await request.is_disconnected():
            return Response(status_code=204)
        waiter = broker.queue_waiter()
        row = await run_in_threadpool(_try_claim, body, settings)
        if row is not None:
            assert row.id is not None and row.lease_token is not None
            return ClaimOut(
                experiment_id=row.id,
                spec=ExperimentSpec.model_validate(row.spec),
                attempt=row.attempt,
                lease_token=row.lease_token,
                lease_seconds=settings.lease_seconds,
                heartbeat_seconds=settings.heartbeat_seconds,
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0 or await request.is_disconnected():
            return Response(status_code=204)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), timeout=min(remaining, _POLL_FALLBACK_SECONDS))
        waited = True


@router.post(
    "/experiments/{experiment_id}/heartbeat", response_model=HeartbeatOut, responses=JSON_LEASE_LOST
)
def heartbeat(
    experiment_id: ExperimentId, body: LeaseIn, session: SessionDep, settings: SettingsDep
) -> HeartbeatOut:
    """Renew the lease; `cancel` says to stop the run."""
    row = queue.heartbeat(
        session, experiment_id, body.lease_token, lease_seconds=settings.lease_seconds
    )
    return HeartbeatOut(
        cancel=row.status in (Status.cancelled, Status.pruned),
        lease_expires_at=row.lease_expires_at,
    )


@router.post("/experiments/{experiment_id}/started", status_code=204, responses=JSON_LEASE_LOST)
def started(experiment_id: ExperimentId, body: StartedIn, session: SessionDep) -> Response:
    """The training child is up: record the device it trains on."""
    queue.started(session, experiment_id, body.lease_token, device=body.device)
    return Response(status_code=204)


@router.post(
    "/experiments/{experiment_id}/metrics", response_model=MetricsAck, responses=JSON_LEASE_LOST
)
def upload_metrics(experiment_id: ExperimentId, body: MetricsIn, session: SessionDep) -> MetricsAck:
    """Store epochs of metrics; resending an epoch stores nothing twice."""
    points = [(point.epoch, point.values, point.time) for point in body.points]
    new_epochs = metrics.ingest(session, experiment_id, body.lease_token, points)
    return MetricsAck(stored=sum(len(point.values) for point in body.points), new_epochs=new_epochs)


@router.put(
    "/experiments/{experiment_id}/model",
    status_code=204,
    responses={**LEASE_LOST, 413: {"model": ErrorOut, "description": "Model too large"}},
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
)
async def upload_model(
    experiment_id: ExperimentId,
    lease_token: Annotated[Token, Query()],
    request: Request,
    settings: SettingsDep,
) -> Response:
    """Store the trained `.keras` file (the body, as bytes)."""

    def check() -> None:
        with session_scope() as session:
            queue.held(session, experiment_id, lease_token)

    await run_in_threadpool(check)
    relpath = model_relpath(experiment_id)
    target = resolve_artifact(settings, relpath)
    assert target is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".part-{os.getpid()}-{id(request)}")
    size = 0
    try:
        with partial.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > settings.max_model_bytes:
                    raise HTTPException(413, detail="model file too large")
                handle.write(chunk)
        if size == 0:
            raise HTTPException(422, detail="empty model file")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)

    def save() -> None:
        with session_scope() as session:
            queue.set_model_path(session, experiment_id, lease_token, relpath)

    await run_in_threadpool(save)
    return Response(status_code=204)


@router.post("/experiments/{experiment_id}/finish", status_code=204, responses=JSON_LEASE_LOST)
def finish(experiment_id: ExperimentId, body: FinishIn, session: SessionDep) -> Response:
    """The attempt ended: succeeded, or failed with its error and epoch. A `retryable`
    failure (the training process died) requeues the run while it has attempts left."""
    queue.finish(
        session,
        experiment_id,
        body.lease_token,
        status=Status(body.status),
        error=body.error,
        error_epoch=body.error_epoch,
        test_metrics=body.test_metrics,
        best_epoch=body.best_epoch,
        retryable=body.retryable,
    )
    return Response(status_code=204)


@router.post("/experiments/{experiment_id}/release", status_code=204, responses=JSON_LEASE_LOST)
def release(experiment_id: ExperimentId, body: LeaseIn, session: SessionDep) -> Response:
    """Hand a run back to the queue (the worker is stopping)."""
    queue.release(session, experiment_id, body.lease_token)
    return Response(status_code=204)
