"""The run query language on its own (app/domain/query.py): the issue's examples parse to
the trees meant, generated trees print and parse back to themselves, any text either
parses or is refused with a position, and each mistake says where and what."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.query import (
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Compare,
    Expr,
    Has,
    In,
    Like,
    Not,
    Or,
    QueryError,
    conjoin,
    disjoin,
    order_text,
    parse_filter,
    parse_order,
    to_text,
)
from app.domain.query_fields import ATTRIBUTES, NAME_PATTERN, NUMBER, TEXT, TIME, resolve

ISSUE_EXAMPLES = [
    "status = 'succeeded' and dataset = 'digits'",
    "params.model.layers.0.regularizer.l2 > 1e-3 and params.model.layers[*].dropout = 0",
    "metrics.val_data_loss.best < 0.4 or metrics.val_accuracy.last >= 0.9",
    "tags.team = 'vision' and name like '%sweep%' and not verdict = 'overfitting'",
    "sweep = 3 and params.training.seed in (0, 1, 2)",
]


def test_the_issue_s_examples_parse_to_the_trees_meant() -> None:
    first, second, third, fourth, fifth = (parse_filter(text) for text in ISSUE_EXAMPLES)
    assert first == And(
        (
            Compare(resolve("status"), "=", "succeeded"),
            Compare(resolve("dataset"), "=", "digits"),
        )
    )
    assert isinstance(second, And)
    l2, dropout = second.operands
    assert isinstance(l2, Compare) and isinstance(dropout, Compare)
    assert l2.field.tokens == ("model", "layers", 0, "regularizer", "l2")
    assert (l2.op, l2.value) == (">", 0.001)
    assert dropout.field.tokens == ("model", "layers", None, "dropout") and dropout.field.wild
    assert third == Or(
        (
            Compare(resolve("metrics.val_data_loss.best"), "<", 0.4),
            Compare(resolve("metrics.val_accuracy.last"), ">=", 0.9),
        )
    )
    assert fourth == And(
        (
            Compare(resolve("tags.team"), "=", "vision"),
            Like(resolve("name"), "%sweep%"),
            Not(Compare(resolve("verdict"), "=", "overfitting")),
        )
    )
    assert fifth == And(
        (
            Compare(resolve("sweep"), "=", 3),
            In(resolve("params.training.seed"), (0, 1, 2)),
        )
    )
    keys = parse_order("metrics.val_data_loss.best asc, created desc")
    assert [(key.field.text, key.descending) for key in keys] == [
        ("metrics.val_data_loss.best", False),
        ("created", True),
    ]
    assert order_text(keys) == "metrics.val_data_loss.best ASC, created DESC"


def test_keywords_in_any_case_precedence_and_both_index_forms() -> None:
    assert parse_filter("STATUS = 'a' Or name = 'b' AnD NOT source = 'c'") == parse_filter(
        "status = 'a' or (name = 'b' and not source = 'c')"
    )
    assert parse_filter("params.model.layers.1.dropout = 0") == parse_filter(
        "params.model.layers[1].dropout=0"
    )
    assert parse_filter("tags.baseline") == Has(resolve("tags.baseline"))
    assert parse_filter("name not like 'x%'") == Like(resolve("name"), "x%", negated=True)
    assert parse_filter("id not in (1, 2)") == In(resolve("id"), (1, 2), negated=True)
    assert parse_filter("status <> 'a'") == parse_filter("status != 'a'")
    assert parse_filter("name = 'it''s'") == Compare(resolve("name"), "=", "it's")
    assert parse_filter("params.training.shuffle = FALSE") == Compare(
        resolve("params.training.shuffle"), "=", False
    )
    assert parse_filter("") is None and parse_filter("   ") is None
    assert parse_order("") == []


def test_sql_in_a_value_is_just_a_string() -> None:
    tree = parse_filter("name = '; drop table experiment; --'")
    assert tree == Compare(resolve("name"), "=", "; drop table experiment; --")


# Mistakes, each with where (1-based) and what was expected.
MISTAKES = [
    ("status = 'succeeded' and x >", 26, "unknown field 'x'"),
    ("epochs_done >", 14, "expected a value after '>'"),
    ("status = 'succeeded", 10, "unclosed quote"),
    ("colour = 'red'", 1, "unknown field 'colour'"),
    ("params. = 1", 1, "expected a path after 'params.'"),
    ("params = 1", 1, "expected a path after 'params.'"),
    ("params.model.colour = 1", 1, "unknown field 'params.model.colour'"),
    ("params.model.layers = 1", 1, "is a section of the spec"),
    ("params.model.layers[x].units = 1", 20, "expected an index, [0] or [*]"),
    ("params.model..units = 1", 1, "is not a name, an index [1] or [*]"),
    ("epochs_done < 'abc'", 15, "'epochs_done' holds a number"),
    ("metrics.val_loss.best > 'high'", 25, "holds a number"),
    ("name > 3", 8, "'name' holds text"),
    ("params.training.shuffle < true", 27, "compare it with = or !="),
    ("created > 'yesterday'", 11, "is a time"),
    ("name like 5", 11, "LIKE takes a quoted pattern"),
    ("epochs_done like '5'", 18, "LIKE compares text"),
    ("name like 'a\\b'", 11, "backslash"),
    ("metrics.val_loss = 1", 1, "expected a metric name and a summary"),
    ("metrics.val_loss.median = 1", 1, "the summaries are best, last, min, max"),
    ("tags. = 'x'", 1, "expected a tag key"),
    ("status", 7, "expected an operator"),
    ("status = 'a' and", 17, "expected a field"),
    ("status = 'a' or or name = 'b'", 17, "expected a field"),
    ("(status = 'a'", 14, "expected ')' to close the '(' at 1"),
    ("status = 'a')", 13, "expected AND, OR or the end"),
    ("status = 'a' name = 'b'", 14, "expected AND, OR or the end"),
    ("id in 1, 2", 7, "expected '(' after IN"),
    ("id in (1 2)", 10, "expected ',' or ')'"),
    ("id = 1e999", 6, "not a finite number"),
    ("status = 'a' # comment", 14, "unexpected character '#'"),
    ("not", 4, "expected a field"),
    ("(" * (MAX_DEPTH + 1) + "id = 1" + ")" * (MAX_DEPTH + 1), MAX_DEPTH + 1, "nested more"),
    (" or ".join(["id = 1"] * 101), 1 + 10 * 100, "at most 100 tests"),
    ("name = '" + "x" * MAX_LENGTH + "'", MAX_LENGTH + 1, f"at most {MAX_LENGTH} characters"),
]


@pytest.mark.parametrize(("text", "position", "expected"), MISTAKES)
def test_a_mistake_says_where_and_what(text: str, position: int, expected: str) -> None:
    with pytest.raises(QueryError) as raised:
        parse_filter(text)
    assert raised.value.position == position, str(raised.value)
    assert expected in raised.value.message
    assert str(raised.value).startswith(f"at {position}: ")


def test_the_issue_s_own_message() -> None:
    with pytest.raises(QueryError, match=r"^at 27: expected a value after '>'"):
        parse_filter("dataset = 'digits' and id>")


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("metrics.x.best sideways", 16, "expected ',', ASC, DESC or the end"),
        ("params.model.layers[*].dropout", 1, "[*] is many values"),
        ("colour desc", 1, "unknown field"),
        ("name,", 6, "expected a field"),
    ],
)
def test_a_bad_order_says_where(text: str, position: int, expected: str) -> None:
    with pytest.raises(QueryError) as raised:
        parse_order(text)
    assert raised.value.position == position and expected in raised.value.message


# --- Round trips -------------------------------------------------------------------------

PARAM_PATHS = {
    NUMBER: [
        "params.model.layers[*].dropout",
        "params.model.layers.0.regularizer.l2",
        "params.model.layers[1].units",
        "params.training.learning_rate",
        "params.training.seed",
        "params.dataset.train_fraction",
        "params.model.layers[*].regularizer.params.alpha",
    ],
    TEXT: [
        "params.name",
        "params.dataset.name",
        "params.training.optimizer",
        "params.model.layers[*].type",
        "params.model.layers[0].activation",
    ],
}
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
numbers = st.one_of(
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.isoformat())
metric_names = st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda name: len(name) < 30)


@st.composite
def field_and_values(draw: st.DrawFn) -> tuple[str, st.SearchStrategy[object], str]:
    """A field's text, a strategy for its values, and its kind."""
    family = draw(st.sampled_from(["attribute", "params", "metrics", "tags"]))
    if family == "attribute":
        name = draw(st.sampled_from(sorted(ATTRIBUTES)))
        (kind,) = ATTRIBUTES[name]
        return name, {NUMBER: numbers, TEXT: texts, TIME: times}[kind], kind
    if family == "params":
        kind = draw(st.sampled_from([NUMBER, TEXT]))
        return draw(st.sampled_from(PARAM_PATHS[kind])), numbers if kind == NUMBER else texts, kind
    if family == "metrics":
        summary = draw(st.sampled_from(["best", "last", "min", "max"]))
        return f"metrics.{draw(metric_names)}.{summary}", numbers, NUMBER
    return f"tags.{draw(metric_names)}", texts, TEXT


