"""The verdict on a run's curves (over-fitting from which epoch, still improving,
under-fitting or healthy), and on a run against its siblings (the best point of its sweep).

The verdict is a pure function of the per-epoch `data_loss` and `val_data_loss` (the
losses without the penalty, so runs with different λ are judged alike):

- Both curves are smoothed by a centred moving average (3 epochs; 5 from 30 epochs on),
  so that one noisy epoch decides nothing. Under `MIN_EPOCHS` usable epochs: "too_early".
- **overfitting from epoch N**: N is the epoch of the smoothed validation minimum; at
  least `max(3, 10% of the run)` epochs follow it, the smoothed validation loss ends at
  least 5% above that minimum and rose over most of the epochs after it, while the
  smoothed training loss fell over the same stretch. Hint: raise λ or add dropout (or
  keep the weights of epoch N: early stopping).
- **still improving**: the smoothed validation minimum lies in the last `max(3, 10%)`
  epochs and the validation loss is still clearly falling there: the least-squares slope
  over the last `max(5, 20%)` epochs is at least two standard errors below 0, and the
  fitted fall over that stretch is at least 0.5% of the level and 2% of the run's whole
  fall so far (a curve 99% of the way to its floor has levelled off). Hint: more
  epochs (or a higher learning rate); the other verdicts need a plateau to be judged,
  so this one comes before them.
- **underfitting**: both smoothed losses are still at least half the baseline (the
  trivial loss when known, ln(classes) for classification, else the first epoch's
  training loss) and flat: the last third of the run moved them by under 5%. Hint:
  lower λ (or less dropout, a bigger model).
- otherwise **healthy**.

Within a sweep (or any set of runs on the same data) a run is also judged against the
best point, the setting with the lowest mean best validation data loss over its seeds
(`relative_verdict`): both its training and validation data losses at least 1.5x that
point's means is **under-fitting relative to it**; its training data loss at most half
that point's while its validation loss is at least 10% above is **over-fitting relative
to it**. The losses compared are each run's best validation data loss and its final
training data loss (the point's means of the same).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from app.spec import ExperimentSpec

VerdictKind = Literal["overfitting", "underfitting", "still_improving", "healthy", "too_early"]
RelativeKind = Literal["underfitting", "overfitting", "best", "comparable"]

MIN_EPOCHS = 5
RISE = 0.05  # the validation loss ends this fraction above its minimum (over-fitting)
RISING_SHARE = 0.6  # share of the epochs after the minimum on which it rose
HIGH = 0.5  # both losses still at least this fraction of the baseline (under-fitting)
FLAT = 0.05  # ... and the last third of the run moved them by less than this fraction
# Still improving: the fitted fall over the tail is at least these fractions of the level
# and of the run's whole fall so far.
FALLING_LEVEL = 0.005
FALLING_PROGRESS = 0.02
SLOPE_ERRORS = 2.0  # ... and the slope this many standard errors below 0
UNDER_RATIO = 1.5  # relative under-fitting: both losses at least this multiple of the best's
OVER_TRAIN = 0.5  # relative over-fitting: training loss at most this fraction of the best's
OVER_VAL = 1.1  # ... while the validation loss is at least this multiple of the best's

HINTS: dict[VerdictKind, str] = {
    "overfitting": "raise λ or add dropout (or stop early: keep the best epoch's weights)",
    "underfitting": "lower λ or use less dropout (or a bigger model)",
    "still_improving": "train for more epochs (or raise the learning rate): the validation "
    "loss has not levelled off, and the other verdicts need a plateau to be judged",
    "healthy": "keep these settings; compare a sweep of λ to be sure",
    "too_early": "wait for more epochs",
}


@dataclass(frozen=True)
class Verdict:
    """What the curves say: the verdict, from which epoch (over-fitting), a hint, why."""

    verdict: VerdictKind
    from_epoch: int | None
    hint: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Centred moving average over `window` values (fewer at the ends), so that a
    minimum stays where it is rather than lagging behind."""
    half = window // 2
    smoothed: list[float] = []
    for index in range(len(values)):
        part = values[max(0, index - half) : index + half + 1]
        smoothed.append(sum(part) / len(part))
    return smoothed


