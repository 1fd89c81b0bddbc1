"""Setting paths and sweep expansion, without a database."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.spec_paths import PathError, leaf_type, parse_path, targets
from app.domain.sweep_plan import SweepInvalid, expand, run_name
from app.schemas import MAX_RUNS, SweepIn
from tests.factories import make_spec

TWO_LAYERS = make_spec(
    model={
        "layers": [
            {"type": "dense", "units": 16},
            {"type": "dense", "units": 8, "regularizer": {"kind": "l1", "l1": 0.01}},
        ]
    }
)
CONV = make_spec(
    dataset={"name": "digits", "n_samples": None},
    model={
        "layers": [
            {"type": "conv2d", "filters": 4},
            {"type": "dense", "units": 8, "regularizer": {"kind": "l2", "l2": 0.01}},
        ]
    },
)


def request(base: dict[str, Any] = TWO_LAYERS, **changes: Any) -> SweepIn:
    return SweepIn.model_validate({"name": "s", "base": base, **changes})


def errors_of(req: SweepIn) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(SweepInvalid) as caught:
        expand(req)
    return caught.value.errors


def test_paths_parse_in_bracket_and_dot_forms() -> None:
    assert parse_path("model.layers[*].regularizer.l2") == [
        "model",
        "layers",
        None,
        "regularizer",
        "l2",
    ]
    assert parse_path("model.layers[1].dropout") == parse_path("model.layers.1.dropout")
    assert leaf_type(parse_path("model.layers[0].units")) is int
    assert leaf_type(parse_path("training.learning_rate")) is float
    for bad in ("", "model..layers", "model.layers[x]", " training.epochs", "model.layers[-1]"):
        with pytest.raises(PathError):
            leaf_type(parse_path(bad))
    for not_numeric in ("name", "training.shuffle", "model.layers[0].activation", "model"):
        with pytest.raises(PathError, match=r"numeric|no parts"):
            leaf_type(parse_path(not_numeric))


def test_star_sets_the_layers_it_applies_to() -> None:
    base = request(CONV).base.model_dump(mode="json")
    assert targets(base, parse_path("model.layers[*].units")) == [("model", "layers", 1, "units")]
    assert targets(base, parse_path("model.layers[*].filters")) == [
        ("model", "layers", 0, "filters")
    ]
    with pytest.raises(PathError, match="does not apply to a conv2d layer"):
        targets(base, parse_path("model.layers[0].units"))
    # An L1 regularizer has no l2: [*] passes it by, an index names the problem.
    two = request().base.model_dump(mode="json")
    assert targets(two, parse_path("model.layers[*].regularizer.l2")) == [
        ("model", "layers", 0, "regularizer", "l2")
    ]
    with pytest.raises(PathError, match="has no 'l2'"):
        targets(two, parse_path("model.layers[1].regularizer.l2"))


def test_l2_on_a_layer_without_a_regularizer_creates_one() -> None:
    runs = expand(request(axes=[{"path": "model.layers[*].regularizer.l1", "values": [0.5]}]))
    (run,) = runs
    layers = run.spec.model.layers
    assert [layer.regularizer.kind for layer in layers] == ["l1", "l1"]  # type: ignore[union-attr]
    assert [layer.regularizer.l1 for layer in layers] == [0.5, 0.5]  # type: ignore[union-attr]
    assert run.point == {"model.layers[*].regularizer.l1": 0.5}


def test_a_grid_is_the_product_of_its_axes_times_the_seeds() -> None:
    runs = expand(
        request(
            axes=[
                {"path": "model.layers[0].dropout", "values": [0.0, 0.5]},
                {"path": "training.learning_rate", "low": 1e-3, "high": 1e-1, "count": 3},
            ],
            seeds=2,
        )
    )
    assert len(runs) == 2 * 3 * 2
    assert [run.seed for run in runs[:4]] == [0, 1, 0, 1]
    rates = sorted({run.point["training.learning_rate"] for run in runs})
    assert rates == pytest.approx([1e-3, 1e-2, 1e-1])
    assert runs[0].spec.name == "s · dropout=0 · learning_rate=0.001 · seed 0"
    assert len({(tuple(run.point.items()), run.seed) for run in runs}) == len(runs)


@settings(max_examples=40, deadline=None)
@given(
    low_exp=st.integers(min_value=-6, max_value=-2),
    span=st.integers(min_value=1, max_value=3),
    draws=st.integers(min_value=1, max_value=30),
    seeds=st.integers(min_value=1, max_value=3),
)
def test_random_log_draws_stay_within_bounds(
    low_exp: int, span: int, draws: int, seeds: int
) -> None:
    low, high = 10.0**low_exp, 10.0 ** (low_exp + span)
    req = request(
        axes=[{"path": "model.layers[*].regularizer.l2", "low": low, "high": high}],
        mode="random",
        draws=draws,
        seeds=seeds,
    )
    runs = expand(req)
    assert len(runs) == draws * seeds
    values = [run.point["model.layers[*].regularizer.l2"] for run in runs]
    assert all(low <= value <= high for value in values)
    assert all(
        run.spec.model.layers[0].regularizer.l2 == run.point["model.layers[*].regularizer.l2"]
        for run in runs
    )  # type: ignore[union-attr]
    assert [run.point for run in expand(req)] == [run.point for run in runs]  # reproducible


def test_random_log_draws_spread_over_the_decades() -> None:
    runs = expand(
        request(
            axes=[{"path": "training.learning_rate", "low": 1e-5, "high": 1e-1}],
            mode="random",
            draws=200,
        )
    )
    decades = {math.floor(math.log10(run.point["training.learning_rate"])) for run in runs}
    assert decades == {-5, -4, -3, -2}


def test_integer_settings_are_whole_numbers() -> None:
    runs = expand(
        request(
            axes=[{"path": "model.layers[*].units", "low": 4, "high": 64}], mode="random", draws=20
        )
    )
    assert all(run.spec.model.layers[0].units == run.point["model.layers[*].units"] for run in runs)
    assert all(float(run.point["model.layers[*].units"]).is_integer() for run in runs)


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"axes": [{"path": "model.layers[2].dropout", "values": [0.1]}]}, ("axes", 0, "path")),
        (
            {"axes": [{"path": "model.layers[0].dropout", "values": [1.5]}]},
            ("axes", 0, "values", 0),
        ),
        (
            {"axes": [{"path": "model.layers[0].units", "values": [8, 8.5]}]},
            ("axes", 0, "values", 1),
        ),
        (
            {"axes": [{"path": "training.epochs", "low": 1, "high": 5000, "count": 3}]},
            ("axes", 0, "high"),
        ),
        (
            {"axes": [{"path": "training.epochs", "low": 5, "high": 2, "count": 3}]},
            ("axes", 0, "high"),
        ),
        ({"axes": [{"path": "training.epochs", "low": 5}]}, ("axes", 0, "high")),
        ({"axes": [{"path": "training.epochs", "values": [1], "low": 1}]}, ("axes", 0)),
        ({"axes": [{"path": "training.epochs", "values": [1, 1]}]}, ("axes", 0, "values")),
        (
            {
                "axes": [
                    {"path": "model.layers[*].dropout", "values": [0.1]},
                    {"path": "model.layers.1.dropout", "values": [0.2]},
                ]
            },
            ("axes", 1, "path"),
        ),
        ({"axes": [{"path": "dataset.upload.id", "values": [1]}]}, ("axes", 0, "path")),
        ({"axes": [], "mode": "random", "draws": 3}, ("axes",)),
        ({"axes": [{"path": "training.epochs", "values": [2]}], "draws": 3}, ("draws",)),
        (
            {"axes": [{"path": "training.epochs", "values": list(range(1, 101))}], "seeds": 3},
            ("axes",),
        ),
        (
            {
                "axes": [{"path": "training.epochs", "low": 1, "high": 9}],
                "mode": "random",
                "draws": MAX_RUNS,
                "seeds": 2,
            },
            ("draws",),
        ),
        (
            {
                "axes": [
                    {"path": "dataset.validation_split", "values": [0.45]},
                    {"path": "dataset.test_split", "values": [0.45]},
                ]
            },
            ("axes",),
        ),
    ],
)
def test_errors_name_the_field(changes: dict[str, Any], loc: tuple[Any, ...]) -> None:
    assert loc in [where for where, _ in errors_of(request(**changes))]


def test_run_names_stay_within_the_spec_limit() -> None:
    name = run_name("x" * 200, ["l2", "dropout"], [0.001, 0.5], 3)
    assert len(name) == 200 and name.endswith(" · l2=0.001 · dropout=0.5 · seed 3")
