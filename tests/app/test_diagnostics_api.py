"""The diagnostics routes: histograms stored once per epoch under the lease, verdicts of
one run and of a page of runs, and the 404/409/422 answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.app.test_api import claim
from tests.factories import make_spec


def histogram(low: float = -1.0, bins: int = 4) -> dict[str, list[float]]:
    return {
        "edges": [low + 0.5 * index for index in range(bins + 1)],
        "counts": [float(index) for index in range(bins)],
    }


def post_histograms(client: TestClient, run: dict[str, Any], at: int, **extra: Any) -> Any:
    body = {
        "lease_token": run["lease_token"],
        "epoch": at,
        "layers": {"dense_0": histogram(), "output": histogram(-2.0, 3)},
        **extra,
    }
    return client.post(f"/api/worker/experiments/{run['experiment_id']}/histograms", json=body)


def upload_losses(client: TestClient, run: dict[str, Any], train: list[float], val: list[float]):
    points = [
        {"epoch": epoch, "values": {"data_loss": t, "val_data_loss": v}}
        for epoch, (t, v) in enumerate(zip(train, val, strict=True))
    ]
    response = client.post(
        f"/api/worker/experiments/{run['experiment_id']}/metrics",
        json={"lease_token": run["lease_token"], "points": points},
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def db_client(any_db: str) -> Iterator[TestClient]:
    """The app on SQLite and on PostgreSQL."""
    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def test_histograms_are_stored_once_per_epoch(db_client: TestClient) -> None:
    client = db_client
    client.post("/api/experiments", json=make_spec())
    run = claim(client)
    first = post_histograms(client, run, 0)
    assert first.status_code == 200 and first.json() == {"stored": True}
    assert post_histograms(client, run, 5).json() == {"stored": True}
    # A resend (say after a lost answer) changes nothing, even with other numbers.
    again = post_histograms(client, run, 0, layers={"dense_0": histogram(-9.0)})
    assert again.status_code == 200 and again.json() == {"stored": False}

    body = client.get(f"/api/experiments/{run['experiment_id']}/histograms").json()
    assert body["epochs"] == [0, 5]
    assert body["layers"]["dense_0"] == [histogram(), histogram()]
    assert body["layers"]["output"][1] == histogram(-2.0, 3)
    # The stream carries them too, after the status events.
    with client.stream("GET", f"/api/experiments/{run['experiment_id']}/events") as stream:
        text = ""
        for line in stream.iter_lines():
            text += line + "\n"
            if text.count("event: histogram") == 2 and line.startswith("data:"):
                break
    assert '"epoch":5' in text


def test_histograms_of_a_run_without_any(client: TestClient) -> None:
    run_id = client.post("/api/experiments", json=make_spec()).json()["id"]
    assert client.get(f"/api/experiments/{run_id}/histograms").json() == {
        "epochs": [],
        "layers": {},
    }


def test_histograms_need_the_lease(client: TestClient) -> None:
    client.post("/api/experiments", json=make_spec())
    run = claim(client)
    response = post_histograms(client, {**run, "lease_token": "not-the-token"}, 0)
    assert response.status_code == 409
    client.post(f"/api/experiments/{run['experiment_id']}/cancel")
    assert post_histograms(client, run, 0).status_code == 409
    assert client.get(f"/api/experiments/{run['experiment_id']}/histograms").json()["epochs"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"epoch": -1}, "epoch"),
        ({"layers": {"dense_0": {"edges": [0.0, 1.0, 2.0], "counts": [1.0]}}}, "layers.dense_0"),
        ({"layers": {"dense_0": {"edges": [1.0, 0.0], "counts": [1.0]}}}, "layers.dense_0"),
        (
            {"layers": {"dense_0": {"edges": [0.0, 1.0], "counts": [-1.0]}}},
            "layers.dense_0.counts.0",
        ),
        ({"layers": {"bad name!": histogram()}}, "layers.bad name!.[key]"),
        ({"lease_token": ""}, "lease_token"),
    ],
)
def test_bad_histograms_are_422_with_the_field(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    client.post("/api/experiments", json=make_spec())
    run = claim(client)
    response = post_histograms(client, run, 0, **change)
    assert response.status_code == 422, response.text
    fields = [error["field"] for error in response.json()["detail"]]
    assert fields and fields[0].startswith(field.split(".[")[0]), fields


def test_unknown_run_is_404(client: TestClient) -> None:
    assert client.get("/api/experiments/999/histograms").status_code == 404
    assert client.get("/api/experiments/999/verdict").status_code == 404
    missing = post_histograms(client, {"experiment_id": 999, "lease_token": "t"}, 0)
    assert missing.status_code in (404, 409)


OVERFIT_TRAIN = [1.0 - 0.04 * epoch for epoch in range(20)]
OVERFIT_VAL = [
    1.0 - 0.08 * epoch if epoch <= 6 else 0.52 + 0.05 * (epoch - 6) for epoch in range(20)
]


def test_verdict_of_a_run(client: TestClient) -> None:
    run_id = client.post("/api/experiments", json=make_spec()).json()["id"]
    assert client.get(f"/api/experiments/{run_id}/verdict").json()["verdict"] == "too_early"
    run = claim(client)
    upload_losses(client, run, OVERFIT_TRAIN, OVERFIT_VAL)
    body = client.get(f"/api/experiments/{run_id}/verdict").json()
    assert body["verdict"] == "overfitting"
    assert body["from_epoch"] == 6
    assert body["hint"] and body["reason"]


def test_verdicts_of_several_runs(client: TestClient) -> None:
    ids = [client.post("/api/experiments", json=make_spec()).json()["id"] for _ in range(3)]
    overfit, healthy = claim(client), claim(client)
    upload_losses(client, overfit, OVERFIT_TRAIN, OVERFIT_VAL)
    falling = [1.0 / (1 + epoch) for epoch in range(20)]
    upload_losses(client, healthy, falling, [value + 0.05 for value in falling])
    response = client.get("/api/verdicts", params={"ids": f"{ids[0]},{ids[1]},{ids[2]},77,{2**40}"})
    assert response.status_code == 200
    body = response.json()
    verdicts = {int(key): value["verdict"] for key, value in body["verdicts"].items()}
    assert verdicts == {ids[0]: "overfitting", ids[1]: "healthy", ids[2]: "too_early"}
    assert body["missing"] == [77, 2**40]


@pytest.mark.parametrize("ids", ["", "a", "1,,2", ",".join(["1"] * 101), "-1"])
def test_bad_verdict_ids_are_422(client: TestClient, ids: str) -> None:
    response = client.get("/api/verdicts", params={"ids": ids})
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["detail"]] == ["ids"]
