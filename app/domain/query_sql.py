"""A parsed run query (app/domain/query.py) as SQLAlchemy expressions over `experiment`.

The same tree compiles for SQLite and for PostgreSQL; only the JSON functions differ:
SQLite's `json_extract`, `json_type` and `json_each`, PostgreSQL's `jsonb_extract_path`,
`jsonb_typeof` and `jsonb_array_elements` (the JSON columns cast to `jsonb`). A `[*]` in a
spec path is an EXISTS over the array's elements; a metric test is an EXISTS on the
metric summary table (app/services/summaries.py keeps it at ingest). Every value is a
bound parameter, never text pasted into the SQL.

SQL's NULL would make `NOT x = 1` skip a run without `x`; a test under a NOT is made
two-valued (false when the field is missing), so that NOT turns every test around.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    String,
    and_,
    case,
    cast,
    column,
    exists,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel, col

from app.domain.query import (
    And,
    Compare,
    Expr,
    Has,
    In,
    Like,
    Not,
    Or,
    OrderKey,
    Value,
    as_time,
)
from app.domain.query_fields import BOOL, NUMBER, TEXT, TIME, FieldRef
from app.domain.spec_paths import Token
from app.models import Experiment, MetricSummary, UtcDateTime

SQL = ColumnElement[Any]
_EXPERIMENT = SQLModel.metadata.tables["experiment"]
Build = Callable[[SQL], SQL]

_COLUMNS: dict[str, Any] = {
    "id": Experiment.id,
    "status": Experiment.status,
    "name": Experiment.name,
    "created": Experiment.created_at,
    "started": Experiment.started_at,
    "finished": Experiment.finished_at,
    "sweep": Experiment.sweep_id,
    "pack": Experiment.pack_id,
    "source": Experiment.source,
    "verdict": Experiment.verdict,
    "device": Experiment.device,
    "epochs_done": Experiment.epochs_done,
}
_NOT_NULL = {"id", "status", "name", "created", "source", "epochs_done"}
_SUMMARY_COLUMNS: dict[str, Any] = {
    "best": col(MetricSummary.best_value),
    "last": col(MetricSummary.last_value),
    "min": col(MetricSummary.min_value),
    "max": col(MetricSummary.max_value),
}
_SQLITE_TYPES = {NUMBER: ("integer", "real"), TEXT: ("text",), BOOL: ("true", "false")}
_PG_TYPES = {NUMBER: "number", TEXT: "string", BOOL: "boolean"}


def _kind(value: Value, ref: FieldRef) -> str:
    if TIME in ref.kinds:
        return TIME
    if isinstance(value, bool):
        return BOOL
    return NUMBER if isinstance(value, int | float) else TEXT


def bind(value: Value, kind: str) -> SQL:
    """A value as a typed bound parameter (a float compared with an integer column stays a
    float: PostgreSQL would round it to the column's type)."""
    if kind == TIME:
        return literal(as_time(value), UtcDateTime())
    if isinstance(value, bool):
        return literal(value, Boolean())
    if isinstance(value, int):
        return literal(value, BigInteger())
    if isinstance(value, float):
        return literal(value, Float())
    return literal(value, String())


class Compiler:
    """Compiles trees for one dialect ("sqlite" or "postgresql")."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"
        self.aliases = 0

    # --- Filters -------------------------------------------------------------------------

    def where(self, expr: Expr, negated: bool = False) -> SQL:
        """The condition a run must meet; `negated` when under a NOT (two-valued tests)."""
        if isinstance(expr, And):
            return and_(*(self.where(operand, negated) for operand in expr.operands))
        if isinstance(expr, Or):
            return or_(*(self.where(operand, negated) for operand in expr.operands))
        if isinstance(expr, Not):
            return ~self.where(expr.operand, True)
        if isinstance(expr, Has):
            return self.tag(expr.field.name, exists_only=True).is_not(None)
        if isinstance(expr, Compare):
            kind = _kind(expr.value, expr.field)
            value = bind(expr.value, kind)
            op = expr.op
            return self.test(expr.field, kind, lambda x: _compare(x, op, value), negated)
        if isinstance(expr, In):
            return self.in_list(expr, negated)
        assert isinstance(expr, Like)
        pattern = literal(expr.pattern, String())
        if expr.negated:
            return self.test(expr.field, TEXT, lambda x: x.not_ilike(pattern, escape="\\"), negated)
        return self.test(expr.field, TEXT, lambda x: x.ilike(pattern, escape="\\"), negated)

    def in_list(self, expr: In, negated: bool) -> SQL:
        """IN, one list per kind of value (a field of several kinds compares each kind
        with its own)."""
        by_kind: dict[str, list[SQL]] = {}
        for value in expr.values:
            kind = _kind(value, expr.field)
            by_kind.setdefault(kind, []).append(bind(value, kind))
        tests = [
            self.test(expr.field, kind, _membership(values, expr.negated), negated)
            for kind, values in by_kind.items()
        ]
        return tests[0] if len(tests) == 1 else (and_ if expr.negated else or_)(*tests)

    def test(self, ref: FieldRef, kind: str, build: Build, negated: bool) -> SQL:
        """`build` applied to the field's value of this kind."""
        if ref.family == "metrics":
            summary = _SUMMARY_COLUMNS[ref.summary or "last"]
            return exists(
                select(literal(1)).where(
                    col(MetricSummary.experiment_id) == Experiment.id,
                    col(MetricSummary.name) == literal(ref.name, String()),
                    build(summary),
                )
            )
        if ref.family == "params":
            return self.json_test(self.spec(), ref.tokens, ref, kind, build, negated)
        if ref.family == "attribute" and ref.name in _NOT_NULL:
            return build(_COLUMNS[ref.name])
        value = self.tag(ref.name) if ref.family == "tags" else self.attribute(ref.name)
        return _two_valued(build(value)) if negated else build(value)

    def json_test(
        self,
        doc: SQL,
        tokens: tuple[Token, ...],
        ref: FieldRef,
        kind: str,
        build: Build,
        negated: bool,
        element: Any = None,
    ) -> SQL:
        """A test on a spec path; each `[*]` an EXISTS over the elements of its array."""
        if None in tokens:
            at = tokens.index(None)
            each = self.elements(doc, tokens[:at], element)
            inner = self.json_test(each.c.value, tokens[at + 1 :], ref, kind, build, False, each)
            return exists(select(literal(1)).select_from(each).where(inner))
        condition = build(self.json_value(doc, tokens, ref.kinds, kind, element))
        return _two_valued(condition) if negated else condition

    # --- Values --------------------------------------------------------------------------

    def spec(self) -> SQL:
        """The spec column, as `jsonb` on PostgreSQL (its JSON type has no operators)."""
        spec = _EXPERIMENT.c.spec
        return cast(spec, JSONB) if self.postgres else spec

    def attribute(self, name: str) -> SQL:
        if name != "dataset":
            return _COLUMNS[name]
        spec = self.spec()
        return func.coalesce(
            self.json_value(spec, ("dataset", "upload", "name"), frozenset({TEXT}), TEXT),
            self.json_value(spec, ("dataset", "name"), frozenset({TEXT}), TEXT),
            self.json_value(spec, ("script", "dataset"), frozenset({TEXT}), TEXT),
        )

    def tag(self, key: str, exists_only: bool = False) -> SQL:
        """A tag's value (text; NULL for a bare label or none), or with `exists_only`
        something that is not NULL exactly when the run has the tag."""
        if self.postgres:
            tags = cast(_EXPERIMENT.c.tags, JSONB)
            if exists_only:
                return func.jsonb_extract_path(tags, literal(key, String()))
            return func.jsonb_extract_path_text(tags, literal(key, String()))
        path = literal(f'$."{key}"', String())
        if exists_only:
            return func.json_type(_EXPERIMENT.c.tags, path)
        return func.json_extract(_EXPERIMENT.c.tags, path)

    def json_value(
        self,
        doc: SQL,
        tokens: tuple[Token, ...],
        kinds: frozenset[str],
        kind: str,
        element: Any = None,
    ) -> SQL:
        """The value at a path (no `[*]`) as `kind`: NULL where it is missing or of
        another kind. `element` is the array element `doc` comes from, if any."""
        if self.postgres:
            keys = [literal(str(token), String()) for token in tokens]
            value = func.jsonb_extract_path(doc, *keys) if keys else doc
            text = (
                func.jsonb_extract_path_text(doc, *keys)
                if keys
                else doc.op("#>>")(literal_column("'{}'"))
            )
            if kind == NUMBER:
                converted: SQL = cast(text, Float())
            elif kind == BOOL:
                converted = cast(text, Boolean())
            else:
                converted = text
            return case((func.jsonb_typeof(value) == _PG_TYPES[kind], converted))
        if not tokens and element is not None:
            value, json_type = element.c.value, element.c.type
        else:
            path = literal(_sqlite_path(tokens), String())
            value, json_type = func.json_extract(doc, path), func.json_type(doc, path)
        if kinds == frozenset({kind}):
            return value  # the spec's schema guarantees the kind
        return case((json_type.in_(_SQLITE_TYPES[kind]), value))

    def elements(self, doc: SQL, tokens: tuple[Token, ...], element: Any) -> Any:
        """The elements of the array at a path, as a table with a `value` column."""
        self.aliases += 1
        name = f"each_{self.aliases}"
        if self.postgres:
            keys = [literal(str(token), String()) for token in tokens]
            array = func.jsonb_extract_path(doc, *keys) if keys else doc
            only_array = case((func.jsonb_typeof(array) == "array", array))
            return (
                func.jsonb_array_elements(only_array)
                .table_valued(column("value", JSONB))
                .alias(name)
            )
        if not tokens and element is not None:
            return func.json_each(doc).table_valued("value", "type").alias(name)
        path = literal(_sqlite_path(tokens), String())
        return func.json_each(doc, path).table_valued("value", "type").alias(name)

    # --- Order ---------------------------------------------------------------------------

    def order(self, keys: list[OrderKey]) -> list[Any]:
        """ORDER BY terms, nulls last either way, the id (newest first) breaking ties."""
        terms: list[Any] = []
        for key in keys:
            value = self.sort_value(key.field)
            terms.append((value.desc() if key.descending else value.asc()).nulls_last())
        terms.append(col(Experiment.id).desc())
        return terms

    def sort_value(self, ref: FieldRef) -> SQL:
        if ref.family == "metrics":
            return (
                select(_SUMMARY_COLUMNS[ref.summary or "last"])
                .where(
                    col(MetricSummary.experiment_id) == Experiment.id,
                    col(MetricSummary.name) == literal(ref.name, String()),
                )
                .scalar_subquery()
            )
        if ref.family == "tags":
            return self.tag(ref.name)
        if ref.family == "attribute":
            return self.attribute(ref.name)
        if len(ref.kinds) == 1:
            (kind,) = ref.kinds
            return self.json_value(self.spec(), ref.tokens, ref.kinds, kind)
        if self.postgres:  # several kinds: jsonb orders them all
            keys = [literal(str(token), String()) for token in ref.tokens]
            return func.jsonb_extract_path(self.spec(), *keys)
        return func.json_extract(self.spec(), literal(_sqlite_path(ref.tokens), String()))


def _sqlite_path(tokens: tuple[Token, ...]) -> str:
    """`$."model"."layers"[0]`: keys quoted, so that any key reads as itself."""
    return "$" + "".join(
        f'."{token}"' if isinstance(token, str) else f"[{token}]" for token in tokens
    )


def _membership(values: list[SQL], negated: bool) -> Build:
    """x IN values (or NOT IN)."""

    def build(x: SQL) -> SQL:
        return x.not_in(values) if negated else x.in_(values)

    return build


def _compare(x: SQL, op: str, value: SQL) -> SQL:
    if op == "=":
        return x == value
    if op == "!=":
        return x != value
    if op == "<":
        return x < value
    if op == "<=":
        return x <= value
    if op == ">":
        return x > value
    return x >= value


def _two_valued(condition: SQL) -> SQL:
    """False where SQL would say NULL (a missing field)."""
    return func.coalesce(condition, false())


def where_clause(expr: Expr | None, dialect: str) -> SQL | None:
    """The filter as a WHERE condition for `dialect`; None for no filter."""
    return None if expr is None else Compiler(dialect).where(expr)


def order_clauses(keys: list[OrderKey], dialect: str) -> list[Any]:
    """The order as ORDER BY terms for `dialect` (newest first when `keys` is empty)."""
    return Compiler(dialect).order(keys)
