"""The contract's building blocks: strict JSON scalars, the statuses of a run, named
value types and the base of every spec model. Imports pydantic only."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

Task = Literal["classification", "regression"]


def _integral(value: object) -> object:
    # JSON Schema counts 3.0 as an integer; a fraction, a string or a bool is not one.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Numbers and booleans as JSON has them, for every request body: pydantic's lax mode
# would take `false` as 0 and "3" as 3, which the OpenAPI document says are not numbers.
# Only the scalars are strict: a spec read from a plain dict may hold lists for tuples.
Int = Annotated[int, BeforeValidator(_integral), Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
# The largest id the API takes or gives: ids are BIGINT columns (64-bit), and a JSON reader
# holds integers exactly up to 2**53 - 1 (a browser's Number.MAX_SAFE_INTEGER).
MAX_ID = 2**53 - 1


_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def json_bounds(schema: dict[str, Any]) -> None:
    """Bounds under the names JSON Schema gives them: pydantic writes a bound on an `Int`
    behind an alias or in an optional field under its own name (`ge`), which no reader of
    the OpenAPI document knows (a model's `json_schema_extra`)."""
    for key, value in list(schema.items()):
        if key in _BOUNDS and isinstance(value, int | float) and "type" in schema:
            schema[_BOUNDS[key]] = schema.pop(key)
        elif isinstance(value, dict):
            json_bounds(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    json_bounds(item)


class OnlyPatternKeys:
    """JSON schema of a mapping whose keys have a pattern: pydantic lists the pattern under
    `patternProperties`, which leaves other keys allowed; the server refuses them. Said
    as `propertyNames` (every key matches) and `additionalProperties` (every value)."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> Any:
        schema = handler(core_schema)
        patterns = schema.pop("patternProperties", {})
        if len(patterns) == 1:
            ((pattern, values),) = patterns.items()
            schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": pattern}
            schema["additionalProperties"] = values
        else:
            schema["patternProperties"] = patterns
            schema["additionalProperties"] = False
        return schema


class Status(StrEnum):
    """Where a run is. The server, the clients and the pages (static/js/status.js, tied to
    this by a test) all read the final ones from here."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    pruned = "pruned"  # stopped early by its sweep: worse than the sweep's median so far

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({Status.succeeded, Status.failed, Status.cancelled, Status.pruned})


RegularizerKind = Literal["l1", "l2", "l1l2", "smoothness", "plugin"]
PluginName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.\-]*$")
]
ParamName = Annotated[
    str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z_][a-z0-9_]*$")
]
ParamValue = Annotated[Float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Activation = Literal["relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish", "linear"]
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]

Strength = Annotated[Float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
# Checked as given (what the OpenAPI document says: some character that is not a space),
# then stored without surrounding spaces.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$"),
    AfterValidator(str.strip),
]
Notes = Annotated[str, StringConstraints(max_length=10_000, pattern=r"^[^\x00]*$")]

# Which strength fields each kind reads; the others must stay unset.
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "l1": ("l1",),
    "l2": ("l2",),
    "l1l2": ("l1", "l2"),
    "smoothness": ("smoothness",),
    "plugin": (),
}
DEFAULT_STRENGTH = 0.01


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=json_bounds)
