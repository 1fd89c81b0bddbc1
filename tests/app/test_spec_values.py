"""A spec written out as searchable values (app/domain/spec_values.py): every setting by
its path and generic path, the derived dataset name, the notes left out."""

from __future__ import annotations

from app.domain.query_fields import resolve
from app.domain.query_sql import _path_pattern
from app.domain.spec_values import DATASET, MAX_TEXT, SpecValue, dataset_name, spec_values
from app.spec import ExperimentSpec
from tests.factories import make_spec


def test_every_setting_by_its_path_and_generic_path() -> None:
    spec = ExperimentSpec.model_validate(make_spec(notes="why")).model_dump(mode="json")
    values = {value.path: value for value in spec_values(spec)}
    assert values["model.layers[0].regularizer.l2"] == SpecValue(
        "model.layers[0].regularizer.l2", "model.layers[*].regularizer.l2", "number", 0.01, None
    )
    assert values["training.shuffle"].kind == "bool" and values["training.shuffle"].number == 1.0
    assert values["dataset.name"].text == "moons" and values["training.seed"].number == 0.0
    assert values[DATASET].text == "moons"
    assert "notes" not in values  # the run's notes, not a setting
    # Every path a query can name for these values resolves to the same path.
    for path in values:
        if path != DATASET:
            assert resolve(f"params.{path}").name == path


def test_the_dataset_name_an_upload_or_a_script_goes_by() -> None:
    upload = {"dataset": {"name": "upload", "upload": {"id": 3, "name": "faces.npz"}}}
    assert dataset_name(upload) == "faces.npz"
    assert dataset_name({"script": {"dataset": "mnist"}}) == "mnist"
    assert dataset_name({"script": {}}) is None
    long = {"script": {"dataset": "x" * (MAX_TEXT + 1), "host": "h"}}
    assert [value.path for value in spec_values(long)] == ["script.host"]


def test_a_path_with_both_an_index_and_a_star_matches_on_its_index() -> None:
    ref = resolve("params.model.layers[*].units")
    assert _path_pattern(ref) == "model.layers[%].units"
    tokens = ("model", "layers", None, "regularizer", "params", 0)
    assert _path_pattern(ref.__class__("params", "x", ref.kinds, tokens)) == (
        "model.layers[%].regularizer.params[0]"
    )
