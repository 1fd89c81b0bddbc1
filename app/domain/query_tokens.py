"""The run query language's tokens: words, keywords, quoted strings, numbers and
operators, each with its 1-based position, read from a query's text.

Nothing here runs the text; a stray character or an unclosed quote is a QueryError at
its position. app/domain/query.py parses the tokens.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from app.domain.query_tree import QueryError, Value

MAX_LENGTH = 2000
# Integers past 64 bits are compared as floats (no database column holds them exactly).
_INT64 = 2**63 - 1

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
