"""The verdict on a run's curves: over-fitting (from which epoch), under-fitting or healthy.

The verdict is a pure function of the per-epoch `data_loss` and `val_data_loss` (the
losses without the penalty, so runs with different λ are judged alike):

- Both curves are smoothed by a centred moving average (3 epochs; 5 from 30 epochs on),
  so that one noisy epoch decides nothing. Under `MIN_EPOCHS` usable epochs: "too_early".
- **overfitting from epoch N**: N is the epoch of the smoothed validation minimum; at
  least `max(3, 10% of the run)` epochs follow it, the smoothed validation loss ends at
  least 5% above that minimum and rose over most of the epochs after it, while the
  smoothed training loss fell over the same stretch. Hint: raise λ or add dropout (or
  keep the weights of epoch N: early stopping).
- **underfitting**: both smoothed losses are still at least half the baseline (the
  trivial loss when known, ln(classes) for classification, else the first epoch's
  training loss) and flat: the last third of the run moved them by under 5%. Hint:
  lower λ (or less dropout, a bigger model).
- otherwise **healthy**.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from app.spec import ExperimentSpec

VerdictKind = Literal["overfitting", "underfitting", "healthy", "too_early"]

MIN_EPOCHS = 5
RISE = 0.05  # the validation loss ends this fraction above its minimum (over-fitting)
RISING_SHARE = 0.6  # share of the epochs after the minimum on which it rose
HIGH = 0.5  # both losses still at least this fraction of the baseline (under-fitting)
FLAT = 0.05  # ... and the last third of the run moved them by less than this fraction

HINTS: dict[VerdictKind, str] = {
    "overfitting": "raise λ or add dropout (or stop early: keep the best epoch's weights)",
    "underfitting": "lower λ or use less dropout (or a bigger model)",
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