def verdict(
    epochs: Sequence[int],
    data_loss: Sequence[float | None],
    val_data_loss: Sequence[float | None],
    *,
    trivial_loss: float | None = None,
) -> Verdict:
    """The verdict on one run's curves (aligned on `epochs`; None or NaN points skipped).

    Args:
        epochs: the epoch numbers.
        data_loss: the training data loss per epoch.
        val_data_loss: the validation data loss per epoch.
        trivial_loss: the loss of a model that learned nothing (ln(classes) for
            classification), the under-fitting baseline; None uses the first epoch's.

    Example:
        >>> verdict(range(8), [1, .8, .6, .5, .4, .3, .2, .1], [1, .8, .7, .7, .8, .9, 1, 1.1])
        Verdict(verdict='overfitting', from_epoch=2, ...)
    """
    points = [
        (epoch, float(train), float(val))
        for epoch, train, val in zip(epochs, data_loss, val_data_loss, strict=False)
        if train is not None and val is not None and math.isfinite(train) and math.isfinite(val)
    ]
    count = len(points)
    if count < MIN_EPOCHS:
        return Verdict(
            "too_early",
            None,
            HINTS["too_early"],
            f"{count} epoch{'s' if count != 1 else ''} with both losses; the verdict needs "
            f"{MIN_EPOCHS}",
        )
    window = 3 if count < 30 else 5
    epoch_of = [epoch for epoch, _, _ in points]
    train = smooth([value for _, value, _ in points], window)
    val = smooth([value for _, _, value in points], window)

    best = min(range(count), key=lambda index: (val[index], index))
    after = count - 1 - best
    rise = val[-1] - val[best]
    rises = sum(1 for index in range(best + 1, count) if val[index] > val[index - 1])
    if (
        after >= max(3, math.ceil(0.1 * count))
        and rise > RISE * abs(val[best])
        and rises >= RISING_SHARE * after
        and train[-1] < train[best]
    ):
        return Verdict(
            "overfitting",
            epoch_of[best],
            HINTS["overfitting"],
            f"validation data loss rose {rise / abs(val[best]):.0%} after its minimum at "
            f"epoch {epoch_of[best]} while the training data loss fell "
            f"{(train[best] - train[-1]) / abs(train[best]):.0%}",
        )

    falling = _still_falling(val, [value for _, _, value in points], best)
    if falling is not None:
        fall, span = falling
        return Verdict(
            "still_improving",
            None,
            HINTS["still_improving"],
            f"validation data loss is still falling: its minimum is at the last epochs "
            f"(epoch {epoch_of[best]}) and it fell {fall:.0%} over the last {span} epochs",
        )

    baseline = trivial_loss if trivial_loss is not None and trivial_loss > 0 else train[0]
    third = max(1, count // 3)
    moved = max(
        abs(train[-1] - train[-1 - third]) / max(abs(train[-1]), 1e-12),
        abs(val[-1] - val[-1 - third]) / max(abs(val[-1]), 1e-12),
    )
    if baseline > 0 and min(train[-1], val[-1]) >= HIGH * baseline and moved < FLAT:
        source = "the trivial loss" if baseline == trivial_loss else "the first epoch's loss"
        return Verdict(
            "underfitting",
            None,
            HINTS["underfitting"],
            f"training and validation data losses are still "
            f"{min(train[-1], val[-1]) / baseline:.0%} of {source} ({baseline:.4g})"
            f" and moved {moved:.1%} over the last {third} epochs",
        )
    return Verdict(
        "healthy",
        None,
        HINTS["healthy"],
        f"validation data loss {val[-1]:.4g} is within {RISE:.0%} of its minimum or still "
        f"falling, and the losses fell to {min(train[-1], val[-1]) / baseline:.0%} of "
        f"the start",
    )


def _still_falling(
    smoothed: Sequence[float], raw: Sequence[float], best: int
) -> tuple[float, int] | None:
    """(the fitted fall as a fraction of the level, over how many epochs) when the smoothed
    minimum `best` is in the run's last epochs and the raw validation loss is clearly
    falling there; None otherwise."""
    count = len(raw)
    if best < count - max(3, math.ceil(0.1 * count)):
        return None
    span = min(count, max(5, math.ceil(0.2 * count)))
    slope, error = _slope(raw[-span:])
    fall = -slope * (span - 1)
    progress = max(smoothed[: best + 1]) - smoothed[best]
    if (
        slope + SLOPE_ERRORS * error < 0
        and fall >= FALLING_LEVEL * abs(smoothed[best])
        and fall >= FALLING_PROGRESS * progress
    ):
        return fall / max(abs(smoothed[best]), 1e-12), span
    return None


def _slope(values: Sequence[float]) -> tuple[float, float]:
    """The least-squares slope of `values` against 0, 1, 2 ... and its standard error."""
    count = len(values)
    mean_x = (count - 1) / 2
    mean_y = sum(values) / count
    sxx = sum((x - mean_x) ** 2 for x in range(count))
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values)) / sxx
    residuals = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in enumerate(values))
    error = math.sqrt(residuals / (count - 2) / sxx) if count > 2 else math.inf
    return slope, error


