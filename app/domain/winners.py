"""Which setting of a sweep (or of a compare set) wins, and whether seed noise could
explain it.

A *point* is one setting with its seed repeats. Its statistic is the mean over its
finished runs of the best validation data loss (`METRIC`), with the sample standard
deviation where it has two or more. The best point is the one with the lowest mean,
never the luckiest single run; the runner-up is the next. The best point is set against
the runner-up and against the unregularized point (all swept penalty strengths and
dropout rates 0) by Welch's t-test over seeds: the difference of the means, its standard
error and a two-sided p-value. With one seed on either side no test is possible, and the
summary says so ("one_seed") and asks for seeds.

Each point is also placed on a side of the U-shaped path from the best point's means
(`app.domain.verdict.side`): under-fitting (too strong), over-fitting (too weak) or
neither. Pure: no session; the services build the points from their rows.

The points and how they are built are app/domain/winners_points.py's, Welch's test
app/domain/welch.py's; this module ranks the points, compares them and says what it found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from app.domain.verdict import side
from app.domain.welch import plus_minus, welch
from app.domain.winners_points import (
    REGULARIZING,
    Point,
    RunResult,
    group_points,
    point_key,
    point_label,
    regularizes,
    regularizing_paths,
    sweep_points,
    without_seed,
)

# Points and their building live in winners_points.py, Welch's test in welch.py; their
# names are re-exported here, where the services and the tests have always found them.
__all__ = [
    "ALPHA",
    "METRIC",
    "REGULARIZING",
    "Comparison",
    "Judgement",
    "Point",
    "RunResult",
    "Side",
    "Summary",
    "compare",
    "group_points",
    "plus_minus",
    "point_key",
    "point_label",
    "regularizes",
    "regularizing_paths",
    "summarize",
    "sweep_points",
    "welch",
    "without_seed",
]

METRIC = "best_val_data_loss"
ALPHA = 0.05  # a difference with a p-value below this is told apart from seed noise

Judgement = Literal["one_seed", "within_noise", "real_difference", "too_early"]
Side = Literal["underfitting", "overfitting", "best"]


@dataclass(frozen=True)
class Comparison:
    """The best point against another: Welch's t-test over their seeds."""

    against: Literal["runner_up", "unregularized"]
    label: str
    difference: float
    std_error: float | None
    p_value: float | None
    n: tuple[int, int]
    distinguishable: bool
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "against": self.against,
            "label": self.label,
            "difference": self.difference,
            "std_error": self.std_error,
            "p_value": self.p_value,
            "n": list(self.n),
            "distinguishable": self.distinguishable,
            "text": self.text,
        }


@dataclass(frozen=True)
class Summary:
    """The points sorted by mean (those without a finished run last), the best and the
    runner-up, the comparisons, the judgement and one line that says it."""

    points: list[Point]
    sides: dict[str, Side | None]
    best: Point | None
    runner_up: Point | None
    comparisons: list[Comparison]
    judgement: Judgement
    text: str

    def point_dict(self, point: Point) -> dict[str, Any]:
        return {
            "key": point.key,
            "label": point.label,
            "point": point.point,
            "n": point.n,
            "mean": point.mean,
            "std": point.std,
            "train_mean": point.train_mean,
            "run_ids": point.run_ids,
            "all_run_ids": [run.id for run in point.runs],
            "side": self.sides.get(point.key),
        }

    def as_dict(self) -> dict[str, Any]:
        """The API's `summary` shape."""
        return {
            "metric": METRIC,
            "points": [self.point_dict(point) for point in self.points],
            "best": self.point_dict(self.best) if self.best else None,
            "runner_up": self.point_dict(self.runner_up) if self.runner_up else None,
            "comparisons": [comparison.as_dict() for comparison in self.comparisons],
            "judgement": self.judgement,
            "text": self.text,
        }


def _seeds(n: tuple[int, int]) -> str:
    return f"{n[0]} seeds" if n[0] == n[1] else f"{n[0]} and {n[1]} seeds"


