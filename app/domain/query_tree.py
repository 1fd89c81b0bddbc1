"""The run query language's tree: the nodes a filter and an order parse to, the error a
mistake raises, and the canonical text of a tree (parsing it gives back an equal tree).

app/domain/query.py builds these trees from text; app/domain/query_sql.py turns them into
SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.domain.query_fields import FieldRef

Value = str | int | float | bool
Op = Literal["=", "!=", "<", "<=", ">", ">="]


class QueryError(ValueError):
    """A query that cannot be read: where (1-based) and what was expected there."""

    def __init__(self, position: int, message: str) -> None:
        self.position = position
        self.message = message
        super().__init__(f"at {position}: {message}")


# The tree. Every node is frozen and compares by content, not position.
@dataclass(frozen=True)
class Compare:
    field: FieldRef
    op: Op
    value: Value


@dataclass(frozen=True)
class In:
    field: FieldRef
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class Like:
    field: FieldRef
    pattern: str
    negated: bool = False


@dataclass(frozen=True)
class Has:
    """A bare tag: the run carries it, with or without a value."""

    field: FieldRef


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Expr, ...]


Expr = Compare | In | Like | Has | Not | And | Or


@dataclass(frozen=True)
class OrderKey:
    field: FieldRef
    descending: bool = False


def conjoin(operands: list[Expr]) -> Expr:
    """`a AND b AND c` as one flat node (an AND inside an AND is merged)."""
    flat: list[Expr] = []
    for operand in operands:
        flat += operand.operands if isinstance(operand, And) else [operand]
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def disjoin(operands: list[Expr]) -> Expr:
    """`a OR b OR c` as one flat node."""
    flat: list[Expr] = []
    for operand in operands:
        flat += operand.operands if isinstance(operand, Or) else [operand]
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


# --- Printing ----------------------------------------------------------------------------


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def show_value(value: Value) -> str:
    """A value as the language writes it."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return quote(value)
    return repr(value)


def to_text(expr: Expr | None) -> str:
    """The filter in canonical form: parsing it gives back an equal tree."""
    if expr is None:
        return ""
    if isinstance(expr, Or):
        return " OR ".join(to_text(operand) for operand in expr.operands)
    if isinstance(expr, And):
        return " AND ".join(_wrapped(operand, Or) for operand in expr.operands)
    if isinstance(expr, Not):
        return "NOT " + _wrapped(expr.operand, And | Or)
    if isinstance(expr, Compare):
        return f"{expr.field.text} {expr.op} {show_value(expr.value)}"
    if isinstance(expr, In):
        values = ", ".join(show_value(value) for value in expr.values)
        return f"{expr.field.text} {'NOT IN' if expr.negated else 'IN'} ({values})"
    if isinstance(expr, Like):
        return f"{expr.field.text} {'NOT LIKE' if expr.negated else 'LIKE'} {quote(expr.pattern)}"
    return expr.field.text


def _wrapped(expr: Expr, kinds: object) -> str:
    text = to_text(expr)
    return f"({text})" if isinstance(expr, kinds) else text  # type: ignore[arg-type]


def order_text(keys: list[OrderKey]) -> str:
    """An order in canonical form."""
    return ", ".join(f"{key.field.text} {'DESC' if key.descending else 'ASC'}" for key in keys)
