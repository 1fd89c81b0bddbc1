"""Per-batch series: at most `max_points` buckets per series, each with min, max and mean
(a spike survives as its bucket's maximum), exact data below the limit, and every point
in the CSV; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.db import session_scope
from app.services import metrics, scripts

SPIKE_STEP, SPIKE = 3217, 987.654321


@pytest.fixture
def api(any_db: str) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as client:
        yield client


def new_run(api: TestClient) -> int:
    response = api.post("/api/runs", json={"name": "batches", "script": {"log_every": "batch"}})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def noisy_loss(steps: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1.0 / np.sqrt(np.arange(steps) + 1.0) + rng.normal(0, 0.01, steps)


def upload(api: TestClient, run_id: int, points: list[dict[str, Any]]) -> None:
    for start in range(0, len(points), 5000):
        response = api.post(
            f"/api/runs/{run_id}/batches", json={"points": points[start : start + 5000]}
        )
        assert response.status_code == 200, response.text


def test_a_long_series_is_bucketed_and_its_spike_survives(api: TestClient) -> None:
    run_id = new_run(api)
    steps = 5400
    loss, accuracy = noisy_loss(steps), np.linspace(0.1, 0.99, steps)
    loss[SPIKE_STEP] = SPIKE
    points = [
        {"step": step, "values": {"loss": float(loss[step]), "accuracy": float(accuracy[step])}}
        for step in range(steps)
    ]
    upload(api, run_id, points)

    body = api.get(f"/api/experiments/{run_id}/batches").json()
    assert body["max_points"] == 1000 and set(body["series"]) == {"loss", "accuracy"}
    series = body["series"]["loss"]
    buckets = len(series["step"])
    assert 900 <= buckets <= 1000
    assert all(len(series[key]) == buckets for key in ("last_step", "min", "max", "mean", "count"))
    assert series["points"] == sum(series["count"]) == steps
    # The buckets tile the steps in order, each a run of consecutive steps.
    assert series["step"][0] == 0 and series["last_step"][-1] == steps - 1
    assert all(b == a + 1 for a, b in zip(series["last_step"], series["step"][1:], strict=False))
    # The spike is its bucket's maximum, exactly; no mean or sample would have kept it.
    spiked = [
        i for i, first in enumerate(series["step"]) if first <= SPIKE_STEP <= series["last_step"][i]
    ]
    assert len(spiked) == 1
    assert series["max"][spiked[0]] == SPIKE and max(series["max"]) == SPIKE
    assert series["mean"][spiked[0]] < SPIKE / 2
    # Each bucket's numbers are those of its own points.
    for index in (0, 417, buckets - 1):
        own = loss[series["step"][index] : series["last_step"][index] + 1]
        assert series["min"][index] == pytest.approx(own.min(), abs=0)
        assert series["max"][index] == pytest.approx(own.max(), abs=0)
        assert series["mean"][index] == pytest.approx(own.mean(), rel=1e-9)
        assert series["count"][index] == len(own)

    few = api.get(f"/api/experiments/{run_id}/batches", params={"max_points": 50}).json()
    assert len(few["series"]["loss"]["step"]) == 50 and max(few["series"]["loss"]["max"]) == SPIKE


def test_short_series_come_back_exact(api: TestClient) -> None:
    run_id = new_run(api)
    points = [{"step": step * 10, "values": {"loss": 1.0 / (step + 1)}} for step in range(300)]
    points += [{"step": 5, "values": {"lr": 0.1}}]
    upload(api, run_id, points)
    body = api.get(f"/api/experiments/{run_id}/batches").json()
    loss = body["series"]["loss"]
    assert loss["step"] == loss["last_step"] == [step * 10 for step in range(300)]
    assert loss["min"] == loss["max"] == loss["mean"] == [1.0 / (s + 1) for s in range(300)]
    assert loss["count"] == [1] * 300
    assert body["series"]["lr"]["step"] == [5]

    only = api.get(f"/api/experiments/{run_id}/batches", params={"names": "lr"}).json()
    assert list(only["series"]) == ["lr"]


def test_a_run_without_batches_has_no_series(api: TestClient) -> None:
    run_id = new_run(api)
    assert api.get(f"/api/experiments/{run_id}/batches").json()["series"] == {}
    assert api.get(f"/api/experiments/{run_id}/batches.csv").text == "step\n"
    assert api.get("/api/experiments/999999/batches").status_code == 404
    assert api.get("/api/experiments/999999/batches.csv").status_code == 404


def test_the_csv_holds_every_point(api: TestClient) -> None:
    run_id = new_run(api)
    steps = 6000
    loss = noisy_loss(steps, seed=1)
    loss[SPIKE_STEP] = SPIKE
    points: list[dict[str, Any]] = [
        {"step": step, "values": {"loss": float(loss[step])}} for step in range(steps)
    ]
    for step in range(0, steps, 100):  # a second series, logged every 100 steps
        points[step]["values"]["lr"] = 0.001 * (1 + step)
    upload(api, run_id, points)

    response = api.get(f"/api/experiments/{run_id}/batches.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["step", "loss", "lr"]
    assert len(rows) == steps + 1
    assert [int(row[0]) for row in rows[1:]] == list(range(steps))
    assert [float(row[1]) for row in rows[1:]] == [float(value) for value in loss]  # exact
    assert float(rows[1 + SPIKE_STEP][1]) == SPIKE
    lr = {int(row[0]): float(row[2]) for row in rows[1:] if row[2]}
    assert lr == {step: 0.001 * (1 + step) for step in range(0, steps, 100)}


def test_bucketing_bounds_100k_points(api: TestClient) -> None:
    """A long run's worth (50k steps of 2 series: 100k points) written by the service."""
    run_id = new_run(api)
    steps = 50_000
    loss = noisy_loss(steps, seed=2)
    loss[37_777] = SPIKE
    with session_scope() as session:
        for start in range(0, steps, 10_000):
            chunk = [
                (step, {"loss": float(loss[step]), "acc": step / steps})
                for step in range(start, start + 10_000)
            ]
            scripts.add_steps(session=session, experiment_id=run_id, points=chunk, lease_seconds=60)
    with session_scope(read_only=True) as session:
        found = metrics.bucketed_steps(session=session, experiment_id=run_id, max_points=1000)
    assert set(found) == {"acc", "loss"}
    for buckets in found.values():
        assert len(buckets.step) == 1000 and buckets.points == steps
        assert set(buckets.count) == {50}
    assert max(found["loss"].max) == SPIKE
    assert found["acc"].min[0] == 0.0 and math.isclose(found["acc"].max[-1], (steps - 1) / steps)


def test_reading_parameters_are_validated(api: TestClient) -> None:
    run_id = new_run(api)
    path = f"/api/experiments/{run_id}/batches"
    for params in ({"max_points": 0}, {"max_points": 10**6}, {"names": "bad name"}, {"names": ""}):
        response = api.get(path, params=params)
        assert response.status_code == 422, params
        field = next(iter(params))
        assert response.json()["detail"][0]["field"] == field
