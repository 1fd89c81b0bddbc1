"""The server's own errors: what a service raises when a request cannot be served.

Services never raise FastAPI's `HTTPException`; app/main.py answers each of these in
one place:

    ServiceError
     ├── InvalidField   422, shaped like a validation error: detail [{loc, field, msg, type, input}]
     ├── NotFound       404
     ├── Conflict       409: the resource's state forbids it (a run that has ended, is running)
     │    └── LeaseLost     the lease token no longer holds the run
     └── TooLarge       413: a streamed upload passed its limit
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Loc = tuple[str | int, ...]


class ServiceError(Exception):
    """A request the rules refuse; its subclass says how."""


@dataclass(frozen=True)
class FieldProblem:
    """One field that breaks a rule. `loc` names it as the request does: where ("body",
    "query", "path"), then the path inside, e.g. ("body", "axes", 0, "path")."""

    loc: Loc
    message: str
    input: Any = None


class InvalidField(ServiceError):
    """A field of the request breaks a rule that the schema cannot say (422)."""

    def __init__(self, loc: Sequence[str | int], message: str, *, input: Any = None) -> None:
        self.problems = [FieldProblem(tuple(loc), message, input)]
        super().__init__(f"{'.'.join(map(str, loc))}: {message}")

    @classmethod
    def several(cls, problems: Sequence[FieldProblem]) -> InvalidField:
        """One error naming every problem found at once."""
        assert problems, "at least one problem"
        error = cls(problems[0].loc, problems[0].message, input=problems[0].input)
        error.problems = list(problems)
        return error

    def errors(self) -> list[dict[str, Any]]:
        """The problems as pydantic names validation errors (for the 422 answer)."""
        return [
            {"type": "value_error", "loc": p.loc, "msg": p.message, "input": p.input}
            for p in self.problems
        ]


class NotFound(ServiceError):
    """No such resource (404)."""


class Conflict(ServiceError):
    """The resource's state forbids the request (409)."""


class LeaseLost(Conflict):
    """The caller's lease token no longer holds the run."""


class TooLarge(ServiceError):
    """A streamed upload passed its size limit (413)."""
