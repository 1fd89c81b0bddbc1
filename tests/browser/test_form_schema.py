"""The new-experiment form reads the spec's bounds, choices and defaults from the schema the
server serves (/openapi.json), not from a copy: in a real browser against the real server,
its inputs carry app/spec's bounds as read here in Python, and a changed schema changes
the form."""

from __future__ import annotations

import json
from typing import Annotated, Any, get_args, get_origin

import httpx
import pytest
from annotated_types import Ge, Gt, Le, Lt
from playwright.sync_api import Page, Route, expect
from pydantic import BaseModel, StringConstraints

from app.spec import (
    DATASETS,
    LAYER_TYPES,
    Activation,
    Conv1DLayer,
    Conv2DLayer,
    DatasetName,
    DatasetSpec,
    DenseLayer,
    EarlyStoppingSpec,
    ExperimentSpec,
    GRULayer,
    LSTMLayer,
    Optimizer,
    RegularizerKind,
    RegularizerSpec,
    ScheduleSpec,
    TrainingSpec,
)
from tests.browser.conftest import screenshot
from tests.browser.test_new_form import field, open_form, stored_spec, submit_and_land

# Each number input of the form and the spec field whose bounds it must carry.
NUMBER_INPUTS: list[tuple[str, type[BaseModel], str]] = [
    ("dataset.validation_split", DatasetSpec, "validation_split"),
    ("dataset.test_split", DatasetSpec, "test_split"),
    ("dataset.train_fraction", DatasetSpec, "train_fraction"),
    ("dataset.label_noise", DatasetSpec, "label_noise"),
    ("dataset.n_samples", DatasetSpec, "n_samples"),
    ("dataset.noise", DatasetSpec, "noise"),
    ("model.layers.0.units", DenseLayer, "units"),
    ("model.layers.0.filters", Conv1DLayer, "filters"),
    ("model.layers.0.filters", Conv2DLayer, "filters"),
    ("model.layers.0.kernel_size", Conv2DLayer, "kernel_size"),
    ("model.layers.0.pool_size", Conv2DLayer, "pool_size"),
    ("model.layers.1.dropout", DenseLayer, "dropout"),
    ("model.layers.0.regularizer.l1", RegularizerSpec, "l1"),
    ("model.layers.0.regularizer.l2", RegularizerSpec, "l2"),
    ("model.layers.0.regularizer.smoothness", RegularizerSpec, "smoothness"),
    ("training.global_regularizer.l2", RegularizerSpec, "l2"),
    ("training.epochs", TrainingSpec, "epochs"),
    ("training.batch_size", TrainingSpec, "batch_size"),
    ("training.learning_rate", TrainingSpec, "learning_rate"),
    ("training.seed", TrainingSpec, "seed"),
    ("training.weight_decay", TrainingSpec, "weight_decay"),
    ("training.histogram_every", TrainingSpec, "histogram_every"),
    ("training.schedule.warmup_epochs", ScheduleSpec, "warmup_epochs"),
    ("training.schedule.final_fraction", ScheduleSpec, "final_fraction"),
    ("training.early_stopping.patience", EarlyStoppingSpec, "patience"),
    ("training.early_stopping.min_delta", EarlyStoppingSpec, "min_delta"),
]


def constraints(model: type[BaseModel], name: str) -> list[Any]:
    """The constraint objects of a field, also those inside `Annotated[...] | None`."""
    info = model.model_fields[name]
    found = list(info.metadata)
    for arg in get_args(info.annotation):
        if get_origin(arg) is Annotated:
            for extra in get_args(arg)[1:]:
                found.extend(getattr(extra, "metadata", [extra]))
    return found


def bounds(model: type[BaseModel], name: str) -> tuple[float, float, bool, bool]:
    """(low, high, low is exclusive, high is exclusive) of a number field of the spec."""
    low = high = None
    low_exclusive = high_exclusive = False
    for item in constraints(model, name):
        if isinstance(item, Ge):
            low = item.ge
        elif isinstance(item, Gt):
            low, low_exclusive = item.gt, True
        elif isinstance(item, Le):
            high = item.le
        elif isinstance(item, Lt):
            high, high_exclusive = item.lt, True
    assert low is not None and high is not None, f"{model.__name__}.{name} has no bounds"
    return float(low), float(high), low_exclusive, high_exclusive  # type: ignore[arg-type]


def options(page: Page, name: str) -> list[str]:
    """The values of a select's options, plugins left out."""
    values: list[str] = page.locator(f'[name="{name}"] > option').evaluate_all(
        "nodes => nodes.map(node => node.value)"
    )
    return values


