"""Uploaded datasets (CSV or NPZ): upload, list, read, delete; workers fetch the stored arrays.

The upload is the request body itself (no multipart), so `curl --data-binary @file.csv`
and a browser's `fetch(url, {body: file})` both work (app/services/datasets.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from app.api.deps import DatasetDep, DatasetId, ReadSessionDep, SessionDep, SettingsDep
from app.schemas import DatasetList, DatasetOut, ErrorOut, not_found
from app.services import datasets

router = APIRouter(tags=["datasets"])

NOT_FOUND = not_found("dataset")
NPZ: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The arrays x, y"}
}
_FILE = {"type": "string", "format": "binary", "minLength": 1}
UPLOAD_BODY = {
    "description": "The file itself: a CSV (a header row, numeric features, a target "
    "column; UTF-8) or an NPZ (arrays x and y). Its content is checked beyond this "
    "schema: a file that does not read as a dataset gets 422 naming the problem.",
    "content": {"text/csv": {"schema": _FILE}, "application/octet-stream": {"schema": _FILE}},
    "required": True,
}


@router.post(
    "/datasets",
    status_code=201,
    response_model=DatasetOut,
    responses={413: {"model": ErrorOut, "description": "The file is larger than the limit"}},
    openapi_extra={"requestBody": UPLOAD_BODY},
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
    row = await datasets.upload(
        request.stream(), settings=settings, name=name, fmt=format, target=target, task=task
    )
    return DatasetOut.of(row)


@router.get("/datasets", response_model=DatasetList)
def list_datasets(
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> DatasetList:
    """Uploaded datasets, newest first."""
    rows, total = datasets.list_datasets(session=session, limit=limit, offset=offset)
    return DatasetList(items=[DatasetOut.of(row) for row in rows], total=total)


@router.get("/datasets/{dataset_id}", response_model=DatasetOut, responses=NOT_FOUND)
def read(dataset: DatasetDep) -> DatasetOut:
    """One uploaded dataset: its shape, classes and origin."""
    return DatasetOut.of(dataset)


def _npz(dataset: DatasetDep, settings: SettingsDep) -> FileResponse:
    path = datasets.file_of(row=dataset, settings=settings)
    return FileResponse(
        path, media_type="application/octet-stream", filename=f"dataset-{dataset.id}.npz"
    )


@router.get("/datasets/{dataset_id}/file", responses={**NOT_FOUND, **NPZ})
def download(dataset: DatasetDep, settings: SettingsDep) -> FileResponse:
    """The stored arrays as NPZ: `x` float32, `y` int32 class ids or float32 values."""
    return _npz(dataset, settings)


@router.delete("/datasets/{dataset_id}", status_code=204, responses=NOT_FOUND)
def delete(dataset_id: DatasetId, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete an upload and its file; runs queued on it later fail, saying so."""
    datasets.delete(session=session, dataset_id=dataset_id, settings=settings)
    return Response(status_code=204)


@router.get("/worker/datasets/{dataset_id}", tags=["worker"], responses={**NOT_FOUND, **NPZ})
def worker_download(dataset: DatasetDep, settings: SettingsDep) -> FileResponse:
    """The stored arrays, for a worker training a run on this upload."""
    return _npz(dataset, settings)
