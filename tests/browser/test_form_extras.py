"""The form's training extras (schedule, early stopping, histograms) and regularizer
plugins, in a real browser against the real server and worker."""

from __future__ import annotations

import re
import secrets

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_new_form import field, open_form, stored_spec, submit_and_land

INVALID = re.compile(r"\binvalid\b")


def tiny(page: Page, name: str) -> None:
    """A run that trains in seconds if the worker picks it up."""
    page.fill('[name="name"]', name)
    page.fill('[name="training.epochs"]', "3")
    page.fill('[name="model.layers.0.units"]', "8")
    page.fill('[name="model.layers.1.units"]', "4")


def register_plugin(stack: str, name: str) -> None:
    """Register a plugin the way a worker does: a claim that offers it. A run it happens
    to claim goes straight back to the queue."""
    claim = {
        "worker_id": f"browser-{secrets.token_hex(4)}",
        "host": "browser-test-host",
        "slot": "cpu",
        "wait": 0,
        "plugins": [name],
    }
    response = httpx.post(f"{stack}/api/worker/claim", json=claim)
    assert response.status_code in (200, 204), response.text
    if response.status_code == 200:
        claimed = response.json()
        released = httpx.post(
            f"{stack}/api/worker/experiments/{claimed['experiment_id']}/release",
            json={"lease_token": claimed["lease_token"]},
        )
        assert released.status_code == 204, released.text


def cancel(stack: str, run_id: int) -> None:
    httpx.post(f"{stack}/api/experiments/{run_id}/cancel")


def test_schedule_early_stopping_and_histograms_land_in_the_spec(page: Page, stack: str) -> None:
    open_form(page)
    # The defaults: a constant schedule, no early stopping, histograms every 5 epochs.
    expect(page.locator('[name="training.schedule.kind"]')).to_have_value("constant")
    expect(page.locator('[name="training.schedule.warmup_epochs"]')).to_be_hidden()
    expect(page.locator('[name="training.schedule.final_fraction"]')).to_be_hidden()
    expect(page.locator('[name="training.early_stopping"]')).not_to_be_checked()
    expect(page.locator('[name="training.early_stopping.patience"]')).to_be_hidden()
    expect(page.locator('[name="training.histogram_every"]')).to_have_value("5")

    page.select_option('[name="training.schedule.kind"]', "cosine")
    expect(page.locator('[name="training.schedule.final_fraction"]')).to_be_visible()
    expect(page.locator('[name="training.schedule.warmup_epochs"]')).to_be_hidden()
    page.select_option('[name="training.schedule.kind"]', "warmup")
    expect(page.locator('[name="training.schedule.warmup_epochs"]')).to_be_visible()
    expect(page.locator('[name="training.schedule.final_fraction"]')).to_be_hidden()
    page.fill('[name="training.schedule.warmup_epochs"]', "2")

    # The checkbox reveals patience; the keyboard works it.
    page.locator('[name="training.early_stopping"]').focus()
    page.keyboard.press("Space")
    expect(page.locator('[name="training.early_stopping"]')).to_be_checked()
    expect(page.locator('[name="training.early_stopping.patience"]')).to_be_visible()
    page.fill('[name="training.histogram_every"]', "2")

    # A bad patience is caught beside its field, and nothing is sent.
    tiny(page, "warmup and early stopping")
    page.fill('[name="training.early_stopping.patience"]', "0")
    page.get_by_role("button", name="Queue experiment").click()
    patience = field(page, "training.early_stopping.patience")
    expect(patience).to_have_class(INVALID)
    expect(patience.locator(".field-error")).to_have_text("Must be at least 1 and at most 1000.")

    page.fill('[name="training.early_stopping.patience"]', "4")
    page.fill('[name="training.early_stopping.min_delta"]', "0.001")
    page.locator('[name="training.early_stopping.restore_best_weights"]').uncheck()
    screenshot(page, "new-form-extras")
    run_id = submit_and_land(page)

    training = stored_spec(stack, run_id)["training"]
    assert training["schedule"] == {"kind": "warmup", "warmup_epochs": 2, "final_fraction": 0.0}
    assert training["early_stopping"] == {
        "patience": 4,
        "min_delta": 0.001,
        "restore_best_weights": False,
    }
    assert training["histogram_every"] == 2

    # A clone brings them back into the form.
    open_form(page, f"?clone={run_id}")
    expect(page.locator('[name="training.schedule.kind"]')).to_have_value("warmup")
    expect(page.locator('[name="training.schedule.warmup_epochs"]')).to_have_value("2")
    expect(page.locator('[name="training.early_stopping"]')).to_be_checked()
    expect(page.locator('[name="training.early_stopping.patience"]')).to_have_value("4")
    expect(
        page.locator('[name="training.early_stopping.restore_best_weights"]')
    ).not_to_be_checked()
    expect(page.locator('[name="training.histogram_every"]')).to_have_value("2")

    # Cosine with its final fraction; early stopping off again leaves it out of the spec.
    page.select_option('[name="training.schedule.kind"]', "cosine")
    page.fill('[name="training.schedule.final_fraction"]', "0.25")
    page.locator('[name="training.early_stopping"]').uncheck()
    expect(page.locator('[name="training.early_stopping.patience"]')).to_be_hidden()
    second = submit_and_land(page)
    training = stored_spec(stack, second)["training"]
    assert training["schedule"] == {"kind": "cosine", "warmup_epochs": 5, "final_fraction": 0.25}
    assert training["early_stopping"] is None


