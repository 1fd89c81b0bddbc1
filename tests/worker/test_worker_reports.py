"""What workers report of their slots reaches GET /api/workers (the workers page's data),
on both databases: each slot's GPU or CPU, the runs it trains (a pack's members), why it
waits; silent and stopped workers; workers older than five minutes left out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import get_engine
from app.models import utcnow
from tests.factories import make_spec
from tests.worker.standin_smi import H100, uuid

GPU0 = {
    "index": 0,
    "uuid": uuid(0),
    "name": H100,
    "memory_used_mb": 70213.0,
    "memory_total_mb": 81559.0,
    "utilization_percent": 97.0,
}


@pytest.fixture
def api(any_db: str) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as client:
        yield client


def report(client: TestClient, worker_id: str, slots: list[dict[str, Any]], **extra: Any) -> None:
    body = {"worker_id": worker_id, "host": f"{worker_id}.lab", "slots": slots, **extra}
    response = client.post("/api/worker/report", json=body)
    assert response.status_code == 204, response.text


def slot(name: str, state: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "state": state, **fields}


def claim(client: TestClient, worker_id: str, device: str) -> dict[str, Any]:
    response = client.post(
        "/api/worker/claim",
        json={"worker_id": worker_id, "host": f"{worker_id}.lab", "slot": device, "wait": 0},
    )
    assert response.status_code == 200, response.text
    return response.json()


def backdate(worker_id: str, seconds: int) -> None:
    """Move a worker's last sighting back in time instead of waiting."""
    with get_engine().begin() as connection:
        rows = connection.execute(
            text("SELECT id, last_seen FROM worker WHERE id = :id"), {"id": worker_id}
        ).all()
        assert len(rows) == 1
        connection.execute(
            text("UPDATE worker SET last_seen = :seen WHERE id = :id"),
            {"seen": utcnow() - timedelta(seconds=seconds), "id": worker_id},
        )


def test_a_report_shows_each_slot_s_gpu_run_and_why_it_waits(api: TestClient) -> None:
    run_id = api.post("/api/experiments", json=make_spec(name="on-gpu-0")).json()["id"]
    claim(api, "gpu-box", f"GPU 0: {H100}")
    report(
        api,
        "gpu-box",
        [
            slot(f"GPU 0: {H100}", "training", experiment_ids=[run_id], gpu=GPU0),
            slot(
                f"GPU 1: {H100}",
                "waiting",
                reason="GPU busy: another process (pid 4242, 70000 MiB) uses it",
                gpu={**GPU0, "index": 1, "uuid": uuid(1)},
            ),
        ],
        plugins=["my_penalty", "my_penalty", "a_penalty"],
        devices=[f"GPU 0: {H100}", f"GPU 1: {H100}"],
    )
    report(api, "cpu-box", [slot("CPU", "waiting", reason="no work")])

    workers = api.get("/api/workers").json()
    assert [worker["id"] for worker in workers] == ["cpu-box", "gpu-box"]  # latest first
    cpu, gpu = workers
    assert cpu["state"] == "live" and cpu["devices"] == ["CPU"]
    assert cpu["slots"] == [
        {
            "name": "CPU",
            "state": "waiting",
            "reason": "no work",
            "gpu": None,
            "pack_id": None,
            "runs": [],
        }
    ]
    assert gpu["host"] == "gpu-box.lab" and gpu["plugins"] == ["a_penalty", "my_penalty"]
    assert gpu["running"] == [{"id": run_id, "device": None}]
    training, waiting = gpu["slots"]
    assert training["gpu"] == GPU0
    assert training["runs"] == [{"id": run_id, "name": "on-gpu-0", "status": "running"}]
    assert waiting["state"] == "waiting" and waiting["runs"] == []
    assert waiting["reason"] == "GPU busy: another process (pid 4242, 70000 MiB) uses it"
    assert waiting["gpu"]["uuid"] == uuid(1)
    assert 0 <= gpu["seconds_since_seen"] < 30