def test_the_forms_bounds_are_the_specs(page: Page) -> None:
    open_form(page)
    for name, model, spec_field in NUMBER_INPUTS:
        control = page.locator(f'[name="{name}"]')
        low, high, _, _ = bounds(model, spec_field)
        where = f"{name} ({model.__name__}.{spec_field})"
        assert float(control.get_attribute("min") or "nan") == low, where
        assert float(control.get_attribute("max") or "nan") == high, where

    # The example of the brief, spelled out.
    units_max = page.locator('[name="model.layers.0.units"]').get_attribute("max")
    assert units_max == f"{bounds(DenseLayer, 'units')[1]:g}" == "4096"

    # Exclusive bounds are checked as such: dropout must stay below 1.
    low, high, low_exclusive, high_exclusive = bounds(DenseLayer, "dropout")
    assert (low_exclusive, high_exclusive) == (False, True)
    page.fill('[name="model.layers.1.dropout"]', str(high))
    page.fill('[name="name"]', "dropout at its bound")
    page.get_by_role("button", name="Queue experiment").click()
    expect(field(page, "model.layers.1.dropout").locator(".field-error")).to_have_text(
        f"Must be at least {low:g} and below {high:g}."
    )

    # The name's length limit is the spec's.
    [name_rule] = [
        c for c in constraints(ExperimentSpec, "name") if isinstance(c, StringConstraints)
    ]
    assert page.locator('[name="name"]').get_attribute("maxlength") == str(name_rule.max_length)


def test_each_layer_type_shows_its_own_inputs_and_bounds(page: Page) -> None:
    """A recurrent layer has units of its own bound, a recurrent dropout and
    return_sequences; a dense one only its units."""
    open_form(page)
    units = page.locator('[name="model.layers.0.units"]')
    page.select_option('[name="model.layers.0.type"]', "lstm")
    expect(units).to_have_attribute("max", f"{bounds(LSTMLayer, 'units')[1]:g}")
    recurrent_dropout = page.locator('[name="model.layers.0.recurrent_dropout"]')
    expect(recurrent_dropout).to_be_visible()
    expect(recurrent_dropout).to_have_attribute(
        "max", f"{bounds(LSTMLayer, 'recurrent_dropout')[1]:g}"
    )
    expect(page.locator('[name="model.layers.0.return_sequences"]')).to_be_visible()
    expect(page.locator('[name="model.layers.0.filters"]')).to_be_hidden()
    # Its recurrent kernel takes a penalty of its own, like the kernel's.
    recurrent_kind = page.locator('[name="model.layers.0.recurrent_regularizer.kind"]')
    expect(recurrent_kind).to_be_visible()
    expect(recurrent_kind).to_have_value("none")
    # Recurrent dropout above 0 costs the cuDNN kernel: said beside it.
    warning = page.locator("#recurrent-warning-0")
    expect(warning).to_be_hidden()
    recurrent_dropout.fill("0.2")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text(
        "turns off the fast cuDNN kernel on a GPU (Keras falls back to the generic loop, "
        "~25x slower)"
    )
    expect(recurrent_dropout).to_have_attribute("aria-describedby", "recurrent-warning-0")
    screenshot(page, "new-form-recurrent-layer")
    recurrent_dropout.fill("0")
    expect(warning).to_be_hidden()
    units.fill(str(int(bounds(LSTMLayer, "units")[1]) + 1))
    page.get_by_role("button", name="Queue experiment").click()
    expect(field(page, "model.layers.0.units").locator(".field-error")).to_have_text(
        f"Must be at least 1 and at most {bounds(LSTMLayer, 'units')[1]:g}."
    )
    # Back to dense: its own bound, and no recurrent inputs.
    page.select_option('[name="model.layers.0.type"]', "dense")
    expect(units).to_have_attribute("max", f"{bounds(DenseLayer, 'units')[1]:g}")
    expect(recurrent_dropout).to_be_hidden()
    expect(page.locator('[name="model.layers.0.return_sequences"]')).to_be_hidden()
    expect(recurrent_kind).to_be_hidden()


def test_a_stack_of_recurrent_layers_queues_from_the_form(page: Page, stack: str) -> None:
    open_form(page)
    page.fill('[name="name"]', "lstm then gru")
    page.select_option('[name="dataset.name"]', "periodic_series")
    page.fill('[name="dataset.n_samples"]', "60")
    page.fill('[name="training.epochs"]', "1")
    page.select_option('[name="model.layers.0.type"]', "lstm")
    page.fill('[name="model.layers.0.units"]', "4")
    page.fill('[name="model.layers.0.recurrent_dropout"]', "0.1")
    page.locator('[name="model.layers.0.return_sequences"]').check()
    page.select_option('[name="model.layers.0.recurrent_regularizer.kind"]', "l2")
    page.fill('[name="model.layers.0.recurrent_regularizer.l2"]', "0.001")
    page.select_option('[name="model.layers.1.type"]', "gru")
    page.fill('[name="model.layers.1.units"]', "3")
    run_id = submit_and_land(page)
    try:
        first, second = stored_spec(stack, run_id)["model"]["layers"]
        assert (first["type"], first["units"], first["return_sequences"]) == ("lstm", 4, True)
        assert first["recurrent_dropout"] == 0.1
        recurrent = {key: value for key, value in first["recurrent_regularizer"].items() if value}
        assert recurrent == {"kind": "l2", "l2": 0.001}
        assert second.get("recurrent_regularizer") is None
        assert (second["type"], second["units"], second["return_sequences"]) == ("gru", 3, False)
        assert GRULayer.model_validate(second).units == 3
    finally:
        httpx.post(f"{stack}/api/experiments/{run_id}/cancel")