def test_a_registered_plugin_is_offered_and_its_params_are_sent(page: Page, stack: str) -> None:
    name = f"orthogonality_{secrets.token_hex(3)}"
    kind = page.locator('[name="model.layers.0.regularizer.kind"]')
    open_form(page)
    expect(kind.locator(f'option[value="plugin:{name}"]')).to_have_count(0)

    register_plugin(stack, name)
    offered = httpx.get(f"{stack}/api/regularizers").json()
    assert name in [plugin["name"] for plugin in offered["plugins"]]
    open_form(page)
    option = kind.locator(f'option[value="plugin:{name}"]')
    expect(option).to_have_count(1)
    expect(option).to_have_text(name)
    expect(kind.locator("optgroup.plugins")).to_have_attribute("label", "Plugins")
    # The global penalty of the custom loop offers it too.
    expect(
        page.locator(f'[name="training.global_regularizer.kind"] option[value="plugin:{name}"]')
    ).to_have_count(1)

    # The last row takes the plugin, so that a new row copies it.
    kind = page.locator('[name="model.layers.1.regularizer.kind"]')
    kind.select_option(f"plugin:{name}")
    params = page.locator('[name="model.layers.1.regularizer.params"]')
    expect(params).to_be_visible()
    expect(page.locator('[name="model.layers.1.regularizer.l2"]')).to_be_hidden()

    # Parameters that are not name=number stay in the browser, with the reason beside them.
    tiny(page, "plugin penalty")
    params.fill("strength=abc")
    page.get_by_role("button", name="Queue experiment").click()
    params_field = field(page, "model.layers.1.regularizer.params")
    expect(params_field).to_have_class(INVALID)
    expect(params_field.locator(".field-error")).to_have_text('"strength": "abc" is not a number.')

    params.fill("strength=0.01, mode=1")
    page.get_by_role("button", name="Add layer").click()
    expect(page.locator('[name="model.layers.2.regularizer.kind"]')).to_have_value(f"plugin:{name}")
    expect(page.locator('[name="model.layers.2.regularizer.params"]')).to_have_value(
        "strength=0.01, mode=1"
    )
    page.get_by_role("button", name="Remove layer 3").click()
    screenshot(page, "new-form-plugin")
    run_id = submit_and_land(page)
    try:
        layers = stored_spec(stack, run_id)["model"]["layers"]
        assert layers[1]["regularizer"] == {
            "kind": "plugin",
            "l1": None,
            "l2": None,
            "smoothness": None,
            "plugin": name,
            "params": {"strength": 0.01, "mode": 1.0},
        }
        assert layers[0]["regularizer"]["kind"] == "l2"

        # A clone shows the plugin and its parameters again.
        open_form(page, f"?clone={run_id}")
        expect(kind).to_have_value(f"plugin:{name}")
        expect(params).to_have_value("strength=0.01, mode=1")
    finally:
        cancel(stack, run_id)


def test_the_form_works_under_the_content_security_policy(browser: Browser, stack: str) -> None:
    """With the CSP enforced, the form draws, styles itself from files and counts a sweep."""
    context = browser.new_context(base_url=stack)
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto("/new")
        expect(page.locator('[name="training.histogram_every"]')).to_have_value("5")
        # static/css/form.css applies: the sweep section is a card, collapsed.
        section = page.locator("#sweep-section")
        expect(section).to_have_css("border-top-style", "solid")
        section.locator("summary").click()
        page.get_by_role("button", name="Add axis").click()
        page.fill('[name="axes.0.values"]', "1e-4 … 1e-2, 3 log")
        expect(page.locator("#sweep-count")).to_contain_text("Queues 3 runs")
    finally:
        context.close()
    assert violations == [] and errors == []
