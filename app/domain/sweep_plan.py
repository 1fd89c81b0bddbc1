"""Sweeps without a database: the runs a sweep request expands to.

Every problem is a `SweepInvalid` carrying (loc, message) pairs whose loc names the field
of the request, e.g. `("axes", 0, "path")`; the service prefixes "body".
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.domain.spec_paths import (
    PathError,
    leaf_type,
    parse_path,
    set_value,
    short_labels,
    targets,
)
from app.schemas.sweeps import MAX_RUNS, AxisIn, SweepIn
from app.spec import ExperimentSpec, error_location

MAX_SEED = 2**31 - 1
Loc = tuple[str | int, ...]


class SweepInvalid(Exception):
    """The request cannot be expanded; `errors` are (loc, message) pairs."""

    def __init__(self, errors: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in errors))
        self.errors = errors


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its spec (name and seed filled in), point and seed."""

    spec: ExperimentSpec
    point: dict[str, float]
    seed: int


@dataclass(frozen=True)
class _Axis:
    path: str
    places: list[tuple[str | int, ...]]
    kind: type[int] | type[float]
    axis: AxisIn


def _spec_error(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error_location(first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _with_values(
    base: dict[str, Any], axes: Sequence[_Axis], values: Sequence[float]
) -> dict[str, Any]:
    data: dict[str, Any] = _deepcopy(base)
    for axis, value in zip(axes, values, strict=True):
        for place in axis.places:
            set_value(data, place, axis.kind(value))
    return data


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deepcopy(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_deepcopy(inner) for inner in value]
    return value


def _check_axis(index: int, axis: AxisIn, mode: str, errors: list[tuple[Loc, str]]) -> None:
    loc: Loc = ("axes", index)
    has_range = axis.low is not None or axis.high is not None
    if (axis.values is None) == (not has_range):
        errors.append((loc, "give either 'values' or a range 'low' and 'high'"))
        return
    if axis.values is not None:
        if axis.count is not None:
            errors.append(((*loc, "count"), "'count' spaces a range; these are values"))
        if len(set(axis.values)) != len(axis.values):
            errors.append(((*loc, "values"), "values repeat"))
        return
    if axis.low is None or axis.high is None:
        missing = "high" if axis.low is not None else "low"
        errors.append(((*loc, missing), f"a range needs '{missing}'"))
        return
    if axis.scale == "log" and axis.low <= 0:
        errors.append(((*loc, "low"), "a log scale needs low > 0 (use values to include 0)"))
    if axis.low >= axis.high:
        errors.append(((*loc, "high"), "high must be above low"))
    if mode == "grid" and axis.count is None:
        errors.append(((*loc, "count"), "a range in grid mode needs 'count' points"))


def _spaced(axis: AxisIn, kind: type[int] | type[float], count: int) -> list[float]:
    assert axis.low is not None and axis.high is not None
    if axis.scale == "log":
        low, high = math.log(axis.low), math.log(axis.high)
        values = [_exp(low + (high - low) * i / (count - 1), axis.high) for i in range(count)]
    else:
        values = [axis.low + (axis.high - axis.low) * i / (count - 1) for i in range(count)]
    values[0], values[-1] = axis.low, axis.high  # exact ends, no rounding drift
    return _as_kind(values, kind)


def _exp(exponent: float, ceiling: float) -> float:
    """exp() that cannot pass the range's top by rounding (nor overflow near float's max)."""
    try:
        return min(math.exp(exponent), ceiling)
    except OverflowError:
        return ceiling


def _as_kind(values: list[float], kind: type[int] | type[float]) -> list[float]:
    if kind is int:
        return list(dict.fromkeys(float(round(value)) for value in values))
    return values


def _draw(axis: AxisIn, kind: type[int] | type[float], rng: random.Random) -> float:
    if axis.values is not None:
        return rng.choice(axis.values)
    assert axis.low is not None and axis.high is not None
    if axis.scale == "log":
        value = _exp(rng.uniform(math.log(axis.low), math.log(axis.high)), axis.high)
    else:
        value = rng.uniform(axis.low, axis.high)
    value = min(max(value, axis.low), axis.high)
    return float(round(value)) if kind is int else value


def run_name(sweep: str, labels: Sequence[str], values: Sequence[float], seed: int | None) -> str:
    """E.g. 'l2 sweep · l2=0.001 · seed 1' (the seed only when the sweep repeats seeds)."""
    parts = [f"{label}={value:g}" for label, value in zip(labels, values, strict=True)]
    if seed is not None:
        parts.append(f"seed {seed}")
    suffix = "".join(f" · {part}" for part in parts)
    return (sweep[: max(1, 200 - len(suffix))] + suffix)[:200]


def expand(request: SweepIn, base: ExperimentSpec | None = None) -> list[PlannedRun]:
    """Every run of the sweep, points in order and seeds within each point.

    `base` replaces `request.base` (the server passes it with an upload resolved).
    Raises SweepInvalid with every problem found at once, each with its loc.
    """
    spec = base or request.base
    base_data = spec.model_dump(mode="json")
    errors: list[tuple[Loc, str]] = []
    axes: list[_Axis] = []
    seen: dict[tuple[str | int, ...], int] = {}
    for index, axis in enumerate(request.axes):
        loc: Loc = ("axes", index, "path")
        try:
            tokens = parse_path(axis.path)
            if tokens[:2] == ["dataset", "upload"]:
                raise PathError("the uploaded dataset is chosen in the base spec, not swept")
            kind = leaf_type(tokens)
            places = targets(base_data, tokens)
        except PathError as error:
            errors.append((loc, str(error)))
            continue
        clash = next((seen[place] for place in places if place in seen), None)
        if clash is not None:
            errors.append((loc, f"sets what axis {clash} ('{request.axes[clash].path}') sets"))
            continue
        seen.update(dict.fromkeys(places, index))
        _check_axis(index, axis, request.mode, errors)
        axes.append(_Axis(axis.path, places, kind, axis))
    if request.mode == "random":
        if not request.axes:
            errors.append((("axes",), "random mode draws points along at least one axis"))
        if request.draws is None:
            errors.append((("draws",), "random mode needs the number of draws"))
    elif request.draws is not None:
        errors.append((("draws",), "'draws' is for random mode"))
    if spec.training.seed + request.seeds - 1 > MAX_SEED:
        errors.append((("seeds",), f"base seed + seeds passes {MAX_SEED}"))
    if errors:
        raise SweepInvalid(errors)

    # Each value alone on the base spec, so a refused value is named where it was given.
    grids: list[list[float]] = []
    for index, swept in enumerate(axes):
        checks: list[tuple[Loc, float]]
        if swept.axis.values is not None:
            checks = [(("values", j), value) for j, value in enumerate(swept.axis.values)]
        else:
            assert swept.axis.low is not None and swept.axis.high is not None
            checks = [(("low",), swept.axis.low), (("high",), swept.axis.high)]
        for where, value in checks:
            if swept.kind is int and value != int(value) and swept.axis.values is not None:
                errors.append((("axes", index, *where), f"{swept.path} takes whole numbers"))
                continue
            try:
                ExperimentSpec.model_validate(_with_values(base_data, [swept], [value]))
            except ValidationError as error:
                errors.append((("axes", index, *where), _spec_error(error)))
        if swept.axis.values is not None:
            grids.append(list(swept.axis.values))
        else:
            grids.append(_spaced(swept.axis, swept.kind, swept.axis.count or 2))
    if errors:
        raise SweepInvalid(errors)

    if request.mode == "grid":
        count = math.prod(len(grid) for grid in grids) * request.seeds
        if count > MAX_RUNS:
            raise SweepInvalid([(("axes",), f"{count} runs; a sweep queues at most {MAX_RUNS}")])
        points = [list(values) for values in itertools.product(*grids)]
    else:
        assert request.draws is not None
        count = request.draws * request.seeds
        if count > MAX_RUNS:
            raise SweepInvalid([(("draws",), f"{count} runs; a sweep queues at most {MAX_RUNS}")])
        rng = random.Random(f"{request.name}:{spec.training.seed}")
        points = [[_draw(axis.axis, axis.kind, rng) for axis in axes] for _ in range(request.draws)]

    labels = short_labels([axis.path for axis in axes])
    runs: list[PlannedRun] = []
    for values in points:
        data = _with_values(base_data, axes, values)
        for i in range(request.seeds):
            seed = spec.training.seed + i
            data["training"]["seed"] = seed
            data["name"] = run_name(
                request.name, labels, values, seed if request.seeds > 1 else None
            )
            try:
                planned = ExperimentSpec.model_validate(data)
            except ValidationError as error:
                shown = ", ".join(f"{a.path}={v:g}" for a, v in zip(axes, values, strict=True))
                raise SweepInvalid([(("axes",), f"point {shown}: {_spec_error(error)}")]) from None
            point = {axis.path: float(value) for axis, value in zip(axes, values, strict=True)}
            runs.append(PlannedRun(planned, point, seed))
    return runs
