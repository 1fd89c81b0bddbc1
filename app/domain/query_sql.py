"""A parsed run query (app/domain/query.py) as SQLAlchemy expressions over `experiment`.

The same expressions run on SQLite and PostgreSQL. A test on a setting or a metric is
`experiment.id IN (SELECT experiment_id FROM ... )` over an indexed table: the spec's
values (`experimentparam`, app/domain/spec_values.py), where a `[*]` in the path reads
the generic path (any element matches) and an index a concrete one; the per-metric
summaries (`metricsummary`, app/services/summaries.py). The database answers from the
matches' index entries instead of parsing every spec. Tags are read from the run's
JSON column (`json_extract` on SQLite, `jsonb_extract_path` on PostgreSQL). Every value
is a bound parameter, never text pasted into the SQL.

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
    cast,
    false,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel, col

from app.domain.query import And, Compare, Expr, Has, In, Like, Not, Or, OrderKey, Value, as_time
from app.domain.query_fields import BOOL, NUMBER, TEXT, TIME, FieldRef
from app.domain.spec_values import DATASET
from app.models import Experiment, UtcDateTime

SQL = ColumnElement[Any]
Build = Callable[[SQL], SQL]
_EXPERIMENT = SQLModel.metadata.tables["experiment"]
_PARAMS = SQLModel.metadata.tables["experimentparam"]
_SUMMARIES = SQLModel.metadata.tables["metricsummary"]

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
_SUMMARY_COLUMNS = {
    "best": _SUMMARIES.c.best_value,
    "last": _SUMMARIES.c.last_value,
    "min": _SUMMARIES.c.min_value,
    "max": _SUMMARIES.c.max_value,
}


def _kind(value: Value, ref: FieldRef) -> str:
    if TIME in ref.kinds:
        return TIME
    if isinstance(value, bool):
        return BOOL
    return NUMBER if isinstance(value, int | float) else TEXT


def bind(value: Value, kind: str, ref: FieldRef) -> SQL:
    """A value as a typed bound parameter: a float compared with an integer column stays a
    float (PostgreSQL would round it to the column's type); true and false are 1.0 and
    0.0 in a setting's `number`."""
    if kind == TIME:
        return literal(as_time(value), UtcDateTime())
    if isinstance(value, bool):
        if ref.family == "params":
            return literal(1.0 if value else 0.0, Float())
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
            value = bind(expr.value, kind, expr.field)
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
            by_kind.setdefault(kind, []).append(bind(value, kind, expr.field))
        tests = [
            self.test(expr.field, kind, _membership(values, expr.negated), negated)
            for kind, values in by_kind.items()
        ]
        return tests[0] if len(tests) == 1 else (and_ if expr.negated else or_)(*tests)

    def test(self, ref: FieldRef, kind: str, build: Build, negated: bool) -> SQL:
        """`build` applied to the field's value of this kind."""
        if ref.family == "metrics":
            summary = _SUMMARY_COLUMNS[ref.summary or "last"]
            return self.run_id().in_(
                select(_SUMMARIES.c.experiment_id).where(
                    _SUMMARIES.c.name == literal(ref.name, String()), build(summary)
                )
            )
        if ref.family == "params":
            return self.run_id().in_(self.param_matches(ref, kind, build))
        if ref.family == "attribute" and ref.name == "dataset":
            return self.run_id().in_(
                select(_PARAMS.c.experiment_id).where(
                    _PARAMS.c.generic == literal(DATASET, String()), build(_PARAMS.c.text)
                )
            )
        if ref.family == "attribute" and ref.name in _NOT_NULL:
            return build(_COLUMNS[ref.name])
        value = self.tag(ref.name) if ref.family == "tags" else _COLUMNS[ref.name]
        return _two_valued(build(value)) if negated else build(value)

    def param_matches(self, ref: FieldRef, kind: str, build: Build) -> Any:
        """The runs with a value at the setting's path (any element, for `[*]`) that
        meets `build`."""
        generic = "".join(
            f".{token}" if isinstance(token, str) else "[*]" for token in ref.tokens
        ).lstrip(".")
        conditions = [_PARAMS.c.generic == literal(generic, String())]
        if not ref.wild:
            conditions.append(_PARAMS.c.path == literal(ref.name, String()))
        elif any(isinstance(token, int) for token in ref.tokens):
            conditions.append(_PARAMS.c.path.like(literal(_path_pattern(ref), String()), "\\"))
        if len(ref.kinds) > 1:  # the spec's schema fixes one kind per path, or not
            conditions.append(_PARAMS.c.kind == literal(kind, String()))
        conditions.append(build(_PARAMS.c.text if kind == TEXT else _PARAMS.c.number))
        return select(_PARAMS.c.experiment_id).where(*conditions)

    # --- Values --------------------------------------------------------------------------

    def run_id(self) -> SQL:
        """The run's id as IN tests read it. On SQLite `id + 0`: SQLite would otherwise
        look up every id of one IN list in the runs table (a list of a setting of every
        layer holds thousands, duplicates included), where a scan of a small index of the
        runs checks each run against every list, whatever their sizes."""
        run_id = _EXPERIMENT.c.id
        return run_id if self.postgres else run_id + 0

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
                    _SUMMARIES.c.experiment_id == Experiment.id,
                    _SUMMARIES.c.name == literal(ref.name, String()),
                )
                .scalar_subquery()
            )
        if ref.family == "tags":
            return self.tag(ref.name)
        if ref.family == "attribute" and ref.name != "dataset":
            return _COLUMNS[ref.name]
        path, column = (
            (DATASET, _PARAMS.c.text)
            if ref.family == "attribute"
            else (ref.name, _PARAMS.c.text if ref.kinds == {TEXT} else _PARAMS.c.number)
        )
        return (
            select(column)
            .where(
                _PARAMS.c.experiment_id == Experiment.id,
                _PARAMS.c.path == literal(path, String()),
            )
            .scalar_subquery()
        )


def _path_pattern(ref: FieldRef) -> str:
    """A LIKE pattern for a path with both `[*]` and indexes: `model.layers[%].x[0]`, `_`
    taken literally (the generic path fixes the rest)."""
    out = ""
    for token in ref.tokens:
        if isinstance(token, str):
            out += ("." if out else "") + token.replace("\\", "\\\\").replace("_", "\\_")
        else:
            out += "[%]" if token is None else f"[{token}]"
    return out


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
