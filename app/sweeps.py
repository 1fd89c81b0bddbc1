"""Sweeps without a database: the request, setting paths, and the runs a sweep expands to.

A path names a numeric setting of an `ExperimentSpec`, e.g. `model.layers[*].regularizer.l2`,
`model.layers[1].dropout` (or `model.layers.1.dropout`, as the form names fields) or
`training.learning_rate`. `[*]` sets every layer that the rest of the path applies to (a
dense layer's `units`, a convolution's `filters`; a regularizer of a kind that reads the
strength). Setting a strength on a layer without that regularizer creates one of that
kind, so `model.layers[*].regularizer.l2` sweeps L2 on every layer.

Every problem is a `SweepInvalid` carrying (loc, message) pairs whose loc names the field
of the request, e.g. `("axes", 0, "path")`; the API prefixes "body".
"""

from __future__ import annotations

import itertools
import math
import random
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.spec import LAYER_TYPES, ExperimentSpec, Name, error_location

MAX_RUNS = 200  # runs one sweep may queue (points times seeds)
MAX_SEED = 2**31 - 1

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Loc = tuple[str | int, ...]


class AxisIn(BaseModel):
    """One swept setting: a list of `values`, or a range `low`..`high` on a `scale`
    (drawn at random in random mode, `count` evenly spaced points in grid mode)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(max_length=200, examples=["model.layers[*].regularizer.l2"])
    values: list[FiniteFloat] | None = Field(default=None, min_length=1, max_length=100)
    low: FiniteFloat | None = None
    high: FiniteFloat | None = None
    scale: Literal["log", "linear"] = "log"
    count: int | None = Field(
        default=None, ge=2, le=100, description="Grid mode: points spaced evenly over a range"
    )


class SweepIn(BaseModel):
    """A base spec, the axes to sweep, and how many seeds to run each point with."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    base: ExperimentSpec
    axes: list[AxisIn] = Field(default_factory=list, max_length=10)
    mode: Literal["grid", "random"] = "grid"
    draws: int | None = Field(
        default=None, ge=1, le=MAX_RUNS, description="Random mode: the number of points"
    )
    seeds: int = Field(default=1, ge=1, le=10, description="Runs per point; seed = base + i")
    prune: bool = Field(default=False, description="Stop runs that lag the sweep's median")
    prune_after: int = Field(
        default=3, ge=1, le=1000, description="The first epoch (from 0) at which pruning may act"
    )


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


# --- paths ---------------------------------------------------------------------------

Token = str | int | None  # a field or dict key, a list index, or None for [*]
_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[(?:\d+|\*)\])*)$")
_REGULARIZER_FIELDS = {"regularizer", "bias_regularizer", "activity_regularizer"}
_GLOBAL_REGULARIZER = "global_regularizer"
# Which strengths each regularizer kind reads (app.spec checks the same).
_KIND_READS = {
    "l1": {"l1"},
    "l2": {"l2"},
    "l1l2": {"l1", "l2"},
    "smoothness": {"smoothness"},
    "plugin": {"params"},
}
# Layer fields that apply to some layer types only, read off the spec's layer schemas.
_LAYER_TYPES: dict[str, set[str]] = {}
for _type, _schema in LAYER_TYPES.items():
    for _field in _schema.model_fields:
        _LAYER_TYPES.setdefault(_field, set()).add(_type)
_LAYER_TYPES = {
    _field: _types for _field, _types in _LAYER_TYPES.items() if _types != set(LAYER_TYPES)
}


class PathError(ValueError):
    pass


def parse_path(path: str) -> list[Token]:
    """`model.layers[*].regularizer.l2` → ["model", "layers", None, "regularizer", "l2"]."""
    tokens: list[Token] = []
    if not path or path != path.strip():
        raise PathError("a path is dot-separated names, e.g. model.layers[0].dropout")
    for segment in path.split("."):
        if segment.isdigit():
            tokens.append(int(segment))
            continue
        match = _SEGMENT.match(segment)
        if match is None:
            raise PathError(f"'{segment}' is not a name, an index [1] or [*]")
        tokens.append(match.group(1))
        for index in re.findall(r"\[(\d+|\*)\]", match.group(2)):
            tokens.append(None if index == "*" else int(index))
    return tokens