def test_the_forms_choices_are_the_specs(page: Page) -> None:
    open_form(page)
    assert options(page, "dataset.name") == [
        name for name in get_args(DatasetName) if name != "upload"
    ]
    assert options(page, "model.layers.0.type") == list(LAYER_TYPES)
    assert options(page, "model.layers.0.activation") == list(get_args(Activation))
    assert options(page, "training.optimizer") == list(get_args(Optimizer))
    kinds = [kind for kind in get_args(RegularizerKind) if kind != "plugin"]
    assert options(page, "model.layers.0.regularizer.kind") == ["none", *kinds]
    assert options(page, "training.loop") == list(
        get_args(TrainingSpec.model_fields["loop"].annotation)
    )
    # The defaults the classic leaves unset are the spec's.
    expect(page.locator('[name="training.histogram_every"]')).to_have_value(
        str(TrainingSpec.model_fields["histogram_every"].default)
    )
    expect(page.locator('[name="training.early_stopping.patience"]')).to_have_value(
        str(EarlyStoppingSpec.model_fields["patience"].default)
    )


def test_the_built_in_dataset_table_is_the_specs(page: Page) -> None:
    """The one copy left: what the hint says of each built-in dataset (the schema lists
    their names only)."""
    from worker.datasets import DEFAULT_NOISE

    open_form(page)
    table: dict[str, dict[str, Any]] = page.evaluate(
        "async () => (await import('/static/js/form/builtin-datasets.js')).BUILTIN_DATASETS"
    )
    assert set(table) == set(DATASETS)
    for name, info in DATASETS.items():
        entry = table[name]
        assert entry["task"] == info.task, name
        assert entry["classes"] == info.classes, name
        assert entry["features"] == info.features, name
        assert entry["description"] == info.description, name
        assert entry.get("generated", False) == info.generated, name
        if info.generated:
            assert entry["samples"] == info.default_samples, name
            assert entry["noise"] == DEFAULT_NOISE[name], name


def test_the_form_follows_the_schema_it_is_served(page: Page, stack: str) -> None:
    """Change the served document on its way and the form changes with it: no copy."""
    document = httpx.get(f"{stack}/openapi.json").json()
    schemas = document["components"]["schemas"]
    schemas["DenseLayer"]["properties"]["units"]["maximum"] = 77
    schemas["TrainingSpec"]["properties"]["histogram_every"]["default"] = 9
    optimizer = schemas["TrainingSpec"]["properties"]["optimizer"]
    optimizer["enum"] = [*optimizer["enum"], "lion"]

    def altered(route: Route) -> None:
        route.fulfill(json=document)

    page.route("**/openapi.json", altered)
    open_form(page)
    expect(page.locator('[name="model.layers.0.units"]')).to_have_attribute("max", "77")
    expect(page.locator('[name="training.histogram_every"]')).to_have_value("9")
    assert options(page, "training.optimizer")[-1] == "lion"
    page.fill('[name="model.layers.0.units"]', "78")
    page.get_by_role("button", name="Queue experiment").click()
    expect(field(page, "model.layers.0.units").locator(".field-error")).to_have_text(
        "Must be at least 1 and at most 77."
    )


@pytest.mark.parametrize("answer", [500, "abort"])
def test_without_the_schema_the_form_says_why_and_sends_nothing(
    page: Page, answer: int | str
) -> None:
    def refuse(route: Route) -> None:
        if answer == "abort":
            route.abort("connectionrefused")
        else:
            route.fulfill(status=int(answer), body=json.dumps({"detail": "broken"}))

    page.route("**/openapi.json", refuse)
    page.goto("/new")
    box = page.locator(".form-error")
    expect(box).to_contain_text("Could not load the form")
    expect(box).to_contain_text("/openapi.json")
    expect(page.locator("#submit")).to_be_disabled()
    expect(page.locator('[name="model.layers.0.type"]')).to_have_count(0)


def test_the_form_asks_nothing_of_another_origin(page: Page, stack: str) -> None:
    """Offline use: the schema, the modules and the styles all come from the server."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_form(page)
    expect(page.locator("#submit")).to_be_enabled()
    assert any(url.endswith("/openapi.json") for url in requested)
    assert any(url.endswith("/static/js/form/rules.js") for url in requested)
    elsewhere = [
        url for url in requested if not url.startswith(stack) and not url.startswith("data:")
    ]
    assert elsewhere == []
