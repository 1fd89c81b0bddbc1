"""Uploaded datasets: storing checked arrays, listing them, and resolving specs that use one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.models import Dataset
from app.spec import ExperimentSpec
from app.uploads import Parsed


def dataset_relpath(token: str) -> str:
    """Where a stored upload lives under the data folder; `token` is chosen by the server."""
    if not token.isalnum():
        raise ValueError("a storage token is letters and digits only")
    return f"datasets/{token}.npz"


def create(
    session: Session,
    parsed: Parsed,
    *,
    name: str,
    fmt: str,
    size_bytes: int,
    sha256: str,
    relpath: str,
) -> Dataset:
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


def list_datasets(session: Session, *, limit: int, offset: int) -> tuple[list[Dataset], int]:
    rows = session.exec(
        select(Dataset).order_by(col(Dataset.id).desc()).offset(offset).limit(limit)
    ).all()
    total = session.exec(select(func.count()).select_from(Dataset)).one()
    return list(rows), int(total)


def resolve(
    session: Session, spec: ExperimentSpec, loc: Sequence[str | int] = ("body",)
) -> ExperimentSpec:
    """The spec with its uploaded dataset's details filled in from the stored upload.

    Raises RequestValidationError (a 422 naming `<loc>.dataset.upload.id`) for an upload
    that does not exist, and for layers the upload cannot feed (conv2d on a table).
    A spec on a built-in dataset comes back as it is.
    """
    upload = spec.dataset.upload
    if upload is None:
        return spec
    row = session.get(Dataset, upload.id)
    if row is None:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": (*loc, "dataset", "upload", "id"),
                    "msg": f"no uploaded dataset with id {upload.id}",
                    "input": upload.id,
                }
            ]
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
        errors: list[dict[str, Any]] = [
            {**item, "loc": (*loc, *item["loc"])} for item in error.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from None
