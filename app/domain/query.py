"""The run query language: a filter and an order, parsed by hand into a small tree.

    filter     := or EOF                      (empty: every run)
    or         := and ("OR" and)*
    and        := not ("AND" not)*
    not        := "NOT" not | "(" or ")" | test
    test       := field op value
                | field ["NOT"] "IN" "(" value ("," value)* ")"
                | field ["NOT"] "LIKE" string
                | tags.<key>                  (a bare tag: true when the run has it)
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    value      := 'text' ('' inside is one quote) | number | TRUE | FALSE
    order      := field ["ASC" | "DESC"] ("," field ["ASC" | "DESC"])*

Keywords are case-insensitive; fields are app/domain/query_fields.py's. A comparison is
false on a run that lacks its field (a missing metric, an unset setting, no such tag),
`!=`, NOT IN and NOT LIKE included; NOT turns any test around. LIKE is
case-insensitive: `%` any text, `_` one character, `\\` before either (or itself) takes
it literally. Nothing here runs the text: it is read token by token and every mistake
is a QueryError at its 1-based position ("at 27: expected a value after '>'").
app/domain/query_sql.py turns the tree into SQL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from app.domain.query_fields import BOOL, NUMBER, TEXT, TIME, FieldError, FieldRef, resolve

MAX_LENGTH = 2000
MAX_DEPTH = 32  # parentheses and NOTs inside each other
MAX_TESTS = 100
# Integers past 64 bits are compared as floats (no database column holds them exactly).
_INT64 = 2**63 - 1

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


# --- Tokens ------------------------------------------------------------------------------

KEYWORDS = {"and", "or", "not", "in", "like", "true", "false", "asc", "desc"}
_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_WORD = re.compile(r"[A-Za-z_](?:[A-Za-z0-9_.:/\-]|\[(?:\d+|\*)\])*")
_OPS = ("<=", ">=", "!=", "<>", "==", "=", "<", ">", "(", ")", ",")


@dataclass(frozen=True)
class Tok:
    kind: Literal["word", "keyword", "string", "number", "op", "end"]
    text: str  # as written (a keyword in lower case, a string without its quotes)
    position: int  # 1-based
    value: Value | None = None


def tokenize(text: str) -> list[Tok]:
    """The tokens of a query, ending with an `end` token; QueryError on a stray character
    or an unclosed quote."""
    if len(text) > MAX_LENGTH:
        raise QueryError(MAX_LENGTH + 1, f"a query is at most {MAX_LENGTH} characters")
    tokens: list[Tok] = []
    index = 0
    while index < len(text):
        space = _SPACE.match(text, index)
        if space:
            index = space.end()
            continue
        position = index + 1
        char = text[index]
        if char == "'":
            index = _string(text, index, tokens)
            continue
        number = _NUMBER.match(text, index)
        if number and (char.isdigit() or char in ".+-"):
            tokens.append(
                Tok("number", number.group(), position, _number(number.group(), position))
            )
            index = number.end()
            continue
        word = _WORD.match(text, index)
        if word:
            lowered = word.group().lower()
            kind: Literal["word", "keyword"] = "keyword" if lowered in KEYWORDS else "word"
            tokens.append(Tok(kind, lowered if kind == "keyword" else word.group(), position))
            index = word.end()
            continue
        op = next((op for op in _OPS if text.startswith(op, index)), None)
        if op is None and char == "[":
            raise QueryError(position, "expected an index, [0] or [*]")
        if op is None:
            raise QueryError(position, f"unexpected character {char!r}")
        tokens.append(Tok("op", {"<>": "!=", "==": "="}.get(op, op), position))
        index += len(op)
    tokens.append(Tok("end", "", len(text) + 1))
    return tokens


def _string(text: str, start: int, tokens: list[Tok]) -> int:
    """Read the quoted string at `start`; returns the index after its closing quote."""
    parts: list[str] = []
    index = start + 1
    while True:
        close = text.find("'", index)
        if close < 0:
            raise QueryError(start + 1, "unclosed quote: this string has no closing '")
        parts.append(text[index:close])
        if text.startswith("''", close):  # a doubled quote is one quote
            parts.append("'")
            index = close + 2
            continue
        value = "".join(parts)
        if "\x00" in value:
            raise QueryError(start + 1, "a string may not hold a NUL character")
        tokens.append(Tok("string", value, start + 1, value))
        return close + 1


def _number(text: str, position: int) -> int | float:
    if re.fullmatch(r"[-+]?\d+", text):
        number = int(text)
        return number if abs(number) <= _INT64 else float(number)
    value = float(text)
    if not math.isfinite(value):
        raise QueryError(position, f"{text} is not a finite number")
    return value


# --- Parsing -----------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0
        self.tests = 0

    @property
    def token(self) -> Tok:
        return self.tokens[self.index]

    def advance(self) -> Tok:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def accept(self, kind: str, text: str) -> bool:
        if self.token.kind == kind and self.token.text == text:
            self.advance()
            return True
        return False

    def fail(self, message: str) -> QueryError:
        return QueryError(self.token.position, message)

    def found(self) -> str:
        token = self.token
        if token.kind == "end":
            return "the end"
        return f"'{token.text}'" if token.kind != "string" else f"'{token.text}' (a string)"

    # filter := or EOF
    def filter(self) -> Expr | None:
        if self.token.kind == "end":
            return None
        expr = self.disjunction()
        if self.token.kind != "end":
            raise self.fail(f"expected AND, OR or the end of the filter, found {self.found()}")
        return expr

    def disjunction(self) -> Expr:
        operands = [self.conjunction()]
        while self.accept("keyword", "or"):
            operands.append(self.conjunction())
        return disjoin(operands)

    def conjunction(self) -> Expr:
        operands = [self.negation()]
        while self.accept("keyword", "and"):
            operands.append(self.negation())
        return conjoin(operands)

    def negation(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} deep")
        try:
            if self.accept("keyword", "not"):
                return Not(self.negation())
            opening = self.token
            if self.accept("op", "("):
                expr = self.disjunction()
                if not self.accept("op", ")"):
                    raise self.fail(
                        f"expected ')' to close the '(' at {opening.position}, found {self.found()}"
                    )
                return expr
            return self.test()
        finally:
            self.depth -= 1

    def field(self) -> FieldRef:
        token = self.token
        if token.kind != "word":
            raise self.fail(
                "expected a field (status, name, params.…, metrics.…, tags.…), "
                f"found {self.found()}"
            )
        try:
            ref = resolve(token.text, token.position)
        except FieldError as error:
            raise self.fail(str(error)) from None
        self.advance()
        return ref

    def test(self) -> Expr:
        self.tests += 1
        if self.tests > MAX_TESTS:
            raise self.fail(f"a filter has at most {MAX_TESTS} tests")
        ref = self.field()
        token = self.token
        if token.kind == "op" and token.text in ("=", "!=", "<", "<=", ">", ">="):
            self.advance()
            value = self.value(ref, f"after '{token.text}'")
            op: Op = token.text  # type: ignore[assignment]
            check_compare(ref, op, value, self.tokens[self.index - 1].position)
            return Compare(ref, op, value)
        negated = False
        if token.kind == "keyword" and token.text == "not":
            following = self.tokens[self.index + 1]
            if following.kind == "keyword" and following.text in ("in", "like"):
                self.advance()
                negated = True
        if self.accept("keyword", "in"):
            return self.in_list(ref, negated)
        if self.accept("keyword", "like"):
            pattern_token = self.token
            pattern = self.value(ref, "after LIKE")
            check_like(ref, pattern, pattern_token.position)
            assert isinstance(pattern, str)
            return Like(ref, pattern, negated)
        if ref.family == "tags":
            return Has(ref)
        raise self.fail(
            f"expected an operator (=, !=, <, <=, >, >=, IN, LIKE) after '{ref.text}', "
            f"found {self.found()}"
        )

    def in_list(self, ref: FieldRef, negated: bool) -> Expr:
        if not self.accept("op", "("):
            raise self.fail(f"expected '(' after IN, found {self.found()}")
        values = []
        while True:
            token = self.token
            value = self.value(ref, "in the list")
            check_compare(ref, "=", value, token.position)
            values.append(value)
            if self.accept("op", ")"):
                return In(ref, tuple(values), negated)
            if not self.accept("op", ","):
                raise self.fail(f"expected ',' or ')' in the list, found {self.found()}")

    def value(self, ref: FieldRef, where: str) -> Value:
        token = self.token
        if token.kind in ("string", "number"):
            self.advance()
            assert token.value is not None
            return token.value
        if token.kind == "keyword" and token.text in ("true", "false"):
            self.advance()
            return token.text == "true"
        raise self.fail(f"expected a value {where}, found {self.found()}")

    def order(self) -> list[OrderKey]:
        keys: list[OrderKey] = []
        if self.token.kind == "end":
            return keys
        while True:
            ref = self.field()
            if ref.wild:
                raise QueryError(ref.position, f"cannot order by '{ref.text}': [*] is many values")
            descending = False
            if self.accept("keyword", "desc"):
                descending = True
            else:
                self.accept("keyword", "asc")
            keys.append(OrderKey(ref, descending))
            if self.token.kind == "end":
                return keys
            if not self.accept("op", ","):
                raise self.fail(f"expected ',', ASC, DESC or the end, found {self.found()}")


def parse_filter(text: str) -> Expr | None:
    """The tree of a filter; None for an empty one (every run)."""
    return _Parser(text).filter()


def parse_order(text: str) -> list[OrderKey]:
    """The keys of an order (`metrics.val_data_loss.best asc, created desc`)."""
    return _Parser(text).order()


# --- Kinds of value ----------------------------------------------------------------------


def _kind_of(value: Value) -> str:
    if isinstance(value, bool):
        return BOOL
    return NUMBER if isinstance(value, int | float) else TEXT


def check_compare(ref: FieldRef, op: str, value: Value, position: int) -> None:
    """Refuse a value of the wrong kind for the field (a number compared with text...)."""
    kind = _kind_of(value)
    if TIME in ref.kinds:
        if kind != TEXT or as_time(value) is None:
            raise QueryError(
                position,
                f"'{ref.text}' is a time: compare it with one like '2026-01-31' or "
                f"'2026-01-31T12:00:00Z'",
            )
        return
    if kind not in ref.kinds:
        wanted = " or ".join(sorted(ref.kinds))
        raise QueryError(
            position,
            f"'{ref.text}' holds {_article(wanted)}: it cannot be compared with {_show(value)}",
        )
    if kind == BOOL and op not in ("=", "!="):
        raise QueryError(position, f"'{ref.text}' is true or false: compare it with = or !=")


def check_like(ref: FieldRef, pattern: Value, position: int) -> None:
    """LIKE takes text, on a field that holds text, with `\\` escaping only `%`, `_`, `\\`."""
    if TEXT not in ref.kinds or TIME in ref.kinds:
        raise QueryError(position, f"LIKE compares text, and '{ref.text}' does not hold text")
    if not isinstance(pattern, str):
        raise QueryError(position, "LIKE takes a quoted pattern, e.g. '%sweep%'")
    if re.search(r"\\(?![%_\\])", pattern.replace("\\\\", "")):
        raise QueryError(position, "in a LIKE pattern a backslash goes before %, _ or another \\")


def as_time(value: Value) -> datetime | None:
    """A text value read as a time in UTC (a date alone is its midnight), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or one that UTC puts past year 1..9999
        return None


def _article(kinds: str) -> str:
    return "a number" if kinds == NUMBER else kinds if kinds != BOOL else "true or false"


def _show(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"'{value}'" if isinstance(value, str) else f"the number {value}"


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
