"""Experiments: submit, query, read, edit, cancel, delete, and their metrics and model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.openapi.models import Example
from fastapi.responses import FileResponse
from sqlmodel import Session

from app.api.deps import (
    ExperimentDep,
    ExperimentId,
    OptionalIdsDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
)
from app.models import Experiment, Status
from app.schemas import (
    BAD_BODY,
    ErrorOut,
    ExperimentEdit,
    ExperimentList,
    ExperimentOut,
    MetricSeries,
    not_found,
)
from app.services import artifacts, experiments, metrics, packs, summaries
from app.spec import ExperimentSpec

router = APIRouter(prefix="/experiments", tags=["experiments"])
NOT_FOUND = not_found("experiment")


def _conflict(description: str) -> dict[int | str, dict[str, Any]]:
    return {409: {"model": ErrorOut, "description": description}}


def _out(
    session: Session, rows: list[Experiment], metric_names: list[str] | None = None
) -> list[ExperimentOut]:
    """Runs as the API shows them, with their packs and their metrics' summaries (every
    metric's, or those named; none for an empty list): one query each for the page."""
    sizes = packs.sizes(session=session, rows=rows)
    found = None
    if metric_names is None or metric_names:
        found = summaries.of_runs(
            session=session,
            experiment_ids=[row.id for row in rows if row.id is not None],
            names=metric_names,
        )
    return [ExperimentOut.of(row, sizes, found) for row in rows]


FILTER_DESCRIPTION = """Only the runs that match, in reglab's query language:
tests joined by `AND`, `OR`, `NOT` and parentheses (keywords in any case). A test is
`field op value` (`=`, `!=`, `<`, `<=`, `>`, `>=`), `field [NOT] IN (v1, v2, ...)`,
`field [NOT] LIKE 'pattern'` (case-insensitive; `%` any text, `_` one character, `\\`
before either takes it literally), or a bare `tags.<key>` (the run has that tag).
Values: `'text'` (`''` inside is one quote), numbers (`1e-3`, `-2`), `true`, `false`;
times as text (`created > '2026-01-31'`, UTC unless a zone is given).

Fields:
- attributes: `id`, `status`, `name`, `created`, `started`, `finished`, `sweep`,
  `pack`, `source` (queue or script), `verdict`, `device`, `dataset`, `epochs_done`;
- `params.<path>`: a setting of the spec by the path sweeps use
  (`params.model.layers.0.regularizer.l2` or `params.model.layers[0].regularizer.l2`;
  `[*]`: any element matches, e.g. `params.model.layers[*].dropout = 0`);
- `metrics.<name>.<best|last|min|max>`: best is the value at the run's best epoch (its
  lowest val_data_loss);
- `tags.<key>`: a tag's value.

A test on a field the run lacks (a metric it never logged, a tag it does not carry) is
false, `!=` included; `NOT` turns a test around. A mistake is a 422 naming `filter`,
where (1-based) and what was expected there, e.g. `at 27: expected a value after '>'`."""

ORDER_DESCRIPTION = """The order: `field [ASC|DESC], ...` over the same fields as
`filter` (no `[*]`); runs without a value come last either way, and the id (newest
first) breaks ties. Newest first when left out."""

FILTER_EXAMPLES = {
    "finished on digits": {"value": "status = 'succeeded' and dataset = 'digits'"},
    "settings": {
        "value": "params.model.layers.0.regularizer.l2 > 1e-3 "
        "and params.model.layers[*].dropout = 0"
    },
    "metrics": {"value": "metrics.val_data_loss.best < 0.4 or metrics.val_accuracy.last >= 0.9"},
    "tags, names, verdicts": {
        "value": "tags.team = 'vision' and name like '%sweep%' and not verdict = 'overfitting'"
    },
    "a sweep's seeds": {"value": "sweep = 3 and params.training.seed in (0, 1, 2)"},
}


@router.post("", status_code=201, response_model=ExperimentOut, responses=BAD_BODY)
def submit(spec: ExperimentSpec, session: SessionDep, settings: SettingsDep) -> ExperimentOut:
    """Queue an experiment."""
    row = experiments.submit(session=session, spec=spec, max_attempts=settings.max_attempts)
    return ExperimentOut.of(row)