def test_a_pack_s_members_are_listed_on_its_slot(api: TestClient) -> None:
    sweep = api.post(
        "/api/sweeps",
        json={
            "name": "packed",
            "base": make_spec(),
            "axes": [{"path": "model.layers[*].regularizer.l2", "values": [0.001, 0.01, 0.1]}],
        },
    )
    assert sweep.status_code == 201, sweep.text
    claimed = claim(api, "packer", "CPU")
    assert claimed["pack"] is not None, "the sweep's points should train as one pack"
    members = [member["experiment_id"] for member in claimed["pack"]["members"]]
    report(
        api,
        "packer",
        [slot("CPU", "training", experiment_ids=members, pack_id=claimed["pack"]["id"])],
    )
    (shown,) = api.get("/api/workers").json()[0]["slots"]
    assert shown["pack_id"] == claimed["pack"]["id"]
    assert [run["id"] for run in shown["runs"]] == members
    assert {run["status"] for run in shown["runs"]} == {"running"}


def test_silent_stopped_and_gone_workers(api: TestClient) -> None:
    report(api, "quiet", [slot("CPU", "waiting", reason="no work")])
    report(api, "done", [slot("CPU", "stopped")])
    report(api, "gone", [slot("CPU", "waiting", reason="no work")])
    backdate("quiet", 90)
    backdate("gone", 6 * 60)
    states = {worker["id"]: worker["state"] for worker in api.get("/api/workers").json()}
    assert states == {"quiet": "silent", "done": "stopped"}  # gone: seen too long ago
    older = api.get("/api/workers", params={"seen_within": 3600}).json()
    assert {worker["id"]: worker["state"] for worker in older}["gone"] == "silent"
    # A report brings a silent worker back.
    report(api, "quiet", [slot("CPU", "training", experiment_ids=[])])
    states = {worker["id"]: worker["state"] for worker in api.get("/api/workers").json()}
    assert states["quiet"] == "live"


def test_a_worker_that_only_claims_is_listed_without_slots(api: TestClient) -> None:
    """Workers of earlier versions send no reports: their claims keep them listed."""
    api.post("/api/experiments", json=make_spec())
    claim(api, "old-worker", "CPU")
    (worker,) = api.get("/api/workers").json()
    assert (worker["devices"], worker["slots"], worker["state"]) == (["CPU"], [], "live")
    # A later claim keeps the slots it reported (a claim does not touch them).
    report(api, "old-worker", [slot("CPU", "waiting", reason="no work")])
    assert api.post(
        "/api/worker/claim",
        json={"worker_id": "old-worker", "host": "h", "slot": "CPU", "wait": 0},
    ).status_code in (200, 204)
    assert api.get("/api/workers").json()[0]["slots"][0]["reason"] == "no work"


def test_a_slot_s_deleted_run_is_said_so(api: TestClient) -> None:
    report(api, "w", [slot("CPU", "training", experiment_ids=[987654])])
    runs = api.get("/api/workers").json()[0]["slots"][0]["runs"]
    assert runs == [{"id": 987654, "name": "#987654", "status": "deleted"}]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"slots": [slot("CPU", "dancing")]}, "slots.0.state"),
        ({"slots": [slot("CPU", "training", experiment_ids=[0])]}, "slots.0.experiment_ids.0"),
        ({"slots": [slot("GPU", "waiting", gpu={**GPU0, "utilization_percent": 101})]}, None),
        ({"slots": [slot("CPU", "waiting", colour="red")]}, "slots.0.colour"),
        ({"worker_id": "has space"}, "worker_id"),
        ({"slots": "CPU"}, "slots"),
    ],
)
def test_a_bad_report_is_refused_naming_the_field(
    api: TestClient, change: dict[str, Any], field: str | None
) -> None:
    body = {"worker_id": "w", "host": "h", "slots": [slot("CPU", "waiting")], **change}
    response = api.post("/api/worker/report", json=body)
    assert response.status_code == 422, response.text
    fields = [error.get("field") for error in response.json()["detail"]]
    assert (field or "slots.0.gpu.utilization_percent") in fields


def test_openapi_documents_the_report_and_the_workers(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    report_call = document["paths"]["/api/worker/report"]["post"]
    assert "204" in report_call["responses"]
    workers = document["paths"]["/api/workers"]["get"]
    assert [parameter["name"] for parameter in workers["parameters"]] == ["seen_within"]
    schemas = document["components"]["schemas"]
    assert {"state", "slots", "plugins", "seconds_since_seen"} <= set(
        schemas["WorkerOut"]["properties"]
    )
    assert {"gpu", "runs", "reason"} <= set(schemas["SlotOut"]["properties"])
