"""Dependencies shared by the routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path
from sqlmodel import Session

from app.db import get_read_session, get_session
from app.models import Experiment
from app.schemas import MAX_ID
from app.settings import Settings, get_settings

SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ExperimentId = Annotated[int, Path(ge=1, le=MAX_ID, description="The experiment's id")]


def get_experiment(experiment_id: ExperimentId, session: ReadSessionDep) -> Experiment:
    row = session.get(Experiment, experiment_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"experiment {experiment_id} not found")
    return row


ExperimentDep = Annotated[Experiment, Depends(get_experiment)]
