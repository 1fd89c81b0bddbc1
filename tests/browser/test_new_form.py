"""The "New experiment" page in a real browser against the real server and worker."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Dialog, Locator, Page, Request, Route, expect

from app.spec import ExperimentSpec
from tests.browser.conftest import screenshot

ROOT = Path(__file__).resolve().parents[2]
RUN_URL = re.compile(r"/runs/(\d+)$")


def classic() -> dict[str, Any]:
    return json.loads((ROOT / "examples" / "l2-dropout-digits.json").read_text())


def normalized(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec as the server returns it: every default filled in."""
    return ExperimentSpec.model_validate(spec).model_dump(mode="json")


def total(stack: str) -> int:
    return int(httpx.get(f"{stack}/api/experiments", params={"limit": 1}).json()["total"])


def stored_spec(stack: str, run_id: int) -> dict[str, Any]:
    response = httpx.get(f"{stack}/api/experiments/{run_id}")
    response.raise_for_status()
    return dict(response.json()["spec"])


def submit_and_land(page: Page) -> int:
    """Click "Queue experiment" and wait for the run page; returns the new run's id."""
    page.get_by_role("button", name="Queue experiment").click()
    page.wait_for_url(RUN_URL)
    match = RUN_URL.search(page.url)
    assert match is not None
    return int(match.group(1))


def field(page: Page, name: str) -> Locator:
    """The `.field` wrapper of the input named `name`."""
    return page.locator(".field", has=page.locator(f'[name="{name}"]'))


def open_form(page: Page, query: str = "") -> None:
    page.goto(f"/new{query}")
    expect(page.locator('[name="model.layers.0.type"]')).to_be_visible()


def record_posts(page: Page) -> list[str]:
    """Records every POST the page sends."""
    posts: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST":
            posts.append(request.url)

    page.on("request", record)
    return posts


def test_default_form_queues_the_classic_in_one_click(page: Page, stack: str) -> None:
    open_form(page)
    expect(page.locator("table.layers tr.layer")).to_have_count(2)
    expect(page.locator('[name="model.layers.1.regularizer.l2"]')).to_have_value("0.01")
    expect(page.locator('[name="dataset.n_samples"]')).to_be_hidden()
    screenshot(page, "new-form-default")

    page.fill('[name="name"]', "classic from the form")
    button = page.locator("#submit")
    in_flight: list[tuple[str | None, bool]] = []

    def look_at_the_button(route: Route) -> None:
        in_flight.append((button.text_content(), button.is_disabled()))
        route.continue_()

    page.route("**/api/experiments", look_at_the_button)
    run_id = submit_and_land(page)
    assert in_flight == [("Queueing…", True)]

    expected = normalized({**classic(), "name": "classic from the form"})
    assert stored_spec(stack, run_id) == expected


def test_value_caught_in_the_browser_is_shown_and_nothing_is_sent(page: Page, stack: str) -> None:
    open_form(page)
    before = total(stack)
    posts = record_posts(page)
    page.fill('[name="model.layers.0.dropout"]', "1.5")
    page.fill('[name="training.epochs"]', "0")
    page.fill('[name="name"]', "   ")
    page.get_by_role("button", name="Queue experiment").click()

    dropout = field(page, "model.layers.0.dropout")
    expect(dropout).to_have_class(re.compile(r"\binvalid\b"))
    expect(dropout.locator(".field-error")).to_have_text("Must be at least 0 and below 1.")
    expect(field(page, "training.epochs").locator(".field-error")).to_have_text(
        "Must be at least 1 and at most 1000."
    )
    expect(field(page, "name").locator(".field-error")).to_have_text("Required.")
    expect(page.locator(".form-error")).to_contain_text("3 fields below need a change")
    expect(page.locator('[name="name"]')).to_be_focused()
    screenshot(page, "new-form-client-errors")

    # Fixing a field clears its message.
    page.fill('[name="model.layers.0.dropout"]', "0.3")
    expect(dropout).not_to_have_class(re.compile(r"\binvalid\b"))
    expect(dropout.locator(".field-error")).to_have_text("")
    assert posts == []
    assert total(stack) == before


