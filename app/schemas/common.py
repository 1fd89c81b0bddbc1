"""Pieces that the API's shapes share: names, tokens, texts, timestamps, errors."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.spec import MAX_ID as MAX_ID
from app.spec import Float, Int, OnlyPatternKeys, json_bounds


def _as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back without their zone; they are stored in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
MetricName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/\-]+$")
]
Token = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
ShortText = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00]*$")]
Epoch = Annotated[Int, Field(ge=0, le=1_000_000)]


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; a worker's error text is kept, not refused.
    return value.replace("\x00", "\ufffd")


ErrorText = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_no_nul)]


def _finite(values: dict[str, float]) -> dict[str, float]:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"value of '{name}' is not finite")
    return values


# Metric values by name: finite numbers (JSON has no NaN), names of the pattern only.
FiniteValues = Annotated[dict[MetricName, Float], AfterValidator(_finite), OnlyPatternKeys()]


class Body(BaseModel):
    """A request body: unknown fields refused, bounds named as JSON Schema names them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=json_bounds)


class ErrorOut(BaseModel):
    detail: str


# What any route that reads a body may answer before validating it: bytes that do not
# parse as JSON text (not UTF-8, nested deeper than the parser goes) and bodies over the
# server's limit (app/limits.py).
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body could not be parsed"},
    413: {"model": ErrorOut, "description": "The body is larger than the server accepts"},
}


def not_found(what: str) -> dict[int | str, dict[str, Any]]:
    """The 404 answer of a route that looks up one resource."""
    return {404: {"model": ErrorOut, "description": f"No such {what}"}}
