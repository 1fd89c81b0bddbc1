"""The pure statistics of sweep winners: means over seeds, Welch's t-test (against SciPy's),
the judgement and its words, the unregularized point, and a compare set's groups."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from app.domain import winners
from app.domain.winners import Point, RunResult, summarize, welch

L2 = "model.layers[*].regularizer.l2"
DROPOUT = "model.layers[0].dropout"
LR = "training.learning_rate"


def run(run_id: int, val: float | None, train: float | None = 0.2, finished: bool = True):
    return RunResult(run_id, finished, val, train)


def sweep(values: dict[float, list[float]], train: dict[float, float] | None = None) -> list[Point]:
    """An L2 sweep: per λ, the best validation data losses of its seeds."""
    runs = []
    next_id = 1
    for l2, losses in values.items():
        for loss in losses:
            runs.append((run(next_id, loss, (train or {}).get(l2, 0.2)), {L2: l2}))
            next_id += 1
    return winners.sweep_points([L2], runs, fallback="sweep")


@pytest.mark.parametrize("seed", range(20))
def test_welch_agrees_with_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = list(rng.normal(0.4, rng.uniform(0.001, 0.1), rng.integers(2, 7)))
    b = list(rng.normal(rng.uniform(0.3, 0.6), rng.uniform(0.001, 0.1), rng.integers(2, 7)))
    difference, error, p_value = welch(a, b)
    expected = stats.ttest_ind(b, a, equal_var=False)
    assert difference == pytest.approx(np.mean(b) - np.mean(a), rel=1e-12)
    assert difference / error == pytest.approx(expected.statistic, rel=1e-9)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_welch_edge_cases() -> None:
    assert welch([1.0, 1.0], [1.0, 1.0]) == (0.0, 0.0, 1.0)
    assert welch([1.0, 1.0], [2.0, 2.0]) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        welch([1.0], [1.0, 2.0])


def test_plus_minus_rounds_to_the_error() -> None:
    assert winners.plus_minus(0.0092, 0.0213) == "0.009 ± 0.021"
    assert winners.plus_minus(0.2104, 0.0199) == "0.210 ± 0.020"
    assert winners.plus_minus(3.14159, 1.5) == "3.1 ± 1.5"


def test_the_best_point_is_the_best_mean_not_the_luckiest_run() -> None:
    # λ = 1e-4 has the single lowest run (0.377) but the higher mean.
    points = sweep({0.0: [0.390, 0.392], 1e-4: [0.377, 0.425], 1e-3: [0.41, 0.412]})
    summary = summarize(points, regularizing=[L2])
    assert summary.best is not None and summary.best.label == "l2=0"
    assert summary.runner_up is not None and summary.runner_up.label == "l2=0.0001"
    assert [point.label for point in summary.points] == ["l2=0", "l2=0.0001", "l2=0.001"]
    best = summary.as_dict()["best"]
    assert best["n"] == 2 and best["mean"] == pytest.approx(0.391)
    assert best["std"] == pytest.approx(np.std([0.390, 0.392], ddof=1))
    assert best["run_ids"] == [1, 2] and best["side"] == "best"
    # The best point is the unregularized one: no comparison with itself.
    assert [comparison.against for comparison in summary.comparisons] == ["runner_up"]


def test_within_seed_noise_as_in_the_issue() -> None:
    points = sweep({0.0: [0.429, 0.387], 1e-4: [0.421, 0.377], 1e-3: [0.432, 0.388]})
    summary = summarize(points, regularizing=[L2])
    assert summary.judgement == "within_noise"
    assert summary.best is not None and summary.best.label == "l2=0.0001"
    runner_up, unregularized = summary.comparisons
    assert runner_up.against == "runner_up" and runner_up.label == "l2=0"
    assert unregularized.against == "unregularized" and unregularized.label == "l2=0"
    assert runner_up.difference == pytest.approx(0.009)
    assert runner_up.n == (2, 2) and not runner_up.distinguishable
    assert runner_up.p_value is not None and runner_up.p_value > 0.5
    assert runner_up.text == (
        "l2=0.0001 beats l2=0 by 0.009 ± 0.030 over 2 seeds: within seed noise, add seeds"
    )
    assert summary.text == runner_up.text  # the same comparison is said once


def test_a_real_difference() -> None:
    points = sweep({0.0: [0.61, 0.62, 0.60], 1e-3: [0.40, 0.41, 0.39], 1e-1: [1.7, 1.8, 1.75]})
    summary = summarize(points, regularizing=[L2])
    assert summary.judgement == "real_difference"
    comparison = summary.comparisons[0]
    assert comparison.distinguishable and comparison.p_value is not None
    assert comparison.p_value < 0.05
    assert (
        comparison.text == "l2=0.001 beats l2=0 by 0.2100 ± 0.0082 over 3 seeds: a real difference"
    )
    assert summary.as_dict()["comparisons"][0]["n"] == [3, 3]


def test_one_seed_per_point_allows_no_judgement() -> None:
    summary = summarize(sweep({0.0: [0.41], 1e-4: [0.40], 1e-3: [0.42]}), regularizing=[L2])
    assert summary.judgement == "one_seed"
    assert "no judgement is possible" in summary.text and "add seeds" in summary.text
    comparison = summary.comparisons[0]
    assert comparison.std_error is None and comparison.p_value is None
    assert not comparison.distinguishable
    assert all(point["std"] is None for point in summary.as_dict()["points"])


def test_too_early_and_unfinished_points_last() -> None:
    nothing = summarize(sweep({0.0: [], 1e-4: []}), regularizing=[L2])
    assert nothing.judgement == "too_early" and nothing.best is None and nothing.comparisons == []
    points = sweep({0.0: [0.5, 0.52], 1e-4: [0.4, 0.41]})
    points.append(Point("later", "l2=0.001", {L2: 1e-3}, [run(9, None, None, finished=False)]))
    points.append(Point("failed", "l2=0.01", {L2: 1e-2}, [run(10, 0.1, 0.1, finished=False)]))
    summary = summarize(points, regularizing=[L2])
    ranked = summary.as_dict()["points"]
    assert [point["label"] for point in ranked][:2] == ["l2=0.0001", "l2=0"]
    # A run that did not succeed counts in no mean, however low its loss.
    assert [(point["n"], point["mean"]) for point in ranked[2:]] == [(0, None), (0, None)]
    assert ranked[2]["all_run_ids"] == [9] and ranked[2]["run_ids"] == []
    waiting = Point("later", "l2=0.001", {L2: 1e-3}, [run(9, None, None, finished=False)])
    only = summarize([*sweep({0.0: [0.5, 0.52]}), waiting], regularizing=[L2])
    assert only.judgement == "too_early" and "Only l2=0 has finished runs" in only.text
    alone = summarize(sweep({0.0: [0.5, 0.52]}))
    assert alone.judgement == "too_early" and "nothing to compare it with" in alone.text


def test_sides_of_the_u() -> None:
    points = sweep(
        {0.0: [0.70, 0.72], 1e-3: [0.40, 0.42], 1e-1: [1.7, 1.8]},
        train={0.0: 0.02, 1e-3: 0.2, 1e-1: 1.7},
    )
    summary = summarize(points, regularizing=[L2])
    sides = {point.label: summary.sides[point.key] for point in summary.points}
    assert sides == {"l2=0.001": "best", "l2=0": "overfitting", "l2=0.1": "underfitting"}


def test_the_unregularized_point_is_the_slice_through_the_best() -> None:
    paths = [L2, LR]
    runs = []
    for index, (l2, lr, loss) in enumerate(
        [
            (0.0, 0.01, 0.5),
            (0.0, 0.01, 0.52),
            (0.0, 0.001, 0.9),
            (0.0, 0.001, 0.92),
            (1e-3, 0.01, 0.40),
            (1e-3, 0.01, 0.41),
            (1e-3, 0.001, 0.80),
            (1e-3, 0.001, 0.82),
        ]
    ):
        runs.append((run(index + 1, loss), {L2: l2, LR: lr}))
    points = winners.sweep_points(paths, runs, fallback="sweep")
    assert points[0].label == "l2=0 · learning_rate=0.01"
    summary = summarize(points, regularizing=winners.regularizing_paths(paths))
    assert summary.best is not None and summary.best.point == {L2: 1e-3, LR: 0.01}
    plain = [c for c in summary.comparisons if c.against == "unregularized"]
    assert [c.label for c in plain] == ["l2=0 · learning_rate=0.01"]
    # Only a learning-rate axis: nothing says which point is unregularized.
    assert winners.regularizing_paths([LR, "training.epochs"]) == []
    assert winners.regularizing_paths([L2, DROPOUT, LR]) == [L2, DROPOUT]


def test_compare_groups_by_seed_repeats() -> None:
    rows = [
        (run(1, 0.40), "s · l2=0.001 · seed 0", "a", False),
        (run(2, 0.42), "s · l2=0.001 · seed 1", "a", False),
        (run(3, 0.50), "plain · seed 0", "b", True),
        (run(4, 0.52), "plain · seed 1", "b", True),
        (run(5, 0.30, finished=False), "script run", None, False),
        (run(6, 0.60), "plain", "c", True),
    ]
    points = winners.group_points(rows)
    assert [point.label for point in points] == [
        "s · l2=0.001",
        "plain (#3)",
        "script run",
        "plain (#6)",
    ]
    summary = summarize(points)
    assert summary.best is not None and summary.best.run_ids == [1, 2]
    assert [c.against for c in summary.comparisons] == ["runner_up"]  # the runner-up is plain
    assert summary.comparisons[0].label == "plain (#3)"
    assert winners.without_seed("x · seed 12") == "x" and winners.without_seed("seed 1") == "seed 1"


def test_regularizes_reads_a_spec() -> None:
    plain = {"model": {"layers": [{"type": "dense", "units": 8, "dropout": 0.0}]}}
    assert not winners.regularizes(plain)
    l2 = {"model": {"layers": [{"units": 8, "regularizer": {"kind": "l2", "l2": 0.01}}]}}
    assert winners.regularizes(l2)
    zero = {"model": {"layers": [{"units": 8, "regularizer": {"kind": "l2", "l2": 0.0}}]}}
    assert not winners.regularizes(zero)
    plugin = {"model": {"layers": [{"regularizer": {"kind": "plugin", "plugin": "x"}}]}}
    assert winners.regularizes(plugin)
    assert winners.regularizes({"script": {}})  # a script's model is unknown
    assert math.isclose(winners.ALPHA, 0.05)