@dataclass(frozen=True)
class Reference:
    """The point a run is judged against (a sweep's best): its label, its runs, and the
    means over them of the best validation and the final training data loss."""

    label: str
    run_ids: tuple[int, ...]
    val: float
    train: float | None

    @property
    def named(self) -> str:
        """E.g. "l2=0.0001 (runs 3, 4)", as reason lines name it."""
        runs = ", ".join(str(run_id) for run_id in self.run_ids)
        return f"{self.label} (run{'s' if len(self.run_ids) != 1 else ''} {runs})"


@dataclass(frozen=True)
class RelativeVerdict:
    """A run against the best point of its set: under- or over-fitting relative to it, at
    it ("best"), or neither clearly ("comparable")."""

    verdict: RelativeKind
    hint: str
    reason: str
    against: Reference

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "hint": self.hint,
            "reason": self.reason,
            "against": {"label": self.against.label, "run_ids": list(self.against.run_ids)},
        }


def side(
    train: float | None, val: float, reference: Reference
) -> Literal["underfitting", "overfitting"] | None:
    """Which side of the best point a run (or a point's means) is on, by the rules in the
    module's docstring; None when neither clearly."""
    if reference.val <= 0:
        return None
    if train is None or reference.train is None or reference.train <= 0:
        return None
    if val >= UNDER_RATIO * reference.val and train >= UNDER_RATIO * reference.train:
        return "underfitting"
    if train <= OVER_TRAIN * reference.train and val >= OVER_VAL * reference.val:
        return "overfitting"
    return None


def _times(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference > 0 else f"{value:.3g} against {reference:.3g}"


def relative_verdict(
    *, train: float | None, val: float | None, reference: Reference, at_best: bool
) -> RelativeVerdict | None:
    """A run (its final training and best validation data loss) against `reference`, the
    best point of its set; `at_best` when the run is one of that point's. None when the
    run has no validation data loss to judge."""
    if at_best:
        return RelativeVerdict(
            "best",
            "keep this setting; more seeds make the choice surer",
            f"its setting has the lowest mean best validation data loss ({reference.val:.4g}"
            f" over {reference.named})",
            reference,
        )
    if val is None or not math.isfinite(val):
        return None
    kind = side(train, val, reference)
    if train is not None and reference.train is not None:
        losses = (
            f"best validation data loss {val:.3g} and training data loss {train:.3g} are "
            f"{_times(val, reference.val)} and {_times(train, reference.train)}"
        )
    else:
        losses = f"best validation data loss {val:.3g} is {_times(val, reference.val)}"
    if kind == "underfitting":
        return RelativeVerdict(
            "underfitting",
            f"lower λ / less dropout (towards {reference.label})",
            f"under-fitting relative to {reference.named}: {losses} its means",
            reference,
        )
    if kind == "overfitting":
        return RelativeVerdict(
            "overfitting",
            f"raise λ / more dropout (towards {reference.label})",
            f"over-fitting relative to {reference.named}: {losses} its means",
            reference,
        )
    return RelativeVerdict(
        "comparable",
        f"neither clearly under- nor over-fitting against {reference.label}",
        f"{losses} the means of {reference.named}: neither clearly under- nor over-fitting "
        f"against it",
        reference,
    )


@dataclass(frozen=True)
class RunVerdict:
    """A run's own verdict and, within a sweep, its verdict against the best point."""

    own: Verdict
    relative: RelativeVerdict | None = None

    def overall(self) -> dict[str, Any]:
        """The verdict to show first: under- or over-fitting relative to the best point
        where the run is so (a run 4x worse than its siblings is not "still improving"
        first), else its own."""
        relative = self.relative
        if relative is not None and relative.verdict in ("underfitting", "overfitting"):
            return {
                "verdict": relative.verdict,
                "hint": relative.hint,
                "reason": relative.reason,
                "relative": True,
            }
        own = self.own
        return {"verdict": own.verdict, "hint": own.hint, "reason": own.reason, "relative": False}

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.own.as_dict(),
            "relative": self.relative.as_dict() if self.relative else None,
            "overall": self.overall(),
        }


def trivial_loss(spec: Mapping[str, Any] | None) -> float | None:
    """ln(classes) for a classification spec whose class count is known, else None."""
    if not spec:
        return None
    try:
        parsed = ExperimentSpec.model_validate(spec)
        info = parsed.dataset.info
    except ValueError:
        return None
    if info.task == "classification" and info.classes >= 2:
        return math.log(info.classes)
    return None
