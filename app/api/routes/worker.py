"""The worker's side: claim (long-poll), heartbeat, started, metrics, model, finish, release.

Every call about a run carries the lease token of the claim; a token that no longer
holds the run gets 409 and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from app.api.deps import ExperimentId, SessionDep, SettingsDep
from app.models import Status
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
    PackClaim,
    PackHeartbeatOut,
    PackMember,
    PointsAck,
    PointsIn,
    StartedIn,
    Token,
)
from app.schemas.common import MAX_ID
from app.services import artifacts, claims, ingest, metrics, packs, queue
from app.spec import ExperimentSpec

router = APIRouter(prefix="/worker", tags=["worker"])
LEASE_LOST: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "The lease token no longer holds the run"}
}
# The calls with a JSON body: also 400 (unreadable body) and 413 (too large).
JSON_LEASE_LOST = {**BAD_BODY, **LEASE_LOST}
_FILE = {"type": "string", "format": "binary", "minLength": 1}
PackId = Annotated[int, Path(ge=1, le=MAX_ID, description="The pack's id")]


@router.post(
    "/claim",
    response_model=ClaimOut,
    responses={
        **BAD_BODY,
        200: {"description": "A run, claimed for this worker: its spec and lease"},
        204: {
            "description": "No run to claim: the wait ran out (after `wait` seconds, at most "
            "the server's claim_wait_seconds), or the claimer went away"
        },
    },
)
async def claim(body: ClaimIn, request: Request, settings: SettingsDep) -> ClaimOut | Response:
    """Claim the oldest queued run, as a long poll: the answer comes as soon as a run is
    claimed, or empty (204) once `wait` seconds have passed without one. Ask again at
    once after a 204."""
    claimed = await claims.claim_waiting(
        settings=settings,
        worker_id=body.worker_id,
        host=body.host,
        devices=body.devices or [body.slot],
        plugins=body.plugins,
        wait=body.wait,
        gone=request.is_disconnected,
    )
    if claimed is None:
        return Response(status_code=204)
    row, members = claimed
    assert row.id is not None and row.lease_token is not None
    pack = None
    if row.pack_id is not None:
        pack = PackClaim(
            id=row.pack_id,
            members=[
                PackMember(
                    experiment_id=member.id,
                    index=member.pack_index or 0,
                    spec=ExperimentSpec.model_validate(member.spec),
                    attempt=member.attempt,
                )
                for member in members
                if member.id is not None
            ],
        )
    return ClaimOut(
        experiment_id=row.id,
        spec=ExperimentSpec.model_validate(row.spec),
        attempt=row.attempt,
        lease_token=row.lease_token,
        lease_seconds=settings.lease_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        pack=pack,
    )


@router.post(
    "/experiments/{experiment_id}/heartbeat", response_model=HeartbeatOut, responses=JSON_LEASE_LOST
)
def heartbeat(
    experiment_id: ExperimentId, body: LeaseIn, session: SessionDep, settings: SettingsDep
) -> HeartbeatOut:
    """Renew the lease; `cancel` says to stop the run."""
    row = queue.heartbeat(
        session=session,
        experiment_id=experiment_id,
        lease_token=body.lease_token,
        lease_seconds=settings.lease_seconds,
    )
    return HeartbeatOut(cancel=row.status in queue.STOPPED, lease_expires_at=row.lease_expires_at)


@router.post("/experiments/{experiment_id}/started", status_code=204, responses=JSON_LEASE_LOST)
def started(experiment_id: ExperimentId, body: StartedIn, session: SessionDep) -> Response:
    """The training child is up: record the device it trains on."""
    queue.started(
        session=session,
        experiment_id=experiment_id,
        lease_token=body.lease_token,
        device=body.device,
    )
    return Response(status_code=204)


@router.post(
    "/experiments/{experiment_id}/metrics", response_model=MetricsAck, responses=JSON_LEASE_LOST
)
def upload_metrics(experiment_id: ExperimentId, body: MetricsIn, session: SessionDep) -> MetricsAck:
    """Store epochs of metrics; resending an epoch stores nothing twice."""
    new_epochs = metrics.ingest(
        session=session,
        experiment_id=experiment_id,
        lease_token=body.lease_token,
        points=[(point.epoch, point.values, point.time) for point in body.points],
    )
    return MetricsAck(stored=sum(len(point.values) for point in body.points), new_epochs=new_epochs)


@router.post("/metrics", response_model=PointsAck, responses=JSON_LEASE_LOST)
def upload_points(body: PointsIn, session: SessionDep) -> PointsAck:
    """Store epochs of the runs one lease holds (a pack's members: every member's epoch in
    one request), in one transaction. A run cancelled or pruned meanwhile stores nothing
    more and is named in `stopped`; resending an epoch stores nothing twice."""
    stored = ingest.ingest_points(
        session=session,
        lease_token=body.lease_token,
        points=[
            (point.experiment_id, (point.epoch, point.values, point.time)) for point in body.points
        ],
    )
    return PointsAck(stored=stored.values, new_epochs=stored.new_epochs, stopped=stored.stopped)


@router.post(
    "/packs/{pack_id}/heartbeat", response_model=PackHeartbeatOut, responses=JSON_LEASE_LOST
)
def pack_heartbeat(
    pack_id: PackId, body: LeaseIn, session: SessionDep, settings: SettingsDep
) -> PackHeartbeatOut:
    """Renew the lease of a pack's running members; `stopped` names the members to stop
    (cancelled, pruned) and `cancel` says none is left running."""
    stopped, cancel = packs.heartbeat(
        session=session,
        pack_id=pack_id,
        lease_token=body.lease_token,
        lease_seconds=settings.lease_seconds,
    )
    return PackHeartbeatOut(cancel=cancel, stopped=stopped)


@router.post("/packs/{pack_id}/started", status_code=204, responses=JSON_LEASE_LOST)
def pack_started(pack_id: PackId, body: StartedIn, session: SessionDep) -> Response:
    """The pack's training child is up: record the device on every running member."""
    packs.started(
        session=session, pack_id=pack_id, lease_token=body.lease_token, device=body.device
    )
    return Response(status_code=204)


@router.put(
    "/experiments/{experiment_id}/model",
    status_code=204,
    responses={**LEASE_LOST, 413: {"model": ErrorOut, "description": "Model too large"}},
    openapi_extra={
        "requestBody": {
            "description": "The `.keras` file's bytes; an empty body gets 422.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "required": True,
        }
    },
)
async def upload_model(
    experiment_id: ExperimentId,
    lease_token: Annotated[Token, Query()],
    request: Request,
    settings: SettingsDep,
) -> Response:
    """Store the trained `.keras` file (the body, as bytes)."""
    await artifacts.store_model(
        request.stream(), settings=settings, experiment_id=experiment_id, lease_token=lease_token
    )
    return Response(status_code=204)


@router.post("/experiments/{experiment_id}/finish", status_code=204, responses=JSON_LEASE_LOST)
def finish(experiment_id: ExperimentId, body: FinishIn, session: SessionDep) -> Response:
    """The attempt ended: succeeded, or failed with its error and epoch. A `retryable`
    failure (the training process died) requeues the run while it has attempts left."""
    queue.finish(
        session=session,
        experiment_id=experiment_id,
        lease_token=body.lease_token,
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
    queue.release(session=session, experiment_id=experiment_id, lease_token=body.lease_token)
    return Response(status_code=204)
