"""Uploading a dataset from the new-experiment form and queueing a run on it, in a real
browser against the real server and worker."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from app.spec import DATASETS
from tests.browser.conftest import screenshot
from tests.browser.test_new_form import (
    field,
    open_form,
    record_posts,
    stored_spec,
    submit_and_land,
)

INVALID = re.compile(r"\binvalid\b")
UPLOAD_VALUE = re.compile(r"^upload:(\d+)$")


def write_csv(path: Path, rows: int = 60) -> Path:
    """A small CSV whose target is the first column, not the last."""
    lines = ["label,x1,x2,x3"]
    for index in range(rows):
        label = index % 2
        lines.append(f"{label},{index / rows:.3f},{(index * 7) % 11 / 11:.3f},{label + 0.1:.1f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def server_message(stack: str, body: bytes, **params: str) -> str:
    """What the server itself says about a bad upload (it stores nothing for a 422)."""
    response = httpx.post(
        f"{stack}/api/datasets",
        params=params,
        content=body,
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 422, response.text
    return str(response.json()["detail"][0]["msg"]).removeprefix("Value error, ")


def test_upload_a_csv_and_queue_a_run_on_it(page: Page, stack: str, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "form-upload.csv")
    open_form(page)
    page.set_input_files("#upload-file", str(csv))
    page.fill("#upload-target", "label")
    page.get_by_role("button", name="Upload", exact=True).click()

    status = page.locator("#upload-status")
    expect(status).to_contain_text("Uploaded and selected")
    select = page.locator('[name="dataset.name"]')
    expect(select).to_have_value(UPLOAD_VALUE)
    match = UPLOAD_VALUE.match(select.input_value())
    assert match is not None
    upload_id = int(match.group(1))
    option = select.locator(f'option[value="upload:{upload_id}"]')
    expect(option).to_have_text("form-upload.csv \u2014 60 \u00d7 3, classification")
    expect(field(page, "dataset.name").locator(".hint")).to_have_text(
        "uploaded CSV, 60 samples · 2 classes, 3 features"
    )
    expect(page.locator('[name="dataset.n_samples"]')).to_be_hidden()
    stored = httpx.get(f"{stack}/api/datasets/{upload_id}").json()
    assert (stored["name"], stored["features"], stored["classes"]) == ("form-upload.csv", 3, 2)
    screenshot(page, "new-form-uploaded")

    page.fill('[name="name"]', "on my upload")
    page.fill('[name="training.epochs"]', "2")
    page.fill('[name="model.layers.0.units"]', "8")
    page.fill('[name="model.layers.1.units"]', "4")
    run_id = submit_and_land(page)
    dataset = stored_spec(stack, run_id)["dataset"]
    assert dataset["name"] == "upload"
    assert dataset["upload"]["id"] == upload_id
    assert dataset["upload"]["features"] == 3

    # A fresh form lists the upload after the built-ins, and a clone selects it.
    open_form(page)
    options = page.locator('[name="dataset.name"] option')
    expect(options.and_(page.locator(f'[value="upload:{upload_id}"]'))).to_have_count(1)
    values = options.evaluate_all("nodes => nodes.map(node => node.value)")
    assert values.index(f"upload:{upload_id}") > values.index("periodic_series")
    open_form(page, f"?clone={run_id}")
    expect(select).to_have_value(f"upload:{upload_id}")
    expect(field(page, "dataset.name").locator(".hint")).to_contain_text("uploaded CSV")


def test_a_bad_csv_shows_the_server_message_beside_the_control(
    page: Page, stack: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"x1,x2,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,1,0\n2,abc,1\n4,5,0\n")
    expected = server_message(stack, bad.read_bytes(), name="bad.csv", format="csv")
    assert "abc" in expected

    open_form(page)
    # The built-ins and every upload on the server (an earlier test's among them), once
    # the form has listed them.
    uploads = httpx.get(f"{stack}/api/datasets", params={"limit": 500}).json()["total"]
    options = page.locator('[name="dataset.name"] option')
    expect(options).to_have_count(len(DATASETS) + uploads)
    before = options.count()
    posts = record_posts(page)
    # Nothing chosen: said beside the control, nothing sent.
    page.get_by_role("button", name="Upload", exact=True).click()
    file_field = page.locator(".field", has=page.locator("#upload-file"))
    expect(file_field.locator(".field-error")).to_have_text("Choose a CSV or NPZ file first.")
    assert posts == []

    page.set_input_files("#upload-file", str(bad))
    expect(file_field.locator(".field-error")).to_have_text("")
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(file_field).to_have_class(INVALID)
    expect(file_field.locator(".field-error")).to_have_text(expected)
    expect(page.locator('[name="dataset.name"]')).to_have_value("digits")
    expect(page.locator('[name="dataset.name"] option')).to_have_count(before)
    screenshot(page, "new-form-upload-error")

    # A target column the file lacks: beside the target field. Enter in it uploads.
    good = write_csv(tmp_path / "good.csv")
    no_such = server_message(stack, good.read_bytes(), name="good.csv", target="nope")
    page.set_input_files("#upload-file", str(good))
    page.fill("#upload-target", "nope")
    page.press("#upload-target", "Enter")
    target_field = page.locator(".field", has=page.locator("#upload-target"))
    expect(target_field.locator(".field-error")).to_have_text(no_such)
    expect(file_field.locator(".field-error")).to_have_text("")
    # Enter uploaded; it did not queue an experiment.
    assert not any(url.endswith("/api/experiments") for url in posts)
    expect(page).to_have_url(re.compile(r"/new$"))
