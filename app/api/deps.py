"""Dependencies shared by the routes, as Annotated aliases: sessions, settings, the ids
of each resource, the lookup of one (its 404 comes from the service, here only), and
the comma-separated id lists that the pages send."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query
from sqlmodel import Session

from app.db import get_read_session, get_session
from app.models import Dataset, Experiment, Sweep
from app.schemas import MAX_ID
from app.services import datasets, experiments, sweeps
from app.settings import Settings, get_settings

SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

ExperimentId = Annotated[int, Path(ge=1, le=MAX_ID, description="The experiment's id")]
DatasetId = Annotated[int, Path(ge=1, le=MAX_ID, description="The dataset's id")]
SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="The sweep's id")]


def get_experiment(experiment_id: ExperimentId, session: ReadSessionDep) -> Experiment:
    """The experiment the path names (404 when there is none)."""
    return experiments.require(session=session, experiment_id=experiment_id)


def get_dataset(dataset_id: DatasetId, session: ReadSessionDep) -> Dataset:
    """The uploaded dataset the path names (404 when there is none)."""
    return datasets.require(session=session, dataset_id=dataset_id)


def get_sweep(sweep_id: SweepId, session: ReadSessionDep) -> Sweep:
    """The sweep the path names (404 when there is none)."""
    return sweeps.require(session=session, sweep_id=sweep_id)


ExperimentDep = Annotated[Experiment, Depends(get_experiment)]
DatasetDep = Annotated[Dataset, Depends(get_dataset)]
SweepDep = Annotated[Sweep, Depends(get_sweep)]

# Up to 100 ids, comma-separated (the runs table and the compare view ask so).
_IDS = r"^\d{1,18}(,\d{1,18}){0,99}$"


def _parse_ids(text: str) -> list[int]:
    """Each id once, in the order given (18 digits stay within BIGINT; an id past MAX_ID
    names no run and is listed as missing)."""
    return list(dict.fromkeys(int(part) for part in text.split(",")))


def id_list(
    ids: Annotated[
        str,
        Query(max_length=2000, pattern=_IDS, description="Run ids, comma-separated (≤ 100)"),
    ],
) -> list[int]:
    """The `ids` query parameter, required: the runs asked for, in order."""
    return _parse_ids(ids)


def optional_id_list(
    ids: Annotated[
        str | None,
        Query(
            max_length=2000,
            pattern=_IDS,
            description="Only these runs, comma-separated ids (≤ 100)",
        ),
    ] = None,
) -> list[int] | None:
    """The `ids` query parameter, optional: None asks for every run."""
    return _parse_ids(ids) if ids else None


IdsDep = Annotated[list[int], Depends(id_list)]
OptionalIdsDep = Annotated[list[int] | None, Depends(optional_id_list)]
