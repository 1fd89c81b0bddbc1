"""The script-run API (what ReglabCallback calls): create, upload epochs and batches
idempotently, heartbeat, finish, cancel from the dashboard, the lease that fails a script
gone quiet, and bad input answered 422 with the field's path; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from app.db import session_scope
from app.models import BatchMetric, Event, Metric, utcnow
from app.services import queue
from tests.factories import make_spec

SCRIPT: dict[str, Any] = {
    "task": "classification",
    "epochs": 3,
    "batch_size": 32,
    "optimizer": "Adam",
    "learning_rate": 0.001,
    "params": 1234,
    "layers": [
        {"name": "dense", "type": "Dense", "units": 16, "regularizer": "L2 0.01"},
        {"name": "dropout", "type": "Dropout", "dropout": 0.5},
    ],
    "regularization": "L2 0.01 · dropout 0.5",
    "dataset": "digits",
    "host": "laptop",
    "command": "python train.py",
    "framework": "keras 3.15 (tensorflow)",
    "log_every": "batch",
}


@pytest.fixture
def api(any_db: str) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as client:
        yield client


def create(api: TestClient, name: str = "my script") -> dict[str, Any]:
    response = api.post("/api/runs", json={"name": name, "script": SCRIPT})
    assert response.status_code == 201, response.text
    return response.json()


def epochs(*numbers: int) -> dict[str, Any]:
    return {
        "points": [
            {"epoch": n, "values": {"loss": 1.0 / (n + 1), "val_loss": 2.0 / (n + 1)}, "time": 1.0}
            for n in numbers
        ]
    }


def test_a_script_run_is_created_running_with_its_summary(api: TestClient) -> None:
    run = create(api)
    assert run["status"] == "running" and run["source"] == "script"
    assert run["spec"] is None and run["script"]["layers"][1]["dropout"] == 0.5
    assert run["regularization"] == "L2 0.01 · dropout 0.5"
    assert run["epochs_total"] == 3 and run["started_at"] is not None
    listed = api.get("/api/experiments").json()["items"]
    assert [item["id"] for item in listed] == [run["id"]]
    with session_scope() as session:
        kinds = session.exec(select(Event.kind).where(Event.experiment_id == run["id"])).all()
    assert list(kinds) == ["status"]


def test_epochs_are_stored_once_whatever_the_resends(api: TestClient) -> None:
    run = create(api)
    path = f"/api/runs/{run['id']}/metrics"
    assert api.post(path, json=epochs(0, 1)).json()["new_epochs"] == [0, 1]
    assert api.post(path, json=epochs(1, 2)).json()["new_epochs"] == [2]
    assert api.post(path, json=epochs(0, 1, 2)).json()["new_epochs"] == []
    series = api.get(f"/api/experiments/{run['id']}/metrics").json()
    assert series["epochs"] == [0, 1, 2]
    assert series["series"]["loss"] == [1.0, 0.5, 1.0 / 3]
    read = api.get(f"/api/experiments/{run['id']}").json()
    assert read["epochs_done"] == 3 and read["last_metrics"]["val_loss"] == pytest.approx(2 / 3)
    with session_scope() as session:
        metric_events = session.exec(
            select(Event.epoch).where(Event.experiment_id == run["id"], Event.kind == "metrics")
        ).all()
        rows = session.exec(select(Metric).where(Metric.experiment_id == run["id"])).all()
    assert sorted(e for e in metric_events if e is not None) == [0, 1, 2]
    assert len(rows) == 6


def test_batches_are_stored_once_whatever_the_resends(api: TestClient) -> None:
    run = create(api)
    path = f"/api/runs/{run['id']}/batches"
    points = [{"step": step, "values": {"loss": float(step)}} for step in range(10)]
    assert api.post(path, json={"points": points}).json() == {"stored": 10}
    assert api.post(path, json={"points": points[5:]}).json() == {"stored": 5}
    with session_scope() as session:
        steps = session.exec(
            select(BatchMetric.step).where(BatchMetric.experiment_id == run["id"])
        ).all()
    assert sorted(steps) == list(range(10))


def test_finish_is_final_and_idempotent(api: TestClient) -> None:
    run = create(api)
    path = f"/api/runs/{run['id']}"
    api.post(f"{path}/metrics", json=epochs(0)).raise_for_status()
    done = api.post(f"{path}/finish", json={"status": "succeeded"})
    assert done.status_code == 200 and done.json()["status"] == "succeeded"
    assert done.json()["finished_at"] is not None
    again = api.post(f"{path}/finish", json={"status": "failed", "error": "late"})
    assert again.json()["status"] == "succeeded" and again.json()["error"] is None
    late = api.post(f"{path}/metrics", json=epochs(1))
    assert late.status_code == 409 and "succeeded" in late.json()["detail"]
    assert (
        api.post(f"{path}/batches", json={"points": [{"step": 0, "values": {"a": 1}}]}).status_code
        == 409
    )


def test_a_failed_script_keeps_its_error(api: TestClient) -> None:
    run = create(api)
    failed = api.post(
        f"/api/runs/{run['id']}/finish",
        json={"status": "failed", "error": "ValueError: bad shapes", "error_epoch": 2},
    ).json()
    assert (failed["status"], failed["error"], failed["error_epoch"]) == (
        "failed",
        "ValueError: bad shapes",
        2,
    )


def test_cancel_from_the_dashboard_tells_the_script_to_stop(api: TestClient) -> None:
    run = create(api)
    beat = api.post(f"/api/runs/{run['id']}/heartbeat").json()
    assert beat["cancel"] is False and beat["status"] == "running" and beat["lease_seconds"] > 0
    api.post(f"/api/experiments/{run['id']}/cancel").raise_for_status()
    beat = api.post(f"/api/runs/{run['id']}/heartbeat").json()
    assert beat == {**beat, "cancel": True, "status": "cancelled"}
    assert api.post(f"/api/runs/{run['id']}/metrics", json=epochs(0)).status_code == 409
    # The script's own finish afterwards leaves the run cancelled.
    finished = api.post(f"/api/runs/{run['id']}/finish", json={"status": "succeeded"})
    assert finished.json()["status"] == "cancelled"


def test_a_script_that_goes_quiet_fails_when_its_lease_runs_out(api: TestClient) -> None:
    quiet, talking = create(api, "quiet"), create(api, "talking")
    later = utcnow() + timedelta(hours=1)
    with session_scope() as session:
        # The talking one uploads "in an hour": its lease is renewed past the sweep.
        from app.models import Experiment

        row = session.get(Experiment, talking["id"])
        assert row is not None
        row.lease_expires_at = later + timedelta(minutes=1)
        session.add(row)
        session.commit()
        expired = queue.sweep_expired(session=session, now=later)
    assert expired == [quiet["id"]]
    read = api.get(f"/api/experiments/{quiet['id']}").json()
    assert read["status"] == "failed" and read["error"]
    assert api.get(f"/api/experiments/{talking['id']}").json()["status"] == "running"


def test_each_upload_renews_the_lease(api: TestClient) -> None:
    from app.models import Experiment

    run = create(api)

    def expires() -> Any:
        with session_scope() as session:
            row = session.get(Experiment, run["id"])
            assert row is not None
            return row.lease_expires_at

    first = expires()
    api.post(f"/api/runs/{run['id']}/metrics", json=epochs(0)).raise_for_status()
    second = expires()
    api.post(
        f"/api/runs/{run['id']}/batches", json={"points": [{"step": 0, "values": {"loss": 1}}]}
    ).raise_for_status()
    third = expires()
    api.post(f"/api/runs/{run['id']}/heartbeat").raise_for_status()
    assert first <= second <= third <= expires()
    assert expires() > utcnow()


def test_queued_runs_and_missing_ids_are_not_script_runs(api: TestClient) -> None:
    queued = api.post("/api/experiments", json=make_spec()).json()
    for path in ("metrics", "batches", "heartbeat", "finish"):
        body = {
            "metrics": epochs(0),
            "batches": {"points": [{"step": 0, "values": {"loss": 1.0}}]},
            "heartbeat": None,
            "finish": {"status": "succeeded"},
        }[path]
        for run_id in (queued["id"], 999_999):
            response = api.post(f"/api/runs/{run_id}/{path}", json=body)
            assert response.status_code == 404, (path, run_id, response.text)
    assert api.get(f"/api/experiments/{queued['id']}").json()["status"] == "queued"


def fields(response: Any) -> list[str]:
    assert response.status_code == 422, (response.status_code, response.text[:300])
    return [error["field"] for error in response.json()["detail"]]


def post_text(api: TestClient, path: str, text: str) -> Any:
    return api.post(path, content=text, headers={"Content-Type": "application/json"})


def test_bad_input_is_422_with_the_field_path(api: TestClient) -> None:
    run = create(api)
    runs = f"/api/runs/{run['id']}"
    bad_script = {**SCRIPT, "layers": [{"name": "d", "type": "Dropout", "dropout": 2}]}
    assert fields(api.post("/api/runs", json={"name": "x", "script": bad_script})) == [
        "script.layers.0.dropout"
    ]
    assert fields(api.post("/api/runs", json={"name": "", "script": SCRIPT})) == ["name"]
    assert fields(api.post("/api/runs", json={"name": "a\x00b"})) == ["name"]
    refused = fields(api.post("/api/runs", json={"name": "x", "script": {"log_every": "often"}}))
    assert refused and all(field.startswith("script.log_every") for field in refused)
    for constant in ("NaN", "Infinity", "-Infinity"):
        text = f'{{"points": [{{"step": 3, "values": {{"loss": {constant}}}}}]}}'
        assert fields(post_text(api, f"{runs}/batches", text)) == ["points.0.values"]
        text = f'{{"points": [{{"epoch": 0, "values": {{"loss": {constant}}}}}]}}'
        assert fields(post_text(api, f"{runs}/metrics", text)) == ["points.0.values"]
    for step in (-1, 10**9 + 1, 2**63):
        body = {"points": [{"step": step, "values": {"loss": 1.0}}]}
        assert fields(api.post(f"{runs}/batches", json=body)) == ["points.0.step"]
    too_many = {"points": [{"step": s, "values": {"l": 1.0}} for s in range(5001)]}
    assert fields(api.post(f"{runs}/batches", json=too_many)) == ["points"]
    assert fields(api.post(f"{runs}/batches", json={"points": []})) == ["points"]
    bad_name = {"points": [{"step": 0, "values": {"bad name": 1.0}}]}
    assert fields(api.post(f"{runs}/batches", json=bad_name))[0].startswith("points.0.values")
    assert fields(api.post(f"{runs}/finish", json={"status": "running"})) == ["status"]
    # Nothing of the refused uploads was stored, and the run still takes good ones.
    with session_scope() as session:
        stored = session.exec(
            select(col(BatchMetric.step)).where(BatchMetric.experiment_id == run["id"])
        ).all()
    assert stored == []
    assert api.post(f"{runs}/metrics", json=epochs(0)).status_code == 200


def test_ids_past_the_largest_json_integer_are_422_not_500(api: TestClient) -> None:
    """Ids are BIGINT: one past 32 bits names no run yet (404); one past 2**53 - 1 (what
    a JSON reader holds exactly), or 0, can name none (422) and never reaches a query."""
    for run_id in (0, 2**53, 2**63, 2**64):
        assert api.post(f"/api/runs/{run_id}/heartbeat").status_code == 422
        assert api.get(f"/api/experiments/{run_id}/batches").status_code == 422
    for run_id in (2**31, 2**53 - 1):
        assert api.post(f"/api/runs/{run_id}/heartbeat").status_code == 404
        assert api.get(f"/api/experiments/{run_id}/batches").status_code == 404


def test_deleting_a_finished_script_run_removes_its_batches(api: TestClient) -> None:
    run = create(api)
    path = f"/api/runs/{run['id']}"
    api.post(f"{path}/metrics", json=epochs(0)).raise_for_status()
    points = {"points": [{"step": step, "values": {"loss": 1.0}} for step in range(50)]}
    api.post(f"{path}/batches", json=points).raise_for_status()
    assert api.delete(f"/api/experiments/{run['id']}").status_code == 409  # still running
    api.post(f"{path}/finish", json={"status": "succeeded"}).raise_for_status()
    assert api.delete(f"/api/experiments/{run['id']}").status_code == 204
    with session_scope() as session:
        left = session.exec(
            select(BatchMetric.step).where(BatchMetric.experiment_id == run["id"])
        ).all()
    assert left == []
    assert api.get(f"/api/experiments/{run['id']}/batches").status_code == 404
