"""The trained model a worker uploads, and that model read back."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from app.db import session_scope
from app.domain.storage import model_relpath, receive, resolve_artifact
from app.errors import InvalidField, NotFound
from app.models import Experiment
from app.services import queue
from app.settings import Settings


async def store_model(
    body: AsyncIterator[bytes], *, settings: Settings, experiment_id: int, lease_token: str
) -> None:
    """Store the `.keras` file of a run that this token holds (LeaseLost otherwise). The
    lease is checked before and after the transfer, each time in a short session."""

    def check() -> None:
        with session_scope() as session:
            queue.held(session=session, experiment_id=experiment_id, lease_token=lease_token)

    await run_in_threadpool(check)
    relpath = model_relpath(experiment_id)
    target = resolve_artifact(settings, relpath)
    assert target is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".part-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        received = await receive(body, partial, limit=settings.max_model_bytes, what="model file")
        if received.size == 0:
            raise InvalidField(("body",), "empty model file")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)

    def save() -> None:
        with session_scope() as session:
            queue.set_model_path(
                session=session, experiment_id=experiment_id, lease_token=lease_token, path=relpath
            )

    await run_in_threadpool(save)


def model_file(*, row: Experiment, settings: Settings) -> tuple[Path, str]:
    """A run's trained model and the file name to download it as; NotFound when the run
    has none (it is saved when training ends) or its file is gone."""
    path = resolve_artifact(settings, row.model_path) if row.model_path else None
    if path is None or not path.is_file():
        raise NotFound(f"experiment {row.id} has no saved model")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", row.name).strip("-")[:60] or "model"
    return path, f"{slug}-{row.id}.keras"
