"""Several runs' metrics in one request, for the compare view."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import col, select

from app.api.deps import ReadSessionDep
from app.models import Experiment
from app.schemas import MAX_ID, MetricSeries, RunsMetrics
from app.services import metrics

router = APIRouter(tags=["experiments"])
_NAMES = r"^[A-Za-z0-9_.:/\-]{1,100}(,[A-Za-z0-9_.:/\-]{1,100}){0,199}$"


@router.get("/metrics", response_model=RunsMetrics)
def runs_metrics(
    session: ReadSessionDep,
    ids: Annotated[
        str,
        Query(
            max_length=2000,
            pattern=r"^\d{1,18}(,\d{1,18}){0,99}$",
            description="Run ids, comma-separated (≤ 100)",
        ),
    ],
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
    wanted = list(dict.fromkeys(int(part) for part in ids.split(",")))
    possible = [i for i in wanted if i <= MAX_ID]  # a larger id names no run
    found = set(session.exec(select(Experiment.id).where(col(Experiment.id).in_(possible))).all())
    data = metrics.series_of_runs(
        session, [i for i in wanted if i in found], names.split(",") if names else None
    )
    return RunsMetrics(
        runs={
            str(i): MetricSeries(epochs=data.get(i, ([], {}))[0], series=data.get(i, ([], {}))[1])
            for i in wanted
            if i in found
        },
        missing=[i for i in wanted if i not in found],
    )
