"""An uploaded CSV trained by a real worker: upload, submit, fetch, train, test."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from reglab.client import ReglabClient
from tests.conftest import wait_for
from tests.factories import make_spec

pytestmark = pytest.mark.e2e


def test_a_run_on_an_uploaded_csv_trains_on_the_worker(stack: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 5))
    label = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    lines = ["a,b,c,d,e,answer"] + [
        ",".join(f"{value:.5f}" for value in row) + f",{name}"
        for row, name in zip(x, label, strict=True)
    ]
    response = httpx.post(
        f"{stack}/api/datasets",
        params={"name": "separable.csv", "target": "answer"},
        content="\n".join(lines).encode(),
        headers={"content-type": "text/csv"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    dataset = response.json()
    spec = make_spec(
        name="on an upload",
        dataset={"name": "upload", "n_samples": None, "upload": {"id": dataset["id"]}},
        training={"epochs": 10, "batch_size": 16, "seed": 0, "learning_rate": 0.05},
    )
    with ReglabClient(stack) as client:
        run = client.submit(spec)
        events = list(client.events(run["id"]))
        done = client.get(run["id"])
    assert done["status"] == "succeeded", done["error"]
    assert [event.data["epoch"] for event in events if event.kind == "metrics"] == list(range(10))
    assert done["task"] == "classification"
    assert 0.0 <= done["test_metrics"]["test_accuracy"] <= 1.0
    assert done["last_metrics"]["val_accuracy"] > 0.5  # a linearly separable target


def test_a_run_whose_upload_was_deleted_fails_saying_so(stack: str) -> None:
    rows = ["x1,x2,y"] + [f"{i},{i % 7},{i % 2}" for i in range(30)]
    dataset = httpx.post(
        f"{stack}/api/datasets", content="\n".join(rows).encode(), timeout=30
    ).json()
    spec = make_spec(dataset={"name": "upload", "n_samples": None, "upload": {"id": dataset["id"]}})
    with ReglabClient(stack) as client:
        # The one slot trains a long run, so the next stays queued while its upload goes.
        busy = client.submit(make_spec(name="busy", training={"epochs": 1000}))
        wait_for(lambda: client.get(busy["id"])["status"] == "running", timeout=60)
        run = client.submit(spec)
        assert httpx.delete(f"{stack}/api/datasets/{dataset['id']}", timeout=10).status_code == 204
        client.cancel(busy["id"])
        list(client.events(run["id"]))
        done = client.get(run["id"])
    assert done["status"] == "failed"
    assert "cannot fetch the dataset" in done["error"]
    assert "not found" in done["error"]
