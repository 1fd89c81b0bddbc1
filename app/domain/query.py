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
The tree and its canonical text are app/domain/query_tree.py's, the tokens
app/domain/query_tokens.py's; app/domain/query_sql.py turns the tree into SQL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from app.domain.query_fields import BOOL, NUMBER, TEXT, TIME, FieldError, FieldRef, resolve
from app.domain.query_tokens import KEYWORDS, MAX_LENGTH, Tok, tokenize
from app.domain.query_tree import (
    And,
    Compare,
    Expr,
    Has,
    In,
    Like,
    Not,
    Op,
    Or,
    OrderKey,
    QueryError,
    Value,
    conjoin,
    disjoin,
    order_text,
    quote,
    show_value,
    to_text,
)

# The tree and the tokens live in query_tree.py and query_tokens.py; their names are
# re-exported here, where the services and the tests have always found them.
__all__ = [
    "KEYWORDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_TESTS",
    "And",
    "Compare",
    "Expr",
    "Has",
    "In",
    "Like",
    "Not",
    "Op",
    "Or",
    "OrderKey",
    "QueryError",
    "Tok",
    "Value",
    "as_time",
    "check_compare",
    "check_like",
    "conjoin",
    "disjoin",
    "order_text",
    "parse_filter",
    "parse_order",
    "quote",
    "show_value",
    "to_text",
    "tokenize",
]

MAX_DEPTH = 32  # parentheses and NOTs inside each other
MAX_TESTS = 100


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
