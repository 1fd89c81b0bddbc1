"""The fields a run query names, and the kind of value each holds.

A field is an attribute of the run (`status`, `created`, `epochs_done`...), a setting of
its spec (`params.` and a path as sweeps write it: `params.model.layers[*].dropout`,
`params.model.layers.0.regularizer.l2`), a metric summary (`metrics.val_data_loss.best`:
the value at the best epoch, or `last`, `min`, `max`) or a tag (`tags.team`). Each knows
its kinds of value, so a filter that compares a number with text is refused at parse
time, with its position, rather than left for the database to answer strangely.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from app.domain.spec_paths import PathError, Token, parse_path
from app.spec import ExperimentSpec

NUMBER, TEXT, TIME, BOOL = "number", "text", "time", "bool"

# Attribute → the kinds of value it holds.
ATTRIBUTES: dict[str, frozenset[str]] = {
    "id": frozenset({NUMBER}),
    "status": frozenset({TEXT}),
    "name": frozenset({TEXT}),
    "created": frozenset({TIME}),
    "started": frozenset({TIME}),
    "finished": frozenset({TIME}),
    "sweep": frozenset({NUMBER}),
    "pack": frozenset({NUMBER}),
    "source": frozenset({TEXT}),
    "verdict": frozenset({TEXT}),
    "device": frozenset({TEXT}),
    "dataset": frozenset({TEXT}),
    "epochs_done": frozenset({NUMBER}),
}
SUMMARIES = ("best", "last", "min", "max")
# The spec's notes are the run's notes (on the run, editable), not a setting.
NOT_SETTINGS = frozenset({"notes"})
# Metric names and tag keys: the characters a metric name may have (app.schemas.common).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:/\-]{1,100}$")
KNOWN = (
    "attributes (" + ", ".join(ATTRIBUTES) + "), params.<path>, "
    "metrics.<name>.<best|last|min|max>, tags.<key>"
)


class FieldError(ValueError):
    """A field the query language does not know, said in a sentence."""


@dataclass(frozen=True)
class FieldRef:
    """A resolved field: which family, its name or path, the kinds of value it holds.

    `tokens` is the spec path of a `params.` field (None for `[*]`); `summary` the
    summary of a `metrics.` field. `position` (1-based, where the field starts in the
    text) is left out of equality so that a reprinted query parses to an equal tree.
    """

    family: Literal["attribute", "params", "metrics", "tags"]
    name: str
    kinds: frozenset[str]
    tokens: tuple[Token, ...] = ()
    summary: str | None = None
    position: int = field(default=0, compare=False)

    @property
    def text(self) -> str:
        """The field as the language writes it (canonical: `[0]` for an index)."""
        if self.family == "attribute":
            return self.name
        if self.family == "metrics":
            return f"metrics.{self.name}.{self.summary}"
        return f"{self.family}.{self.name}"

    @property
    def wild(self) -> bool:
        """Whether the path has a `[*]` (any element matches)."""
        return None in self.tokens


def resolve(text: str, position: int = 0) -> FieldRef:
    """The field that `text` names, or FieldError saying what is wrong with it."""
    family, dot, rest = text.partition(".")
    lowered = family.lower()
    if lowered == "attributes" and dot:
        return _attribute(rest, position)
    if lowered == "params":
        return _param(rest, position)
    if lowered == "metrics":
        return _metric(rest, position)
    if lowered == "tags":
        if not NAME_PATTERN.match(rest):
            raise FieldError("expected a tag key after 'tags.' (e.g. tags.team)")
        return FieldRef("tags", rest, frozenset({TEXT}), position=position)
    return _attribute(text, position)


def _attribute(name: str, position: int) -> FieldRef:
    kinds = ATTRIBUTES.get(name.lower())
    if kinds is None:
        raise FieldError(f"unknown field '{name}'; the fields are {KNOWN}")
    return FieldRef("attribute", name.lower(), kinds, position=position)


def _metric(rest: str, position: int) -> FieldRef:
    name, dot, summary = rest.rpartition(".")
    if not dot or summary.lower() not in SUMMARIES:
        raise FieldError(
            "expected a metric name and a summary after 'metrics.' "
            "(e.g. metrics.val_data_loss.best; the summaries are best, last, min, max)"
        )
    if not NAME_PATTERN.match(name):
        raise FieldError(f"'{name}' is not a metric name")
    return FieldRef(
        "metrics", name, frozenset({NUMBER}), summary=summary.lower(), position=position
    )


def _param(path: str, position: int) -> FieldRef:
    if not path:
        raise FieldError("expected a path after 'params.' (e.g. params.training.learning_rate)")
    try:
        tokens = tuple(parse_path(path))
    except PathError as error:
        raise FieldError(f"params.{path}: {error}") from None
    if tokens[0] in NOT_SETTINGS:
        raise FieldError(f"'params.{path}' is not a setting: a run's notes are not searched")
    kinds = param_kinds(tokens)
    return FieldRef("params", render(tokens), kinds, tokens=tokens, position=position)


def render(tokens: tuple[Token, ...]) -> str:
    """Path tokens as text, indexes in brackets: `model.layers[0].dropout`."""
    out = ""
    for token in tokens:
        if isinstance(token, str):
            out += f".{token}" if out else token
        else:
            out += "[*]" if token is None else f"[{token}]"
    return out


def _unwrap(annotation: Any) -> Any:
    """The type inside Annotated[...] and Optional[...]."""
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


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a union (each unwrapped), or the type alone."""
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [_unwrap(arg) for arg in get_args(annotation) if arg is not type(None)]
    return [annotation]


def _leaf_kinds(annotation: Any) -> frozenset[str] | None:
    """The kinds of a scalar type, or None for a section, list or mapping."""
    if annotation is bool:
        return frozenset({BOOL})
    if annotation in (int, float):
        return frozenset({NUMBER})
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return frozenset({TEXT})
    if get_origin(annotation) is Literal:
        kinds: set[str] = set()
        for value in get_args(annotation):
            kinds.add(
                BOOL if isinstance(value, bool) else TEXT if isinstance(value, str) else NUMBER
            )
        return frozenset(kinds)
    return None


def param_kinds(tokens: tuple[Token, ...]) -> frozenset[str]:
    """The kinds of value a spec path ends at; FieldError where it goes astray."""
    current: list[Any] = [ExperimentSpec]
    for position, token in enumerate(tokens):
        where = "params." + render(tokens[: position + 1])
        following: list[Any] = []
        for annotation in current:
            origin = get_origin(annotation)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                if isinstance(token, str) and token in annotation.model_fields:
                    following += _members(annotation.model_fields[token].annotation)
            elif origin in (list, tuple):
                if not isinstance(token, str):
                    args = [arg for arg in get_args(annotation) if arg is not Ellipsis]
                    for arg in args:
                        following += _members(arg)
            elif origin is dict and isinstance(token, str):
                following += _members(get_args(annotation)[1])
        if not following:
            raise FieldError(f"unknown field '{where}': the spec has no such setting")
        current = following
    kinds: set[str] = set()
    for annotation in current:
        leaf = _leaf_kinds(annotation)
        if leaf is None:
            path = "params." + render(tokens)
            raise FieldError(f"'{path}' is a section of the spec, not a single value")
        kinds |= leaf
    return frozenset(kinds)
