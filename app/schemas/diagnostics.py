"""Shapes of the diagnostics: verdicts from the curves, per-layer weight histograms."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from app.schemas.common import Body, Epoch, Token
from app.spec import Float, OnlyPatternKeys

LayerName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/\-]+$")]
Finite = Annotated[Float, Field(ge=-1e30, le=1e30, allow_inf_nan=False)]
Count = Annotated[Float, Field(ge=0, le=1e15, allow_inf_nan=False)]


class LayerHistogram(BaseModel):
    """One layer's kernel histogram: `len(edges) == len(counts) + 1`, edges ascending."""

    edges: list[Finite] = Field(min_length=2, max_length=201)
    counts: list[Count] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _shape(self) -> LayerHistogram:
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError("edges needs one more value than counts")
        if any(b < a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must not decrease")
        return self


class HistogramsIn(Body):
    lease_token: Token
    epoch: Epoch
    layers: Annotated[dict[LayerName, LayerHistogram], OnlyPatternKeys()] = Field(max_length=100)


class HistogramsAck(BaseModel):
    stored: bool = Field(description="False when this epoch's histograms were stored before")


class HistogramsOut(BaseModel):
    epochs: list[int] = Field(description="The epochs with histograms, ascending")
    layers: dict[str, list[LayerHistogram | None]] = Field(
        description="Per layer, one histogram per epoch of `epochs` (null where missing)"
    )


OwnVerdict = Literal["overfitting", "underfitting", "still_improving", "healthy", "too_early"]


class AgainstOut(BaseModel):
    label: str = Field(description="The point judged against, e.g. 'l2=0.0001'")
    run_ids: list[int] = Field(description="Its finished runs, whose means are compared")


class RelativeOut(BaseModel):
    """The run against the best point of its sweep (lowest mean best validation data loss
    over its seeds)."""

    verdict: Literal["underfitting", "overfitting", "best", "comparable"] = Field(
        description="best: the run is one of the best point's; comparable: neither clearly "
        "under- nor over-fitting against it"
    )
    hint: str
    reason: str = Field(description="Names the point judged against and its runs")
    against: AgainstOut


class OverallOut(BaseModel):
    """The verdict to show first: under- or over-fitting relative to the sweep's best
    point where the run is so, else its own verdict."""

    verdict: OwnVerdict
    hint: str
    reason: str
    relative: bool = Field(description="Whether it is the relative verdict")


class VerdictOut(BaseModel):
    verdict: OwnVerdict = Field(description="The verdict on the run's own curves")
    from_epoch: int | None = Field(description="Where over-fitting starts (the validation minimum)")
    hint: str
    reason: str
    relative: RelativeOut | None = Field(
        default=None,
        description="Against the best point of its sweep; null outside a sweep, before the "
        "run has succeeded, or while no point of the sweep has a finished run",
    )
    overall: OverallOut | None = Field(default=None, description="The verdict to show first")


class VerdictsOut(BaseModel):
    verdicts: dict[str, VerdictOut] = Field(description="By run id")
    missing: list[int] = Field(description="Ids that name no run")