@router.get("", response_model=ExperimentList)
def list_experiments(
    session: ReadSessionDep,
    ids: OptionalIdsDep,
    status: Status | None = None,
    name: Annotated[
        str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="Part of the name")
    ] = None,
    filter: Annotated[
        str | None,
        Query(
            max_length=2000,
            pattern=r"^[^\x00]*$",
            description=FILTER_DESCRIPTION,
            openapi_examples={key: Example(**value) for key, value in FILTER_EXAMPLES.items()},
        ),
    ] = None,
    order_by: Annotated[
        str | None,
        Query(
            max_length=2000,
            pattern=r"^[^\x00]*$",
            description=ORDER_DESCRIPTION,
            openapi_examples={
                "best first": Example(value="metrics.val_data_loss.best asc, created desc")
            },
        ),
    ] = None,
    metrics: Annotated[
        str | None,
        Query(
            max_length=2000,
            pattern=r"^(\*|[A-Za-z0-9_.:/\-]{1,100}(,[A-Za-z0-9_.:/\-]{1,100})*)$",
            description="Whose summaries each run's `metrics` holds: metric names, "
            "comma-separated, or `*` for every metric. Left out, `metrics` is null (a "
            "page of runs stays small).",
            openapi_examples={
                "two columns": Example(value="val_data_loss,val_accuracy"),
                "every metric": Example(value="*"),
            },
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Runs per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9, description="Runs skipped before the page")] = 0,
) -> ExperimentList:
    """Query experiments: those that match `filter` (and `status`, `name`, `ids`), in
    `order_by`'s order, one page at a time, with how many match in all."""
    rows, total = experiments.list_experiments(
        session=session,
        status=status,
        name=name,
        ids=ids,
        filter=filter,
        order_by=order_by,
        limit=limit,
        offset=offset,
    )
    names = None if metrics == "*" else metrics.split(",") if metrics else []
    return ExperimentList(items=_out(session, rows, names), total=total)


@router.get("/{experiment_id}", response_model=ExperimentOut, responses=NOT_FOUND)
def read(experiment: ExperimentDep, session: ReadSessionDep) -> ExperimentOut:
    """One experiment, with a summary of its latest metrics, each metric summed up (and
    its pack, if it trained in one)."""
    return _out(session, [experiment])[0]


@router.patch("/{experiment_id}", response_model=ExperimentOut, responses={**NOT_FOUND, **BAD_BODY})
def edit(experiment_id: ExperimentId, body: ExperimentEdit, session: SessionDep) -> ExperimentOut:
    """Change a run's tags and notes, at any time (running or ended): `remove_tags` are
    removed, then each of `tags` is set (a null value makes a bare label: `tags.<key>` in a
    filter is true for it); `notes` replaces the notes when given, null clears them."""
    row = experiments.edit(
        session=session,
        experiment_id=experiment_id,
        tags=body.tags,
        remove_tags=body.remove_tags,
        notes=body.notes,
        set_notes="notes" in body.model_fields_set,
    )
    return _out(session, [row])[0]


@router.get(
    "/{experiment_id}/metrics",
    response_model=MetricSeries,
    responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}}},
)
def read_metrics(
    experiment: ExperimentDep,
    session: ReadSessionDep,
    format: Literal["json", "csv"] = "json",
) -> MetricSeries | Response:
    """Every metric of a run per epoch, as JSON columns or as CSV."""
    assert experiment.id is not None
    epochs, columns = metrics.series(session=session, experiment_id=experiment.id)
    if format == "csv":
        filename = f"reglab-{experiment.id}-metrics.csv"
        return Response(
            metrics.to_csv(epochs, columns),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return MetricSeries(epochs=epochs, series=columns)


@router.post(
    "/{experiment_id}/cancel",
    response_model=ExperimentOut,
    responses={**NOT_FOUND, **_conflict("Already ended")},
)
def cancel(experiment_id: ExperimentId, session: SessionDep) -> ExperimentOut:
    """Cancel a queued or running experiment; a running one is stopped by its worker."""
    return _out(session, [experiments.cancel(session=session, experiment_id=experiment_id)])[0]


@router.delete(
    "/{experiment_id}",
    status_code=204,
    responses={**NOT_FOUND, **_conflict("Still running")},
)
def delete(experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete an experiment that is not running, with its metrics and model."""
    experiments.delete(session=session, experiment_id=experiment_id, settings=settings)
    return Response(status_code=204)


@router.get(
    "/{experiment_id}/model",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The .keras file"},
        404: {
            "model": ErrorOut,
            "description": "No such experiment, or it has no saved model (yet: the model "
            "is saved when training ends)",
        },
    },
)
def download_model(experiment: ExperimentDep, settings: SettingsDep) -> FileResponse:
    """The trained model as a `.keras` file."""
    path, filename = artifacts.model_file(row=experiment, settings=settings)
    return FileResponse(path, media_type="application/octet-stream", filename=filename)