def _unwrap(annotation: Any) -> Any:
    """The type inside Optional[...] and Annotated[...]."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            inner = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(inner) != 1:
                return annotation
            annotation = inner[0]
        else:
            return annotation


def _member_with(annotation: Any, token: Token) -> Any:
    """For a union of schemas (the layer types), the first that has field `token`."""
    if get_origin(annotation) in (Union, types.UnionType) and isinstance(token, str):
        for member in get_args(annotation):
            if isinstance(member, type) and token in getattr(member, "model_fields", {}):
                return member
    return annotation


def leaf_type(tokens: Sequence[Token]) -> type[int] | type[float]:
    """The numeric type the path ends at, or PathError saying where it goes wrong."""
    current: Any = ExperimentSpec
    for position, token in enumerate(tokens):
        where = _render(tokens[: position + 1])
        current = _member_with(current, token)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not isinstance(token, str) or token not in current.model_fields:
                known = ", ".join(current.model_fields)
                raise PathError(f"{where}: no such setting (there are: {known})")
            current = _unwrap(current.model_fields[token].annotation)
        elif get_origin(current) is list:
            if isinstance(token, str):
                raise PathError(f"{where}: a list takes an index [0] or [*]")
            current = _unwrap(get_args(current)[0])
        elif get_origin(current) is dict:
            if not isinstance(token, str):
                raise PathError(f"{where}: a mapping takes a name")
            current = _unwrap(get_args(current)[1])
        else:
            raise PathError(f"{where}: '{_render(tokens[:position])}' has no parts")
    if current is bool or current not in (int, float):
        raise PathError(f"{_render(tokens)} is not a numeric setting")
    return int if current is int else float


def _render(tokens: Sequence[Token]) -> str:
    out = ""
    for token in tokens:
        if isinstance(token, str):
            out += f".{token}" if out else token
        else:
            out += "[*]" if token is None else f"[{token}]"
    return out


def targets(data: dict[str, Any], tokens: Sequence[Token]) -> list[tuple[str | int, ...]]:
    """The concrete places in a spec's JSON that the path sets, `[*]` expanded.

    Under `[*]` an element the rest of the path does not apply to is skipped; named by
    its index it is an error, as is a `[*]` that applies to no element.
    """
    found: list[tuple[str | int, ...]] = []

    def walk(node: Any, position: int, prefix: tuple[str | int, ...], wild: bool) -> None:
        if position == len(tokens):
            found.append(prefix)
            return
        token = tokens[position]
        if isinstance(token, str):
            if not isinstance(node, dict):
                raise PathError(f"{_render(tokens[:position])} is not set in the base spec")
            if not _applies(node, tokens, position, wild):
                return
            child = node.get(token)
            if child is None and position + 1 < len(tokens):
                child = {}  # created when set: a missing section or regularizer
            walk(child, position + 1, (*prefix, token), wild)
            return
        if not isinstance(node, list):
            raise PathError(f"{_render(tokens[:position])} is not a list")
        if token is None:
            for index, element in enumerate(node):
                walk(element, position + 1, (*prefix, index), True)
        elif token >= len(node):
            raise PathError(
                f"{_render(tokens[: position + 1])}: the base spec has {len(node)} of them"
            )
        else:
            walk(node[token], position + 1, (*prefix, token), wild)

    walk(data, 0, (), False)
    if not found:
        raise PathError(f"{_render(tokens)} applies to no element of the base spec")
    return found


def _applies(node: dict[str, Any], tokens: Sequence[Token], position: int, wild: bool) -> bool:
    """Whether field tokens[position] of this JSON object can be set; raises when not and
    the path named this object exactly."""
    token = tokens[position]
    problem: str | None = None
    layer_types = _LAYER_TYPES.get(str(token))
    if "type" in node and layer_types is not None and node["type"] not in layer_types:
        problem = f"'{token}' does not apply to a {node['type']} layer"
    if token in _REGULARIZER_FIELDS or token == _GLOBAL_REGULARIZER:
        leaf = tokens[position + 1] if position + 1 < len(tokens) else None
        existing = node.get(str(token))
        if existing is None:
            if leaf not in ("l1", "l2", "smoothness"):
                problem = f"there is no {token} to set '{leaf}' on"
        elif leaf not in _KIND_READS.get(existing.get("kind"), set()):
            problem = f"a {existing.get('kind')} {token} has no '{leaf}'"
    if problem is None:
        return True
    if wild:
        return False
    raise PathError(f"{_render(tokens[: position + 1])}: {problem}")


def set_value(data: dict[str, Any], place: Sequence[str | int], value: float) -> None:
    """Set one concrete place, creating a missing section (a regularizer of the kind the
    strength names)."""
    node: Any = data
    for position, key in enumerate(place[:-1]):
        child = node[int(key)] if isinstance(node, list) else node.get(key)
        if child is None:
            child = {}
            if key in _REGULARIZER_FIELDS or key == _GLOBAL_REGULARIZER:
                child["kind"] = place[position + 1]
            node[key] = child
        node = child
    node[place[-1]] = value


# --- expansion -----------------------------------------------------------------------


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


def short_labels(paths: Sequence[str]) -> list[str]:
    """What run names call each axis: its last name ("l2"), or more where two would clash."""
    labels = [path.rsplit(".", 1)[-1] for path in paths]
    if len(set(labels)) == len(labels):
        return labels
    return [re.sub(r"^(model|training|dataset)\.", "", path) for path in paths]


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
