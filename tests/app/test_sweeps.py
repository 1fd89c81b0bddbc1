"""Sweeps through the API on real databases: queuing, reading, cancelling, pruning."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.db import get_engine
from app.models import Event, Experiment, Status
from app.services import metrics, queue
from tests.factories import make_spec

L2 = "model.layers[*].regularizer.l2"


@pytest.fixture
def api(any_db: str) -> Iterator[TestClient]:
    """The app on SQLite and on PostgreSQL."""
    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def sweep_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "l2 sweep",
        "base": make_spec(),
        "axes": [{"path": L2, "values": [0, 1e-4, 1e-3]}],
    }
    body.update(changes)
    return body


def test_a_grid_sweep_queues_one_run_per_point_and_seed(api: TestClient) -> None:
    response = api.post("/api/sweeps", json=sweep_body(seeds=2))
    assert response.status_code == 201, response.text
    sweep = response.json()
    assert sweep["name"] == "l2 sweep"
    assert sweep["mode"] == "grid" and sweep["seeds"] == 2 and sweep["prune"] is False
    assert sweep["labels"] == ["l2"]
    assert len(sweep["experiment_ids"]) == 6
    assert sweep["counts"] == {"queued": 6}
    runs = sweep["runs"]
    assert [run["name"] for run in runs[:2]] == [
        "l2 sweep · l2=0 · seed 0",
        "l2 sweep · l2=0 · seed 1",
    ]
    assert [run["point"][L2] for run in runs] == [0, 0, 1e-4, 1e-4, 1e-3, 1e-3]
    assert [run["seed"] for run in runs] == [0, 1] * 3
    # Seed repeats share a group; points do not.
    keys = [run["group_key"] for run in runs]
    assert keys[0] == keys[1] != keys[2] == keys[3] != keys[4] == keys[5]

    one = api.get(f"/api/experiments/{runs[4]['id']}").json()
    assert one["sweep_id"] == sweep["id"]
    assert one["spec"]["model"]["layers"][0]["regularizer"] == {
        "kind": "l2",
        "l1": None,
        "l2": 0.001,
        "smoothness": None,
        "plugin": None,
        "params": None,
    }
    assert one["spec"]["training"]["seed"] == 0
    assert api.get(f"/api/sweeps/{sweep['id']}").json()["runs"] == runs


def test_seed_repeats_are_a_sweep_without_axes(api: TestClient) -> None:
    base = make_spec(training={"epochs": 3, "seed": 40})
    sweep = api.post("/api/sweeps", json=sweep_body(base=base, axes=[], seeds=3)).json()
    assert [run["seed"] for run in sweep["runs"]] == [40, 41, 42]
    assert [run["name"] for run in sweep["runs"]] == [f"l2 sweep · seed {s}" for s in (40, 41, 42)]
    assert len({run["group_key"] for run in sweep["runs"]}) == 1


def test_a_random_sweep_draws_within_its_range(api: TestClient) -> None:
    body = sweep_body(
        axes=[{"path": "training.learning_rate", "low": 1e-4, "high": 1e-1, "scale": "log"}],
        mode="random",
        draws=8,
        prune=True,
        prune_after=2,
    )
    sweep = api.post("/api/sweeps", json=body).json()
    rates = [run["point"]["training.learning_rate"] for run in sweep["runs"]]
    assert len(rates) == 8 and len(set(rates)) == 8
    assert all(1e-4 <= rate <= 1e-1 for rate in rates)
    assert sweep["prune"] is True and sweep["prune_after"] == 2


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        (
            {"axes": [{"path": "model.layers[*].regularizer.l3", "values": [1]}]},
            ["axes", "0", "path"],
        ),
        ({"axes": [{"path": "name", "values": [1]}]}, ["axes", "0", "path"]),
        ({"axes": [{"path": "model.layers[3].dropout", "values": [0.1]}]}, ["axes", "0", "path"]),
        (
            {"axes": [{"path": "model.layers[0].dropout", "values": [0.1, 1.5]}]},
            ["axes", "0", "values", "1"],
        ),
        (
            {
                "axes": [{"path": L2, "low": 0, "high": 1, "scale": "log"}],
                "mode": "random",
                "draws": 3,
            },
            ["axes", "0", "low"],
        ),
        ({"axes": [{"path": L2, "low": 1e-4, "high": 1e-2}]}, ["axes", "0", "count"]),
        ({"axes": [{"path": L2, "values": [1e-3]}], "mode": "random"}, ["draws"]),
        (
            {
                "axes": [
                    {"path": L2, "values": list(range(50))},
                    {"path": "training.batch_size", "values": [8, 16, 32, 64, 128]},
                ]
            },
            ["axes"],
        ),
        ({"axes": [{"path": L2, "values": [1e-3]}], "seeds": 11}, ["seeds"]),
        (
            {"base": {**make_spec(), "dataset": {"name": "upload", "upload": {"id": 999}}}},
            ["base", "dataset", "upload", "id"],
        ),
    ],
)
def test_bad_sweeps_are_422_naming_the_field(api: TestClient, changes: dict, loc: list) -> None:
    response = api.post("/api/sweeps", json=sweep_body(**changes))
    assert response.status_code == 422, response.text
    assert ["body", *loc] in [error["loc"] for error in response.json()["detail"]]
    assert api.get("/api/experiments").json()["total"] == 0
    assert api.get("/api/sweeps").json()["total"] == 0


def test_list_read_and_cancel(api: TestClient) -> None:
    first = api.post("/api/sweeps", json=sweep_body(name="first")).json()
    second = api.post("/api/sweeps", json=sweep_body(name="second", axes=[], seeds=2)).json()
    listed = api.get("/api/sweeps").json()
    assert listed["total"] == 2
    assert [item["id"] for item in listed["items"]] == [second["id"], first["id"]]
    assert listed["items"][1]["experiment_ids"] == first["experiment_ids"]
    assert api.get("/api/sweeps/999").status_code == 404
    assert api.get("/api/sweeps/0").status_code == 422

    claimed = api.post(
        "/api/worker/claim", json={"worker_id": "w", "host": "h", "slot": "CPU", "wait": 0}
    ).json()
    assert claimed["experiment_id"] == first["experiment_ids"][0]
    cancelled = api.post(f"/api/sweeps/{first['id']}/cancel").json()
    assert cancelled["counts"] == {"cancelled": 3}
    heartbeat = api.post(
        f"/api/worker/experiments/{claimed['experiment_id']}/heartbeat",
        json={"lease_token": claimed["lease_token"]},
    ).json()
    assert heartbeat["cancel"] is True
    assert api.get(f"/api/sweeps/{second['id']}").json()["counts"] == {"queued": 2}


# --- pruning -------------------------------------------------------------------------


def claim_all(count: int) -> list[tuple[int, str]]:
    leases = []
    with Session(get_engine(), expire_on_commit=False) as session:
        for _ in range(count):
            row = queue.claim(
                session=session, worker_id="w", host="h", devices=["CPU"], lease_seconds=60
            )
            assert row is not None and row.lease_token is not None and row.id is not None
            leases.append((row.id, row.lease_token))
    return leases


def report(run: tuple[int, str], epoch: int, val_data_loss: float) -> list[int]:
    with Session(get_engine(), expire_on_commit=False) as session:
        return metrics.ingest(
            session=session,
            experiment_id=run[0],
            lease_token=run[1],
            points=[(epoch, {"data_loss": 0.5, "val_data_loss": val_data_loss}, None)],
        )


def statuses(ids: list[int]) -> list[str]:
    with Session(get_engine()) as session:
        return [str(session.get(Experiment, run_id).status) for run_id in ids]  # type: ignore[union-attr]


def test_a_run_worse_than_the_median_is_pruned(api: TestClient) -> None:
    # Runs claimed one by one (packed members are pruned alike: tests/app/test_packs.py).
    body = sweep_body(
        axes=[{"path": L2, "values": [1e-4, 1e-3, 1e-2, 1e-1]}],
        prune=True,
        prune_after=2,
        pack=False,
    )
    sweep = api.post("/api/sweeps", json=body).json()
    runs = claim_all(4)
    # Three runs improve; at epochs 0-1 nobody may be pruned, however bad.
    # Each judged at epoch 2 against those before it: 0.6 is not worse than median(0.7, 0.5).
    curves = [[1.0, 0.8, 0.7], [1.0, 0.7, 0.5], [1.1, 0.9, 0.6]]
    for run, curve in zip(runs[:3], curves, strict=True):
        for epoch, value in enumerate(curve):
            report(run, epoch, value)
    lagging = runs[3]
    report(lagging, 0, 3.0)
    report(lagging, 1, 2.9)
    assert statuses([lagging[0]]) == ["running"]
    report(lagging, 2, 2.8)  # best 2.8 vs the others' best by epoch 2: 0.7, 0.5, 0.6
    assert statuses([run for run, _ in runs]) == ["running"] * 3 + ["pruned"]

    detail = api.get(f"/api/sweeps/{sweep['id']}").json()
    pruned = detail["runs"][3]
    assert pruned["status"] == "pruned" and "median" in pruned["error"]
    heartbeat = api.post(
        f"/api/worker/experiments/{lagging[0]}/heartbeat", json={"lease_token": lagging[1]}
    ).json()
    assert heartbeat["cancel"] is True
    # Its further metrics are refused (the lease no longer holds a running run).
    with pytest.raises(queue.LeaseLost):
        report(lagging, 3, 2.7)
    with Session(get_engine()) as session:
        kinds = session.exec(
            select(Event.data).where(Event.experiment_id == lagging[0], Event.kind == "status")
        ).all()
    assert [data["status"] for data in kinds][-1] == "pruned"


def test_pruning_is_off_by_default_and_needs_peers(api: TestClient) -> None:
    sweep = api.post(
        "/api/sweeps",
        json=sweep_body(axes=[{"path": L2, "values": [1e-4, 1e-3, 1e-2]}], pack=False),
    ).json()
    runs = claim_all(3)
    for epoch in range(6):
        report(runs[0], epoch, 0.5)
        report(runs[1], epoch, 0.6)
        report(runs[2], epoch, 5.0)
    assert statuses(sweep["experiment_ids"]) == ["running"] * 3

    pruning = api.post(
        "/api/sweeps",
        json=sweep_body(
            axes=[{"path": L2, "values": [1e-4, 1e-3]}], prune=True, prune_after=1, pack=False
        ),
    ).json()
    pair = claim_all(2)
    for epoch in range(4):
        report(pair[0], epoch, 0.5)
        report(pair[1], epoch, 5.0)  # one peer only: no median to judge by
    assert statuses(pruning["experiment_ids"]) == ["running", "running"]
    assert Status.pruned.is_final
