"""The experiment spec: what is accepted, what is refused, and where the error points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.spec import ExperimentSpec, RegularizerSpec, error_location
from tests.factories import make_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "l2-dropout-digits.json"


def test_the_example_spec_is_valid_and_described() -> None:
    spec = ExperimentSpec.model_validate(json.loads(EXAMPLE.read_text()))
    assert spec.training.epochs == 20
    assert spec.describe_regularization() == "L2 0.01 · dropout 0.5"


def test_defaults_fill_a_minimal_spec() -> None:
    spec = ExperimentSpec.model_validate(
        {
            "name": "m",
            "dataset": {"name": "wine"},
            "model": {"layers": [{"type": "conv1d", "filters": 4}, {"type": "dense", "units": 4}]},
        }
    )
    assert spec.training.loop == "fit"
    assert spec.model.layers[0].kernel_size == 3
    assert spec.dataset.validation_split == 0.2


@pytest.mark.parametrize(
    ("regularizer", "described"),
    [
        ({"kind": "l1"}, "L1 0.01"),
        ({"kind": "l2", "l2": 0.001}, "L2 0.001"),
        ({"kind": "l1l2", "l1": 0.1, "l2": 0.2}, "L1 0.1 + L2 0.2"),
        ({"kind": "smoothness", "smoothness": 1.5}, "smoothness 1.5"),
    ],
)
def test_regularizer_kinds(regularizer: dict[str, object], described: str) -> None:
    assert RegularizerSpec.model_validate(regularizer).describe() == described


def _error_locs(payload: dict[str, object]) -> list[tuple[object, ...]]:
    with pytest.raises(ValidationError) as caught:
        ExperimentSpec.model_validate(payload)
    return [error_location(error["loc"]) for error in caught.value.errors()]


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"training": {"epochs": 0}}, ("training", "epochs")),
        ({"training": {"epochs": 100_000}}, ("training", "epochs")),
        ({"training": {"batch_size": 2**31}}, ("training", "batch_size")),
        ({"training": {"learning_rate": -1}}, ("training", "learning_rate")),
        ({"training": {"loop": "keras2"}}, ("training", "loop")),
        ({"dataset": {"name": "imagenet"}}, ("dataset", "name")),
        ({"dataset": {"name": "moons", "label_noise": 1.5}}, ("dataset", "label_noise")),
        ({"dataset": {"name": "moons", "train_fraction": 0}}, ("dataset", "train_fraction")),
        ({"model": {"layers": []}}, ("model", "layers")),
        ({"model": {"layers": [{"type": "dense", "units": 8}] * 21}}, ("model", "layers")),
        (
            {"model": {"layers": [{"type": "dense", "units": 10**6}]}},
            ("model", "layers", 0, "units"),
        ),
        (
            {"model": {"layers": [{"type": "dense", "units": 8, "dropout": 1.0}]}},
            ("model", "layers", 0, "dropout"),
        ),
        (
            {
                "model": {
                    "layers": [
                        {"type": "dense", "units": 8, "regularizer": {"kind": "l2", "l2": -0.1}}
                    ]
                }
            },
            ("model", "layers", 0, "regularizer", "l2"),
        ),
        (
            {
                "model": {
                    "layers": [
                        {
                            "type": "dense",
                            "units": 8,
                            "regularizer": {"kind": "l2", "l2": float("nan")},
                        }
                    ]
                }
            },
            ("model", "layers", 0, "regularizer", "l2"),
        ),
        (
            {"model": {"layers": [{"type": "dense", "units": 8, "regularizer": {"kind": "l7"}}]}},
            ("model", "layers", 0, "regularizer", "kind"),
        ),
        # Each layer type is its own schema: the error names the missing or foreign field.
        ({"model": {"layers": [{"type": "dense"}]}}, ("model", "layers", 0, "units")),
        (
            {"model": {"layers": [{"type": "conv2d", "units": 3, "filters": 2}]}},
            ("model", "layers", 0, "units"),
        ),
        ({"model": {"layers": [{"type": "lstm2", "units": 3}]}}, ("model", "layers", 0)),
        ({"name": ""}, ("name",)),
        ({"name": "a\x00b"}, ("name",)),
        ({"surprise": 1}, ("surprise",)),
    ],
)
def test_bad_specs_name_their_field(changes: dict[str, object], loc: tuple[object, ...]) -> None:
    assert loc in _error_locs(make_spec(**changes))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": {"layers": [{"type": "conv2d", "filters": 4}]}}, "conv2d needs an image"),
        (
            {
                "model": {
                    "layers": [{"type": "dense", "units": 4}, {"type": "conv1d", "filters": 4}]
                }
            },
            "cannot follow a dense layer",
        ),
        (
            {
                "model": {
                    "layers": [
                        {"type": "dense", "units": 4, "regularizer": {"kind": "l2", "l1": 0.1}}
                    ]
                }
            },
            "'l1' does not apply",
        ),
        ({"training": {"global_regularizer": {"kind": "l2"}}}, "needs loop 'custom'"),
        ({"dataset": {"name": "digits", "n_samples": 100}}, "generated datasets only"),
        ({"dataset": {"name": "moons", "validation_split": 0.5, "test_split": 0.5}}, "under 20%"),
    ],
)
def test_combinations_that_cannot_be_built(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExperimentSpec.model_validate(make_spec(**changes))


@settings(max_examples=60, deadline=None)
@given(
    units=st.integers(min_value=-10, max_value=10_000),
    dropout=st.floats(allow_nan=True, allow_infinity=True),
    strength=st.floats(allow_nan=True, allow_infinity=True),
)
def test_layer_bounds_hold_for_any_number(units: int, dropout: float, strength: float) -> None:
    payload = make_spec(
        model={
            "layers": [
                {
                    "type": "dense",
                    "units": units,
                    "dropout": dropout,
                    "regularizer": {"kind": "l1", "l1": strength},
                }
            ]
        }
    )
    valid = 1 <= units <= 4096 and 0 <= dropout < 1 and 0 <= strength <= 100
    try:
        spec = ExperimentSpec.model_validate(payload)
    except ValidationError:
        assert not valid
    else:
        assert valid
        assert spec.model.layers[0].units == units
