"""Packs through the API on real databases: which sweep runs pack, a pack claimed,
heartbeated, uploaded and retried as one job, each member still its own run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.services import packs
from app.settings import get_settings
from app.spec import ExperimentSpec
from tests.factories import make_spec

L2 = "model.layers[*].regularizer.l2"
WORKER = {"worker_id": "w", "host": "h", "devices": ["CPU"], "slot": "CPU", "wait": 0}


@pytest.fixture
def api(any_db: str) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def sweep(api: TestClient, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "packed",
        "base": make_spec(),
        "axes": [{"path": L2, "values": [0, 1e-4, 1e-3]}],
    }
    body.update(changes)
    response = api.post("/api/sweeps", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def claim(api: TestClient) -> dict[str, Any]:
    response = api.post("/api/worker/claim", json=WORKER)
    assert response.status_code == 200, response.text
    return response.json()


def points(runs: list[int], epoch: int, **values: float) -> list[dict[str, Any]]:
    return [
        {"experiment_id": run, "epoch": epoch, "values": {"loss": 1.0, **values}} for run in runs
    ]


def test_a_lambda_sweep_packs_per_seed_and_the_rest_trains_alone(api: TestClient) -> None:
    """3 λ x 2 seeds: 2 packs of 3; two learning rates x 3 λ: 2 packs; pack false: none."""
    body = sweep(api, seeds=2)
    runs = body["runs"]
    by_pack: dict[int, list[int]] = {}
    for run in runs:
        assert run["pack_id"] is not None
        by_pack.setdefault(run["pack_id"], []).append(run["seed"])
    assert sorted(by_pack.values()) == [[0, 0, 0], [1, 1, 1]]
    one = api.get(f"/api/experiments/{runs[0]['id']}").json()
    assert one["pack"] == {"id": runs[0]["pack_id"], "members": 3, "index": 0}

    mixed = sweep(
        api,
        axes=[
            {"path": "training.learning_rate", "values": [1e-3, 1e-2]},
            {"path": L2, "values": [0, 1e-4, 1e-3]},
        ],
    )
    assert len({run["pack_id"] for run in mixed["runs"]}) == 2
    unpacked = sweep(api, pack=False)
    assert unpacked["pack"] is False
    assert {run["pack_id"] for run in unpacked["runs"]} == {None}
    listed = api.get("/api/experiments", params={"limit": 500}).json()["items"]
    assert all(item["pack"] is None for item in listed if item["sweep_id"] == unpacked["id"])


def test_the_pack_plan_splits_evenly_and_leaves_plugins_alone() -> None:
    def spec(l2: float, plugin: bool = False) -> ExperimentSpec:
        layer: dict[str, Any] = {
            "type": "dense",
            "units": 8,
            "regularizer": {"kind": "l2", "l2": l2},
        }
        if plugin:
            layer["regularizer"] = {"kind": "plugin", "plugin": "orthogonal"}
        return ExperimentSpec.model_validate(make_spec(model={"layers": [layer]}))

    specs = [spec(i / 100) for i in range(7)] + [spec(0, plugin=True)] * 2
    plan = packs.plan(specs, max_pack=3)
    assert plan == [[0, 1, 2], [3, 4], [5, 6]]  # 7 by at most 3: 3 + 2 + 2
    assert packs.plan(specs[:1], max_pack=32) == []  # one run is not a pack


def test_max_pack_bounds_the_members(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGLAB_MAX_PACK", "2")
    get_settings.cache_clear()
    body = sweep(api, axes=[{"path": L2, "values": [0, 1e-4, 1e-3, 1e-2, 1e-1]}])
    sizes = sorted(
        sum(run["pack_id"] == pack for run in body["runs"])
        for pack in {run["pack_id"] for run in body["runs"]}
    )
    assert sizes == [1, 2, 2]  # 5 by at most 2: 2 + 2 + 1, the one left trains alone


def test_a_pack_is_claimed_uploaded_heartbeated_and_stopped_as_one_job(api: TestClient) -> None:
    body = sweep(api)
    ids = [run["id"] for run in body["runs"]]
    job = claim(api)
    pack = job["pack"]
    assert pack is not None and [member["experiment_id"] for member in pack["members"]] == ids
    assert [member["index"] for member in pack["members"]] == [0, 1, 2]
    assert [
        member["spec"]["model"]["layers"][0]["regularizer"]["l2"] for member in pack["members"]
    ] == [
        0,
        1e-4,
        1e-3,
    ]
    token = job["lease_token"]
    assert api.post("/api/worker/claim", json=WORKER).status_code == 204  # all claimed
    started = api.post(
        f"/api/worker/packs/{pack['id']}/started", json={"lease_token": token, "device": "CPU"}
    )
    assert started.status_code == 204
    assert {api.get(f"/api/experiments/{i}").json()["device"] for i in ids} == {"CPU"}

    # One request stores every member's epoch, and a resend stores nothing twice.
    upload = {"lease_token": token, "points": points(ids, 0, val_data_loss=0.5)}
    first = api.post("/api/worker/metrics", json=upload).json()
    assert first["new_epochs"] == {str(i): [0] for i in ids} and first["stopped"] == []
    again = api.post("/api/worker/metrics", json=upload).json()
    assert again["new_epochs"] == {}
    for i in ids:
        series = api.get(f"/api/experiments/{i}/metrics").json()
        assert series["epochs"] == [0] and series["series"]["loss"] == [1.0]

    # Cancel one member: the heartbeat and the next upload name it; the others go on.
    assert api.post(f"/api/experiments/{ids[1]}/cancel").status_code == 200
    beat = api.post(f"/api/worker/packs/{pack['id']}/heartbeat", json={"lease_token": token})
    assert beat.json() == {"cancel": False, "stopped": [ids[1]]}
    second = api.post(
        "/api/worker/metrics", json={"lease_token": token, "points": points(ids, 1)}
    ).json()
    assert second["stopped"] == [ids[1]] and set(second["new_epochs"]) == {str(ids[0]), str(ids[2])}
    assert api.get(f"/api/experiments/{ids[1]}/metrics").json()["epochs"] == [0]

    # Members finish one by one; when none is left running the pack is over.
    for i in (ids[0], ids[2]):
        done = api.post(
            f"/api/worker/experiments/{i}/finish",
            json={"lease_token": token, "status": "succeeded", "test_metrics": {"test_loss": 1}},
        )
        assert done.status_code == 204
    beat = api.post(f"/api/worker/packs/{pack['id']}/heartbeat", json={"lease_token": token})
    assert beat.json()["cancel"] is True
    statuses = [api.get(f"/api/experiments/{i}").json()["status"] for i in ids]
    assert statuses == ["succeeded", "cancelled", "succeeded"]


def test_a_pack_whose_child_died_is_retried_as_a_pack(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGLAB_MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    body = sweep(api)
    ids = [run["id"] for run in body["runs"]]
    job = claim(api)
    token = job["lease_token"]
    api.post("/api/worker/metrics", json={"lease_token": token, "points": points(ids, 0)})
    api.post("/api/worker/metrics", json={"lease_token": token, "points": points(ids[:2], 1)})
    # The first member finished before the child died; the others are retried together.
    api.post(
        f"/api/worker/experiments/{ids[0]}/finish",
        json={"lease_token": token, "status": "succeeded"},
    )
    for i in ids:
        api.post(
            f"/api/worker/experiments/{i}/finish",
            json={"lease_token": token, "status": "failed", "error": "died", "retryable": True},
        )
    again = claim(api)
    assert again["lease_token"] != token
    assert [member["experiment_id"] for member in again["pack"]["members"]] == ids[1:]
    assert {member["attempt"] for member in again["pack"]["members"]} == {2}
    # The retry starts from epoch 0: nothing of the first attempt is kept twice.
    for i in ids[1:]:
        assert api.get(f"/api/experiments/{i}/metrics").json()["epochs"] == []
    api.post(
        "/api/worker/metrics",
        json={"lease_token": again["lease_token"], "points": points(ids[1:], 0)},
    )
    for i in ids[1:]:
        assert api.get(f"/api/experiments/{i}/metrics").json()["epochs"] == [0]
    assert api.get(f"/api/experiments/{ids[0]}").json()["status"] == "succeeded"


def test_a_token_that_holds_none_of_the_runs_is_refused(api: TestClient) -> None:
    body = sweep(api)
    ids = [run["id"] for run in body["runs"]]
    claim(api)
    refused = api.post(
        "/api/worker/metrics", json={"lease_token": "x" * 32, "points": points(ids, 0)}
    )
    assert refused.status_code == 409
    beat = api.post("/api/worker/packs/999999/heartbeat", json={"lease_token": "x" * 32})
    assert beat.status_code == 409


def test_a_lagging_member_is_pruned_alone_and_told_so(api: TestClient) -> None:
    body = sweep(api, axes=[{"path": L2, "values": [1e-4, 1e-3, 1e-1]}], prune=True, prune_after=1)
    ids = [run["id"] for run in body["runs"]]
    token = claim(api)["lease_token"]
    # Each judged against the median of the two others: 2.8 > median(0.5, 0.55).
    curves = {ids[0]: 0.5, ids[1]: 0.55, ids[2]: 2.8}
    for epoch in range(2):
        upload = {
            "lease_token": token,
            "points": [
                {"experiment_id": run, "epoch": epoch, "values": {"val_data_loss": value}}
                for run, value in curves.items()
            ],
        }
        answer = api.post("/api/worker/metrics", json=upload).json()
    assert answer["stopped"] == [ids[2]]  # pruned by this very upload
    statuses = [api.get(f"/api/experiments/{i}").json()["status"] for i in ids]
    assert statuses == ["running", "running", "pruned"]
