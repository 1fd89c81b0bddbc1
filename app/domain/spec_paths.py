"""Paths into an `ExperimentSpec`: which numeric setting a sweep axis names, and where.

A path names a numeric setting, e.g. `model.layers[*].regularizer.l2`,
`model.layers[1].dropout` (or `model.layers.1.dropout`, as the form names fields) or
`training.learning_rate`. `[*]` sets every layer that the rest of the path applies to (a
dense layer's `units`, a convolution's `filters`; a regularizer of a kind that reads the
strength). Setting a strength on a layer without that regularizer creates one of that
kind, so `model.layers[*].regularizer.l2` sweeps L2 on every layer.
"""

from __future__ import annotations

import re
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from app.spec import LAYER_TYPES, ExperimentSpec

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


def short_labels(paths: Sequence[str]) -> list[str]:
    """What run names call each axis: its last name ("l2"), or more where two would clash."""
    labels = [path.rsplit(".", 1)[-1] for path in paths]
    if len(set(labels)) == len(labels):
        return labels
    return [re.sub(r"^(model|training|dataset)\.", "", path) for path in paths]
