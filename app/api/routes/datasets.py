"""Uploaded datasets (CSV or NPZ): upload, list, read, delete; workers fetch the stored arrays.

The upload is the request body itself (no multipart), so `curl --data-binary @file.csv`
and a browser's `fetch(url, {body: file})` both work. The server reads it into a file of
its own naming, checks it (app/uploads.py) and keeps only the arrays it wrote itself.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app import uploads
from app.api.deps import ReadSessionDep, SessionDep, SettingsDep
from app.db import session_scope
from app.models import Dataset
from app.schemas import MAX_ID, ErrorOut, UtcDatetime
from app.services import datasets
from app.storage import resolve_artifact

router = APIRouter(tags=["datasets"])

DatasetId = Annotated[int, Path(ge=1, le=MAX_ID, description="The dataset's id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such dataset"}
}
NPZ: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The arrays x, y"}
}


class DatasetOut(BaseModel):
    id: int
    name: str
    format: Literal["csv", "npz"] = Field(description="The format it was uploaded in")
    task: Literal["classification", "regression"]
    classes: int = Field(description="Number of classes; 0 for regression")
    features: int = Field(description="Values per sample")
    image: list[int] | None = Field(description="[height, width, channels] for image data")
    samples: int
    class_names: list[str] | None = Field(description="Class id i is class_names[i]")
    size_bytes: int = Field(description="The size of the uploaded file")
    sha256: str = Field(description="The uploaded file's SHA-256")
    created_at: UtcDatetime

    @classmethod
    def of(cls, row: Dataset) -> DatasetOut:
        assert row.id is not None
        return cls.model_validate(row, from_attributes=True)


class DatasetList(BaseModel):
    items: list[DatasetOut]
    total: int


def _invalid(field: str, message: str, value: Any = None) -> RequestValidationError:
    loc = ("body",) if field == "body" else ("query", field)
    return RequestValidationError(
        [{"type": "value_error", "loc": loc, "msg": message, "input": value}]
    )


def _get(session: Any, dataset_id: int) -> Dataset:
    row = session.get(Dataset, dataset_id)
    if row is None:
        raise HTTPException(404, detail=f"dataset {dataset_id} not found")
    return row


@router.post(
    "/datasets",
    status_code=201,
    response_model=DatasetOut,
    responses={413: {"model": ErrorOut, "description": "The file is larger than the limit"}},
    openapi_extra={
        "requestBody": {
            "content": {"text/csv": {}, "application/octet-stream": {}},
            "required": True,
        }
    },
)
async def upload(
    request: Request,
    settings: SettingsDep,
    name: Annotated[
        str, Query(min_length=1, max_length=200, pattern=r"^[^\x00]*$", description="A label")
    ] = "upload",
    format: Annotated[
        Literal["csv", "npz"] | None, Query(description="Default: from the file's first bytes")
    ] = None,
    target: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            pattern=r"^[^\x00]*$",
            description="The CSV column to predict (default: the last column)",
        ),
    ] = None,
    task: Annotated[
        Literal["classification", "regression"] | None,
        Query(description="Default: classification for text or a few integer labels"),
    ] = None,
) -> DatasetOut:
    """Upload a CSV (a header row, numeric features, a target column) or an NPZ (arrays x
    and y; x as samples x features or samples x height x width [x channels])."""
    folder = resolve_artifact(settings, "datasets")
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    incoming = folder / f"{token}.upload"
    relpath = datasets.dataset_relpath(token)
    stored = resolve_artifact(settings, relpath)
    assert stored is not None
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        with incoming.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > settings.max_dataset_bytes:
                    raise HTTPException(
                        413, detail=f"dataset larger than {settings.max_dataset_bytes} bytes"
                    )
                if len(head) < 8:
                    head += chunk[:8]
                digest.update(chunk)
                handle.write(chunk)
        if size == 0:
            raise _invalid("body", "the file is empty")
        sniffed = uploads.sniff_format(head)
        if format is not None and format != sniffed:
            raise _invalid("format", f"the file is not {format.upper()} (it reads as {sniffed})")

        def check_and_store() -> Dataset:
            parsed = uploads.parse(
                incoming, sniffed, target=target, task=task, max_bytes=settings.max_dataset_bytes
            )
            uploads.save(parsed, stored)
            with session_scope() as session:
                return datasets.create(
                    session,
                    parsed,
                    name=name.strip() or "upload",
                    fmt=sniffed,
                    size_bytes=size,
                    sha256=digest.hexdigest(),
                    relpath=relpath,
                )

        try:
            row = await run_in_threadpool(check_and_store)
        except uploads.UploadError as error:
            stored.unlink(missing_ok=True)
            raise _invalid(error.field, str(error)) from None
        except BaseException:
            stored.unlink(missing_ok=True)
            raise
    finally:
        incoming.unlink(missing_ok=True)
    return DatasetOut.of(row)


@router.get("/datasets", response_model=DatasetList)
def list_datasets(
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> DatasetList:
    """Uploaded datasets, newest first."""
    rows, total = datasets.list_datasets(session, limit=limit, offset=offset)
    return DatasetList(items=[DatasetOut.of(row) for row in rows], total=total)


@router.get("/datasets/{dataset_id}", response_model=DatasetOut, responses=NOT_FOUND)
def read(dataset_id: DatasetId, session: ReadSessionDep) -> DatasetOut:
    return DatasetOut.of(_get(session, dataset_id))


def _file(settings: Any, row: Dataset) -> FileResponse:
    path = resolve_artifact(settings, row.path)
    if path is None or not path.is_file():
        raise HTTPException(404, detail=f"dataset {row.id}'s file is missing")
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"dataset-{row.id}.npz",
    )


@router.get("/datasets/{dataset_id}/file", responses={**NOT_FOUND, **NPZ})
def download(dataset_id: DatasetId, session: ReadSessionDep, settings: SettingsDep) -> Any:
    """The stored arrays as NPZ: `x` float32, `y` int32 class ids or float32 values."""
    return _file(settings, _get(session, dataset_id))


@router.delete("/datasets/{dataset_id}", status_code=204, responses=NOT_FOUND)
def delete(dataset_id: DatasetId, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete an upload and its file; runs queued on it later fail, saying so."""
    row = _get(session, dataset_id)
    path = resolve_artifact(settings, row.path)
    session.delete(row)
    session.commit()
    if path is not None:
        path.unlink(missing_ok=True)
    return Response(status_code=204)


@router.get("/worker/datasets/{dataset_id}", tags=["worker"], responses={**NOT_FOUND, **NPZ})
def worker_download(dataset_id: DatasetId, session: ReadSessionDep, settings: SettingsDep) -> Any:
    """The stored arrays, for a worker training a run on this upload."""
    return _file(settings, _get(session, dataset_id))