def test_errors_only_the_server_finds_are_shown_where_they_belong(page: Page, stack: str) -> None:
    open_form(page)
    before = total(stack)
    page.fill('[name="name"]', "conv2d on wine")
    page.select_option('[name="dataset.name"]', "wine")
    page.select_option('[name="model.layers.0.type"]', "conv2d")
    page.get_by_role("button", name="Queue experiment").click()

    # A model-level validator: the box at the top, and beside the layer's row.
    message = "conv2d needs an image dataset (digits), not 'wine'"
    box = page.locator(".form-error")
    expect(box).to_contain_text("The server did not accept this experiment")
    expect(box).to_contain_text(f"Layer 1: {message}")
    expect(page.locator('[data-error-for="model.layers.0"]')).to_have_text(message)
    expect(page.locator('[data-error-for="model.layers.0"]')).to_be_visible()
    expect(page.locator("#submit")).to_have_text("Queue experiment")
    expect(page.locator("#submit")).to_be_enabled()
    screenshot(page, "new-form-server-error")

    # A dataset-level validator: the box, and under the dataset section.
    page.select_option('[name="model.layers.0.type"]', "dense")
    page.fill('[name="dataset.validation_split"]', "0.5")
    page.fill('[name="dataset.test_split"]', "0.4")
    page.get_by_role("button", name="Queue experiment").click()
    split_message = "validation_split + test_split leaves under 20% for training"
    expect(box).to_contain_text(f"dataset: {split_message}")
    expect(page.locator('[data-error-for="dataset"]')).to_have_text(split_message)
    expect(page.locator('[data-error-for="model.layers.0"]')).to_be_hidden()

    # A field-level message from the server lands beside its input, even one the page
    # would have caught: the request is altered on its way, the real server answers.
    page.fill('[name="dataset.test_split"]', "0.2")

    def break_dropout(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["model"]["layers"][1]["dropout"] = 1.0
        route.continue_(post_data=json.dumps(body))

    page.route("**/api/experiments", break_dropout)
    page.get_by_role("button", name="Queue experiment").click()
    dropout = field(page, "model.layers.1.dropout")
    expect(dropout.locator(".field-error")).to_have_text("Input should be less than 1")
    expect(dropout).to_have_class(re.compile(r"\binvalid\b"))
    expect(box).to_contain_text("One field below needs a change")
    expect(page.locator('[data-error-for="dataset"]')).to_have_text("")
    assert total(stack) == before


def test_network_failure_and_missing_clone_show_in_the_box(page: Page, stack: str) -> None:
    open_form(page, "?clone=999999")
    box = page.locator(".form-error")
    expect(box).to_contain_text("Could not load run #999999 to clone")
    expect(box).to_contain_text("no such run")
    expect(page.locator('[name="name"]')).to_have_value("l2-dropout")

    before = total(stack)
    page.route("**/api/experiments", lambda route: route.abort("connectionrefused"))
    page.get_by_role("button", name="Queue experiment").click()
    expect(box).to_contain_text("Could not reach the server")
    expect(page.locator("#submit")).to_have_text("Queue experiment")
    expect(page.locator("#submit")).to_be_enabled()
    assert total(stack) == before


def test_clone_fills_the_form_and_queues_with_one_knob_changed(page: Page, stack: str) -> None:
    original: dict[str, Any] = {
        "name": "conv then dense",
        "notes": "cloned by the browser test",
        "dataset": {"name": "periodic_series", "n_samples": 120, "noise": 0.4, "label_noise": 0.1},
        "model": {
            "layers": [
                {"type": "conv1d", "filters": 4, "kernel_size": 5, "pool_size": 2},
                {
                    "type": "dense",
                    "units": 8,
                    "activation": "tanh",
                    "regularizer": {"kind": "l1l2", "l1": 0.002, "l2": 0.05},
                    "bias_regularizer": {"kind": "l2", "l2": 0.003},
                    "dropout": 0.25,
                },
            ]
        },
        "training": {
            "epochs": 2,
            "batch_size": 16,
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "seed": 7,
            "loop": "custom",
            "shuffle": False,
            "weight_decay": 0.001,
            "global_regularizer": {"kind": "smoothness", "smoothness": 0.2},
        },
    }
    response = httpx.post(f"{stack}/api/experiments", json=original)
    assert response.status_code == 201, response.text
    source = response.json()

    open_form(page, f"?clone={source['id']}")
    expect(page.locator('[name="name"]')).to_have_value("conv then dense (clone)")
    expect(page.locator("#title")).to_have_text(f"Clone of run #{source['id']}")
    expect(page.locator("table.layers tr.layer")).to_have_count(2)
    expect(page.locator('[name="model.layers.0.filters"]')).to_have_value("4")
    expect(page.locator('[name="model.layers.0.units"]')).to_be_hidden()
    expect(page.locator('[name="model.layers.1.regularizer.l1"]')).to_have_value("0.002")
    expect(page.locator('[name="model.layers.1.regularizer.l2"]')).to_have_value("0.05")
    expect(page.locator('[name="dataset.n_samples"]')).to_have_value("120")
    expect(page.locator('[name="training.shuffle"]')).not_to_be_checked()
    expect(page.locator('[name="training.global_regularizer.smoothness"]')).to_have_value("0.2")
    expect(page.locator("tr.row-note").nth(1)).to_contain_text("bias L2 0.003")
    screenshot(page, "new-form-clone")

    page.fill('[name="model.layers.1.regularizer.l2"]', "0.1")
    run_id = submit_and_land(page)
    assert run_id != source["id"]

    expected = copy.deepcopy(source["spec"])
    expected["name"] = "conv then dense (clone)"
    expected["model"]["layers"][1]["regularizer"]["l2"] = 0.1
    assert stored_spec(stack, run_id) == expected


def test_layer_rows_renumber_and_show_the_inputs_of_their_type(page: Page) -> None:
    open_form(page)
    rows = page.locator("table.layers tr.layer")
    page.get_by_role("button", name="Add layer").click()
    expect(rows).to_have_count(3)
    # The new row copies the last one, under the next index.
    expect(page.locator('[name="model.layers.2.units"]')).to_have_value("32")
    expect(page.locator('[name="model.layers.2.regularizer.l2"]')).to_have_value("0.01")
    page.fill('[name="model.layers.2.units"]', "16")

    page.get_by_role("button", name="Remove layer 1").click()
    expect(rows).to_have_count(2)
    expect(page.locator('[name="model.layers.0.units"]')).to_have_value("32")
    expect(page.locator('[name="model.layers.1.units"]')).to_have_value("16")
    expect(page.locator('[name="model.layers.2.units"]')).to_have_count(0)
    expect(rows.nth(1).locator("td.index")).to_have_text("2")

    # Types show their own inputs; a regularizer kind shows its strengths.
    page.select_option('[name="model.layers.0.type"]', "conv1d")
    expect(page.locator('[name="model.layers.0.filters"]')).to_be_visible()
    expect(page.locator('[name="model.layers.0.kernel_size"]')).to_be_visible()
    expect(page.locator('[name="model.layers.0.pool_size"]')).to_be_visible()
    expect(page.locator('[name="model.layers.0.units"]')).to_be_hidden()
    page.select_option('[name="model.layers.0.regularizer.kind"]', "l1l2")
    expect(page.locator('[name="model.layers.0.regularizer.l1"]')).to_be_visible()
    expect(page.locator('[name="model.layers.0.regularizer.l2"]')).to_be_visible()
    page.select_option('[name="model.layers.1.regularizer.kind"]', "none")
    expect(page.locator('[name="model.layers.1.regularizer.l2"]')).to_be_hidden()

    # Generated datasets show their own knobs.
    page.select_option('[name="dataset.name"]', "moons")
    expect(page.locator('[name="dataset.n_samples"]')).to_be_visible()
    expect(page.locator('[name="dataset.n_samples"]')).to_have_attribute(
        "placeholder", "default 500"
    )
    page.select_option('[name="training.loop"]', "custom")
    expect(page.locator('[name="training.global_regularizer.kind"]')).to_be_visible()
    screenshot(page, "new-form-edited-rows")

    # At least one row: the last one cannot be removed.
    page.get_by_role("button", name="Remove layer 2").click()
    expect(rows).to_have_count(1)
    expect(page.get_by_role("button", name="Remove layer 1")).to_be_disabled()

    # And the reset link brings the classic back.
    page.get_by_role("link", name="Reset to the classic L2 + dropout").click()
    expect(rows).to_have_count(2)
    expect(page.locator('[name="model.layers.0.units"]')).to_have_value("64")
    expect(page.locator('[name="dataset.name"]')).to_have_value("digits")


def test_a_name_with_markup_stays_text(page: Page, stack: str) -> None:
    name = '<img src=x onerror=alert(1)><script>alert("x")</script>'
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    open_form(page)
    page.fill('[name="name"]', name)
    page.fill('[name="training.epochs"]', "3")
    page.fill('[name="model.layers.0.units"]', "8")
    page.fill('[name="model.layers.1.units"]', "4")
    run_id = submit_and_land(page)
    assert stored_spec(stack, run_id)["name"] == name

    # Cloned back into the form, the name is a value and a link's text, never markup.
    open_form(page, f"?clone={run_id}")
    expect(page.locator('[name="name"]')).to_have_value(f"{name} (clone)")
    expect(page.locator("#lead a")).to_have_text(name)
    expect(page.locator("main img")).to_have_count(0)
    expect(page.locator("main script")).to_have_count(0)
    assert dialogs == []
