"""Uploaded datasets: receiving and checking a file, storing its arrays, listing them,
and resolving specs that train on one.

The upload is the request body itself (no multipart). The server reads it into a file
of its own naming, checks it (app/domain/uploads.py) and keeps only the arrays it wrote
itself; the workers download those.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from app.db import session_scope
from app.domain import uploads
from app.domain.storage import dataset_relpath, receive, resolve_artifact
from app.errors import FieldProblem, InvalidField, NotFound
from app.models import Dataset
from app.settings import Settings
from app.spec import ExperimentSpec, error_location


async def upload(
    body: AsyncIterator[bytes],
    *,
    settings: Settings,
    name: str,
    fmt: uploads.Format | None,
    target: str | None,
    task: uploads.TaskName | None,
) -> Dataset:
    """Receive an uploaded CSV or NPZ, check it and store its arrays as a new dataset.

    InvalidField names what is wrong ("body", or the query parameter at fault); TooLarge
    once the body passes `max_dataset_bytes`. Nothing is kept from a refused upload.
    """
    folder = resolve_artifact(settings, "datasets")
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    incoming = folder / f"{token}.upload"
    relpath = dataset_relpath(token)
    stored = resolve_artifact(settings, relpath)
    assert stored is not None
    try:
        received = await receive(body, incoming, limit=settings.max_dataset_bytes, what="dataset")
        if received.size == 0:
            raise InvalidField(("body",), "the file is empty")
        sniffed = uploads.sniff_format(received.head)
        if fmt is not None and fmt != sniffed:
            raise InvalidField(
                ("query", "format"), f"the file is not {fmt.upper()} (it reads as {sniffed})"
            )

        def check_and_store() -> Dataset:
            parsed = uploads.parse(
                incoming, sniffed, target=target, task=task, max_bytes=settings.max_dataset_bytes
            )
            uploads.save(parsed, stored)
            with session_scope() as session:
                return create(
                    session=session,
                    parsed=parsed,
                    name=name.strip() or "upload",
                    fmt=sniffed,
                    size_bytes=received.size,
                    sha256=received.sha256,
                    relpath=relpath,
                )

        try:
            return await run_in_threadpool(check_and_store)
        except uploads.UploadError as error:
            stored.unlink(missing_ok=True)
            loc = ("body",) if error.field == "body" else ("query", error.field)
            raise InvalidField(loc, str(error)) from None
        except BaseException:
            stored.unlink(missing_ok=True)
            raise
    finally:
        incoming.unlink(missing_ok=True)


def create(
    *,
    session: Session,
    parsed: uploads.Parsed,
    name: str,
    fmt: str,
    size_bytes: int,
    sha256: str,
    relpath: str,
) -> Dataset:
    """Record checked arrays stored at `relpath` as a dataset."""
    row = Dataset(
        name=name,
        format=fmt,
        task=parsed.task,
        classes=parsed.classes,
        features=parsed.features,
        image=parsed.image,
        samples=parsed.samples,
        class_names=parsed.class_names,
        size_bytes=size_bytes,
        sha256=sha256,
        path=relpath,
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def require(*, session: Session, dataset_id: int) -> Dataset:
    """The dataset with this id, or NotFound."""
    row = session.get(Dataset, dataset_id)
    if row is None:
        raise NotFound(f"dataset {dataset_id} not found")
    return row


def list_datasets(*, session: Session, limit: int, offset: int) -> tuple[list[Dataset], int]:
    """Newest first, with the total."""
    rows = session.exec(
        select(Dataset).order_by(col(Dataset.id).desc()).offset(offset).limit(limit)
    ).all()
    total = session.exec(select(func.count()).select_from(Dataset)).one()
    return list(rows), int(total)


def file_of(*, row: Dataset, settings: Settings) -> Path:
    """The stored arrays of a dataset (NotFound when the file is gone)."""
    path = resolve_artifact(settings, row.path)
    if path is None or not path.is_file():
        raise NotFound(f"dataset {row.id}'s file is missing")
    return path


def delete(*, session: Session, dataset_id: int, settings: Settings) -> None:
    """Delete an upload and its file; runs queued on it later fail, saying so."""
    row = require(session=session, dataset_id=dataset_id)
    path = resolve_artifact(settings, row.path)
    session.delete(row)
    session.commit()
    if path is not None:
        path.unlink(missing_ok=True)


def resolve(
    *, session: Session, spec: ExperimentSpec, loc: Sequence[str | int] = ("body",)
) -> ExperimentSpec:
    """The spec with its uploaded dataset's details filled in from the stored upload.

    Raises InvalidField (naming `<loc>.dataset.upload.id`) for an upload that does not
    exist, and for layers the upload cannot feed (conv2d on a table). A spec on a
    built-in dataset comes back as it is.
    """
    upload_ref = spec.dataset.upload
    if upload_ref is None:
        return spec
    row = session.get(Dataset, upload_ref.id)
    if row is None:
        raise InvalidField(
            (*loc, "dataset", "upload", "id"),
            f"no uploaded dataset with id {upload_ref.id}",
            input=upload_ref.id,
        )
    data = spec.model_dump(mode="json")
    data["dataset"]["upload"] = {
        "id": row.id,
        "name": row.name,
        "task": row.task,
        "classes": row.classes,
        "features": row.features,
        "image": row.image,
        "samples": row.samples,
    }
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as error:
        raise InvalidField.several(
            [
                FieldProblem(
                    (*loc, *error_location(item["loc"])),
                    str(item["msg"]).removeprefix("Value error, "),
                )
                for item in error.errors(include_url=False)
            ]
        ) from None
