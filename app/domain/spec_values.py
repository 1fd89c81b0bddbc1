"""A run's spec as rows of (path, value): what queries over `params.` search.

A spec never changes once a run is queued, so its settings are written out once, one row
per value, beside the run: `model.layers[0].regularizer.l2 = 0.01`, with the path's
generic form (`model.layers[*].regularizer.l2`, every index a `[*]`) so that "any layer"
is a lookup too. Searched through indexes, a filter over 10,000 runs costs what its
matches cost, where SQLite's JSON functions would parse every spec on every query
(bench/query_speed.py). `DATASET` is a derived row: the name a run's data goes by (an
upload's own name, or a script's).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.domain.query_fields import BOOL, NOT_SETTINGS, NUMBER, TEXT

DATASET = "@dataset"
# Text values are indexed; longer ones (none in a valid spec but its notes) are left out.
MAX_TEXT = 500


@dataclass(frozen=True)
class SpecValue:
    """One value of a spec: where, its generic path, its kind, and the value (numbers and
    true/false as `number`, text as `text`)."""

    path: str
    generic: str
    kind: str
    number: float | None
    text: str | None


def _walk(node: Any, path: str, generic: str) -> Iterator[SpecValue]:
    if isinstance(node, Mapping):
        for key, child in node.items():
            if not path and key in NOT_SETTINGS:
                continue
            inner = f"{path}.{key}" if path else str(key)
            yield from _walk(child, inner, f"{generic}.{key}" if generic else str(key))
    elif isinstance(node, list | tuple):
        for index, child in enumerate(node):
            yield from _walk(child, f"{path}[{index}]", f"{generic}[*]")
    elif isinstance(node, bool):
        yield SpecValue(path, generic, BOOL, 1.0 if node else 0.0, None)
    elif isinstance(node, int | float):
        yield SpecValue(path, generic, NUMBER, float(node), None)
    elif isinstance(node, str) and len(node) <= MAX_TEXT:
        yield SpecValue(path, generic, TEXT, None, node)


def dataset_name(spec: Mapping[str, Any]) -> str | None:
    """The name of a run's data: an upload's own name, the built-in dataset's, or what a
    script said."""
    dataset = spec.get("dataset")
    if isinstance(dataset, Mapping):
        upload = dataset.get("upload")
        if isinstance(upload, Mapping) and isinstance(upload.get("name"), str):
            return str(upload["name"])
        name = dataset.get("name")
        return name if isinstance(name, str) else None
    script = spec.get("script")
    if isinstance(script, Mapping) and isinstance(script.get("dataset"), str):
        return str(script["dataset"])
    return None


def spec_values(spec: Mapping[str, Any]) -> list[SpecValue]:
    """Every value of a stored spec (a queued run's, or a script's `{"script": ...}`),
    and the derived DATASET row."""
    values = list(_walk(spec, "", ""))
    name = dataset_name(spec)
    if name is not None and len(name) <= MAX_TEXT:
        values.append(SpecValue(DATASET, DATASET, TEXT, None, name))
    return values
