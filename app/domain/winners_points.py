"""A sweep's points: one setting with its seed repeats, and the statistics of it that
the summary reads (the mean and the standard deviation over its finished runs), built
from a sweep's runs (by their swept values) or a compare set's (by group).

app/domain/winners.py ranks the points and tells them apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from app.domain.spec_paths import PathError, parse_path, short_labels
from app.domain.verdict import Reference
from app.domain.welch import sample_variance

# The last name of a swept path that makes a setting regularize: at 0 it does not.
REGULARIZING = frozenset({"l1", "l2", "smoothness", "dropout", "recurrent_dropout"})
_SEED_SUFFIX = " · seed "


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
        return math.sqrt(sample_variance(values)) if len(values) >= 2 else None

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
