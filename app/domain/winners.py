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
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from app.domain.spec_paths import PathError, parse_path, short_labels
from app.domain.verdict import Reference, side

METRIC = "best_val_data_loss"
ALPHA = 0.05  # a difference with a p-value below this is told apart from seed noise
# The last name of a swept path that makes a setting regularize: at 0 it does not.
REGULARIZING = frozenset({"l1", "l2", "smoothness", "dropout", "recurrent_dropout"})
_SEED_SUFFIX = " · seed "

Judgement = Literal["one_seed", "within_noise", "real_difference", "too_early"]
Side = Literal["underfitting", "overfitting", "best"]


@dataclass(frozen=True)
class RunResult:
    """One run as the statistics see it: finished (succeeded) or not, its best validation
    and its final training data loss."""

    id: int
    finished: bool
    val: float | None
    train: float | None

    @property
    def counts(self) -> bool:
        """Whether it enters its point's statistics."""
        return self.finished and self.val is not None and math.isfinite(self.val)


@dataclass
class Point:
    """One setting and its runs; `unregularized` marks a setting known to regularize
    nothing (a compare set's groups say so from their specs)."""

    key: str
    label: str
    point: dict[str, float]
    runs: list[RunResult] = field(default_factory=list)
    unregularized: bool = False

    # The statistics are read once the runs are all in (a summary is built from a
    # finished list of points), so each is computed once.

    @cached_property
    def counted(self) -> list[RunResult]:
        return [run for run in self.runs if run.counts]

    @property
    def n(self) -> int:
        return len(self.counted)

    @cached_property
    def values(self) -> list[float]:
        return [run.val for run in self.counted if run.val is not None]

    @cached_property
    def mean(self) -> float | None:
        values = self.values
        return sum(values) / len(values) if values else None

    @cached_property
    def std(self) -> float | None:
        values = self.values
        return math.sqrt(_variance(values)) if len(values) >= 2 else None

    @cached_property
    def train_mean(self) -> float | None:
        trains = [run.train for run in self.counted if run.train is not None]
        if not trains or len(trains) != self.n:
            return None
        return sum(trains) / len(trains)

    @property
    def run_ids(self) -> list[int]:
        return [run.id for run in self.counted]

    def reference(self) -> Reference:
        """This point as the one runs are judged against (it has a mean)."""
        mean = self.mean
        assert mean is not None
        return Reference(self.label, tuple(self.run_ids), mean, self.train_mean)


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


def _variance(values: Sequence[float]) -> float:
    """The sample variance (n - 1 in the denominator)."""
    mean = sum(values) / len(values)
    return sum((value - mean) ** 2 for value in values) / (len(values) - 1)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's t-test of two samples of two or more values each: (mean(b) - mean(a), the
    standard error of that difference, the two-sided p-value), as
    `scipy.stats.ttest_ind(b, a, equal_var=False)` gives it."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's t-test needs two or more values on each side")
    difference = sum(b) / len(b) - sum(a) / len(a)
    var_a, var_b = _variance(a) / len(a), _variance(b) / len(b)
    error = math.sqrt(var_a + var_b)
    if error == 0:  # no spread at all: any difference is exact
        return difference, 0.0, 1.0 if difference == 0 else 0.0
    t = difference / error
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    return difference, error, _t_two_sided(t, df)


def _t_two_sided(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` degrees of freedom (df may be fractional)."""
    return min(1.0, max(0.0, _incomplete_beta(df / 2, 0.5, df / (df + t * t))))


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction
    (Lentz's method), on the side of x where it converges fast."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, epsilon = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < epsilon:
            break
    return result


def plus_minus(difference: float, error: float) -> str:
    """E.g. "0.009 ± 0.021": the error to two significant digits, the difference to the
    same decimal place."""
    if error <= 0 or not math.isfinite(error):
        return f"{difference:.3g} ± 0"
    decimals = max(0, 1 - math.floor(math.log10(error)))
    return f"{difference:.{decimals}f} ± {error:.{decimals}f}"


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


# Building points from rows: a sweep's (by its swept values) and a compare set's (by group).


def regularizing_paths(paths: Iterable[str]) -> list[str]:
    """The swept paths that set a penalty strength or a dropout rate."""
    found = []
    for path in paths:
        try:
            tokens = parse_path(path)
        except PathError:
            continue
        names = [token for token in tokens if isinstance(token, str)]
        if names and names[-1] in REGULARIZING:
            found.append(path)
    return found


def point_label(paths: Sequence[str], point: Mapping[str, float], fallback: str) -> str:
    """E.g. "l2=0.001 · dropout=0.5", as run names show a point; `fallback` with no axes."""
    if not paths:
        return fallback
    labels = short_labels(list(paths))
    return " · ".join(
        f"{label}={point[path]:g}"
        for label, path in zip(labels, paths, strict=True)
        if path in point
    )


def point_key(point: Mapping[str, float] | None) -> str:
    """The same for runs of one sweep point (its swept values)."""
    return json.dumps({path: float(value) for path, value in (point or {}).items()}, sort_keys=True)


def sweep_points(
    paths: Sequence[str],
    runs: Iterable[tuple[RunResult, Mapping[str, float] | None]],
    *,
    fallback: str,
) -> list[Point]:
    """A sweep's points, in the order their first runs came, from (run, swept values)."""
    points: dict[tuple[tuple[str, float], ...], Point] = {}
    for run, values in runs:
        seen = tuple(sorted((path, float(value)) for path, value in (values or {}).items()))
        found = points.get(seen)
        if found is None:
            point = dict(seen)
            found = points[seen] = Point(
                point_key(point), point_label(paths, point, fallback), point
            )
        found.runs.append(run)
    return list(points.values())


def without_seed(name: str) -> str:
    """A run's name without its seed part: "s · l2=0.001 · seed 1" → "s · l2=0.001"."""
    head, found, tail = name.rpartition(_SEED_SUFFIX)
    return head if found and tail.isdigit() else name


def group_points(runs: Iterable[tuple[RunResult, str, str | None, bool]]) -> list[Point]:
    """A compare set's points, from (run, name, group key, unregularized): seed repeats
    share a group key; a run without one is a group of its own. Labels are the names
    without their seed part, made distinct with the first run's id where two clash."""
    points: dict[str, Point] = {}
    for run, name, group, plain in runs:
        key = group or f"run:{run.id}"
        if key not in points:
            points[key] = Point(key, without_seed(name), {}, unregularized=plain)
        points[key].runs.append(run)
    labels: dict[str, int] = {}
    for point in points.values():
        labels[point.label] = labels.get(point.label, 0) + 1
    for point in points.values():
        if labels[point.label] > 1:
            point.label = f"{point.label} (#{point.runs[0].id})"
    return list(points.values())


def regularizes(spec: Mapping[str, Any]) -> bool:
    """Whether a spec's model has any penalty or dropout (a strength or a rate above 0,
    or a plugin penalty); a script's run, whose model is unknown, counts as regularized."""
    model = spec.get("model")
    if not isinstance(model, Mapping):
        return True
    return _regularizes(model)


def _regularizes(value: Any) -> bool:
    if isinstance(value, Mapping):
        if value.get("kind") == "plugin":
            return True
        for key, inner in value.items():
            if key in REGULARIZING and isinstance(inner, int | float) and inner > 0:
                return True
            if _regularizes(inner):
                return True
        return False
    if isinstance(value, list):
        return any(_regularizes(inner) for inner in value)
    return False
