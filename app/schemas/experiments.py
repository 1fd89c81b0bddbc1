"""Shapes of experiments as the API returns them (a queued run or a script's run)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.domain.verdict import VerdictKind
from app.models import Experiment, Status
from app.schemas.common import Body, UtcDatetime
from app.schemas.scripts import ScriptInfo
from app.spec import ExperimentSpec, Notes, OnlyPatternKeys, Task

TagKey = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/\-]+$")
]
TagValue = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00]*$")]
Tags = Annotated[dict[TagKey, TagValue | None], OnlyPatternKeys()]


# A queued run's spec never changes: read each once, not on every page of runs that shows
# it (validating a spec is most of a page's cost). Keyed by the run's id and creation time,
# which no two runs share (ids are never reused; and the tests' many databases, each
# numbering from 1, create their runs at different times).
_SPECS: OrderedDict[tuple[int, datetime], tuple[ExperimentSpec, str, Task]] = OrderedDict()
_SPECS_KEPT = 4096
_SPECS_LOCK = threading.Lock()


def _spec_facts(row: Experiment) -> tuple[ExperimentSpec, str, Task]:
    """A queued run's spec, its regularization in words and its task, read once."""
    assert row.id is not None
    key = (row.id, row.created_at)
    with _SPECS_LOCK:
        found = _SPECS.get(key)
        if found is not None:
            _SPECS.move_to_end(key)
            return found
    spec = ExperimentSpec.model_validate(row.spec)
    facts = (spec, spec.describe_regularization(), spec.dataset.info.task)
    with _SPECS_LOCK:
        _SPECS[key] = facts
        while len(_SPECS) > _SPECS_KEPT:
            _SPECS.popitem(last=False)
    return facts


class PackRef(BaseModel):
    """The packed model a run trained in, with the other points of its sweep that differ
    only in penalty strengths and dropout rates."""

    id: int
    members: int = Field(description="How many runs trained together in this pack")
    index: int = Field(description="This run's member slot in the pack, from 0")


class MetricSummaryOut(BaseModel):
    """One metric of a run summed up, as queries name it (`metrics.<name>.<summary>`)."""

    best: float | None = Field(
        description="The value at the run's best epoch (its lowest val_data_loss); null "
        "when the run has no val_data_loss or this metric has no value at that epoch"
    )
    last: float = Field(description="The value at the last epoch stored")
    min: float
    max: float


class ExperimentOut(BaseModel):
    id: int
    name: str
    status: Status
    spec: ExperimentSpec | None = Field(description="The spec of a queued run; null for a script")
    script: ScriptInfo | None = Field(
        default=None, description="What a script run told about itself; null for a queued run"
    )
    regularization: str = Field(description="The regularization in a few words")
    task: Task = Field(description="classification or regression, from the dataset")
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    attempt: int
    max_attempts: int
    worker_id: str | None
    device: str | None = Field(description="The device the run trained on, as Keras saw it")
    error: str | None
    error_epoch: int | None
    epochs_done: int
    epochs_total: int
    last_metrics: dict[str, float]
    best_epoch: int | None
    best_val_data_loss: float | None
    test_metrics: dict[str, float] | None
    has_model: bool
    source: Literal["queue", "script"] = Field(
        description="queue: trained by a reglab worker; script: streamed by a ReglabCallback"
    )
    sweep_id: int | None = Field(description="The sweep this run belongs to")
    point: dict[str, float] | None = Field(description="The swept settings' values, by path")
    group_key: str | None = Field(
        description="Equal for runs whose specs differ only in name, notes and seed"
    )
    pack: PackRef | None = Field(
        default=None, description="The packed model it trained in with other sweep points"
    )
    tags: dict[str, str | None] = Field(
        default_factory=dict,
        description="Labels given to the run: key → value, or null for a bare label",
        examples=[{"team": "vision", "baseline": None}],
    )
    notes: str | None = Field(default=None, description="Free text about the run, editable")
    verdict: VerdictKind | None = Field(
        default=None,
        description="The run's own verdict on its curves, stored when it reached a final status "
        "(GET /api/experiments/{id}/verdict explains it); null before that",
    )
    metrics: dict[str, MetricSummaryOut] | None = Field(
        default=None,
        description="Each metric summed up (best, last, min, max), as queries filter and "
        "sort on them. A list holds those its `metrics` parameter names (null without "
        "it); a single run, every metric; null in a script run's creation and finish",
    )

    @classmethod
    def of(
        cls,
        row: Experiment,
        pack_sizes: Mapping[int, int] | None = None,
        summaries: Mapping[int, Mapping[str, Mapping[str, float | None]]] | None = None,
    ) -> ExperimentOut:
        """The run as the API shows it; `pack_sizes` (pack id → members) names its pack's
        size (app/services/packs.sizes), `summaries` (run id → metric → summary) its
        metrics' summaries (app/services/summaries.of_runs)."""
        assert row.id is not None
        spec: ExperimentSpec | None = None
        script: ScriptInfo | None = None
        if row.source == "script":
            script = ScriptInfo.model_validate(row.spec.get("script", {}))
            regularization, task, epochs_total = (
                script.regularization,
                script.task,
                script.epochs or row.epochs_done,
            )
        else:
            spec, regularization, task = _spec_facts(row)
            epochs_total = spec.training.epochs
        return cls(
            id=row.id,
            name=row.name,
            status=Status(row.status),
            spec=spec,
            script=script,
            regularization=regularization,
            task=task,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            worker_id=row.worker_id,
            device=row.device,
            error=row.error,
            error_epoch=row.error_epoch,
            epochs_done=row.epochs_done,
            epochs_total=epochs_total,
            last_metrics=row.last_metrics or {},
            best_epoch=row.best_epoch,
            best_val_data_loss=row.best_val_data_loss,
            test_metrics=row.test_metrics,
            has_model=row.model_path is not None,
            source="script" if row.source == "script" else "queue",
            sweep_id=row.sweep_id,
            point=row.point,
            group_key=row.group_key,
            pack=(
                PackRef(
                    id=row.pack_id,
                    members=(pack_sizes or {}).get(row.pack_id, 0),
                    index=row.pack_index or 0,
                )
                if row.pack_id is not None
                else None
            ),
            tags=dict(row.tags or {}),
            notes=row.notes,
            verdict=row.verdict,  # type: ignore[arg-type]  # one of VerdictKind, as stored
            # Plain mappings, validated as MetricSummaryOut (cheaper than a model each).
            metrics=summaries.get(row.id, {}) if summaries is not None else None,  # type: ignore[arg-type]
        )


class ExperimentList(BaseModel):
    items: list[ExperimentOut]
    total: int = Field(description="How many runs match in all (every page together)")


class ExperimentEdit(Body):
    """What a PATCH changes on a run: tags merge into the run's (`remove_tags` go first,
    then each key of `tags` is set; null makes a bare label), and `notes` replaces the
    notes when given (null clears them). A field left out changes nothing."""

    tags: Tags = Field(
        default_factory=dict,
        max_length=100,
        description="Tags to set: key → value, or null for a bare label",
        examples=[{"team": "vision", "baseline": None}],
    )
    remove_tags: list[TagKey] = Field(
        default_factory=list, max_length=100, description="Keys of tags to remove"
    )
    notes: Notes | None = Field(default=None, description="The new notes; null clears them")