def compare(
    best: Point, other: Point, against: Literal["runner_up", "unregularized"]
) -> Comparison:
    """The best point against `other` (both with a mean), in numbers and in words."""
    best_mean, other_mean = best.mean, other.mean
    assert best_mean is not None and other_mean is not None
    n = (best.n, other.n)
    if min(n) < 2:
        difference = other_mean - best_mean
        return Comparison(
            against,
            other.label,
            difference,
            None,
            None,
            n,
            False,
            f"{best.label} beats {other.label} by {difference:.3g} with "
            f"{'one seed' if max(n) < 2 else 'one seed on one side'}: "
            f"no judgement is possible, add seeds",
        )
    difference, error, p_value = welch(best.values, other.values)
    distinguishable = p_value < ALPHA
    verdict = "a real difference" if distinguishable else "within seed noise, add seeds"
    return Comparison(
        against,
        other.label,
        difference,
        error,
        p_value,
        n,
        distinguishable,
        f"{best.label} beats {other.label} by {plus_minus(difference, error)} over "
        f"{_seeds(n)}: {verdict}",
    )


def summarize(points: Sequence[Point], *, regularizing: Sequence[str] = ()) -> Summary:
    """The summary of `points` (in their own order; sorted here by mean).

    Args:
        points: the settings with their runs.
        regularizing: the swept paths (keys of each point's `point`) that are penalty
            strengths or dropout rates; a point with all of them at 0 is unregularized
            (as is one marked so). Where several are, the one that agrees with the best
            point on every other swept setting.
    """
    order = {point.key: index for index, point in enumerate(points)}
    ranked = sorted(
        points,
        key=lambda point: (point.mean is None, point.mean or 0.0, order[point.key]),
    )
    judged = [point for point in ranked if point.mean is not None]
    best = judged[0] if judged else None
    runner_up = judged[1] if len(judged) > 1 else None
    sides: dict[str, Side | None] = {}
    if best is not None:
        reference = best.reference()
        for point in judged:
            mean = point.mean
            assert mean is not None
            sides[point.key] = "best" if point is best else side(point.train_mean, mean, reference)
    comparisons: list[Comparison] = []
    if best is not None and runner_up is not None:
        comparisons.append(compare(best, runner_up, "runner_up"))
        plain = _unregularized(judged, best, regularizing)
        if plain is not None and plain is not best:
            comparisons.append(compare(best, plain, "unregularized"))
    judgement, text = _judge(best, comparisons, len(points))
    return Summary(ranked, sides, best, runner_up, comparisons, judgement, text)


def _unregularized(
    points: Sequence[Point], best: Point, regularizing: Sequence[str]
) -> Point | None:
    marked = [point for point in points if point.unregularized]
    if regularizing:
        marked += [
            point
            for point in points
            if not point.unregularized and all(point.point.get(path) == 0 for path in regularizing)
        ]
    if len(marked) <= 1:
        return marked[0] if marked else None
    others = [path for path in best.point if path not in set(regularizing)]
    same = [
        point
        for point in marked
        if all(point.point.get(path) == best.point.get(path) for path in others)
    ]
    return same[0] if len(same) == 1 else None


def _judge(
    best: Point | None, comparisons: Sequence[Comparison], count: int
) -> tuple[Judgement, str]:
    if best is None:
        return "too_early", "No run has finished yet: nothing to judge."
    if not comparisons:
        if count == 1:
            return "too_early", (
                f"One setting ({best.label}, mean {best.mean:.4g} over {best.n} "
                f"seed{'s' if best.n != 1 else ''}): nothing to compare it with."
            )
        return "too_early", f"Only {best.label} has finished runs: nothing to compare it with yet."
    first = comparisons[0]
    if first.p_value is None:
        if max(first.n) >= 2:
            return "one_seed", first.text
        return "one_seed", (
            f"One seed per point: no judgement is possible on which setting is best "
            f"(lowest so far: {best.label}, {best.mean:.4g}); add seeds."
        )
    text = "; ".join(dict.fromkeys(comparison.text for comparison in comparisons))
    return ("real_difference" if first.distinguishable else "within_noise"), text
