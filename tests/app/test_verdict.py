"""The verdict rules on synthetic curves (each rule, and a run against its sweep's best
point), and on real tiny runs: one built to over-fit, and an L2 sweep like issue 11's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.domain import winners
from app.domain.verdict import (
    MIN_EPOCHS,
    Reference,
    RunVerdict,
    relative_verdict,
    side,
    smooth,
    trivial_loss,
    verdict,
)
from app.spec import ExperimentSpec
from tests.factories import make_spec


def noisy(values: np.ndarray, seed: int = 0, scale: float = 0.01) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in values * (1 + scale * rng.standard_normal(len(values)))]


EPOCHS = np.arange(40)
FALLING = 1.0 * np.exp(-EPOCHS / 8) + 0.05


def test_overfitting_from_the_validation_minimum() -> None:
    # Validation falls to a minimum at epoch 12, then climbs; training keeps falling.
    val = 0.6 + 0.002 * (EPOCHS - 12) ** 2
    result = verdict(list(EPOCHS), noisy(FALLING), noisy(val, seed=1))
    assert result.verdict == "overfitting"
    assert result.from_epoch is not None and 10 <= result.from_epoch <= 15
    assert "raise λ" in result.hint and "dropout" in result.hint
    assert f"epoch {result.from_epoch}" in result.reason


def test_one_noisy_spike_is_not_overfitting() -> None:
    val = list(FALLING + 0.1)
    val[-1] = val[-1] * 3  # one bad epoch at the end
    result = verdict(list(EPOCHS), list(FALLING), val)
    assert result.verdict == "healthy"


def test_validation_rising_with_training_rising_is_not_overfitting() -> None:
    rising = list(0.5 + 0.01 * EPOCHS)
    assert verdict(list(EPOCHS), rising, [v + 0.1 for v in rising]).verdict != "overfitting"


def test_underfitting_high_and_flat() -> None:
    flat = noisy(np.full(len(EPOCHS), 2.2), scale=0.002)
    flat_val = noisy(np.full(len(EPOCHS), 2.25), seed=2, scale=0.002)
    result = verdict(list(EPOCHS), flat, flat_val, trivial_loss=math.log(10))
    assert result.verdict == "underfitting"
    assert result.from_epoch is None
    assert "lower λ" in result.hint
    assert "trivial loss" in result.reason


def test_underfitting_against_the_first_epoch_without_a_trivial_loss() -> None:
    # Falls a little at first, then stays at 80% of where it started.
    curve = list(0.8 + 0.2 * np.exp(-EPOCHS / 2))
    result = verdict(list(EPOCHS), curve, [v * 1.05 for v in curve])
    assert result.verdict == "underfitting"
    assert "first epoch" in result.reason


def test_healthy_when_both_fall() -> None:
    result = verdict(list(EPOCHS), noisy(FALLING), noisy(FALLING + 0.05, seed=3))
    assert result.verdict == "healthy"
    assert result.as_dict()["verdict"] == "healthy"


def test_still_improving_when_the_minimum_is_at_the_end_and_still_falling() -> None:
    # A slow decay stopped after one time constant: far from its floor.
    curve = 0.3 + 1.2 * np.exp(-EPOCHS / 40)
    result = verdict(list(EPOCHS), noisy(curve * 0.9), noisy(curve, seed=4), trivial_loss=2.3)
    assert result.verdict == "still_improving"
    assert result.from_epoch is None
    assert "more epochs" in result.hint and "learning rate" in result.hint
    assert "epoch 39" in result.reason and "still falling" in result.reason


def test_still_improving_comes_before_underfitting() -> None:
    # High (most of the trivial loss) and the last third moved it by under 5%, but it
    # falls steadily to the end: no plateau to judge yet.
    curve = 2.0 - 0.004 * EPOCHS
    result = verdict(list(EPOCHS), list(curve), list(curve + 0.02), trivial_loss=math.log(10))
    assert result.verdict == "still_improving"


def test_a_curve_at_its_floor_is_not_still_improving() -> None:
    # Still falling a little at the end, but 99% of the way to its floor: levelled off.
    assert verdict(list(EPOCHS), list(FALLING), list(FALLING + 0.05)).verdict == "healthy"
    # A noisy plateau whose last epoch happens to be its lowest: no clear slope.
    flat = noisy(np.full(len(EPOCHS), 0.4), seed=5, scale=0.01)
    flat[-1] = min(flat) * 0.995
    train = list(0.6 * np.exp(-EPOCHS / 5) + 0.1)
    assert verdict(list(EPOCHS), train, flat).verdict == "healthy"


def test_overfitting_stays_overfitting_not_still_improving() -> None:
    # The minimum lies well before the end: over-fitting decides first.
    val = 0.6 + 0.002 * (EPOCHS - 12) ** 2
    assert verdict(list(EPOCHS), list(FALLING), list(val)).verdict == "overfitting"


REFERENCE = Reference("l2=0.0001", (3, 4), val=0.4, train=0.2)


def test_relative_underfitting_names_the_point() -> None:
    judged = relative_verdict(train=1.7, val=1.8, reference=REFERENCE, at_best=False)
    assert judged is not None and judged.verdict == "underfitting"
    assert "lower λ / less dropout" in judged.hint
    assert "l2=0.0001 (runs 3, 4)" in judged.reason
    assert judged.as_dict()["against"] == {"label": "l2=0.0001", "run_ids": [3, 4]}
    # Both losses must be far above: a high validation loss alone is not under-fitting.
    assert side(0.25, 1.8, REFERENCE) is None
    assert side(1.7, 0.5, REFERENCE) is None
    assert side(0.31, 0.61, REFERENCE) == "underfitting"  # just past 1.5x both
    assert side(0.29, 0.61, REFERENCE) is None


def test_relative_overfitting_and_comparable() -> None:
    judged = relative_verdict(train=0.05, val=0.5, reference=REFERENCE, at_best=False)
    assert judged is not None and judged.verdict == "overfitting"
    assert "raise λ / more dropout" in judged.hint and "l2=0.0001 (runs 3, 4)" in judged.reason
    # Training far below but validation within 10% of the best: not over-fitting.
    near = relative_verdict(train=0.05, val=0.42, reference=REFERENCE, at_best=False)
    assert near is not None and near.verdict == "comparable"
    assert "l2=0.0001 (runs 3, 4)" in near.reason
    best = relative_verdict(train=0.3, val=0.45, reference=REFERENCE, at_best=True)
    assert best is not None and best.verdict == "best"
    assert relative_verdict(train=0.3, val=None, reference=REFERENCE, at_best=False) is None


def test_overall_puts_a_relative_verdict_first() -> None:
    own = verdict(list(EPOCHS), list(2.0 - 0.004 * EPOCHS), list(2.02 - 0.004 * EPOCHS))
    assert own.verdict == "still_improving"
    under = relative_verdict(train=1.8, val=1.9, reference=REFERENCE, at_best=False)
    overall = RunVerdict(own, under).overall()
    assert overall["verdict"] == "underfitting" and overall["relative"] is True
    assert "l2=0.0001" in overall["reason"]
    comparable = relative_verdict(train=0.2, val=0.41, reference=REFERENCE, at_best=False)
    alone = RunVerdict(own, comparable).as_dict()
    assert alone["overall"]["verdict"] == "still_improving" and not alone["overall"]["relative"]
    assert alone["relative"]["verdict"] == "comparable"
    assert RunVerdict(own).as_dict()["relative"] is None


def test_too_early_and_gaps() -> None:
    few = verdict([0, 1, 2], [1.0, 0.9, 0.8], [1.0, 0.95, 0.9])
    assert few.verdict == "too_early" and f"needs {MIN_EPOCHS}" in few.reason
    # Missing and non-finite points are skipped, not counted.
    gappy = verdict(
        range(6), [1.0, None, 0.8, float("nan"), 0.6, 0.5], [1.0, 0.9, None, 0.8, 0.7, 0.6]
    )
    assert gappy.verdict == "too_early"


def test_smooth_is_a_centred_mean() -> None:
    assert smooth([3.0, 0.0, 3.0, 6.0], 3) == [1.5, 2.0, 3.0, 4.5]


def test_trivial_loss_of_a_spec() -> None:
    assert trivial_loss(make_spec()) == pytest.approx(math.log(2))  # two moons
    assert trivial_loss({"name": "x"}) is None  # not a spec
    assert trivial_loss(None) is None


OVERFITTING_SPEC = {
    "name": "built to over-fit",
    "dataset": {"name": "digits", "train_fraction": 0.15, "label_noise": 0.2},
    "model": {"layers": [{"type": "dense", "units": 256}, {"type": "dense", "units": 256}]},
    "training": {"epochs": 40, "batch_size": 16, "learning_rate": 0.003, "histogram_every": 0},
}


def test_a_real_run_built_to_overfit() -> None:
    """A big net on 15% of digits with a fifth of the labels wrong memorizes the noise."""
    from worker.training import train

    result = train(ExperimentSpec.model_validate(OVERFITTING_SPEC))
    history = result.history
    judged = verdict(range(40), history["data_loss"], history["val_data_loss"])
    assert judged.verdict == "overfitting", (judged, history["val_data_loss"])
    assert judged.from_epoch is not None
    val = history["val_data_loss"]
    # It starts near the best epoch and the validation loss ends well above it.
    assert abs(judged.from_epoch - int(np.argmin(val))) <= 4
    assert val[-1] > min(val) * 1.05


L2 = "model.layers[*].regularizer.l2"
LAMBDAS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
SWEEP_EPOCHS = 15


def sweep_spec(l2: float, seed: int) -> ExperimentSpec:
    """The seed's MLP without dropout on 20% of digits (issue 11's sweep, fewer epochs)."""
    layer = {"regularizer": {"kind": "l2", "l2": l2}}
    return ExperimentSpec.model_validate(
        {
            "name": f"l2={l2:g} seed {seed}",
            "dataset": {"name": "digits", "train_fraction": 0.2},
            "model": {
                "layers": [
                    {"type": "dense", "units": 64, **layer},
                    {"type": "dense", "units": 32, **layer},
                ]
            },
            "training": {
                "epochs": SWEEP_EPOCHS,
                "batch_size": 32,
                "seed": seed,
                "histogram_every": 0,
            },
        }
    )


class _Quiet:
    """A pack observer that only lets the pack train."""

    def member_epoch(self, index: int, epoch: int, logs: object, kernels: object) -> None:
        pass

    def member_end(self, result: object) -> None:
        pass

    def stop_requested(self, index: int) -> bool:
        return False


def test_a_real_l2_sweep_under_fits_at_the_top_and_is_still_improving() -> None:
    """Issue 11's sweep (L2 0 … 0.1 x 2 seeds, no dropout, 20% of digits), packed per seed:
    λ = 0.1 is under-fitting relative to the best point, and a run whose best epoch is its
    last is still improving (its overall verdict, unless it under-fits relative)."""
    from worker.packing import PackTrainer

    curves: dict[tuple[float, int], dict[str, list[float]]] = {}
    for seed in (0, 1):
        specs = [sweep_spec(l2, seed) for l2 in LAMBDAS]
        for l2, result in zip(LAMBDAS, PackTrainer(specs, _Quiet()).train(), strict=True):
            curves[(l2, seed)] = result.history
    ids = {key: index + 1 for index, key in enumerate(curves)}
    points = winners.sweep_points(
        [L2],
        (
            (
                winners.RunResult(
                    ids[key],
                    True,
                    min(history["val_data_loss"]),
                    history["data_loss"][-1],
                ),
                {L2: key[0]},
            )
            for key, history in curves.items()
        ),
        fallback="sweep",
    )
    summary = winners.summarize(points, regularizing=[L2])
    assert summary.best is not None and summary.best.point[L2] < 0.1
    reference = summary.best.reference()
    assert summary.sides[winners.point_key({L2: 0.1})] == "underfitting"

    still_improving = 0
    for (l2, seed), history in curves.items():
        train, val = history["data_loss"], history["val_data_loss"]
        own = verdict(range(SWEEP_EPOCHS), train, val, trivial_loss=math.log(10))
        relative = relative_verdict(
            train=train[-1],
            val=min(val),
            reference=reference,
            at_best=winners.point_key({L2: l2}) == summary.best.key,
        )
        assert relative is not None
        overall = RunVerdict(own, relative).overall()
        if l2 == 0.1:
            assert relative.verdict == "underfitting", (seed, relative)
            assert overall["verdict"] == "underfitting"
            assert reference.label in relative.reason
        else:
            assert relative.verdict in ("best", "comparable"), (l2, seed, relative)
        if int(np.argmin(val)) == SWEEP_EPOCHS - 1:
            still_improving += 1
            assert own.verdict == "still_improving", (l2, seed, own, val)
            assert overall["verdict"] == ("underfitting" if l2 == 0.1 else "still_improving")
    assert still_improving >= 8  # at 15 epochs nearly every run is still falling