@st.composite
def leaf_tests(draw: st.DrawFn) -> Expr:
    field_text, values, kind = draw(field_and_values())
    ref = resolve(field_text)
    shape = draw(st.sampled_from(["compare", "in", "like", "has"]))
    if shape == "has" and ref.family == "tags":
        return Has(ref)
    if shape == "like" and kind == TEXT:
        pattern = draw(texts).replace("\\", "\\\\")
        return Like(ref, pattern, draw(st.booleans()))
    if shape == "in":
        chosen = draw(st.lists(values, min_size=1, max_size=4))
        return In(ref, tuple(chosen), draw(st.booleans()))  # type: ignore[arg-type]
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
    return Compare(ref, op, draw(values))  # type: ignore[arg-type]


trees = st.recursive(
    leaf_tests(),
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=3).map(conjoin),
        st.lists(inner, min_size=2, max_size=3).map(disjoin),
    ),
    max_leaves=8,
)


@given(trees)
@settings(max_examples=300, deadline=None)
def test_a_printed_tree_parses_back_to_itself(tree: Expr) -> None:
    text = to_text(tree)
    again = parse_filter(text)
    assert again == tree, text
    assert to_text(again) == text


@given(trees)
@settings(max_examples=100, deadline=None)
def test_lower_case_keywords_and_extra_spaces_read_the_same(tree: Expr) -> None:
    text = to_text(tree)
    if "'" in text:  # keywords only outside strings: keep the texts as they are
        return
    loose = "  ".join(
        word.lower() if word in {"AND", "OR", "NOT", "IN", "LIKE", "TRUE", "FALSE"} else word
        for word in text.split(" ")
    )
    assert parse_filter(loose) == tree


@given(st.text(max_size=80))
@settings(max_examples=500, deadline=None)
def test_any_text_parses_or_is_refused_with_a_position(text: str) -> None:
    try:
        tree = parse_filter(text)
    except QueryError as error:
        assert 1 <= error.position <= len(text) + 1
        return
    assert tree is None or parse_filter(to_text(tree)) == tree
