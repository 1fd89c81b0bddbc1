"""Several runs' metrics in one request, for the compare view."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import IdsDep, ReadSessionDep
from app.schemas import MetricSeries, RunsMetrics
from app.services import metrics

router = APIRouter(tags=["experiments"])
_NAMES = r"^[A-Za-z0-9_.:/\-]{1,100}(,[A-Za-z0-9_.:/\-]{1,100}){0,199}$"


@router.get("/metrics", response_model=RunsMetrics)
def runs_metrics(
    session: ReadSessionDep,
    ids: IdsDep,
    names: Annotated[
        str | None,
        Query(
            max_length=20_000,
            pattern=_NAMES,
            description="Only these metrics, comma-separated (≤ 200)",
        ),
    ] = None,
) -> RunsMetrics:
    """The metrics of several runs at once; ids that do not exist are listed as missing."""
    found, missing = metrics.runs_series(
        session=session, ids=ids, names=names.split(",") if names else None
    )
    return RunsMetrics(
        runs={
            str(run_id): MetricSeries(epochs=epochs, series=columns)
            for run_id, (epochs, columns) in found.items()
        },
        missing=missing,
    )
